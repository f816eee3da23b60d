/**
 * Which version of a kind the cluster serves. Most kinds have one version
 * rolloutd speaks; App Mesh's have two that users run: AWS's CRDs serve
 * appmesh.k8s.aws/v1beta2, the user's design document writes its
 * GatewayRoute as appmesh.k8s.aws/v1beta1. The API server's discovery
 * documents say which: /apis lists each group's served versions (the
 * preferred one first), /apis/<group>/<version> the resources of one version.
 * A kind is addressed by the first version that serves its resource: the
 * group's preferred version if rolloutd speaks it, else rolloutd's own order.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { AgentPool } from "./agents.ts";
import type { KindInfo } from "./kinds.ts";
import { kubeRequest } from "./request.ts";

/** GET a discovery document; undefined on 404. */
export type DiscoveryGet = (path: string) => Promise<unknown>;

interface GroupList {
  groups?: Array<{
    name?: string;
    versions?: Array<{ version?: string }>;
    preferredVersion?: { version?: string };
  }>;
}

interface ResourceList {
  resources?: Array<{ name?: string }>;
}

/**
 * The version of `kind` the cluster serves, among those rolloutd speaks
 * (`kind.versions`, else `kind.version`); undefined when none is served
 * (the CRD is not installed).
 */
export async function servedVersion(get: DiscoveryGet, kind: KindInfo): Promise<string | undefined> {
  const spoken = kind.versions ?? [kind.version];
  if (!kind.group) return kind.version;
  const groups = ((await get("/apis")) as GroupList | undefined)?.groups ?? [];
  const group = groups.find((g) => g.name === kind.group);
  if (!group) return undefined;
  const served = new Set((group.versions ?? []).map((v) => v.version));
  const preferred = group.preferredVersion?.version;
  const order = [...(preferred && spoken.includes(preferred) ? [preferred] : []), ...spoken];
  for (const version of new Set(order)) {
    if (!served.has(version)) continue;
    const list = (await get(`/apis/${kind.group}/${version}`)) as ResourceList | undefined;
    if (list?.resources?.some((r) => r.name === kind.plural)) return version;
  }
  return undefined;
}

/** `kind` addressed by the version the cluster serves; as declared when none is (its watch then waits). */
export async function servedKind(get: DiscoveryGet, kind: KindInfo): Promise<KindInfo> {
  if (!kind.versions || kind.versions.length < 2) return kind;
  const version = await servedVersion(get, kind);
  return version && version !== kind.version ? { ...kind, version } : kind;
}

/** Discovery documents through the kubeconfig's credentials (over `agents`' keep-alive connections when given). */
export function discoveryGet(kc: KubeConfig, timeoutMs = 10_000, agents?: AgentPool): DiscoveryGet {
  return async (path) => {
    const res = await kubeRequest(kc, agents, { method: "GET", path, timeoutMs });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
    return JSON.parse(res.text) as unknown;
  };
}
