/**
 * Gateway API v1 HTTPRoute and GRPCRoute: spec.rules[].backendRefs[].weight
 * of the two named backends, in every rule that routes to both. Weights are
 * proportional int32s 0..1,000,000 (default 1, 0 = no traffic); each rule's
 * pair moves within its own total (weights.ts). A backendRef is one of the
 * pair only when it is a core Service (group "" or absent, kind Service or
 * absent) of that name in that namespace (the policy's explicit namespace for
 * the backend, else the route's; a ref without namespace is in the route's).
 * A written step counts as applied only when every parent in spec.parentRefs
 * reports Accepted and ResolvedRefs True for the route's current generation.
 */
import type { ObjectRef, KObject } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { asArray, asNumber, asRecord, asString } from "./locations.ts";
import { PatchRouter } from "./patchrouter.ts";
import { ANNOTATIONS } from "../contract.ts";
import { RouteError, type PairWeight, type RouteView } from "./types.ts";
import { GATEWAY_API_MAX_WEIGHT } from "./weights.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import { stageRuleOps, type OwnedRule, type Stage } from "./stagerule.ts";

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

/** Group "" (core) or absent, kind Service or absent: the only backends a policy can name. */
const isServiceRef = (ref: Record<string, unknown>) =>
  (ref.group === undefined || ref.group === "") && (ref.kind === undefined || ref.kind === "Service");

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
  protected readonly maxWeight = GATEWAY_API_MAX_WEIGHT;
  protected readonly defaultWeight = 1;

  /** The owned stage rule is copied from the first rule holding the pair (stagerule.ts). */
  stageOps(
    view: RouteView,
    roles: { stable: string; canary: string },
    desired: { index: number; stage: Stage } | undefined,
    owned: OwnedRule | undefined,
  ): JsonPatchOp[] {
    const first = view.pair.find((w) => w.backend === roles.canary);
    const m = first && /^\/spec\/rules\/(\d+)\/backendRefs\/(\d+)\/weight$/.exec(first.path);
    if (!m) return [];
    const kind = view.weightsRef.kind === "GRPCRoute" ? "GRPCRoute" : "HTTPRoute";
    return stageRuleOps(view.object, kind, { rule: Number(m[1]), canaryIndex: Number(m[2]) }, desired, owned);
  }

  read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView {
    const kind = policy.target.kind === "GRPCRoute" ? "GRPCRoute" : "HTTPRoute";
    const ref: ObjectRef = { kind, namespace: policy.namespace, name: policy.target.name };
    const route = this.reader.get(kind, ref.namespace, ref.name);
    if (!route) throw new RouteError(`${kind} ${ref.namespace}/${ref.name} not found`, ref, [ref]);
    const what = `${kind} ${ref.namespace}/${ref.name}`;
    const routeNs = route.metadata?.namespace ?? ref.namespace;
    const nsOf = (backend: string) => policy.backendNamespaces?.[backend] ?? routeNs;
    const label = (backend: string) =>
      nsOf(backend) === routeNs ? `Service ${backend}` : `Service ${nsOf(backend)}/${backend}`;

    const pair: PairWeight[] = [];
    asArray(asRecord(route.spec)?.rules).forEach((rawRule, r) => {
      const refs = asArray(asRecord(rawRule)?.backendRefs).map((b) => asRecord(b) ?? {});
      const found: Record<string, number[]> = { [roles.stable]: [], [roles.canary]: [] };
      refs.forEach((b, i) => {
        const name = asString(b.name);
        if (!name || !isServiceRef(b) || !(name in found)) return;
        if ((asString(b.namespace) ?? routeNs) !== nsOf(name)) return;
        found[name]!.push(i);
      });
      const s = found[roles.stable]!;
      const c = found[roles.canary]!;
      if (s.length > 1 || c.length > 1) {
        const twice = s.length > 1 ? roles.stable : roles.canary;
        throw new RouteError(
          `${what}: spec.rules[${r}] names ${label(twice)} in more than one backendRef; ` +
            "rolloutd cannot tell which one to step",
          undefined,
          [ref],
        );
      }
      if (s.length !== 1 || c.length !== 1) return;
      // In the order of the backendRefs, as read.
      for (const [backend, i] of [[roles.stable, s[0]!] as const, [roles.canary, c[0]!] as const].sort(
        (a, b) => a[1] - b[1],
      )) {
        pair.push({
          backend,
          path: `/spec/rules/${r}/backendRefs/${i}/weight`,
          weight: asNumber(refs[i]!.weight, 1),
        });
      }
    });
    if (!pair.length) {
      throw new RouteError(
        `${what} has no rule whose backendRefs include both ${label(roles.stable)} and ${label(roles.canary)}`,
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
      pair,
      stateAnnotation: route.metadata?.annotations?.[ANNOTATIONS.state],
      accepted: acc.accepted,
      ...(acc.detail !== undefined ? { acceptanceDetail: acc.detail } : {}),
      dependsOn: [ref],
      object: route,
    };
  }
}
