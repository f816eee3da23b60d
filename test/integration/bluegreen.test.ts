/**
 * Blue/green with a verified preview (issue 12), on a real API server: the
 * preview (a request match, rolloutd's own rule) is analysed first; only
 * then does all traffic switch at once, and the switch is analysed too; a
 * breach switches back at once. Prometheus here is the stand-in of
 * test/support/faults.ts answering every query with a set value, so the
 * verdict is the test's choice, not a race.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { KObject } from "../../src/kube/kinds.ts";
import { STAGE_RULE_NAME } from "../../src/routers/stagerule.ts";
import { eventually } from "../support/cluster.ts";
import { startFaultyPrometheus, type FaultyPrometheus } from "../support/faults.ts";
import {
  createPreviewRoute,
  getPreviewRoute,
  httpRoute,
  PREVIEW,
  previewWeights,
} from "../support/routes.ts";
import type { Scenario } from "../support/scenario.ts";
import { startWorld, type World } from "../support/world.ts";

type Json = Record<string, any>;
const owned = (o: KObject): Json[] =>
  ((o.spec as Json).rules as Json[]).filter((r) => r.name === STAGE_RULE_NAME);

void describe("blue/green with a verified preview", () => {
  let w: World;
  const proms: FaultyPrometheus[] = [];

  before(async () => {
    w = await startWorld({ daemonArgs: ["--analysis-min-window=1"] });
  });

  after(async () => {
    for (const p of proms) await p.close();
    await w?.stop();
  });

  const blueGreen = async (
    ns: string,
    prom: FaultyPrometheus,
    interval = "3s",
    preview = "{ header: { name: x-preview, value: 'yes' } }",
  ): Promise<Scenario> => {
    const s = await w.scenario(httpRoute, ns);
    if (preview.includes("route:")) await createPreviewRoute(w.c, ns);
    const yaml = s.policyYaml({
      steps: [],
      interval,
      extra: [
        "  strategy: blueGreen",
        `  preview: ${preview}`,
        "  analysis:",
        `    prometheus: { url: "${prom.url}" }`,
        "    cadence: 0", // no in-step checks: a step's queries are its one analysis at the deadline
        "    checks:",
        "      - { name: p99-latency, query: 'vector(1)', max: 500 }",
      ].join("\n"),
    });
    writeFileSync(path.join(s.policiesDir, `${ns}.yaml`), yaml);
    await s.until("adopted", (st) => st.phase === "Steady");
    return s;
  };
  /** The canary's share of the pair in one weights snapshot. */
  const share = (s: Scenario, wt: Record<string, number>) =>
    (wt[s.canary] ?? 0) / ((wt[s.canary] ?? 0) + (wt[s.stable] ?? 0));

  /**
   * With the stand-in answering 100: the preview's one query (at its deadline) passes; every later one then
   * finds no data, so the switched rollout holds (onNoData: hold) instead of being promoted, for an abort to
   * meet it after the switch.
   */
  const switchedAndHeld = async (s: Scenario, prom: FaultyPrometheus) => {
    await eventually(
      "the preview analysed",
      () => Promise.resolve(prom.queries.length > 0 || undefined),
      30_000,
      10,
    );
    prom.lie(null);
    await s.until(
      "switched",
      (x, wt) => x.phase === "Progressing" && x.stepIndex === 1 && share(s, wt) === 1,
    );
  };

  void it("a slow preview never switches: rolled back from the preview, no weight ever moved", async () => {
    const prom = await startFaultyPrometheus();
    proms.push(prom);
    prom.lie(900);
    const s = await blueGreen("bg-slow", prom);
    await s.shipCanary("2");
    await s.until("preview live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    assert.equal(owned(await s.weightsObject()).length, 1, "the preview's rule is in the route");
    const st = await s.until("rolled back", (x) => x.phase === "RolledBack");
    assert.match(st.lastAnalysis?.summary ?? st.message, /p99-latency/);
    assert.equal(st.stageRule, undefined);
    assert.equal(owned(await s.weightsObject()).length, 0, "the preview's rule is removed");
    assert.ok(
      s.history.every((h) => (h[s.canary] ?? 0) === 0),
      `no weight to the new version, ever: ${JSON.stringify(s.history)}`,
    );
  });

  void it("a good preview switches 100 % at once; a breach after the switch switches back at once", async () => {
    const prom = await startFaultyPrometheus();
    proms.push(prom);
    prom.lie(100);
    const s = await blueGreen("bg-break", prom);
    await s.shipCanary("2");
    await s.until("preview live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    const switched = await s.until("switched", (x, wt) => x.stepIndex === 1 && share(s, wt) === 1);
    assert.equal(switched.stageRule, undefined);
    assert.equal(owned(await s.weightsObject()).length, 0, "the preview's rule is gone with the switch");
    prom.lie(900);
    const st = await s.until("switched back", (x, wt) => x.phase === "RolledBack" && share(s, wt) === 0);
    assert.equal(st.canary, s.canary, "the new version was not promoted");
    // At once, both ways: never a split between all-old and all-new.
    for (const h of s.history) {
      const x = share(s, h);
      assert.ok(x === 0 || x === 1, `a partial split was written: ${JSON.stringify(h)}`);
    }
    assert.ok(
      s.history.some((h) => share(s, h) === 1),
      "the switch was written",
    );
  });

  void it("abort after the switch: all traffic back on the old version in one write", async () => {
    const prom = await startFaultyPrometheus();
    proms.push(prom);
    prom.lie(100);
    const s = await blueGreen("bg-abort", prom, "10s");
    await s.shipCanary("2");
    await s.until("preview live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    await switchedAndHeld(s, prom);
    await s.annotateTarget({ "rolloutd.dev/abort": "true", "rolloutd.dev/abort-reason": "after the switch" });
    const st = await s.until("aborted", (x, wt) => x.phase === "Aborted" && share(s, wt) === 0);
    assert.equal(st.abort?.reason, "after the switch");
    assert.equal(owned(await s.weightsObject()).length, 0);
    for (const h of s.history) {
      const x = share(s, h);
      assert.ok(x === 0 || x === 1, `a partial split was written: ${JSON.stringify(h)}`);
    }
  });

  void it("a separate preview route: abort after the switch puts both routes back on the old version", async () => {
    const prom = await startFaultyPrometheus();
    proms.push(prom);
    prom.lie(100);
    const s = await blueGreen("bg-route-abort", prom, "10s", `{ route: { name: ${PREVIEW} } }`);
    const preview0 = await getPreviewRoute(w.c, s.ns);
    await s.shipCanary("2");
    await s.until(
      "preview live",
      (st) => st.phase === "Progressing" && st.previewRoute?.canaryPercent === 100,
    );
    await switchedAndHeld(s, prom);
    const onNew = previewWeights(await getPreviewRoute(w.c, s.ns));
    assert.ok(
      onNew[s.stable] === 0 && onNew[s.canary]! > 0,
      `the preview route is on the new version: ${JSON.stringify(onNew)}`,
    );
    await s.annotateTarget({ "rolloutd.dev/abort": "true" });
    await s.until("aborted", (x, wt) => x.phase === "Aborted" && share(s, wt) === 0);
    const back = await eventually(`${s.ns}: preview route back on ${s.stable}`, async () => {
      const o = await getPreviewRoute(w.c, s.ns);
      const p = previewWeights(o);
      return p[s.canary] === 0 && p[s.stable]! > 0 ? o : undefined;
    });
    assert.deepEqual(
      back.spec,
      { ...(preview0.spec as Json), rules: (back.spec as Json).rules },
      "only the rules (the pair's weights) changed",
    );
    assert.deepEqual(((back.spec as Json).rules as Json[])[0], ((preview0.spec as Json).rules as Json[])[0]);
    assert.equal(owned(await s.weightsObject()).length, 0, "no request rule with a preview route");
  });
});
