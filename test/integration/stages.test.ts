/**
 * Request stages (issue 12), on a real API server: before any weight moves,
 * rolloutd adds one rule it owns — on Gateway API a named rule (the pair's
 * rule copied, the stage's match added, the canary its only backend), on a
 * VirtualRouter a route one priority higher, on App Mesh's weighted
 * GatewayRoute a GatewayRoute of its own — and removes it when the stages end
 * (next weight step, promotion, abort). Everything else in the route stays as
 * it was, byte for byte; a daemon killed with SIGKILL while a stage is live
 * leaves no orphan behind once it runs again; someone else's rule of that
 * name is never touched; and rolloutd's rule removed by hand mid-stage is put
 * back on the removal's own watch event.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import type { KObject } from "../../src/kube/kinds.ts";
import { KINDS } from "../../src/kube/kinds.ts";
import { gatewayRouteStageName, STAGE_RULE_NAME } from "../../src/routers/stagerule.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { createObject, deleteObject, eventually, getObject, jsonPatch } from "../support/cluster.ts";
import {
  appMeshVirtualRouter,
  grpcRoute,
  httpRoute,
  weightedGatewayRoute,
  type RouteFamily,
} from "../support/routes.ts";
import type { Scenario } from "../support/scenario.ts";
import { startWorld, type World } from "../support/world.ts";

type Json = Record<string, any>;

const rulesOf = (o: KObject): Json[] => (o.spec as Json).rules as Json[];
const owned = (o: KObject): Json[] => rulesOf(o).filter((r) => r.name === STAGE_RULE_NAME);

/**
 * The weights object without what rolloutd may change: its owned rule or route, the pair's weight fields, its state,
 * and the test's own control annotations.
 */
function userPart(o: KObject, pair = ["web-v1", "web-v2"]): Json {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.filter((x) => (x as Json | null)?.name !== STAGE_RULE_NAME).map(strip);
    if (!v || typeof v !== "object") return v;
    const j = v as Json;
    const named = [
      j.name,
      j.virtualNodeRef?.name,
      j.virtualServiceRef?.name,
      j.targetRef?.virtualServiceRef?.name,
    ];
    const isPair = named.some((n) => pair.includes(n as string));
    return Object.fromEntries(
      Object.entries(j)
        .filter(([k]) => !(isPair && k === "weight"))
        .map(([k, x]) => [k, strip(x)]),
    );
  };
  const annotations = { ...(o.metadata?.annotations ?? {}) };
  for (const a of [ANNOTATIONS.state, ANNOTATIONS.abort, ANNOTATIONS.retry]) delete annotations[a];
  return { spec: strip(o.spec), annotations, labels: o.metadata?.labels ?? {} };
}

/**
 * One stage kind on one route family, as the table below runs it: where the owned rule lives (a rule of the route,
 * a route of the VirtualRouter, a GatewayRoute of its own) and what its match must say.
 */
interface StageCase {
  name: string;
  fam: RouteFamily;
  /** The stage, as the policy's YAML writes it. */
  stage: string;
  /** The owned rule, route or object as it stands now; undefined when there is none. */
  owned(s: Scenario): Promise<Json | undefined>;
  /** The owned rule says the stage's match, keeps the pair's, and sends to the canary only. */
  check(own: Json, before: KObject, s: Scenario): void;
}

const inList = (list: (o: KObject) => Json[]) => async (s: Scenario) =>
  list(await s.weightsObject()).find((r) => r.name === STAGE_RULE_NAME);
const meshRoutes = (o: KObject): Json[] => (o.spec as Json).routes as Json[];

/** rolloutd's own GatewayRoute beside the user's (the weighted form), or undefined. */
async function stageGatewayRoute(s: Scenario): Promise<Json | undefined> {
  const k = KINDS.GatewayRoute;
  const list = await s.c.custom.listNamespacedCustomObject({
    group: k.group,
    version: k.version,
    namespace: s.ns,
    plural: k.plural,
  });
  const items = (list as { items: KObject[] }).items;
  assert.ok(
    items.length <= 2,
    `at most the user's GatewayRoute and rolloutd's: ${items.map((i) => i.metadata?.name).join(", ")}`,
  );
  return items.find((i) => i.metadata?.name === gatewayRouteStageName(s.route));
}

/** The VirtualRouter's owned route: the pair's route (index 1), the match narrowed, one priority higher. */
const meshCheck = (narrowed: (match: Json) => void) => (own: Json, before: KObject, s: Scenario) => {
  const pair = meshRoutes(before)[1]!;
  assert.equal(own.priority, ((pair.priority as number | undefined) ?? 1000) - 1);
  assert.equal(own.httpRoute.match.prefix, pair.httpRoute.match.prefix);
  narrowed(own.httpRoute.match as Json);
  assert.deepEqual(own.httpRoute.action.weightedTargets, [{ virtualNodeRef: { name: s.canary }, weight: 1 }]);
};

const STAGE_CASES: StageCase[] = [
  {
    name: "path prefix on HTTPRoute",
    fam: httpRoute,
    stage: "    - pathPrefix: /api/v2",
    owned: inList(rulesOf),
    check(own, before, s) {
      assert.deepEqual(own.matches, [{ path: { type: "PathPrefix", value: "/api/v2" } }]);
      assert.deepEqual(own.filters, rulesOf(before)[1]!.filters);
      assert.deepEqual(
        (own.backendRefs as Json[]).map((b) => b.name),
        [s.canary],
      );
    },
  },
  {
    name: "cookie on the App Mesh chain (VirtualRouter)",
    fam: appMeshVirtualRouter,
    stage: "    - cookie: { name: canary, value: always }",
    owned: inList(meshRoutes),
    check: meshCheck((m) => {
      assert.equal(m.headers.length, 1);
      assert.equal(m.headers[0].name, "cookie");
      const re = new RegExp(m.headers[0].match.regex as string);
      assert.match("a=b; canary=always", re);
      assert.doesNotMatch("canary=alwaysnot", re);
    }),
  },
  {
    name: "query parameter on the App Mesh chain (VirtualRouter)",
    fam: appMeshVirtualRouter,
    stage: "    - query: { name: v, value: '2' }",
    owned: inList(meshRoutes),
    check: meshCheck((m) => assert.deepEqual(m.queryParameters, [{ name: "v", match: { exact: "2" } }])),
  },
  {
    name: "header on the weighted GatewayRoute (a GatewayRoute of rolloutd's own)",
    fam: weightedGatewayRoute,
    stage: "    - header: { name: x-canary, regex: '^beta-' }",
    owned: stageGatewayRoute,
    check(own, before, s) {
      const user = before.spec as Json;
      assert.deepEqual(own.metadata.ownerReferences, [
        {
          apiVersion: before.apiVersion,
          kind: "GatewayRoute",
          name: s.route,
          uid: before.metadata?.uid,
          controller: true,
        },
      ]);
      assert.equal(own.spec.priority, ((user.priority as number | undefined) ?? 1000) - 1);
      assert.deepEqual(own.spec.httpRoute.match, {
        ...user.httpRoute.match,
        headers: [{ name: "x-canary", match: { regex: "^beta-" } }],
      });
      assert.deepEqual(own.spec.httpRoute.action.weightedTargets, [
        { targetRef: { virtualServiceRef: { name: s.canary } }, weight: 100 },
      ]);
    },
  },
  {
    name: "path prefix on the weighted GatewayRoute",
    fam: weightedGatewayRoute,
    stage: "    - pathPrefix: /api/v2",
    owned: stageGatewayRoute,
    check(own, _before, s) {
      assert.equal(own.spec.httpRoute.match.prefix, "/api/v2");
      assert.equal(own.spec.httpRoute.action.weightedTargets[0].targetRef.virtualServiceRef.name, s.canary);
    },
  },
];

void describe("request stages on Gateway API and App Mesh", () => {
  let w: World;
  const extra: DaemonProcess[] = [];

  before(async () => {
    w = await startWorld();
  });

  after(async () => {
    for (const d of extra) {
      await d.stop();
      await d.dispose();
    }
    await w?.stop();
  });

  const staged = async (ns: string, stages: string, interval: string, fam = httpRoute): Promise<Scenario> => {
    const s = await w.scenario(fam, ns);
    s.writePolicy({ steps: [50, 100], interval, extra: `  stages:\n${stages}` });
    await s.until("adopted", (st) => st.phase === "Steady");
    return s;
  };

  void it("a header stage: one owned rule, SIGKILL while it is live leaves no orphan, abort removes it", async () => {
    const s = await staged("stage-kill", "    - header: { name: x-canary, value: always }", "10m");
    const before = await s.weightsObject();
    await s.shipCanary("2");
    const live = await s.until("stage 1 live", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    assert.deepEqual(live.stageRule, { name: STAGE_RULE_NAME, stage: 0, match: "header x-canary=always" });
    assert.match(live.message, /step 1\/3 \(stage: header x-canary=always → web-v2\)/);
    let obj = await s.weightsObject();
    assert.equal(owned(obj).length, 1, "exactly one owned rule");
    const rule = owned(obj)[0]!;
    assert.deepEqual(
      (rule.backendRefs as Json[]).map((b) => b.name),
      [s.canary],
      "the canary is the stage rule's only backend",
    );
    // The pair's rule (PathPrefix /) with the header added; its filters copied.
    assert.equal(rule.matches.length, 1);
    assert.deepEqual(rule.matches[0].path, { type: "PathPrefix", value: "/" });
    assert.deepEqual(rule.matches[0].headers, [{ type: "Exact", name: "x-canary", value: "always" }]);
    assert.deepEqual(rule.filters, rulesOf(before)[1]!.filters);
    assert.deepEqual(s.fam.weights(obj), s.fam.weights(before), "no weight moved in a stage");
    assert.deepEqual(userPart(obj), userPart(before), "nothing else in the route changed");

    await w.daemon.kill();
    const again = await startDaemon({ kubeconfig: w.c.cp.kubeconfigPath, policiesDir: w.policiesDir });
    extra.push(again);
    // Still in the stage, the same single rule (not a second one); the abort below is the new daemon's.
    obj = await s.weightsObject();
    assert.equal(owned(obj).length, 1);

    await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
    const st = await s.until("aborted, rule gone", (x) => x.phase === "Aborted" && x.stageRule === undefined);
    assert.equal(st.phase, "Aborted");
    obj = await s.weightsObject();
    assert.equal(owned(obj).length, 0, "no orphan rule");
    assert.equal(rulesOf(obj).length, rulesOf(before).length);
    assert.deepEqual(userPart(obj), userPart(before), "the rest of the route as before, byte for byte");
    assert.deepEqual(s.fam.weights(obj), s.fam.weights(before));
  });

  void it("cookie then query stages on HTTPRoute, then the weight steps: the rule is replaced, then removed", async () => {
    const s = await staged(
      "stage-walk",
      ["    - cookie: { name: canary, value: always }", "    - query: { name: v, value: '2' }"].join("\n"),
      "4s",
    );
    const before = await s.weightsObject();
    await s.shipCanary("2");
    const seen: Json[] = [];
    await s.until("stage 1", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    seen.push(owned(await s.weightsObject())[0]!);
    await s.until("stage 2", (st) => st.phase === "Progressing" && st.stepIndex === 1);
    seen.push(owned(await s.weightsObject())[0]!);
    assert.equal(seen[0]!.matches[0].headers[0].name, "Cookie");
    assert.match("a=b; canary=always", new RegExp(seen[0]!.matches[0].headers[0].value as string));
    assert.doesNotMatch("canary=alwaysnot", new RegExp(seen[0]!.matches[0].headers[0].value as string));
    assert.deepEqual(seen[1]!.matches[0].queryParams, [{ type: "Exact", name: "v", value: "2" }]);
    const step = await s.until("first weight step", (st, wt) => st.stepIndex === 2 && wt[s.canary] === 50);
    assert.equal(step.stageRule, undefined);
    assert.equal(owned(await s.weightsObject()).length, 0, "removed with the first weight step");
    await s.until("promoted", (st) => st.phase === "Promoted");
    const obj = await s.weightsObject();
    assert.equal(owned(obj).length, 0);
    assert.deepEqual(userPart(obj), userPart(before));
  });

  void it("a header stage on GRPCRoute; abort during the stage removes it", async () => {
    const s = await staged(
      "stage-grpc",
      "    - header: { name: x-canary, regex: '^beta-' }",
      "10m",
      grpcRoute,
    );
    const before = await s.weightsObject();
    await s.shipCanary("2");
    await s.until("stage live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    const rule = owned(await s.weightsObject())[0]!;
    // As the pair's rule reads back from the API server (its default type filled in).
    assert.deepEqual(rule.matches[0].method, (rulesOf(before)[0]!.matches as Json[])[0]!.method);
    assert.deepEqual(rule.matches[0].headers, [
      { type: "RegularExpression", name: "x-canary", value: "^beta-" },
    ]);
    await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
    await s.until("aborted", (x) => x.phase === "Aborted" && x.stageRule === undefined);
    const obj = await s.weightsObject();
    assert.equal(owned(obj).length, 0);
    assert.deepEqual(userPart(obj), userPart(before));
  });

  void it("App Mesh: a header stage is a route of its own in the VirtualRouter, before the pair's; abort removes it", async () => {
    const s = await staged(
      "stage-mesh",
      "    - header: { name: x-canary, value: always }",
      "10m",
      appMeshVirtualRouter,
    );
    const before = await s.weightsObject();
    const routes = (o: KObject) => (o.spec as Json).routes as Json[];
    await s.shipCanary("2");
    await s.until("stage live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    let obj = await s.weightsObject();
    const own = routes(obj).filter((r) => r.name === STAGE_RULE_NAME);
    assert.equal(own.length, 1);
    const pairRoute = routes(before)[1]!;
    assert.equal(own[0]!.priority, ((pairRoute.priority as number | undefined) ?? 1000) - 1);
    assert.deepEqual(own[0]!.httpRoute.match.headers, [{ name: "x-canary", match: { exact: "always" } }]);
    assert.equal(own[0]!.httpRoute.match.prefix, pairRoute.httpRoute.match.prefix);
    assert.deepEqual(own[0]!.httpRoute.action.weightedTargets, [
      { virtualNodeRef: { name: s.canary }, weight: 1 },
    ]);
    assert.deepEqual(s.fam.weights(obj), s.fam.weights(before), "no weight moved in a stage");
    await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
    await s.until("aborted", (x) => x.phase === "Aborted" && x.stageRule === undefined);
    obj = await s.weightsObject();
    assert.deepEqual(routes(obj), routes(before), "the VirtualRouter's routes as before, byte for byte");
  });

  /** Someone else's rule (or GatewayRoute) where rolloutd's would go, put there before any stage. */
  const FOREIGN: Array<{
    fam: RouteFamily;
    plant(s: Scenario): Promise<void>;
    theirs(s: Scenario): Promise<unknown>;
  }> = [
    {
      fam: httpRoute,
      async plant(s) {
        const theirs = {
          name: STAGE_RULE_NAME,
          matches: [{ path: { type: "PathPrefix", value: "/theirs" } }],
          backendRefs: [{ name: "static", port: 80 }],
        };
        await jsonPatch(w.c, "HTTPRoute", s.ns, s.route, [
          { op: "add", path: "/spec/rules/-", value: theirs },
        ]);
      },
      theirs: async (s) => rulesOf(await s.weightsObject()),
    },
    {
      fam: weightedGatewayRoute,
      async plant(s) {
        await createObject(w.c, "GatewayRoute", {
          metadata: { name: gatewayRouteStageName(s.route), namespace: s.ns },
          spec: {
            httpRoute: {
              match: { prefix: "/theirs" },
              action: {
                weightedTargets: [{ targetRef: { virtualServiceRef: { name: "static" } }, weight: 100 }],
              },
            },
          },
        });
      },
      theirs: async (s) => getObject(w.c, "GatewayRoute", s.ns, gatewayRouteStageName(s.route)),
    },
  ];
  for (const [i, f] of FOREIGN.entries()) {
    void it(`${f.fam.name}: someone else's rolloutd-stage is never replaced or removed, the stage does not start, and it says why`, async () => {
      const s = await w.scenario(f.fam, `stage-foreign-${i}`);
      await f.plant(s);
      s.writePolicy({
        steps: [50, 100],
        interval: "10m",
        extra: "  stages:\n    - header: { name: x-canary, value: always }",
      });
      await s.until("adopted", (st) => st.phase === "Steady");
      const before = await f.theirs(s);
      await s.shipCanary("2");
      // The daemon running now (the first test replaced the world's after its SIGKILL).
      const current = extra.at(-1) ?? w.daemon;
      await current.waitForLine(
        "the refusal",
        (l) => /does not record (it )?as its own/.test(l.msg) && l.msg.includes(s.ns),
      );
      assert.equal((await s.state())?.phase, "Steady", "the stage did not start");
      assert.deepEqual(await f.theirs(s), before, "theirs untouched");
      await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
      await s.until("aborted", (x) => x.phase === "Aborted");
      assert.deepEqual(await f.theirs(s), before, "theirs untouched by the abort");
    });
  }

  /** Removing rolloutd's rule by hand while its stage is live: where it lives, and how to remove it. */
  const REMOVALS: Array<{ c: StageCase; remove: (s: Scenario) => Promise<void> }> = [
    {
      c: STAGE_CASES[0]!,
      async remove(s) {
        const at = rulesOf(await s.weightsObject()).findIndex((r) => r.name === STAGE_RULE_NAME);
        await jsonPatch(w.c, "HTTPRoute", s.ns, s.route, [
          { op: "test", path: `/spec/rules/${at}/name`, value: STAGE_RULE_NAME },
          { op: "remove", path: `/spec/rules/${at}` },
        ]);
      },
    },
    {
      c: STAGE_CASES[3]!,
      async remove(s) {
        await deleteObject(w.c, "GatewayRoute", s.ns, gatewayRouteStageName(s.route));
      },
    },
  ];
  for (const [i, { c, remove }] of REMOVALS.entries()) {
    void it(`${c.fam.name}: the stage's rule removed by hand comes back at once, with a Warning, and nothing else moves`, async () => {
      const s = await staged(`stage-restore-${i}`, c.stage, "10m", c.fam);
      const before = await s.weightsObject();
      await s.shipCanary("2");
      // Its window open (the route accepted), so nothing in the state is still expected to change.
      await s.until(
        "stage live",
        (st) => st.phase === "Progressing" && st.stepIndex === 0 && st.stepStartedAt !== undefined,
      );
      await eventually("owned rule", () => c.owned(s));
      const was = (await s.state())!;
      await remove(s);
      // Nothing is due for ten minutes: only the removal's own watch event can bring it back.
      const ev = await s.eventWith("StageRuleRestored");
      assert.equal(ev.type, "Warning");
      assert.match(ev.message ?? "", /removed by someone else/);
      c.check(await eventually("owned rule back", () => c.owned(s)), before, s);
      const now = (await s.state())!;
      for (const k of [
        "phase",
        "stepIndex",
        "stepStartedAt",
        "analysisDueAt",
        "failures",
        "noData",
        "lastAnalysis",
        "stageRule",
      ] as const)
        assert.deepEqual(now[k], was[k], `${k} unchanged: no analysis counted, no step moved`);
      assert.deepEqual(s.fam.weights(await s.weightsObject()), s.fam.weights(before), "no weight moved");
      await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
      await s.until("aborted, rule gone", (x) => x.phase === "Aborted" && x.stageRule === undefined);
      assert.equal(await c.owned(s), undefined);
    });
  }
  for (const [i, c] of STAGE_CASES.entries()) {
    void it(`${c.name}: the owned rule appears and is analysed, goes at the first weight step; abort in the stage lands`, async () => {
      const s = await staged(`stage-kind-${i}`, c.stage, "3s", c.fam);
      const before = await s.weightsObject();
      await s.shipCanary("2");
      await s.until("stage live", (st) => st.phase === "Progressing" && st.stepIndex === 0);
      c.check(await eventually(`${c.name}: owned rule`, () => c.owned(s)), before, s);
      let obj = await s.weightsObject();
      assert.deepEqual(s.fam.weights(obj), s.fam.weights(before), "no weight moved in a stage");
      assert.deepEqual(userPart(obj), userPart(before), "nothing else in the route changed");

      // Abort during the stage: the rule goes, the route is exactly as before.
      await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
      await s.until("aborted, rule gone", (x) => x.phase === "Aborted" && x.stageRule === undefined);
      assert.equal(await c.owned(s), undefined, "no owned rule left after the abort");
      obj = await s.weightsObject();
      assert.deepEqual(
        [obj.spec, userPart(obj).annotations],
        [before.spec, userPart(before).annotations],
        "byte for byte",
      );

      // Retried: the stage again, analysed at its deadline (one interval), its rule removed at the first weight step.
      await s.annotateTarget({ [ANNOTATIONS.abort]: null, [ANNOTATIONS.retry]: "1" });
      // Its window opens once the route is accepted.
      const live = await s.until(
        "stage again",
        (st) => st.phase === "Progressing" && st.stepIndex === 0 && st.stepStartedAt !== undefined,
      );
      assert.equal(live.analysisDueAt! - live.stepStartedAt!, 3000, "the stage lasts one interval");
      await eventually(`${c.name}: owned rule again`, () => c.owned(s));
      const step = await s.until("first weight step", (st, wt) => st.stepIndex === 1 && wt[s.canary]! > 0);
      assert.equal(step.lastAnalysis?.stepIndex, 0, "the stage's analysis decided the step");
      assert.equal(step.lastAnalysis?.verdict, "pass");
      await eventually(`${c.name}: owned rule removed`, async () => ((await c.owned(s)) ? undefined : true));
      await s.until("promoted", (st) => st.phase === "Promoted" && st.stageRule === undefined);
      assert.equal(await c.owned(s), undefined);
      assert.deepEqual(
        userPart(await s.weightsObject()),
        userPart(before),
        "the rest of the route as before",
      );
    });
  }
  void it("weighted GatewayRoute: a daemon killed while its stage's GatewayRoute is live, and aborted while down, leaves none behind", async () => {
    const c = STAGE_CASES[3]!;
    const s = await staged("stage-gr-kill", c.stage, "10m", c.fam);
    const before = await s.weightsObject();
    await s.shipCanary("2");
    await s.until("stage live", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    await eventually("its GatewayRoute", () => c.owned(s));
    const current = extra.at(-1) ?? w.daemon;
    await current.kill();
    await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
    const next = await startDaemon({ kubeconfig: w.c.cp.kubeconfigPath, policiesDir: w.policiesDir });
    extra.push(next);
    await s.until("aborted, record gone", (x) => x.phase === "Aborted" && x.stageRule === undefined);
    assert.equal(await c.owned(s), undefined, "the stage's GatewayRoute was deleted by the next daemon");
    const obj = await s.weightsObject();
    assert.deepEqual(obj.spec, before.spec, "the user's GatewayRoute as before, byte for byte");
  });
});
