/**
 * The rollout engine end to end: the real daemon process against a real API
 * server, each scenario in its own namespace, run for each route family.
 * Analysis here is the "no checks" gate (advance on interval); Prometheus
 * scenarios live in analysis.test.ts.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { ANNOTATIONS, FIELD_MANAGER } from "../../src/contract.ts";
import { templateRevision } from "../../src/controller/observe.ts";
import type { KObject } from "../../src/kube/kinds.ts";
import type { DaemonProcess, LogLine } from "../support/daemon.ts";
import { startWorld, type World } from "../support/world.ts";
import { eventually, markRolledOut, mergePatch, type Cluster } from "../support/cluster.ts";
import { FAMILIES, httpRoute, type FakeGatewayStatus, type RouteFamily } from "../support/routes.ts";

const short: Record<string, string> = {
  [FAMILIES[0]!.name]: "gr",
  [FAMILIES[1]!.name]: "vr",
  [FAMILIES[2]!.name]: "http",
  [FAMILIES[3]!.name]: "grpc",
};

/** Canary share of the pair in percent, per recorded weights. */
const canaryShares = (history: Array<Record<string, number>>, stable: string, canary: string) =>
  history.map((w) => Math.round(((w[canary] ?? 0) / Math.max(1, (w[canary] ?? 0) + (w[stable] ?? 0))) * 100));

void describe("rollout engine against a real API server", { concurrency: true }, () => {
  let w: World;
  // Shorthands for the world's parts, used throughout the tests.
  let c: Cluster;
  let daemon: DaemonProcess;
  let gateway: FakeGatewayStatus;
  let policiesDir: string;

  before(async () => {
    w = await startWorld();
    ({ c, daemon, gateway, policiesDir } = w);
  });

  after(async () => {
    const code = await w?.stop();
    assert.equal(code, 0, "the daemon exits 0 on SIGTERM");
  });

  const scenario = (fam: RouteFamily, name: string, opts?: { createRoute?: boolean }) =>
    w.scenario(fam, `${short[fam.name]}-${name}`, opts);

  for (const fam of FAMILIES) {
    void describe(fam.name, { concurrency: true }, () => {
      void it("promotes a new canary revision step by step, then the roles swap for the next one", async () => {
        const s = await scenario(fam, "promote");
        const before = fam.unrelated(await s.weightsObject());
        s.writePolicy({ steps: [20, 50, 100], interval: "1s" });
        await s.until("adopted", (st) => st.phase === "Steady");

        await s.shipCanary("2");
        const promoted = await s.until("promoted", (st) => st.phase === "Promoted");
        assert.equal(promoted.stable, s.canary);
        assert.equal(promoted.canary, s.stable);
        const w = await s.weights();
        assert.equal(w[s.stable], 0);
        assert.ok((w[s.canary] ?? 0) > 0);
        // Every step once, in order: no step skipped, none repeated.
        assert.deepEqual(canaryShares(s.history, s.stable, s.canary), [0, 20, 50, 100]);
        assert.deepEqual(
          fam.unrelated(await s.weightsObject()),
          before,
          "rules/targets the policy does not name are untouched",
        );
        const ev = await s.eventWith("Promoted");
        assert.equal(ev.involvedObject.kind, fam.targetKind);
        assert.match(ev.message ?? "", /web-v2 promoted to 100%/);

        // The next revision of the other backend (now the canary) starts the next rollout.
        await s.shipCanary("3", s.stable);
        const second = await s.until(
          "second rollout promoted",
          (st) => st.phase === "Promoted" && st.stable === s.stable,
        );
        assert.equal(second.canary, s.canary);
        const w2 = await s.weights();
        assert.equal(w2[s.canary], 0);
      });

      void it("aborts at a middle step by annotation: 100 % stable in one write, recorded with the reason; retry restarts", async () => {
        const s = await scenario(fam, "abort");
        s.writePolicy({ steps: [10, 20, 30, 40, 50, 100], interval: "1500ms" });
        await s.until("adopted", (st) => st.phase === "Steady");
        await s.shipCanary("2");
        await s.until("at step 2", (st) => st.phase === "Progressing" && st.stepIndex >= 1);
        await s.annotateTarget({
          "rolloutd.dev/abort": "true",
          "rolloutd.dev/abort-reason": "checkout errors (alice)",
        });
        const aborted = await s.until("aborted", (st, w) => st.phase === "Aborted" && w[s.canary] === 0);
        assert.equal(aborted.abort?.reason, "checkout errors (alice)");
        const ev = await s.eventWith("Aborted");
        assert.match(ev.message ?? "", /checkout errors \(alice\)/);
        const historyAtAbort = s.history.length;
        // While the annotation stays, nothing moves, even a new revision.
        await s.shipCanary("3");
        await new Promise((r) => setTimeout(r, 3000));
        const still = await s.state();
        assert.equal(still?.phase, "Aborted");
        assert.equal(s.history.length, historyAtAbort, "no weight change while aborted");

        // Remove the abort: the pending revision starts from the first step.
        await s.annotateTarget({ "rolloutd.dev/abort": null, "rolloutd.dev/abort-reason": null });
        const restarted = await s.until(
          "restarted",
          (st) => st.phase === "Progressing" || st.phase === "Promoted",
        );
        assert.notEqual(restarted.revision, aborted.revision);
        await s.until("promoted after abort", (st) => st.phase === "Promoted");
      });

      void it("pauses and resumes by annotation; a new revision mid-rollout restarts from step 1", async () => {
        const s = await scenario(fam, "pause");
        s.writePolicy({ steps: [20, 40, 60, 80, 100], interval: "1s" });
        await s.until("adopted", (st) => st.phase === "Steady");
        await s.shipCanary("2");
        await s.until("at step 2", (st) => st.stepIndex >= 1);
        await s.annotateTarget({ "rolloutd.dev/pause": "true" });
        const paused = await s.until("paused", (st) => st.phase === "Paused");
        const held = await s.weights();
        await new Promise((r) => setTimeout(r, 3000)); // three intervals
        assert.deepEqual(await s.weights(), held, "weights are held while paused");
        assert.equal((await s.state())?.stepIndex, paused.stepIndex);

        await s.annotateTarget({ "rolloutd.dev/pause": null });
        await s.until(
          "resumed and advanced",
          (st) => st.phase === "Progressing" && st.stepIndex > paused.stepIndex,
        );
        const rev2 = (await s.state())!.revision;
        await s.shipCanary("3");
        const restarted = await s.until(
          "restarted at step 1",
          (st) => st.revision !== rev2 && st.stepIndex === 0,
        );
        assert.equal(restarted.canaryWeight, 20);
        await s.until("promoted", (st) => st.phase === "Promoted");
        const shares = canaryShares(s.history, s.stable, s.canary);
        assert.equal(
          shares.filter((x) => x === 20).length,
          2,
          `step 1 applied once per revision: ${shares.join(",")}`,
        );
      });

      void it("keeps another writer's unrelated edits; pauses instead of fighting when the weights are changed", async () => {
        const s = await scenario(fam, "drift");
        s.writePolicy({ steps: [20, 50, 100], interval: "2s" });
        await s.until("adopted", (st) => st.phase === "Steady");
        await s.shipCanary("2");
        await s.until("at step 1", (st) => st.phase === "Progressing");
        await fam.editUnrelated(c, s.ns, s.route);
        const edited = fam.unrelated(await s.weightsObject());
        await s.until("advanced despite the unrelated edit", (st) => st.stepIndex >= 1);

        await fam.foreignWeights(c, s.ns, s.route, 30, 7);
        const drift = await s.until(
          "paused by drift",
          (st) => st.phase === "Paused" && st.pausedBy === "drift",
        );
        assert.match(drift.message, /another writer/);
        await s.eventWith("WeightsDrifted");
        const w = await s.weights();
        assert.equal(w[s.canary], 7, "the daemon does not fight the other writer");

        await s.annotateTarget({ "rolloutd.dev/resume": "resume-1" });
        await s.until("promoted after resume", (st) => st.phase === "Promoted");
        assert.deepEqual(
          fam.unrelated(await s.weightsObject()),
          edited,
          "the other writer's edit survived every step",
        );
      });

      void it("waits for a route that does not exist yet, then adopts it", async () => {
        const s = await scenario(fam, "missing", { createRoute: false });
        s.writePolicy({ steps: [50, 100], interval: "1s" });
        await daemon.waitForLine(
          "missing route reported",
          (l) => l.policy === `${s.ns}/web` && /not found/.test(l.msg),
        );
        assert.equal(
          (await fetch(`http://127.0.0.1:${daemon.port}/readyz`)).status,
          200,
          "a missing route does not make the daemon unready",
        );
        await s.createRoute();
        await s.until("adopted once the route exists", (st) => st.phase === "Steady");
        await s.shipCanary("2");
        await s.until("promoted", (st) => st.phase === "Promoted");
      });
    });
  }

  void it("hot-reloads policies: a broken file is reported with file:line:column and does not stop a good one", async () => {
    const s = await scenario(httpRoute, "reload");
    const broken = path.join(policiesDir, "zz-broken.yaml");
    writeFileSync(
      broken,
      s.policyYaml({ steps: [50, 20], interval: "1s" }).replace(`name: ${s.route},`, "name: other,"),
    );
    s.writePolicy({ steps: [50, 100], interval: "1s" });
    const line = await daemon.waitForLine(
      "broken policy reported",
      (l) => /invalid policy/.test(l.msg) && /zz-broken\.yaml:\d+:\d+ spec\.steps\[1\]/.test(l.msg),
    );
    assert.match(line.msg, /increase/);
    await s.until("good policy adopted", (st) => st.phase === "Steady");
    // Fix the file: it becomes a second policy on the same namespace's other route.
    rmSync(broken);
    s.removePolicy();
    const reloadedAfter = Date.now();
    s.writePolicy({ steps: [25, 100], interval: "1s" });
    // Ship only once the daemon has the new steps: the file watch and the Deployment watch race otherwise.
    await daemon.waitForLine(
      "the rewritten policy reloaded",
      (l) =>
        l.msg === "policies reloaded" &&
        Date.parse(String(l.time)) >= reloadedAfter &&
        JSON.stringify(l.upserted ?? []).includes(`${s.ns}/${s.route}`),
    );
    await s.shipCanary("2");
    const started = await s.until("rollout with the reloaded steps", (st) => st.phase !== "Steady");
    assert.ok(
      [25, 100].includes(started.canaryWeight) || started.phase === "Promoted",
      `reloaded steps used: ${started.canaryWeight}`,
    );
    await s.until("promoted", (st) => st.phase === "Promoted");
    assert.ok(
      canaryShares(s.history, s.stable, s.canary).includes(25),
      "the reloaded policy's first step was applied",
    );
  });

  void it("slim watch cache: the revision is the raw template's, scaling is not a revision, a many-manager route keeps its annotations", async () => {
    const s = await scenario(httpRoute, "slim");
    // Field managers besides the creator: each owns an annotation and a label, so managedFields is large.
    const teams = ["kubectl-client-side-apply", "helm", "argocd-controller", "team-payments", "policy-bot"];
    for (const [i, manager] of teams.entries()) {
      await c.custom.patchNamespacedCustomObject(
        {
          group: "gateway.networking.k8s.io",
          version: "v1",
          namespace: s.ns,
          plural: "httproutes",
          name: s.route,
          body: {
            metadata: {
              annotations: { [`team-${i}.example.com/owner`]: manager },
              labels: { [`team-${i}`]: "yes" },
            },
          },
          fieldManager: manager,
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    }
    const userAnnotations = (await s.weightsObject()).metadata?.annotations ?? {};
    assert.ok(((await s.weightsObject()).metadata?.managedFields ?? []).length > teams.length);
    // The Deployment exactly as a watch delivers it (JSON, not the typed client's model).
    const raw = async () =>
      (await c.custom.getNamespacedCustomObject({
        group: "apps",
        version: "v1",
        namespace: s.ns,
        plural: "deployments",
        name: s.canary,
      })) as KObject;
    s.writePolicy({ steps: [50, 100], interval: "1s" });
    const adopted = await s.until("adopted", (st) => st.phase === "Steady");
    assert.equal(
      adopted.baseline[s.canary],
      templateRevision(await raw()),
      "the kept revision is the raw one",
    );

    // Scale only, rolled out: not a revision.
    await mergePatch(c, "Deployment", s.ns, s.canary, { spec: { replicas: 4 } });
    await markRolledOut(c, s.ns, s.canary);
    // A new template, not yet rolled out: the daemon waits for it, naming the revision and the generation.
    // Events of one Deployment arrive in order, so by this line the scale above was in the cache too.
    await s.shipCanary("2", s.canary, false);
    const shipped = await raw();
    const next = templateRevision(shipped)!;
    assert.notEqual(next, adopted.baseline[s.canary]);
    const waiting = (generation: number | undefined) => (l: LogLine) =>
      l.policy === `${s.ns}/${s.route}` &&
      l.msg.includes(`new revision ${next} of ${s.canary} is rolling out`) &&
      l.msg.includes(`generation ${generation} not yet observed`);
    await daemon.waitForLine(
      "the new revision seen, waiting to roll out",
      waiting(shipped.metadata?.generation),
    );
    let st = await s.state();
    assert.equal(st?.phase, "Steady", "the scale started no rollout");
    assert.equal(st?.baseline[s.canary], adopted.baseline[s.canary]);
    // Scaling while it waits: the same revision, at the new generation.
    const scaled = await mergePatch(c, "Deployment", s.ns, s.canary, { spec: { replicas: 5 } });
    await daemon.waitForLine("the same revision after a scale", waiting(scaled.metadata?.generation));

    await markRolledOut(c, s.ns, s.canary);
    const promoted = await s.until("promoted", (x) => x.phase === "Promoted");
    assert.equal(promoted.revision, next, "one rollout, of the template's revision");
    assert.deepEqual(canaryShares(s.history, s.stable, s.canary), [0, 50, 100]);
    const route = await s.weightsObject();
    for (const [k, v] of Object.entries(userAnnotations))
      assert.equal(route.metadata?.annotations?.[k], v, `annotation ${k} intact`);
    assert.ok(route.metadata?.annotations?.[ANNOTATIONS.state], "the state written beside them");
    assert.ok(
      (route.metadata?.managedFields ?? []).some((m) => m.manager === FIELD_MANAGER),
      "rolloutd's patches landed on the many-manager route",
    );
    st = await s.state();
    assert.equal(st?.phase, "Promoted");
  });

  void it("Gateway API: a step counts only once every parent accepted it; a route never accepted is reported", async () => {
    const s = await scenario(httpRoute, "accept");
    gateway.holdNamespaces.add(s.ns);
    s.writePolicy({ steps: [50, 100], interval: "1s", extra: "  routeReadyTimeout: 2s" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    const waiting = await s.until("step 1 written", (st) => st.phase === "Progressing");
    assert.equal(waiting.stepStartedAt, undefined, "the step has not started: no parent accepted it");
    const ev = await s.eventWith("RouteNotAccepted");
    assert.match(
      ev.message ?? "",
      /Gateway http-accept\/gw: (no status yet|Accepted is for generation \d+, route is at \d+)/,
    );
    assert.equal((await s.state())?.stepIndex, 0, "no advance without acceptance");
    gateway.holdNamespaces.delete(s.ns);
    await gateway.kick(s.ns, s.route);
    await s.until("promoted once accepted", (st) => st.phase === "Promoted");
  });

  void it("exposes rollout metrics", async () => {
    await eventually(
      "metrics with promotions",
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text();
        return (
          /rolloutd_promotions_total\{policy="[^"]+"\} [1-9]/.test(text) &&
          /rolloutd_rollouts\{phase="Promoted"\} [1-9]/.test(text)
        );
      },
      90_000,
    );
  });
});
