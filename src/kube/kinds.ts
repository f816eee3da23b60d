/**
 * The Kubernetes kinds rolloutd reads or writes, with where they live in the
 * API. One table, so that informers, writers, RBAC and error messages agree.
 */
import type { KubernetesObject } from "@kubernetes/client-node";

/** Any object as the API returns it; spec and status are read defensively. */
export type KObject = KubernetesObject & { spec?: unknown; status?: unknown };

export interface KindInfo {
  kind: string;
  group: string;
  /** The version addressed when discovery has not said otherwise. */
  version: string;
  plural: string;
  /**
   * Every version rolloutd reads and writes, in its order of preference; the
   * cluster's discovery picks one (kube/discovery.ts). Absent: only `version`.
   */
  versions?: readonly string[];
}

/** App Mesh: AWS's CRDs serve v1beta2; the user's design document writes its GatewayRoute as v1beta1. */
const APP_MESH_VERSIONS = ["v1beta2", "v1beta1"] as const;

export const KINDS = {
  GatewayRoute: {
    kind: "GatewayRoute",
    group: "appmesh.k8s.aws",
    version: "v1beta2",
    plural: "gatewayroutes",
    versions: APP_MESH_VERSIONS,
  },
  VirtualService: {
    kind: "VirtualService",
    group: "appmesh.k8s.aws",
    version: "v1beta2",
    plural: "virtualservices",
    versions: APP_MESH_VERSIONS,
  },
  VirtualRouter: {
    kind: "VirtualRouter",
    group: "appmesh.k8s.aws",
    version: "v1beta2",
    plural: "virtualrouters",
    versions: APP_MESH_VERSIONS,
  },
  HTTPRoute: {
    kind: "HTTPRoute",
    group: "gateway.networking.k8s.io",
    version: "v1",
    plural: "httproutes",
  },
  GRPCRoute: {
    kind: "GRPCRoute",
    group: "gateway.networking.k8s.io",
    version: "v1",
    plural: "grpcroutes",
  },
  Deployment: { kind: "Deployment", group: "apps", version: "v1", plural: "deployments" },
} as const satisfies Record<string, KindInfo>;

export type KindName = keyof typeof KINDS;

export function apiVersionOf(k: KindInfo): string {
  return k.group ? `${k.group}/${k.version}` : k.version;
}

/** The collection path across all namespaces, as watches use it. */
export function clusterPath(k: KindInfo): string {
  return k.group ? `/apis/${k.group}/${k.version}/${k.plural}` : `/api/${k.version}/${k.plural}`;
}

export interface ObjectRef {
  kind: KindName;
  namespace: string;
  name: string;
}

export const refKey = (r: ObjectRef): string => `${r.kind}/${r.namespace}/${r.name}`;
