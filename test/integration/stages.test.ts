/**
 * Request stages on Gateway API (issue 12), on a real API server: before any
 * weight moves, rolloutd adds one rule it owns — the pair's rule copied, the
 * stage's match added, the canary its only backend — and removes it when the
 * stages end (next weight step, promotion, abort). Everything else in the
 * route stays as it was, byte for byte; a daemon killed with SIGKILL while
 * a stage is live leaves no orphan behind once it runs again.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import type { KObject } from "../../src/kube/kinds.ts";
import { STAGE_RULE_NAME } from "../../src/routers/stagerule.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { jsonPatch } from "../support/cluster.ts";
import { appMeshVirtualRouter, grpcRoute, httpRoute } from "../support/routes.ts";
import type { Scenario } from "../support/scenario.ts";
import { startWorld, type World } from "../support/world.ts";

type Json = Record<string, any>;

const rulesOf = (o: KObject): Json[] => (o.spec as Json).rules as Json[];
const owned = (o: KObject): Json[] => rulesOf(o).filter((r) => r.name === STAGE_RULE_NAME);

/** The route without what rolloutd may change (its owned rule, the pair's weights, its state) and the test's abort. */
function userPart(o: KObject, pairRule: number): Json {
  const spec = structuredClone(o.spec) as Json;
  spec.rules = (spec.rules as Json[]).filter((r) => r.name !== STAGE_RULE_NAME);
  for (const b of spec.rules[pairRule].backendRefs as Json[]) delete b.weight;
  const annotations = { ...(o.metadata?.annotations ?? {}) };
  delete annotations[ANNOTATIONS.state];
  delete annotations[ANNOTATIONS.abort]; // the test's own

  return { spec, annotations, labels: o.metadata?.labels ?? {} };
}

void describe("request stages on Gateway API", () => {
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
    assert.deepEqual(userPart(obj, 1), userPart(before, 1), "nothing else in the route changed");

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
    assert.deepEqual(userPart(obj, 1), userPart(before, 1), "the rest of the route as before, byte for byte");
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
    assert.deepEqual(userPart(obj, 1), userPart(before, 1));
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
    assert.deepEqual(userPart(obj, 0), userPart(before, 0));
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

  void it("someone else's rule named rolloutd-stage: never replaced, the stage does not start, and it says why", async () => {
    const s = await w.scenario(httpRoute, "stage-foreign", { createRoute: false });
    await s.createRoute();
    const theirs = {
      name: STAGE_RULE_NAME,
      matches: [{ path: { type: "PathPrefix", value: "/theirs" } }],
      backendRefs: [{ name: "static", port: 80 }],
    };
    await jsonPatch(w.c, "HTTPRoute", s.ns, s.route, [{ op: "add", path: "/spec/rules/-", value: theirs }]);
    s.writePolicy({
      steps: [50, 100],
      interval: "10m",
      extra: "  stages:\n    - header: { name: x-canary, value: always }",
    });
    await s.until("adopted", (st) => st.phase === "Steady");
    const before = await s.weightsObject();
    await s.shipCanary("2");
    // The daemon running now (the first test replaced the world's after its SIGKILL).
    const current = extra.at(-1) ?? w.daemon;
    await current.waitForLine("the refusal", (l) => /does not record as its own/.test(l.msg));
    const obj = await s.weightsObject();
    assert.equal((await s.state())?.phase, "Steady", "the stage did not start");
    assert.deepEqual(rulesOf(obj), rulesOf(before), "their rule and the route untouched");
  });
});
