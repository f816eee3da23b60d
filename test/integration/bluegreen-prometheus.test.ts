/**
 * Blue/green with a verified preview, judged by a real Prometheus (issue 12, "Done means"): the daemon as a
 * process, a real API server, Debian's prometheus scraping two prom-client backends per scenario every second,
 * and two streams of load through test gateways that follow the route as the API server has it — the users'
 * traffic (no header) and the preview's (`x-preview: yes`, which only rolloutd's preview rule sends to the new
 * version). What the analysis sees is what the preview's requests really met on the new version's backend.
 *
 * - A slow new version is caught in its preview: the route's pair never moves, the rollout is rolled back.
 * - A new version that is healthy in its preview and breaks under all the traffic (the data plane makes it
 *   slow the moment the switch reaches the gateway, not at a time the test guesses) is switched back.
 * - The same as the first with a separate preview route: the preview's load goes through a gateway following
 *   that route, which rolloutd sends all to the new version; it is put back on the old one at the rollback.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PrometheusHandle } from "../controlplane/prometheus.ts";
import type { Cluster } from "../support/cluster.ts";
import {
  createPreviewRoute,
  getPreviewRoute,
  httpRoute,
  PREVIEW,
  previewWeights,
} from "../support/routes.ts";
import { Rig, RIG_DEFAULTS, startRigWorld, type RigWorld } from "../support/rig.ts";
import { STAGE_RULE_NAME } from "../../src/routers/stagerule.ts";
import type { KObject } from "../../src/kube/kinds.ts";
import type { RolloutState } from "../../src/contract.ts";

type Json = Record<string, any>;

/** The analysis interval and the daemon's minimum window: three 1 s scrapes. */
const INTERVAL_S = 3;
const SLOW_MS = 600;
const PREVIEW_HEADER = { "x-preview": "yes" };
const ROLLOUT_TIMEOUT_MS = 90_000;

const owned = (o: KObject): Json[] =>
  ((o.spec as Json).rules as Json[]).filter((r) => r.name === STAGE_RULE_NAME);

const p99 = (s: RolloutState): number => {
  const c = s.lastAnalysis?.checks.find((x) => x.name === "p99-latency");
  assert.ok(c && c.value !== null, `a measured p99 in ${JSON.stringify(s.lastAnalysis)}`);
  return c.value;
};

void describe("blue/green judged by a real Prometheus", { concurrency: true }, () => {
  const slow = new Rig(httpRoute, "bg-prom-slow");
  const breaks = new Rig(httpRoute, "bg-prom-breaks");
  const viaRoute = new Rig(httpRoute, "bg-prom-route");
  let w: RigWorld;
  let c: Cluster;
  let prom: PrometheusHandle;
  let policiesDir: string;

  before(async () => {
    w = await startRigWorld([slow, breaks, viaRoute], { minWindowSeconds: INTERVAL_S });
    ({ c, prom, policiesDir } = w);
  });

  after(async () => {
    assert.equal(await w?.stop(), 0, "the daemon exits 0 on SIGTERM");
  });

  const blueGreen = (r: Rig) =>
    r.writePolicy(prom.url, {
      steps: [],
      spec: ["  strategy: blueGreen", "  preview: { header: { name: x-preview, value: 'yes' } }"],
    });

  void it("a slow preview never switches: rolled back, the route's pair never moved", async () => {
    const s = await slow.given(c, policiesDir);
    const preview = await slow.follow(c, { headers: PREVIEW_HEADER });
    slow.canary.setBehaviour({ latencyMs: SLOW_MS });
    blueGreen(slow);
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");

    await s.until("preview live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    const st = await s.until("rolled back", (x) => x.phase === "RolledBack", ROLLOUT_TIMEOUT_MS);
    assert.equal(st.lastAnalysis?.stepIndex, 0, "judged in the preview");
    assert.equal(st.lastAnalysis?.verdict, "fail");
    assert.ok(p99(st) > RIG_DEFAULTS.p99MaxMs, `measured p99 ${p99(st)} ms is over the bound`);
    assert.equal(st.stable, s.stable, "the old version stays the stable");
    assert.equal(owned(await s.weightsObject()).length, 0, "the preview's rule is gone");
    assert.ok(
      s.history.every((h) => (h[s.canary] ?? 0) === 0),
      `no weight to the new version, ever: ${JSON.stringify(s.history)}`,
    );
    // What was measured came from the preview's requests, and only those reached the new version.
    assert.ok(preview.gateway.sentTo(slow.canary) > 0, "preview requests reached the new version");
    assert.equal(slow.gateway.sentTo(slow.canary), 0, "no user request reached the new version");
    await slow.assertNoTrafficTo(slow.canary, slow.stable);
  });

  void it("a good preview switches; a new version that breaks after the switch is switched back", async () => {
    // The data plane: the new version slows down as soon as it carries the users' traffic.
    const s = await breaks.given(c, policiesDir, {
      onWeights: (w) => {
        if (w.canary > 0) breaks.canary.setBehaviour({ latencyMs: SLOW_MS });
      },
    });
    const preview = await breaks.follow(c, { headers: PREVIEW_HEADER });
    blueGreen(breaks);
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");

    await s.until("preview live", (st) => st.phase === "Progressing" && st.stageRule !== undefined);
    const switched = await s.until(
      "switched",
      (x, wt) => x.stepIndex === 1 && wt[s.canary]! > 0 && wt[s.stable] === 0,
      ROLLOUT_TIMEOUT_MS,
    );
    assert.equal(switched.lastAnalysis?.stepIndex, 0);
    assert.equal(switched.lastAnalysis?.verdict, "pass", "the preview passed its analysis");
    assert.ok(preview.gateway.sentTo(breaks.canary) > 0, "preview requests reached the new version");

    const st = await s.until(
      "switched back",
      (x, wt) => x.phase === "RolledBack" && wt[s.canary] === 0,
      ROLLOUT_TIMEOUT_MS,
    );
    assert.equal(st.lastAnalysis?.stepIndex, 1, "judged after the switch");
    assert.equal(st.lastAnalysis?.verdict, "fail");
    assert.ok(p99(st) > RIG_DEFAULTS.p99MaxMs, `measured p99 ${p99(st)} ms is over the bound`);
    assert.equal(st.stable, s.stable, "the new version was not promoted");
    // At once, both ways: the route went from all-old to all-new and back, never a split.
    for (const h of s.history) {
      const old = h[s.stable] ?? 0;
      const next = h[s.canary] ?? 0;
      assert.ok(old === 0 || next === 0, `a partial split was written: ${JSON.stringify(s.history)}`);
    }
    await breaks.assertNoTrafficTo(breaks.canary, breaks.stable);
  });

  void it("a slow preview seen through a separate preview route never switches; the preview route is put back", async () => {
    const s = await viaRoute.given(c, policiesDir);
    await createPreviewRoute(c, viaRoute.ns);
    const preview = await viaRoute.follow(c, { name: PREVIEW });
    viaRoute.canary.setBehaviour({ latencyMs: SLOW_MS });
    viaRoute.writePolicy(prom.url, {
      steps: [],
      spec: ["  strategy: blueGreen", `  preview: { route: { name: ${PREVIEW} } }`],
    });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");

    await s.until(
      "preview live",
      (st) => st.phase === "Progressing" && st.previewRoute?.canaryPercent === 100,
    );
    const st = await s.until("rolled back", (x) => x.phase === "RolledBack", ROLLOUT_TIMEOUT_MS);
    assert.equal(st.lastAnalysis?.stepIndex, 0, "judged in the preview");
    assert.equal(st.lastAnalysis?.verdict, "fail");
    assert.ok(p99(st) > RIG_DEFAULTS.p99MaxMs, `measured p99 ${p99(st)} ms is over the bound`);
    assert.ok(
      preview.gateway.seen.some((w) => w.stable === 0 && w.canary > 0),
      `the preview route sent all its traffic to the new version: ${JSON.stringify(preview.gateway.seen)}`,
    );
    assert.ok(preview.gateway.sentTo(viaRoute.canary) > 0, "preview requests reached the new version");
    assert.equal(viaRoute.gateway.sentTo(viaRoute.canary), 0, "no user request reached the new version");
    assert.ok(
      s.history.every((h) => (h[s.canary] ?? 0) === 0),
      `the target never moved: ${JSON.stringify(s.history)}`,
    );
    const back = previewWeights(await getPreviewRoute(c, viaRoute.ns));
    assert.ok(
      back[s.canary] === 0 && back[s.stable]! > 0,
      `the preview route is back: ${JSON.stringify(back)}`,
    );
  });
});
