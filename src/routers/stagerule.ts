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
 * App Mesh: the owned route in a VirtualRouter's spec.routes, copied from
 * the pair's route with the stage's match added, the canary virtual node its
 * only target, and a priority one higher than the pair's (App Mesh: a lower
 * number wins; a route without one counts as 1000, the lowest).
 */
export function appMeshStageRoute(
  pairRoute: Record<string, unknown>,
  routeKind: "httpRoute" | "http2Route" | "grpcRoute",
  canaryIndex: number,
  stage: Stage,
  what: string,
): Record<string, unknown> {
  const priority = typeof pairRoute.priority === "number" ? pairRoute.priority : 1000;
  if (priority <= 0)
    throw new RouteError(
      `${what}: the pair's route has priority 0; a stage's route cannot be placed before it`,
    );
  const spec = asRecord(pairRoute[routeKind]) ?? {};
  const action = asRecord(spec.action) ?? {};
  const canary = { ...(asRecord(asArray(action.weightedTargets)[canaryIndex]) ?? {}), weight: 1 };
  const match = { ...(asRecord(spec.match) ?? {}) };
  const m = stage.match;
  const headers = asArray(match.headers);
  if ("header" in m) {
    match.headers = [
      ...headers,
      {
        name: m.header.name.toLowerCase(),
        match: m.header.type === "Exact" ? { exact: m.header.value } : { regex: m.header.value },
      },
    ];
  } else if ("cookie" in m) {
    match.headers = [
      ...headers,
      { name: "cookie", match: { regex: cookieRegex(m.cookie.name, m.cookie.value) } },
    ];
  } else if (routeKind === "grpcRoute") {
    throw new RouteError(`${what}: a gRPC route's stages match headers (or cookies) only`);
  } else if ("query" in m) {
    match.queryParameters = [
      ...asArray(match.queryParameters),
      { name: m.query.name, match: { exact: m.query.value } },
    ];
  } else {
    match.prefix = m.pathPrefix;
  }
  return {
    name: STAGE_RULE_NAME,
    priority: priority - 1,
    [routeKind]: { ...spec, match, action: { ...action, weightedTargets: [canary] } },
  };
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
