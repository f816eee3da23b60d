/**
 * The weight contract of issue 8, as generators and one checker shared by the
 * property tests (pure, at volume) and the real-API-server sample:
 *
 *   generated HTTPRoutes, GRPCRoutes and VirtualRouters (several rules/routes,
 *   the pair in some with different splits, other backends, look-alikes in
 *   other namespaces, missing weights, weights up to the family's maximum,
 *   filters, matches, retry policies) × a sequence of adopt / step / abort /
 *   rollback / promote / drift, pushed through the router's read → plan →
 *   write, with the JSON Patch captured and applied (RFC 6902).
 *
 * After every router write: the object equals the one before except the
 * pair's weight fields and rolloutd's state annotation; every other backend
 * keeps its exact share of its rule (bar the one documented case in
 * src/routers/weights.ts); every weight is an integer within the upstream
 * schema's range; the pair's split is what the step asked for, as nearly as
 * the location allows; and planning the same step again writes nothing.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { KObject, ObjectRef } from "../../src/kube/kinds.ts";
import type { RolloutPolicy } from "../../src/policy/types.ts";
import { AppMeshRouter } from "../../src/routers/appmesh.ts";
import { GatewayApiRouter } from "../../src/routers/gatewayapi.ts";
import { locationOf, pointerGet } from "../../src/routers/locations.ts";
import { ANNOTATIONS } from "../../src/contract.ts";
import type { JsonPatchOp, ObjectReader, ObjectWriter } from "../../src/kube/access.ts";
import { RouteError, type PairWeight, type TrafficRouter } from "../../src/routers/types.ts";
import { APP_MESH_MAX_WEIGHT, GATEWAY_API_MAX_WEIGHT } from "../../src/routers/weights.ts";

type Json = Record<string, any>;

export const NS = "shop";
export const OTHER_NS = "other";
export const STABLE = "web-v1";
export const CANARY = "web-v2";

// ---------------------------------------------------------------------------
// Generators

export type Family = "HTTPRoute" | "GRPCRoute" | "VirtualRouter";

export interface GeneratedCase {
  family: Family;
  route: KObject;
  /** The policy names the pair in OTHER_NS (backendNamespaces) instead of the route's namespace. */
  pairElsewhere: boolean;
  ops: Op[];
}

export type Op =
  | { type: "adopt" }
  | { type: "step"; percent: number }
  | { type: "abort" }
  | { type: "rollback" }
  | { type: "promote" }
  /** Another writer sets the pair's weights at some locations (values and which fields: from `seed`). */
  | { type: "drift"; seed: number };

const maxOf = (family: Family) => (family === "VirtualRouter" ? APP_MESH_MAX_WEIGHT : GATEWAY_API_MAX_WEIGHT);

/** Weights biased to the edges: 0, 1, small, large, the maximum. */
const weightArb = (max: number) =>
  fc.oneof(
    fc.constantFrom(0, 1, max),
    fc.integer({ min: 0, max: Math.min(max, 20) }),
    fc.integer({ min: 0, max }),
  );

/** A Gateway API backendRef: the pair (here or elsewhere), look-alikes, others. */
const backendRefArb = (max: number) =>
  fc.record(
    {
      who: fc.constantFrom(
        "stable",
        "canary",
        "stable-elsewhere",
        "canary-elsewhere",
        "stable-explicit-here",
        "other",
        "import",
      ),
      weight: fc.option(weightArb(max), { nil: undefined }),
      other: fc.constantFrom("legacy", "static", "web-v3"),
    },
    { requiredKeys: ["who", "other"] },
  );

function backendRef(b: { who: string; weight?: number | undefined; other: string }, port: number): Json {
  const base = (name: string, extra: Json = {}) => ({
    name,
    ...extra,
    port,
    ...(b.weight !== undefined ? { weight: b.weight } : {}),
  });
  switch (b.who) {
    case "stable":
      return base(STABLE);
    case "canary":
      return base(CANARY);
    case "stable-elsewhere":
      return base(STABLE, { namespace: OTHER_NS });
    case "canary-elsewhere":
      return base(CANARY, { namespace: OTHER_NS });
    case "stable-explicit-here":
      return base(STABLE, { namespace: NS, kind: "Service", group: "" });
    case "import": {
      const { port: _p, ...rest } = base(CANARY, { group: "multicluster.x-k8s.io", kind: "ServiceImport" });
      return rest;
    }
    default:
      return base(b.other);
  }
}

/** backendRefs with no backend named twice (the router refuses that, by design). */
function uniqueRefs(refs: Json[]): Json[] {
  const seen = new Set<string>();
  return refs.filter((r) => {
    const key = `${r.group ?? ""}/${r.kind ?? "Service"}/${r.namespace ?? NS}/${r.name}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const httpMatchArb = fc.oneof(
  fc.constant(undefined),
  fc.record({
    path: fc.record({
      type: fc.constantFrom("PathPrefix", "Exact"),
      value: fc.constantFrom("/", "/a", "/b/c", "/api"),
    }),
  }),
  fc.record({ headers: fc.constant([{ name: "x-canary", value: "yes" }]) }),
);

const httpFilterArb = fc.constantFrom(
  undefined,
  { type: "RequestHeaderModifier", requestHeaderModifier: { add: [{ name: "x-team", value: "shop" }] } },
  { type: "ResponseHeaderModifier", responseHeaderModifier: { remove: ["x-debug"] } },
);

const ruleArb = (family: "HTTPRoute" | "GRPCRoute", max: number) =>
  fc.record({
    refs: fc.array(backendRefArb(max), { minLength: 1, maxLength: 6 }),
    match: family === "HTTPRoute" ? httpMatchArb : fc.constantFrom(undefined, "Query", "Admin"),
    filter: family === "HTTPRoute" ? httpFilterArb : fc.constant(undefined),
    pairSplit: fc.option(fc.tuple(weightArb(max), weightArb(max)), { nil: undefined }),
  });

function gatewayRoute(
  family: "HTTPRoute" | "GRPCRoute",
  rules: Array<{
    refs: Array<{ who: string; weight?: number | undefined; other: string }>;
    match: unknown;
    filter: unknown;
    pairSplit?: [number, number] | undefined;
  }>,
  pairElsewhere: boolean,
): KObject {
  const port = family === "HTTPRoute" ? 80 : 9000;
  const built = rules.map((r, i) => {
    let refs = r.refs.map((b) => backendRef(b, port));
    // Some rules hold the pair with their own split.
    if (r.pairSplit) {
      const [s, c] = r.pairSplit;
      const ns = pairElsewhere ? { namespace: OTHER_NS } : {};
      refs = [{ name: STABLE, ...ns, port, weight: s }, ...refs, { name: CANARY, ...ns, port, weight: c }];
    }
    refs = uniqueRefs(refs).slice(0, 16);
    const rule: Json = { backendRefs: refs };
    if (family === "HTTPRoute") {
      if (r.match) rule.matches = [r.match];
      if (r.filter) rule.filters = [r.filter];
    } else if (r.match) {
      rule.matches = [{ method: { service: "search.v1.Search", method: r.match } }];
    }
    if (i % 3 === 1) rule.name = `rule-${i}`;
    return rule;
  });
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: family,
    metadata: {
      name: "web",
      namespace: NS,
      resourceVersion: "1",
      generation: 1,
      annotations: { "team.example.com/owner": "shop" },
    },
    spec: {
      parentRefs: [{ name: "gw" }, { name: "gw-internal", namespace: "infra", sectionName: "http" }],
      ...(family === "HTTPRoute" ? { hostnames: ["shop.example.com"] } : {}),
      rules: built,
    },
  };
}

const targetArb = fc.record({
  who: fc.constantFrom("stable", "canary", "stable-elsewhere", "canary-elsewhere", "other", "arn"),
  weight: weightArb(APP_MESH_MAX_WEIGHT),
  other: fc.constantFrom("legacy", "web-v3"),
});

function weightedTarget(t: { who: string; weight: number; other: string }): Json {
  switch (t.who) {
    case "stable":
      return { virtualNodeRef: { name: STABLE }, weight: t.weight };
    case "canary":
      return { virtualNodeRef: { name: CANARY, namespace: NS }, weight: t.weight };
    case "stable-elsewhere":
      return { virtualNodeRef: { name: STABLE, namespace: OTHER_NS }, weight: t.weight };
    case "canary-elsewhere":
      return { virtualNodeRef: { name: CANARY, namespace: OTHER_NS }, weight: t.weight };
    case "arn":
      return {
        virtualNodeARN: `arn:aws:appmesh:eu-west-1:123456789012:mesh/m/virtualNode/${CANARY}`,
        weight: t.weight,
      };
    default:
      return { virtualNodeRef: { name: t.other }, weight: t.weight };
  }
}

const vrRouteArb = fc.record({
  kind: fc.constantFrom("httpRoute", "http2Route", "grpcRoute", "tcpRoute"),
  targets: fc.array(targetArb, { minLength: 1, maxLength: 8 }),
  pairSplit: fc.option(fc.tuple(weightArb(APP_MESH_MAX_WEIGHT), weightArb(APP_MESH_MAX_WEIGHT)), {
    nil: undefined,
  }),
  retry: fc.boolean(),
});

function virtualRouter(
  routes: Array<{
    kind: string;
    targets: Array<{ who: string; weight: number; other: string }>;
    pairSplit?: [number, number] | undefined;
    retry: boolean;
  }>,
  pairElsewhere: boolean,
): KObject {
  return {
    apiVersion: "appmesh.k8s.aws/v1beta2",
    kind: "VirtualRouter",
    metadata: { name: "web", namespace: NS, resourceVersion: "1", generation: 1 },
    spec: {
      listeners: [{ portMapping: { port: 8080, protocol: "http" } }],
      routes: routes.map((r, i) => {
        let targets = r.targets.map(weightedTarget);
        if (r.pairSplit) {
          const ns = pairElsewhere ? { namespace: OTHER_NS } : {};
          targets = [
            { virtualNodeRef: { name: STABLE, ...ns }, weight: r.pairSplit[0] },
            ...targets,
            { virtualNodeRef: { name: CANARY, ...ns }, weight: r.pairSplit[1] },
          ];
        }
        const seen = new Set<string>();
        targets = targets
          .filter((t) => {
            const key = String(
              t.virtualNodeARN ?? `${t.virtualNodeRef.namespace ?? NS}/${t.virtualNodeRef.name}`,
            );
            if (seen.has(key)) return false;
            seen.add(key);
            return true;
          })
          .slice(0, 10);
        const match =
          r.kind === "grpcRoute"
            ? { serviceName: "search.v1.Search" }
            : r.kind === "tcpRoute"
              ? undefined
              : { prefix: `/r${i}` };
        const spec: Json = { action: { weightedTargets: targets } };
        if (match) spec.match = match;
        if (r.retry && r.kind !== "tcpRoute") {
          spec.retryPolicy = {
            maxRetries: 2,
            perRetryTimeout: { unit: "ms", value: 250 },
            ...(r.kind === "grpcRoute" ? { grpcRetryEvents: ["unavailable"] } : {}),
            httpRetryEvents: ["server-error"],
          };
        }
        if (r.retry) spec.timeout = { idle: { unit: "s", value: 60 } };
        return { name: `route-${i}`, [r.kind]: spec };
      }),
    },
  };
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ type: fc.constant("step" as const), percent: fc.integer({ min: 1, max: 99 }) }),
  },
  { weight: 1, arbitrary: fc.constant<Op>({ type: "abort" }) },
  { weight: 1, arbitrary: fc.constant<Op>({ type: "rollback" }) },
  { weight: 1, arbitrary: fc.constant<Op>({ type: "promote" }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant("drift" as const), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant<Op>({ type: "adopt" }) },
);

const opsArb = fc
  .array(opArb, { minLength: 1, maxLength: 12 })
  .map((ops): Op[] => [{ type: "adopt" }, ...ops]);

/** Most cases hold the pair in at least one rule; some do not (then read() must refuse without writing). */
export function caseArb(family: Family): fc.Arbitrary<GeneratedCase> {
  const max = maxOf(family);
  const route =
    family === "VirtualRouter"
      ? fc
          .tuple(fc.array(vrRouteArb, { minLength: 1, maxLength: 6 }), fc.boolean())
          .map(([routes, elsewhere]) => ({ route: virtualRouter(routes, elsewhere), elsewhere }))
      : fc
          .tuple(fc.array(ruleArb(family, max), { minLength: 1, maxLength: 6 }), fc.boolean())
          .map(([rules, elsewhere]) => ({ route: gatewayRoute(family, rules, elsewhere), elsewhere }));
  return fc
    .tuple(route, opsArb)
    .map(([r, ops]) => ({ family, route: r.route, pairElsewhere: r.elsewhere, ops }));
}

// ---------------------------------------------------------------------------
// JSON Patch (RFC 6902), as much as the routers send: add, replace, test, remove

export function applyJsonPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  const out = structuredClone(doc) as unknown;
  for (const op of ops) {
    const parts = op.path
      .split("/")
      .slice(1)
      .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    const key = parts.pop()!;
    const parent = pointerGet(out, parts.length ? `/${parts.join("/")}` : "") as Json | unknown[] | undefined;
    if (parent === undefined || parent === null || typeof parent !== "object")
      throw new Error(`${op.op} ${op.path}: no parent`);
    const exists = Array.isArray(parent) ? Number(key) < parent.length : Object.hasOwn(parent, key);
    if (op.op === "test") {
      assert.deepEqual((parent as Json)[key], op.value, `test ${op.path}`);
    } else if (op.op === "remove") {
      if (!exists) throw new Error(`remove ${op.path}: no such member`);
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete parent[key];
    } else if (op.op === "replace") {
      if (!exists) throw new Error(`replace ${op.path}: no such member`);
      (parent as Json)[key] = structuredClone(op.value);
    } else if (Array.isArray(parent)) {
      parent.splice(key === "-" ? parent.length : Number(key), 0, structuredClone(op.value));
    } else {
      parent[key] = structuredClone(op.value);
    }
  }
  return out as T;
}

// ---------------------------------------------------------------------------
// Driving a router through a sequence

export function policyFor(c: Pick<GeneratedCase, "family" | "pairElsewhere" | "route">): RolloutPolicy {
  const name = c.route.metadata!.name!;
  return {
    key: `${NS}/${name}`,
    name,
    namespace: NS,
    target: { kind: c.family, name },
    stable: STABLE,
    canary: CANARY,
    ...(c.pairElsewhere ? { backendNamespaces: { [STABLE]: OTHER_NS, [CANARY]: OTHER_NS } } : {}),
    deployments: {},
    steps: [10, 50],
    intervalMs: 60_000,
    routeReadyTimeoutMs: 60_000,
    source: { file: "generated.yaml", line: 1, column: 1 },
  };
}

/** Where an object lives between writes: in memory (pure) or in a real API server. */
export interface ObjectStore {
  get(): Promise<KObject>;
  /** A router write: the ops as captured; returns the stored result. */
  patch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject>;
  /** Another writer's edit of the pair's weights (drift). */
  foreign(ops: JsonPatchOp[]): Promise<void>;
}

export class MemoryStore implements ObjectStore {
  constructor(private obj: KObject) {}
  get(): Promise<KObject> {
    return Promise.resolve(structuredClone(this.obj));
  }
  patch(_ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> {
    // The API server treats a replaced resourceVersion as a precondition.
    const rv = ops.find((o) => o.path === "/metadata/resourceVersion");
    assert.ok(rv && rv.op !== "remove", "every write is guarded by resourceVersion");
    assert.equal(rv.value, this.obj.metadata?.resourceVersion, "the guard names the version read");
    const next = applyJsonPatch(this.obj, ops);
    next.metadata!.resourceVersion = String(Number(this.obj.metadata!.resourceVersion) + 1);
    this.obj = next;
    return this.get();
  }
  async foreign(ops: JsonPatchOp[]): Promise<void> {
    this.obj = applyJsonPatch(this.obj, ops);
    this.obj.metadata!.resourceVersion = String(Number(this.obj.metadata!.resourceVersion) + 1);
    await Promise.resolve();
  }
}

/** Reads from the objects given, as the watch caches would hold them. */
export class ObjectsReader implements ObjectReader {
  private readonly objs: KObject[];
  constructor(...objs: KObject[]) {
    this.objs = objs;
  }
  get(kind: string, namespace: string, name: string): KObject | undefined {
    return this.objs.find(
      (o) => kind === o.kind && namespace === o.metadata?.namespace && name === o.metadata?.name,
    );
  }
}

export class CapturingWriter implements ObjectWriter {
  readonly calls: JsonPatchOp[][] = [];
  constructor(private readonly store: ObjectStore) {}
  jsonPatch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> {
    this.calls.push(structuredClone(ops));
    return this.store.patch(ref, ops);
  }
  create(): Promise<KObject> {
    return Promise.reject(new Error("no object is created here"));
  }
  delete(): Promise<void> {
    return Promise.reject(new Error("no object is deleted here"));
  }
}

export function routerFor(family: Family, reader: ObjectReader, writer: ObjectWriter): TrafficRouter {
  return family === "VirtualRouter"
    ? new AppMeshRouter(reader, writer)
    : new GatewayApiRouter(reader, writer);
}

/** Every weighted list of the object (a rule's backendRefs, a route's weightedTargets), by JSON Pointer. */
function lists(family: Family, obj: KObject): Map<string, Json[]> {
  const out = new Map<string, Json[]>();
  const spec = obj.spec as Json;
  if (family === "VirtualRouter") {
    (spec.routes as Json[]).forEach((r, i) => {
      for (const k of ["httpRoute", "http2Route", "grpcRoute", "tcpRoute"]) {
        const wt = r[k]?.action?.weightedTargets as Json[] | undefined;
        if (wt) out.set(`/spec/routes/${i}/${k}/action/weightedTargets`, wt);
      }
    });
  } else {
    (spec.rules as Json[]).forEach((r, i) =>
      out.set(`/spec/rules/${i}/backendRefs`, r.backendRefs as Json[]),
    );
  }
  return out;
}

const weightOf = (family: Family, entry: Json): number =>
  typeof entry.weight === "number" ? entry.weight : family === "VirtualRouter" ? 0 : 1;

/** The object with the pair's weight fields and the state annotation taken back to `before`'s. */
function withoutOwnFields(obj: KObject, before: KObject, pair: readonly PairWeight[]): KObject {
  const out = structuredClone(obj) as Json;
  for (const w of pair) {
    const parts = w.path.split("/").slice(1);
    const key = parts.pop()!;
    const parent = pointerGet(out, `/${parts.join("/")}`) as Json;
    const was = pointerGet(before, w.path);
    if (was === undefined) delete parent[key];
    else parent[key] = was;
  }
  const strip = (o: Json) => {
    const a = { ...(o.metadata?.annotations ?? {}) };
    delete a[ANNOTATIONS.state];
    o.metadata = { ...o.metadata, annotations: a };
    delete o.metadata.resourceVersion;
    delete o.metadata.generation;
    delete o.metadata.managedFields;
    return o;
  };
  return strip(out);
}

function stripServerFields(o: KObject): KObject {
  const c = structuredClone(o) as Json;
  const a = { ...(c.metadata?.annotations ?? {}) };
  delete a[ANNOTATIONS.state];
  c.metadata = { ...c.metadata, annotations: a };
  for (const k of ["resourceVersion", "generation", "managedFields", "uid", "creationTimestamp"])
    delete c.metadata[k];
  delete c.status;
  return c;
}

/** Checks one router write of `percent` (undefined: adoption) against the contract. */
function checkWrite(
  family: Family,
  before: KObject,
  after: KObject,
  pair: readonly PairWeight[],
  roles: { stable: string; canary: string },
  percent: number | undefined,
  state: string,
): void {
  const max = maxOf(family);
  assert.equal(after.metadata?.annotations?.[ANNOTATIONS.state], state, "the state is written");
  // 1. Nothing but the pair's weights and the state annotation changed.
  assert.deepEqual(
    stripServerFields(withoutOwnFields(after, before, pair)),
    stripServerFields(withoutOwnFields(before, before, pair)),
    "only the pair's weight fields and the state annotation change",
  );
  if (percent === undefined) {
    for (const w of pair) assert.deepEqual(pointerGet(after, w.path), pointerGet(before, w.path), "adoption");
  }
  const pairPaths = new Set(pair.map((w) => w.path));
  const beforeLists = lists(family, before);
  for (const [loc, entries] of lists(family, after)) {
    const old = beforeLists.get(loc)!;
    const sum = (es: Json[]) => es.reduce((a, e) => a + weightOf(family, e), 0);
    const pairAt = (es: Json[]) => {
      let s = 0;
      let c = 0;
      es.forEach((e, i) => {
        const p = `${loc}/${i}/weight`;
        if (!pairPaths.has(p)) return;
        const w = pair.find((x) => x.path === p)!;
        if (w.backend === roles.stable) s = weightOf(family, e);
        else c = weightOf(family, e);
      });
      return { s, c };
    };
    // 3. Valid for the upstream schema: integers within range (App Mesh: present too).
    for (const e of entries) {
      if (family === "VirtualRouter") assert.equal(typeof e.weight, "number", `${loc}: weight required`);
      if (e.weight !== undefined) {
        assert.ok(
          Number.isInteger(e.weight) && e.weight >= 0 && e.weight <= max,
          `${loc}: weight ${e.weight}`,
        );
      }
    }
    const held = entries.some((_e, i) => pairPaths.has(`${loc}/${i}/weight`));
    if (!held || percent === undefined) continue;
    const was = pairAt(old);
    const now = pairAt(entries);
    const othersTotal = sum(old) - was.s - was.c;
    // 2. Every other backend's share of its rule is unchanged: the location's total is, or they have none.
    const documentedException = othersTotal > 0 && was.s + was.c > max && (percent === 0 || percent === 100);
    if (othersTotal > 0 && !documentedException) {
      assert.equal(now.s + now.c, was.s + was.c, `${loc}: the pair keeps its total beside others`);
    }
    // 4. The split is what was asked, as nearly as the location allows.
    const total = now.s + now.c;
    if (was.s + was.c === 0) {
      assert.deepEqual(now, was, `${loc}: a pair without weight stays so`);
      continue;
    }
    if (percent === 0) assert.equal(now.c, 0, `${loc}: 0 % is no canary traffic`);
    if (percent === 100) assert.equal(now.s, 0, `${loc}: 100 % is no stable traffic`);
    if (othersTotal === 0) {
      assert.equal(now.c * 100, total * percent, `${loc}: alone, the split is exact`);
    } else if (total >= 2 && total <= max && percent > 0 && percent < 100) {
      assert.ok(now.c > 0 && now.s > 0, `${loc}: a partial step splits`);
      assert.ok(Math.abs(now.c - (total * percent) / 100) <= 1, `${loc}: within one unit`);
    }
  }
}

/** Runs one generated case through a router over `store`. Returns how many router writes were checked. */
export async function runCase(c: GeneratedCase, store: ObjectStore): Promise<number> {
  const policy = policyFor(c);
  let roles = { stable: STABLE, canary: CANARY };
  let writes = 0;
  let n = 0;
  for (const op of c.ops) {
    const before = await store.get();
    const writer = new CapturingWriter(store);
    const router = routerFor(c.family, new ObjectsReader(before), writer);
    let view;
    try {
      view = router.read(policy, roles);
    } catch (err) {
      if (!(err instanceof RouteError)) throw err;
      assert.match(err.message, /has no (rule|route) whose/, "refused only for having no location");
      assert.equal(writer.calls.length, 0);
      return writes;
    }
    // read() sees exactly the fields at their values (default 1 for an absent Gateway API weight).
    for (const w of view.pair) {
      const raw = pointerGet(before, w.path);
      assert.equal(w.weight, raw === undefined ? (c.family === "VirtualRouter" ? 0 : 1) : raw);
    }
    if (op.type === "drift") {
      await store.foreign(driftOps(c.family, view.pair, op.seed));
      continue;
    }
    const percent =
      op.type === "adopt" ? undefined : op.type === "step" ? op.percent : op.type === "promote" ? 100 : 0;
    const weights = percent === undefined ? undefined : router.plan(view, roles, percent);
    const state = `{"n":${n++}}`;
    await router.write(view, weights, state);
    assert.equal(writer.calls.length, 1, "one request per write");
    const after = await store.get();
    checkWrite(c.family, before, after, view.pair, roles, percent, state);
    writes++;
    if (percent !== undefined) {
      // Idempotent: the same step planned on the result writes no weight.
      const again = routerFor(c.family, new ObjectsReader(after), writer);
      const view2 = again.read(policy, roles);
      const replanned = again.plan(view2, roles, percent);
      assert.deepEqual(
        replanned.map((w) => w.weight),
        view2.pair.map((w) => w.weight),
        "planning the same step again changes nothing",
      );
    }
    if (op.type === "promote") roles = { stable: roles.canary, canary: roles.stable };
  }
  return writes;
}

/** Another writer's edit: new values for some of the pair's fields, from a seed. */
function driftOps(family: Family, pair: readonly PairWeight[], seed: number): JsonPatchOp[] {
  const max = maxOf(family);
  const ops: JsonPatchOp[] = [];
  let x = seed || 1;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
  for (const w of pair) {
    if (next() % 2 === 0) continue;
    const r = next() % 4;
    const value = r === 0 ? 0 : r === 1 ? max : r === 2 ? 1 : next() % (max + 1);
    ops.push({ op: "add", path: w.path, value });
  }
  return ops;
}

/** Pointers of the locations a view holds, for reporting. */
export const locationsOf = (pair: readonly PairWeight[]): string[] => [
  ...new Set(pair.map((w) => locationOf(w.path))),
];
