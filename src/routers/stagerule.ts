/**
 * Request stages on Gateway API (issue 12): before any weight moves, only
 * requests that match go to the canary. rolloutd adds ONE rule it owns — a
 * named rule (GEP-995), a copy of the pair's rule with the stage's condition
 * added to every match and the canary as its only backend — and removes it
 * when the stages are over (next weight step, promotion, rollback, abort).
 * Gateway API gives the more specific match precedence whatever the rule
 * order, so the copy wins for matching requests and the pair's rule keeps
 * every other request. Nothing else in the route changes.
 *
 * Ownership: the rule's name is recorded in the state written in the same
 * guarded patch, so a restart finds exactly the rule it added. A rule of
 * that name the state does not record is someone else's: rolloutd refuses
 * to add over it and never removes it.
 */
import type { JsonPatchOp } from "../kube/access.ts";
import type { KObject } from "../kube/kinds.ts";
import { asArray, asRecord, asString } from "./locations.ts";
import { RouteError } from "./types.ts";
import { ANNOTATIONS } from "../contract.ts";

const STAGE_ANNOTATION = ANNOTATIONS.stage;

/** The name of the rule rolloutd owns in a route: one policy drives a route, so one name suffices. */
export const STAGE_RULE_NAME = "rolloutd-stage";

/** Which requests a stage sends to the canary. */
export type StageMatch =
  | { header: { name: string; value: string; type: "Exact" | "RegularExpression" } }
  | { cookie: { name: string; value: string } }
  | { query: { name: string; value: string } }
  | { pathPrefix: string };

export interface Stage {
  match: StageMatch;
}

/** A cookie match as Gateway API can say it: a regular expression on the Cookie header. */
function cookieRegex(name: string, value: string): string {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return `(^|.*;\\s*)${esc(name)}=${esc(value)}(;.*|$)`;
}

/** The condition added to one of the pair rule's matches. */
function narrow(kind: "HTTPRoute" | "GRPCRoute", m: Record<string, unknown>, s: StageMatch): unknown {
  const headers = asArray(m.headers).filter((h) => {
    const name = asString(asRecord(h)?.name)?.toLowerCase();
    if ("header" in s) return name !== s.header.name.toLowerCase();
    if ("cookie" in s) return name !== "cookie";
    return true;
  });
  if ("header" in s)
    return {
      ...m,
      headers: [...headers, { type: s.header.type, name: s.header.name, value: s.header.value }],
    };
  if ("cookie" in s) {
    return {
      ...m,
      headers: [
        ...headers,
        { type: "RegularExpression", name: "Cookie", value: cookieRegex(s.cookie.name, s.cookie.value) },
      ],
    };
  }
  if (kind === "GRPCRoute") throw new Error("GRPCRoute stages match headers (or cookies) only");
  if ("query" in s) {
    const params = asArray(m.queryParams).filter((q) => asString(asRecord(q)?.name) !== s.query.name);
    return { ...m, queryParams: [...params, { type: "Exact", name: s.query.name, value: s.query.value }] };
  }
  return { ...m, path: { type: "PathPrefix", value: s.pathPrefix } };
}

/** The rule rolloutd adds for a stage: the pair's rule narrowed to the stage, the canary its only backend. */
export function stageRule(
  kind: "HTTPRoute" | "GRPCRoute",
  pairRule: Record<string, unknown>,
  canaryIndex: number,
  stage: Stage,
): Record<string, unknown> {
  const { name: _name, backendRefs, matches, ...rest } = pairRule;
  const canary = { ...(asRecord(asArray(backendRefs)[canaryIndex]) ?? {}) };
  delete canary.weight;
  const own = asArray(matches).map((m) => asRecord(m) ?? {});
  return {
    ...rest,
    name: STAGE_RULE_NAME,
    matches: (own.length ? own : [{}]).map((m) => narrow(kind, m, stage.match)),
    backendRefs: [canary],
  };
}

/** The owned rule as the state records it: its name and the stage it was written for. */
export interface OwnedRule {
  name: string;
  stage: number;
}

/**
 * The JSON Patch operations that make a list of rules (Gateway API
 * spec.rules, App Mesh spec.routes) hold the owned rule the stage says:
 * added, replaced (another stage), removed, or none when it already is.
 * `owned` is what the persisted state records. The rule as stored carries the
 * API server's defaults, so it is compared by the stage it was written for,
 * never field by field.
 */
export function ownedRuleOps(
  list: { path: string; items: unknown[]; what: string },
  build: (stage: Stage) => Record<string, unknown>,
  desired: { index: number; stage: Stage } | undefined,
  owned: OwnedRule | undefined,
): JsonPatchOp[] {
  const at = list.items.findIndex((r) => asRecord(r)?.name === STAGE_RULE_NAME);
  const ours = at >= 0 && owned?.name === STAGE_RULE_NAME;
  if (at >= 0 && !ours) {
    if (!desired) return [];
    throw new RouteError(
      `${list.what} has a rule named ${STAGE_RULE_NAME} that rolloutd's state does not record as its own; ` +
        "rolloutd will not replace it. Rename it to run request stages",
    );
  }
  const guard: JsonPatchOp = { op: "test", path: `${list.path}/${at}/name`, value: STAGE_RULE_NAME };
  if (!desired) return ours ? [guard, { op: "remove", path: `${list.path}/${at}` }] : [];
  if (ours && owned.stage === desired.index) return [];
  const want = build(desired.stage);
  if (!ours) return [{ op: "add", path: `${list.path}/-`, value: want }];
  return [guard, { op: "replace", path: `${list.path}/${at}`, value: want }];
}

/** Gateway API: the owned rule in spec.rules, copied from the pair's rule. */
export function stageRuleOps(
  route: KObject,
  kind: "HTTPRoute" | "GRPCRoute",
  pair: { rule: number; canaryIndex: number },
  desired: { index: number; stage: Stage } | undefined,
  owned: OwnedRule | undefined,
): JsonPatchOp[] {
  const rules = asArray(asRecord(route.spec)?.rules);
  return ownedRuleOps(
    {
      path: "/spec/rules",
      items: rules,
      what: `${kind} ${route.metadata?.namespace}/${route.metadata?.name}`,
    },
    (stage) => {
      const pairRule = asRecord(rules[pair.rule]);
      if (!pairRule) throw new Error(`rule ${pair.rule} is not in the route`);
      return stageRule(kind, pairRule, pair.canaryIndex, stage);
    },
    desired,
    owned,
  );
}

/**
 * An App Mesh match (a VirtualRouter route's or a GatewayRoute's) narrowed to
 * a stage. HTTP routes say headers, gRPC routes say metadata (a gRPC route
 * has no `headers`: the API server would prune it and the copy would match
 * every request of the pair's route); only HTTP routes know query parameters
 * and path prefixes.
 */
function appMeshMatch(
  match: Record<string, unknown>,
  routeKind: "httpRoute" | "http2Route" | "grpcRoute",
  s: StageMatch,
  what: string,
): Record<string, unknown> {
  const field = routeKind === "grpcRoute" ? "metadata" : "headers";
  const out = { ...match };
  const add = (name: string, m: Record<string, string>) => {
    out[field] = [...asArray(match[field]), { name, match: m }];
  };
  if ("header" in s) {
    add(
      s.header.name.toLowerCase(),
      s.header.type === "Exact" ? { exact: s.header.value } : { regex: s.header.value },
    );
  } else if ("cookie" in s) {
    add("cookie", { regex: cookieRegex(s.cookie.name, s.cookie.value) });
  } else if (routeKind === "grpcRoute") {
    throw new RouteError(`${what}: a gRPC route's stages match headers (or cookies) only`);
  } else if ("query" in s) {
    out.queryParameters = [
      ...asArray(match.queryParameters),
      { name: s.query.name, match: { exact: s.query.value } },
    ];
  } else {
    out.prefix = s.pathPrefix;
  }
  return out;
}

/** App Mesh priorities: a lower number wins; a route without one counts as 1000, the lowest. */
function priorityBefore(priority: unknown, what: string): number {
  const p = typeof priority === "number" ? priority : 1000;
  if (p <= 0)
    throw new RouteError(
      `${what}: the pair's route has priority 0; a stage's route cannot be placed before it`,
    );
  return p - 1;
}

/**
 * App Mesh: the owned route in a VirtualRouter's spec.routes, copied from
 * the pair's route with the stage's match added, the canary virtual node its
 * only target, and a priority one higher than the pair's.
 */
export function appMeshStageRoute(
  pairRoute: Record<string, unknown>,
  routeKind: "httpRoute" | "http2Route" | "grpcRoute",
  canaryIndex: number,
  stage: Stage,
  what: string,
): Record<string, unknown> {
  const priority = priorityBefore(pairRoute.priority, what);
  const spec = asRecord(pairRoute[routeKind]) ?? {};
  const action = asRecord(spec.action) ?? {};
  const canary = { ...(asRecord(asArray(action.weightedTargets)[canaryIndex]) ?? {}), weight: 1 };
  const match = appMeshMatch(asRecord(spec.match) ?? {}, routeKind, stage.match, what);
  return {
    name: STAGE_RULE_NAME,
    priority,
    [routeKind]: { ...spec, match, action: { ...action, weightedTargets: [canary] } },
  };
}

/**
 * App Mesh's weighted GatewayRoute (the design document's form) holds one
 * route per object, so a stage cannot be a second route inside it: rolloutd
 * creates a GatewayRoute of its own beside the user's, named after it.
 */
export function gatewayRouteStageName(userRoute: string): string {
  return `${userRoute}-${STAGE_RULE_NAME}`;
}

/**
 * The stage's own GatewayRoute: the user's copied (its labels too, so the
 * VirtualGateway's gatewayRouteSelector picks it up as it picks up theirs),
 * the stage's match added, one priority higher, the canary its only weighted
 * target at full weight (in the same place the user's form keeps weights:
 * beside or inside targetRef), and a controlling owner reference to the
 * user's GatewayRoute — rolloutd's mark of ownership, and what lets the
 * garbage collector remove it with the user's. `awsName` is left out: App
 * Mesh names must be unique, and the default (name_namespace) is.
 */
export function gatewayRouteStageObject(
  user: KObject,
  routeKind: "httpRoute" | "http2Route" | "grpcRoute",
  canaryIndex: number,
  stage: { index: number; stage: Stage },
  what: string,
): KObject {
  const meta = user.metadata ?? {};
  const { awsName: _aws, priority, ...spec } = asRecord(user.spec) ?? {};
  for (const k of ["httpRoute", "http2Route", "grpcRoute"]) if (k !== routeKind) delete spec[k];
  const route = asRecord(spec[routeKind]) ?? {};
  const action = asRecord(route.action) ?? {};
  const canary = structuredClone(asRecord(asArray(action.weightedTargets)[canaryIndex]) ?? {});
  const inside = asRecord(canary.targetRef);
  if (inside && inside.weight !== undefined) inside.weight = 100;
  else canary.weight = 100;
  return {
    apiVersion: user.apiVersion,
    kind: "GatewayRoute",
    metadata: {
      name: gatewayRouteStageName(meta.name ?? ""),
      namespace: meta.namespace,
      ...(meta.labels ? { labels: { ...meta.labels } } : {}),
      annotations: { [STAGE_ANNOTATION]: String(stage.index) },
      ownerReferences: [
        {
          apiVersion: user.apiVersion ?? "",
          kind: "GatewayRoute",
          name: meta.name ?? "",
          uid: meta.uid ?? "",
          controller: true,
        },
      ],
    },
    spec: {
      ...spec,
      priority: priorityBefore(priority, what),
      [routeKind]: {
        ...route,
        match: appMeshMatch(asRecord(route.match) ?? {}, routeKind, stage.stage.match, what),
        action: { ...action, weightedTargets: [canary] },
      },
    },
  };
}

/** rolloutd's own only while the user's GatewayRoute controls it (the owner reference rolloutd wrote). */
export function ownedBy(obj: KObject, owner: KObject): boolean {
  const uid = owner.metadata?.uid;
  return !!uid && (obj.metadata?.ownerReferences ?? []).some((r) => r.controller === true && r.uid === uid);
}

/** The stage a GatewayRoute of rolloutd's own was written for. */
export function stageOfObject(obj: KObject): number | undefined {
  const raw = obj.metadata?.annotations?.[STAGE_ANNOTATION];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

/** For people: "header x-canary=always", "cookie canary=yes", "query v=2", "path /api/v2*". */
export function stageLabel(s: Stage): string {
  const m = s.match;
  if ("header" in m)
    return m.header.type === "Exact"
      ? `header ${m.header.name}=${m.header.value}`
      : `header ${m.header.name}~/${m.header.value}/`;
  if ("cookie" in m) return `cookie ${m.cookie.name}=${m.cookie.value}`;
  if ("query" in m) return `query ${m.query.name}=${m.query.value}`;
  return `path ${m.pathPrefix}*`;
}
