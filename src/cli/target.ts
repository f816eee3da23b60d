/**
 * kubectl-style addressing of a route ("httproute/frontend", "gr/checkout")
 * and the kube clients the operator commands use.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { KINDS, type KindInfo, type KindName } from "../kube/kinds.ts";
import { discoveryGet, servedKind } from "../kube/discovery.ts";
import { loadKubeConfig } from "../kube/client.ts";

export const ROUTE_KINDS = [
  "GatewayRoute",
  "VirtualRouter",
  "HTTPRoute",
  "GRPCRoute",
] as const satisfies readonly KindName[];
export type RouteKind = (typeof ROUTE_KINDS)[number];

const ALIASES: Record<string, RouteKind> = {
  gatewayroute: "GatewayRoute",
  gatewayroutes: "GatewayRoute",
  gr: "GatewayRoute",
  virtualrouter: "VirtualRouter",
  virtualrouters: "VirtualRouter",
  vr: "VirtualRouter",
  httproute: "HTTPRoute",
  httproutes: "HTTPRoute",
  grpcroute: "GRPCRoute",
  grpcroutes: "GRPCRoute",
};

export class UsageError extends Error {
  override name = "UsageError";
}

export function parseTarget(arg: string): { kind: RouteKind; name: string } {
  const m = /^([A-Za-z0-9.]+)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(arg);
  const kindPart = m?.[1]?.toLowerCase().split(".")[0];
  const kind = kindPart ? ALIASES[kindPart] : undefined;
  if (!m || !kind) {
    throw new UsageError(
      `"${arg}" is not a route: write <kind>/<name>, kind one of ${Object.keys(ALIASES).join(", ")}`,
    );
  }
  return { kind, name: m[2]! };
}

export interface GlobalOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

export function kubeFrom(o: GlobalOptions): { kc: KubeConfig; namespace: string } {
  const kc = loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context });
  const namespace = o.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
  return { kc, namespace };
}

/** The kind addressed by the version the cluster serves (App Mesh: v1beta2 or the design document's v1beta1). */
export const kindInfo = (kc: KubeConfig, k: KindName): Promise<KindInfo> =>
  servedKind(discoveryGet(kc), KINDS[k]);
