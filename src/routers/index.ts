import type { TargetKind } from "../policy/types.ts";
import { AppMeshRouter } from "./appmesh.ts";
import { GatewayApiRouter } from "./gatewayapi.ts";
import type { ObjectReader, ObjectWriter } from "../kube/access.ts";
import type { KObject, ObjectRef } from "../kube/kinds.ts";
import { weightsPatch } from "./locations.ts";
import type { TrafficRouter } from "./types.ts";

/** One router per family; the policy's target kind picks it. */
export class RouterRegistry {
  private readonly appMesh: AppMeshRouter;
  private readonly gatewayApi: GatewayApiRouter;

  constructor(
    reader: ObjectReader,
    private readonly writer: ObjectWriter,
  ) {
    this.appMesh = new AppMeshRouter(reader, writer);
    this.gatewayApi = new GatewayApiRouter(reader, writer);
  }

  /**
   * Writes rolloutd's state annotation alone on an object that holds it but
   * whose weights cannot be used now (the pair is gone, say), guarded by its
   * resourceVersion: so the record says why the rollout is stuck.
   */
  async writeStateOnly(ref: ObjectRef, obj: KObject, stateAnnotation: string): Promise<void> {
    await this.writer.jsonPatch(ref, weightsPatch(obj, [], undefined, stateAnnotation));
  }

  for(kind: TargetKind): TrafficRouter {
    return kind === "HTTPRoute" || kind === "GRPCRoute" ? this.gatewayApi : this.appMesh;
  }
}

/** Gateway API routes count a step as applied only once their parents accept it. */
export const needsAcceptance = (kind: TargetKind): boolean => kind === "HTTPRoute" || kind === "GRPCRoute";
