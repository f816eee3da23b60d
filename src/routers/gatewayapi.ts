/**
 * Gateway API v1 HTTPRoute and GRPCRoute: spec.rules[].backendRefs[].weight
 * of the two named backends, in every rule that routes to both. Weights are
 * proportional int32s (default 1, 0 = no traffic). A written step counts as
 * applied only when every parent in spec.parentRefs reports Accepted and
 * ResolvedRefs True for the route's current generation.
 */
import type { ObjectRef, KObject } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { asArray, asNumber, asRecord, type WeightLocation } from "./locations.ts";
import { PatchRouter } from "./patchrouter.ts";
import { ANNOTATIONS } from "../contract.ts";
import { RouteError, type RouteView } from "./types.ts";
import { GATEWAY_API_PAIR_TOTAL } from "./weights.ts";

interface ParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  sectionName?: string;
  port?: number;
}

interface Condition {
  type?: string;
  status?: string;
  observedGeneration?: number;
  reason?: string;
  message?: string;
}

const isServiceRef = (ref: Record<string, unknown>) =>
  (ref.group === undefined || ref.group === "" || ref.group === "core") &&
  (ref.kind === undefined || ref.kind === "Service");

function sameParent(a: ParentRef, b: ParentRef, routeNamespace: string): boolean {
  return (
    (a.group ?? "gateway.networking.k8s.io") === (b.group ?? "gateway.networking.k8s.io") &&
    (a.kind ?? "Gateway") === (b.kind ?? "Gateway") &&
    (a.namespace ?? routeNamespace) === (b.namespace ?? routeNamespace) &&
    a.name === b.name &&
    (a.sectionName ?? "") === (b.sectionName ?? "") &&
    (a.port ?? 0) === (b.port ?? 0)
  );
}

/** Whether every parent accepted this generation, and if not, a sentence saying which did not. */
export function acceptance(route: KObject): { accepted: boolean; detail?: string } {
  const ns = route.metadata?.namespace ?? "default";
  const generation = route.metadata?.generation ?? 0;
  const parentRefs = asArray(asRecord(route.spec)?.parentRefs) as ParentRef[];
  const statuses = asArray(asRecord((route as { status?: unknown }).status)?.parents) as Array<{
    parentRef?: ParentRef;
    conditions?: Condition[];
  }>;
  const pending: string[] = [];
  for (const parent of parentRefs) {
    const label = `${parent.kind ?? "Gateway"} ${parent.namespace ?? ns}/${parent.name}${parent.sectionName ? `#${parent.sectionName}` : ""}`;
    const entries = statuses.filter((s) => s.parentRef && sameParent(s.parentRef, parent, ns));
    if (entries.length === 0) {
      pending.push(`${label}: no status yet`);
      continue;
    }
    for (const entry of entries) {
      for (const type of ["Accepted", "ResolvedRefs"]) {
        const c = (entry.conditions ?? []).find((x) => x.type === type);
        if (!c) pending.push(`${label}: no ${type} condition`);
        else if ((c.observedGeneration ?? -1) < generation)
          pending.push(
            `${label}: ${type} is for generation ${c.observedGeneration ?? "?"}, route is at ${generation}`,
          );
        else if (c.status !== "True")
          pending.push(
            `${label}: ${type}=${c.status} (${c.reason ?? ""}${c.message ? `: ${c.message}` : ""})`,
          );
      }
    }
  }
  return pending.length ? { accepted: false, detail: pending.join("; ") } : { accepted: true };
}

export class GatewayApiRouter extends PatchRouter {
  read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView {
    const kind = policy.target.kind === "GRPCRoute" ? "GRPCRoute" : "HTTPRoute";
    const ref: ObjectRef = { kind, namespace: policy.namespace, name: policy.target.name };
    const route = this.reader.get(kind, ref.namespace, ref.name);
    if (!route) throw new RouteError(`${kind} ${ref.namespace}/${ref.name} not found`, ref, [ref]);

    const locations: WeightLocation[] = [];
    asArray(asRecord(route.spec)?.rules).forEach((rawRule, r) => {
      const refs = asArray(asRecord(rawRule)?.backendRefs).map((b) => asRecord(b) ?? {});
      const names = refs.map((b) => (isServiceRef(b) ? (b.name as string | undefined) : undefined));
      if (!names.includes(roles.stable) || !names.includes(roles.canary)) return;
      refs.forEach((b, i) => {
        const name = names[i];
        if (name === roles.stable || name === roles.canary) {
          locations.push({
            backend: name,
            path: `/spec/rules/${r}/backendRefs/${i}/weight`,
            current: asNumber(b.weight, 1),
          });
        }
      });
    });
    if (!locations.length) {
      throw new RouteError(
        `${kind} ${ref.namespace}/${ref.name} has no rule whose backendRefs include both services ${roles.stable} and ${roles.canary}`,
        undefined,
        [ref],
      );
    }
    const acc = acceptance(route);
    return {
      target: {
        ...route,
        apiVersion: route.apiVersion ?? "gateway.networking.k8s.io/v1",
        kind: route.kind ?? kind,
      },
      weightsRef: ref,
      pair: locations.map((l) => ({ path: l.path, backend: l.backend, weight: l.current })),
      pairTotal: GATEWAY_API_PAIR_TOTAL,
      stateAnnotation: route.metadata?.annotations?.[ANNOTATIONS.state],
      accepted: acc.accepted,
      acceptanceDetail: acc.detail,
      dependsOn: [ref],
      object: route,
    };
  }
}
