import type { TargetKind } from "../policy/types.ts";
import { AppMeshRouter } from "./appmesh.ts";
import { GatewayApiRouter } from "./gatewayapi.ts";
import type { ObjectReader, ObjectWriter } from "../kube/access.ts";
import type { TrafficRouter } from "./types.ts";

/** One router per family; the policy's target kind picks it. */
export class RouterRegistry {
  private readonly appMesh: AppMeshRouter;
  private readonly gatewayApi: GatewayApiRouter;

  constructor(reader: ObjectReader, writer: ObjectWriter) {
    this.appMesh = new AppMeshRouter(reader, writer);
    this.gatewayApi = new GatewayApiRouter(reader, writer);
  }

  for(kind: TargetKind): TrafficRouter {
    return kind === "HTTPRoute" || kind === "GRPCRoute" ? this.gatewayApi : this.appMesh;
  }
}

/** Gateway API routes count a step as applied only once their parents accept it. */
export const needsAcceptance = (kind: TargetKind): boolean => kind === "HTTPRoute" || kind === "GRPCRoute";
