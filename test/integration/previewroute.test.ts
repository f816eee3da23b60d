/**
 * Blue/green with a separate preview route the user names (issue 12; Argo
 * Rollouts' previewService), on a real API server: the preview route's pair
 * goes all to the new version while the target stays all on the old; then
 * the target switches at once, and after promotion both are on the new
 * version. An abort during the preview — with the daemon running, or killed
 * and restarted — puts both back on the old version; a missing preview route
 * holds the rollout's start with a located Warning and loses nothing.
 * Nothing of either route changes but the pair's weights (and, on the target,
 * rolloutd's annotations). These policies have no analysis: what is tested
 * here is where traffic goes, not a verdict (see bluegreen-prometheus.test.ts).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import type { KObject } from "../../src/kube/kinds.ts";
import { eventually } from "../support/cluster.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
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
/** Everything of a route a user wrote, without the pair's weights and (on the target) rolloutd's annotations. */
function userPart(o: KObject): Json {
  const spec = structuredClone(o.spec) as Json;
  for (const rule of spec.rules as Json[])
    for (const b of (rule.backendRefs ?? []) as Json[])
      if (b.name === "web-v1" || b.name === "web-v2") delete b.weight;
  const annotations = Object.fromEntries(
    Object.entries(o.metadata?.annotations ?? {}).filter(([k]) => !k.startsWith("rolloutd.dev/")),
  );
  return { spec, labels: o.metadata?.labels ?? {}, annotations };
}

const allOn = (w: Record<string, number>, backend: string, other: string) =>
  w[backend]! > 0 && w[other] === 0;

void describe("blue/green with a separate preview route", () => {
  let w: World;
  let restarted: DaemonProcess | undefined;

  before(async () => {
    w = await startWorld();
  });

  after(async () => {
    await restarted?.stop();
    await restarted?.dispose();
    await w?.stop();
  });

  const given = async (ns: string, interval: string, opts: { preview?: boolean } = {}): Promise<Scenario> => {
    const s = await w.scenario(httpRoute, ns);
    if (opts.preview !== false) await createPreviewRoute(w.c, ns);
    s.writePolicy({
      steps: [],
      interval,
      extra: ["  strategy: blueGreen", `  preview: { route: { name: ${PREVIEW} } }`].join("\n"),
    });
    await s.until("adopted", (st) => st.phase === "Steady");
    return s;
  };

  void it("preview on the preview route, then the switch at once, then promoted: both on the new version", async () => {
    const s = await given("pr-promote", "4s");
    const [target0, preview0] = [await s.weightsObject(), await getPreviewRoute(w.c, s.ns)];
    await s.shipCanary("2");

    const live = await s.until("preview live", (st, wt) => {
      return (
        st.phase === "Progressing" &&
        st.stepIndex === 0 &&
        st.previewRoute?.canaryPercent === 100 &&
        allOn(wt, s.stable, s.canary)
      );
    });
    assert.equal(live.previewRoute?.name, PREVIEW);
    assert.equal(live.stageRule, undefined, "no request rule: the preview is the route");
    const duringPreview = await eventually(`${s.ns}: preview route all on ${s.canary}`, async () => {
      const p = previewWeights(await getPreviewRoute(w.c, s.ns));
      return allOn(p, s.canary, s.stable) ? p : undefined;
    });
    assert.equal(duringPreview[s.stable], 0);
    assert.deepEqual(
      live.previewRoute?.applied.map((a) => [a.backend, a.weight]),
      [
        [s.stable, 0],
        [s.canary, duringPreview[s.canary]],
      ],
      "the state records what was written to the preview route",
    );

    await s.until("switched", (st, wt) => st.stepIndex === 1 && allOn(wt, s.canary, s.stable));
    const promoted = await s.until("promoted", (st) => st.phase === "Promoted");
    assert.equal(promoted.stable, s.canary, "the new version is the stable");
    assert.ok(allOn(await s.weights(), s.canary, s.stable));
    const preview1 = await getPreviewRoute(w.c, s.ns);
    assert.ok(
      allOn(previewWeights(preview1), s.canary, s.stable),
      "the preview route stays on the new version",
    );
    for (const h of s.history)
      assert.ok(
        allOn(h, s.stable, s.canary) || allOn(h, s.canary, s.stable),
        `a split: ${JSON.stringify(s.history)}`,
      );
    assert.deepEqual(userPart(preview1), userPart(preview0), "nothing else of the preview route changed");
    assert.deepEqual(
      userPart(await s.weightsObject()),
      userPart(target0),
      "nothing else of the target changed",
    );
    assert.equal(
      preview1.metadata?.annotations?.[ANNOTATIONS.state],
      undefined,
      "no state on the preview route",
    );
  });

  void it("abort during the preview: both routes back on the old version, nothing else changed", async () => {
    const s = await given("pr-abort", "1h");
    const [target0, preview0] = [await s.weightsObject(), await getPreviewRoute(w.c, s.ns)];
    await s.shipCanary("2");
    await s.until(
      "preview live",
      (st) => st.phase === "Progressing" && st.previewRoute?.canaryPercent === 100,
    );
    await eventually("preview route on the new version", async () =>
      allOn(previewWeights(await getPreviewRoute(w.c, s.ns)), s.canary, s.stable),
    );

    await s.annotateTarget({ [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: "preview looks wrong" });
    const st = await s.until("aborted", (x) => x.phase === "Aborted");
    assert.equal(st.abort?.reason, "preview looks wrong");
    assert.equal(st.previewRoute?.canaryPercent, 0);
    const preview1 = await eventually(`${s.ns}: preview route back on ${s.stable}`, async () => {
      const o = await getPreviewRoute(w.c, s.ns);
      return allOn(previewWeights(o), s.stable, s.canary) ? o : undefined;
    });
    assert.ok(allOn(await s.weights(), s.stable, s.canary), "the target never moved");
    assert.deepEqual(userPart(preview1), userPart(preview0));
    assert.deepEqual(userPart(await s.weightsObject()), userPart(target0));
    assert.ok(
      s.history.every((h) => h[s.canary] === 0),
      `the target never gave the new version traffic: ${JSON.stringify(s.history)}`,
    );
  });

  void it("a missing preview route holds the start with a located Warning; once created, the rollout runs", async () => {
    const s = await given("pr-missing", "1h", { preview: false });
    await s.shipCanary("2");
    const ev = await s.eventWith("PreviewRouteNotFound");
    assert.equal(ev.type, "Warning");
    assert.match(
      ev.message ?? "",
      /pr-missing\.yaml:10:\d+ spec\.preview\.route: HTTPRoute pr-missing\/web-preview not found/,
    );
    const held = await s.state();
    assert.equal(held?.phase, "Steady", "nothing started");
    assert.equal(held?.revision, undefined, "the new revision is not taken as dealt with");
    assert.ok(allOn(await s.weights(), s.stable, s.canary));

    await createPreviewRoute(w.c, s.ns);
    await s.until(
      "preview live",
      (st) => st.phase === "Progressing" && st.previewRoute?.canaryPercent === 100,
    );
    await eventually("preview route on the new version", async () =>
      allOn(previewWeights(await getPreviewRoute(w.c, s.ns)), s.canary, s.stable),
    );
  });

  // Last: it replaces the world's daemon.
  void it("SIGKILL during the preview, abort while down: the restarted daemon puts both routes back", async () => {
    const s = await given("pr-kill", "1h");
    const preview0 = await getPreviewRoute(w.c, s.ns);
    await s.shipCanary("2");
    await eventually("preview route on the new version", async () =>
      allOn(previewWeights(await getPreviewRoute(w.c, s.ns)), s.canary, s.stable),
    );
    await w.daemon.kill();
    await s.annotateTarget({ [ANNOTATIONS.abort]: "true" });
    restarted = await startDaemon({ kubeconfig: w.c.cp.kubeconfigPath, policiesDir: w.policiesDir });
    await s.until("aborted", (x) => x.phase === "Aborted");
    const preview1 = await eventually(`${s.ns}: preview route back on ${s.stable}`, async () => {
      const o = await getPreviewRoute(w.c, s.ns);
      return allOn(previewWeights(o), s.stable, s.canary) ? o : undefined;
    });
    assert.deepEqual(userPart(preview1), userPart(preview0));
  });
});
