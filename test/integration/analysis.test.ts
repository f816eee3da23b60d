/**
 * "Prometheus analysis before every step", end to end with real parts: the daemon as a process, a real API
 * server, a real Prometheus scraping two prom-client backends per scenario every second, and a test gateway
 * that splits generated load between the backends by the route's current weights (test/support/gateway.ts).
 * Nothing is faked but the parts no cluster here plays: Deployment rollout status and Gateway API parent status.
 *
 * Each scenario has its own namespace, backends, gateway and load. Scenarios a–d share one Prometheus (their
 * series never mix: `namespace` differs); scenario e stops and restarts its own.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { startPrometheus, type PrometheusHandle, type ScrapeTarget } from "../controlplane/prometheus.ts";
import { startBackend, type TestBackend } from "../support/backend.ts";
import { eventually, startCluster, type Cluster } from "../support/cluster.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { LoadGenerator, TestGateway, type GatewayRouteKind } from "../support/gateway.ts";
import { appMeshVirtualRouter, FakeGatewayStatus, httpRoute, type RouteFamily } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";
import { type RecordedCheck, type RolloutState } from "../../src/contract.ts";

/** Analysis interval and the daemon's minimum window: three 1 s scrapes. */
const INTERVAL_S = 3;
const INTERVAL = `${INTERVAL_S}s`;
const STEPS = [25, 50, 100];
const RPS = 25;
const MIN_REQUESTS = 10;
const P99_MAX_MS = 300;
const ERROR_RATE_MAX = 0.05;
const SLOW_MS = 600;
/** Long enough for adoption, acceptance, every step and a few held analyses on a loaded machine. */
const ROLLOUT_TIMEOUT_MS = 90_000;

const short = (fam: RouteFamily) => (fam === httpRoute ? "http" : "vr");

/** One scenario's data plane: its two backends, the gateway that splits load by the route's weights, the load. */
class Rig {
  stable!: TestBackend;
  canary!: TestBackend;
  gateway!: TestGateway;
  load!: LoadGenerator;
  s!: Scenario;

  constructor(
    readonly fam: RouteFamily,
    readonly ns: string,
  ) {}

  async startBackends(): Promise<this> {
    // Names as the Scenario's route names them (web-v1 stable, web-v2 canary).
    [this.stable, this.canary] = await Promise.all([
      startBackend("web-v1", this.ns),
      startBackend("web-v2", this.ns),
    ]);
    return this;
  }

  targets(): ScrapeTarget[] {
    return [this.stable, this.canary].map((b) => ({ job: "backends", url: b.metricsUrl }));
  }

  /** Given: namespace, Deployments, route at 100 % stable, the gateway following it and load flowing. */
  async given(c: Cluster, policiesDir: string, opts: { paused?: boolean } = {}): Promise<Scenario> {
    this.s = new Scenario(c, this.fam, this.ns, policiesDir);
    await this.s.given();
    this.gateway = new TestGateway(c.kc, {
      kind: this.fam.weightsKind as GatewayRouteKind,
      namespace: this.ns,
      name: this.fam.weightsObjectName(this.s.route),
      stable: this.stable,
      canary: this.canary,
    });
    await this.gateway.start();
    await eventually(`${this.ns}: gateway sees the route`, () => this.gateway.weights());
    this.load = new LoadGenerator(this.gateway, { rps: RPS, maxRequests: 6_000, maxDurationMs: 170_000 });
    if (opts.paused === true) this.load.pause();
    this.load.start();
    return this.s;
  }

  writePolicy(promUrl: string, opts: { steps?: number[]; onErrorLimit?: number } = {}): void {
    this.s.writePolicy({
      steps: opts.steps ?? STEPS,
      interval: INTERVAL,
      extra: [
        "  analysis:",
        `    prometheus: { url: "${promUrl}", timeout: 2s }`,
        "    provider: app",
        `    minRequests: ${MIN_REQUESTS}`,
        "    checks:",
        `      - { name: p99-latency, template: latency-p99, max: ${P99_MAX_MS} }`,
        `      - { name: error-rate, template: error-rate, max: ${ERROR_RATE_MAX} }`,
        "    failureLimit: 1",
        `    onError: { action: hold, limit: ${opts.onErrorLimit ?? 5} }`,
      ].join("\n"),
    });
  }

  /** Canary shares (percent) the gateway routed by, in order. */
  shares(): number[] {
    return this.gateway.seen.map((w) => Math.round((w.canary / Math.max(1, w.stable + w.canary)) * 100));
  }

  /** Then: the gateway sends nothing more to `idle` while `busy` keeps getting traffic. */
  async assertNoTrafficTo(idle: TestBackend, busy: TestBackend): Promise<void> {
    const idleName = idle === this.canary ? "canary" : "stable";
    await eventually(`${this.ns}: gateway routes by the final weights`, () => {
      const w = this.gateway.weights();
      return w !== undefined && w[idleName] === 0;
    });
    const idleBefore = this.gateway.sentTo(idle);
    const busyBefore = this.gateway.sentTo(busy);
    await eventually(
      `${this.ns}: ${RPS} more requests to ${busy.service}`,
      () => this.gateway.sentTo(busy) >= busyBefore + RPS,
    );
    assert.equal(this.gateway.sentTo(idle), idleBefore, `no request reaches ${idle.service} any more`);
  }

  close(): void {
    this.load?.stop();
    this.gateway?.stop();
    this.s?.close();
  }

  async stop(): Promise<void> {
    this.close();
    await Promise.all([this.stable?.stop(), this.canary?.stop()]);
  }
}

const check = (s: RolloutState, name: string): RecordedCheck => {
  const c = s.lastAnalysis?.checks.find((x) => x.name === name);
  assert.ok(c, `lastAnalysis has check ${name}: ${JSON.stringify(s.lastAnalysis)}`);
  return c;
};

/** The number the Event shows for a check ("p99-latency 987.5 ms > 300 ms"). */
const shownValue = (message: string, name: string): number => {
  const m = new RegExp(`${name} ([0-9.e+-]+)`).exec(message);
  assert.ok(m, `"${name} <value>" in ${JSON.stringify(message)}`);
  return Number(m[1]);
};

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;

void describe(
  "Prometheus analysis before every step (real daemon, API server, Prometheus, traffic)",
  { concurrency: true },
  () => {
    let c: Cluster;
    let daemon: DaemonProcess;
    let fakeGateway: FakeGatewayStatus;
    let prom: PrometheusHandle;
    let policiesDir: string;

    const rigs = {
      healthyHttp: new Rig(httpRoute, "http-healthy"),
      healthyVr: new Rig(appMeshVirtualRouter, "vr-healthy"),
      slowHttp: new Rig(httpRoute, "http-slow"),
      slowVr: new Rig(appMeshVirtualRouter, "vr-slow"),
      errors: new Rig(httpRoute, "http-errors"),
      idle: new Rig(httpRoute, "http-idle"),
    };
    /** Scenario e: its own Prometheus, started in the test. */
    const promLimit = new Rig(httpRoute, "http-prom-limit");
    const promBack = new Rig(httpRoute, "http-prom-back");
    const all = [...Object.values(rigs), promLimit, promBack];
    /** Policies whose rollback is the expected outcome: their breach-to-rollback latency is reported. */
    const rollbackPolicies = [rigs.slowHttp, rigs.slowVr, rigs.errors, promLimit].map((r) => `${r.ns}/web`);

    before(async () => {
      policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-analysis-policies-"));
      const cluster = startCluster();
      await Promise.all(all.map((r) => r.startBackends()));
      prom = await startPrometheus({
        targets: Object.values(rigs).flatMap((r) => r.targets()),
        scrapeIntervalSeconds: 1,
      });
      c = await cluster;
      fakeGateway = new FakeGatewayStatus(c);
      await fakeGateway.start();
      daemon = await startDaemon({
        kubeconfig: c.cp.kubeconfigPath,
        policiesDir,
        extraArgs: [`--analysis-min-window=${INTERVAL_S}`],
      });
    });

    after(async () => {
      if (daemon !== undefined) {
        const written = daemon
          .lines()
          .filter(
            (l) =>
              l.msg === "analysis result written" &&
              l.phase === "RolledBack" &&
              rollbackPolicies.includes(l.policy ?? ""),
          )
          .map((l) => l.resultToWriteMs as number)
          .sort((a, b) => a - b);
        console.log(
          `# breach-to-rollback ms: p50=${percentile(written, 50)} max=${written.at(-1) ?? NaN} (n=${written.length}, analysis result → weights and state written)`,
        );
      }
      await Promise.all(all.map((r) => r.stop()));
      fakeGateway?.stop();
      const code = await daemon?.stop();
      await prom?.stop();
      await c?.stop();
      if (policiesDir) rmSync(policiesDir, { recursive: true, force: true });
      assert.equal(code, 0, "the daemon exits 0 on SIGTERM");
    });

    for (const [fam, healthy, slow] of [
      [httpRoute, rigs.healthyHttp, rigs.slowHttp],
      [appMeshVirtualRouter, rigs.healthyVr, rigs.slowVr],
    ] as const) {
      void describe(fam.name, { concurrency: true }, () => {
        void it(`a: a healthy canary is promoted after every step passed its analysis (${short(fam)})`, async (t) => {
          const s = await healthy.given(c, policiesDir);
          healthy.writePolicy(prom.url);
          await s.until("adopted", (st) => st.phase === "Steady");
          await s.shipCanary("2");

          const promoted = await s.until("promoted", (st) => st.phase === "Promoted", ROLLOUT_TIMEOUT_MS);
          assert.equal(promoted.stable, s.canary, "web-v2 is the new stable");
          const last = promoted.lastAnalysis;
          assert.ok(last, "the final analysis is persisted");
          assert.equal(last.verdict, "pass");
          assert.equal(last.stepIndex, STEPS.length - 1);
          assert.equal(last.canaryWeight, 100);
          const p99 = check(promoted, "p99-latency");
          assert.equal(p99.verdict, "pass");
          // The backend answers in 20 ms: the (10 ms, 25 ms] bucket, in milliseconds (not seconds).
          assert.ok(p99.value !== null && p99.value > 10 && p99.value <= 25, `p99 ${p99.value} ms`);
          const errors = check(promoted, "error-rate");
          assert.deepEqual([errors.outcome, errors.value, errors.verdict], ["value", 0, "pass"]);
          assert.match(last.summary, /\d+ requests ≥ minRequests 10/);

          // The mesh followed every step once, in order, and now sends everything to the promoted canary.
          assert.deepEqual(healthy.shares(), [0, ...STEPS]);
          await healthy.assertNoTrafficTo(healthy.stable, healthy.canary);
          const events = await s.events();
          const advanced = events.filter((e) => e.reason === "StepAdvanced");
          assert.equal(advanced.length, STEPS.length - 1, "one StepAdvanced per passed intermediate step");
          for (const e of advanced)
            assert.match(e.message ?? "", /p99-latency [0-9.]+ ms ≤ 300 ms; error-rate 0 ≤ 0.05/);
          const ev = await s.eventWith("Promoted");
          assert.match(ev.message ?? "", /p99-latency [0-9.]+ ms ≤ 300 ms.*web-v2 promoted to 100%/);
          assert.ok(!events.some((e) => e.reason === "RolledBack"));
          t.diagnostic(`a (${short(fam)}): final p99 ${p99.value} ms, ${last.summary}`);
          healthy.close();
        });

        void it(`b: a latency regression at the second step is rolled back with the measured p99 (${short(fam)})`, async (t) => {
          const s = await slow.given(c, policiesDir);
          slow.writePolicy(prom.url);
          await s.until("adopted", (st) => st.phase === "Steady");
          await s.shipCanary("2");
          await s.until(
            "second step started",
            (st) => st.phase === "Progressing" && st.stepIndex === 1 && st.stepStartedAt !== undefined,
            ROLLOUT_TIMEOUT_MS,
          );
          slow.canary.setBehaviour({ latencyMs: SLOW_MS });

          const rolled = await s.until(
            "rolled back to 100 % stable",
            (st, w) => st.phase === "RolledBack" && w[s.canary] === 0,
            ROLLOUT_TIMEOUT_MS,
          );
          const w = await s.weights();
          assert.equal(w[s.canary], 0);
          assert.ok((w[s.stable] ?? 0) > 0, `stable keeps the traffic: ${JSON.stringify(w)}`);
          assert.equal(rolled.stable, s.stable, "roles unchanged by a rollback");
          const last = rolled.lastAnalysis;
          assert.ok(last);
          assert.equal(last.verdict, "fail");
          assert.equal(last.stepIndex, 1, "the breach was measured at the second step");
          assert.equal(last.canaryWeight, STEPS[1]);
          const p99 = check(rolled, "p99-latency");
          assert.equal(p99.verdict, "fail");
          assert.ok(
            p99.value !== null && p99.value > P99_MAX_MS,
            `measured p99 ${p99.value} ms > ${P99_MAX_MS}`,
          );
          // A 600 ms handler lands in the (500 ms, 1 s] bucket.
          assert.ok(p99.value > 500 && p99.value <= 1000, `p99 ${p99.value} ms within the slow bucket`);
          assert.equal(check(rolled, "error-rate").verdict, "pass");

          const ev = await s.eventWith("RolledBack");
          assert.equal(ev.type, "Warning");
          assert.equal(ev.involvedObject.kind, fam.targetKind);
          const msg = ev.message ?? "";
          assert.match(msg, /p99-latency [0-9.]+ ms > 300 ms/);
          const shown = shownValue(msg, "p99-latency");
          assert.ok(
            Math.abs(shown - p99.value) <= p99.value * 1e-3,
            `Event shows ${shown}, state has ${p99.value}`,
          );
          assert.match(msg, /at step 2 \(50%\)/);
          assert.deepEqual(slow.shares(), [0, 25, 50, 0], "the mesh went 25 → 50 → back to 0 % canary");
          await slow.assertNoTrafficTo(slow.canary, slow.stable);
          t.diagnostic(`b (${short(fam)}): p99 ${p99.value} ms at step 2 → rolled back`);
          slow.close();
        });
      });
    }

    void it("c: an error spike is rolled back (http)", async (t) => {
      const r = rigs.errors;
      const s = await r.given(c, policiesDir);
      r.writePolicy(prom.url);
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      await s.until(
        "second step started",
        (st) => st.phase === "Progressing" && st.stepIndex === 1 && st.stepStartedAt !== undefined,
        ROLLOUT_TIMEOUT_MS,
      );
      r.canary.setBehaviour({ errorRate: 0.5 });

      const rolled = await s.until(
        "rolled back",
        (st, w) => st.phase === "RolledBack" && w[s.canary] === 0,
        ROLLOUT_TIMEOUT_MS,
      );
      assert.equal(rolled.lastAnalysis?.verdict, "fail");
      assert.equal(rolled.lastAnalysis?.stepIndex, 1);
      const errors = check(rolled, "error-rate");
      assert.equal(errors.verdict, "fail");
      assert.ok(
        // Half the answers are 500s: the measured share is near 0.5, far above the bound.
        errors.value !== null && errors.value > 0.3 && errors.value < 0.75,
        `error rate ${errors.value}`,
      );
      assert.equal(check(rolled, "p99-latency").verdict, "pass");
      const ev = await s.eventWith("RolledBack");
      assert.match(ev.message ?? "", /error-rate [0-9.]+ > 0.05/);
      const shown = shownValue(ev.message ?? "", "error-rate");
      assert.ok(
        Math.abs(shown - errors.value) <= errors.value * 1e-3,
        `Event shows ${shown}, state has ${errors.value}`,
      );
      assert.ok(r.canary.answered.get(500)! > 0, "the canary really answered 500s");
      await r.assertNoTrafficTo(r.canary, r.stable);
      t.diagnostic(`c: error rate ${errors.value} at step 2 → rolled back`);
      r.close();
    });

    void it("d: zero traffic holds the rollout (inconclusive, no promotion, no rollback), then traffic promotes it (http)", async (t) => {
      const r = rigs.idle;
      const s = await r.given(c, policiesDir, { paused: true });
      r.writePolicy(prom.url);
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      const held = await s.until(
        "first analysis inconclusive",
        (st) => st.phase === "Progressing" && st.lastAnalysis?.verdict === "inconclusive",
        ROLLOUT_TIMEOUT_MS,
      );
      assert.equal(held.stepIndex, 0);
      // Nothing may happen for several intervals: a short fixed wait, then the state must show it.
      await delay(3.5 * INTERVAL_S * 1000);
      const still = await s.state();
      assert.ok(still);
      assert.equal(still.phase, "Progressing");
      assert.equal(still.stepIndex, 0, "no step advanced without traffic");
      assert.equal(still.canaryWeight, STEPS[0]);
      assert.ok(
        still.noData >= held.noData + 2 && still.noData >= 3,
        `held for ≥ 3 consecutive inconclusive analyses (noData ${held.noData} → ${still.noData})`,
      );
      assert.equal(still.failures, 0, "no data is not a failure");
      const last = still.lastAnalysis;
      assert.ok(last);
      assert.equal(last.verdict, "inconclusive");
      assert.ok(last.at > held.lastAnalysis!.at, "analysed again while held");
      for (const name of ["p99-latency", "error-rate"]) {
        const ch = check(still, name);
        assert.deepEqual([ch.outcome, ch.value, ch.verdict], ["noData", null, "noData"], name);
      }
      assert.match(last.summary, /0 requests < minRequests 10/);
      const events = await s.events();
      for (const reason of ["StepAdvanced", "Promoted", "RolledBack"]) {
        assert.ok(!events.some((e) => e.reason === reason), `no ${reason} while idle`);
      }
      assert.ok(events.some((e) => e.reason === "AnalysisNotPassed" && /holding/.test(e.message ?? "")));
      assert.equal(r.gateway.sentTo(r.canary) + r.gateway.sentTo(r.stable), 0, "there really was no traffic");

      r.load.resume();
      const promoted = await s.until(
        "promoted once traffic returns",
        (st) => st.phase === "Promoted",
        ROLLOUT_TIMEOUT_MS,
      );
      assert.equal(promoted.lastAnalysis?.verdict, "pass");
      assert.deepEqual(r.shares(), [0, ...STEPS]);
      t.diagnostic(`d: held ${still.noData} analyses at 0 requests, promoted after traffic returned`);
      r.close();
    });

    void it("e: Prometheus stopped mid-rollout holds (error), rolls back at onError.limit; restarted, it lets another rollout finish (http)", async (t) => {
      const limit = 3;
      const ownProm = await startPrometheus({
        targets: [promLimit, promBack].flatMap((r) => r.targets()),
        scrapeIntervalSeconds: 1,
      });
      try {
        const steps = [20, 40, 60, 80, 100];
        const [sLimit, sBack] = await Promise.all([
          promLimit.given(c, policiesDir),
          promBack.given(c, policiesDir),
        ]);
        promLimit.writePolicy(ownProm.url, { steps, onErrorLimit: limit });
        promBack.writePolicy(ownProm.url, { steps, onErrorLimit: 100 });
        await Promise.all([sLimit, sBack].map((s) => s.until("adopted", (st) => st.phase === "Steady")));
        await Promise.all([sLimit, sBack].map((s) => s.shipCanary("2")));
        // Analysis works before Prometheus goes away: the first step passed.
        await Promise.all(
          [sLimit, sBack].map((s) =>
            s.until(
              "second step",
              (st) => st.phase === "Progressing" && st.stepIndex >= 1,
              ROLLOUT_TIMEOUT_MS,
            ),
          ),
        );
        await ownProm.stop({ keepData: true });
        const stoppedAt = Date.now();

        // Held, not rolled back, while errors < limit.
        const heldLimit = await sLimit.until(
          "holding on a metrics error",
          (st) => st.phase === "Progressing" && st.lastAnalysis?.verdict === "error",
          ROLLOUT_TIMEOUT_MS,
        );
        assert.ok(heldLimit.errors >= 1 && heldLimit.errors < limit, `errors ${heldLimit.errors} < ${limit}`);
        assert.ok(heldLimit.canaryWeight > 0, "weights held at the step");
        for (const ch of heldLimit.lastAnalysis!.checks) {
          assert.deepEqual([ch.outcome, ch.value, ch.verdict], ["error", null, "error"], ch.name);
        }

        const rolled = await sLimit.until(
          "rolled back at onError.limit",
          (st, w) => st.phase === "RolledBack" && w[sLimit.canary] === 0,
          ROLLOUT_TIMEOUT_MS,
        );
        assert.equal(rolled.errors, limit, `rolled back at exactly ${limit} consecutive errors`);
        assert.equal(rolled.failures, 0, "an unreachable Prometheus is not a failed check");
        assert.equal(rolled.lastAnalysis?.verdict, "error");
        assert.match(rolled.message, new RegExp(`analysis errored ${limit} times in a row`));
        const events = await sLimit.events();
        for (let i = 1; i < limit; i++) {
          assert.ok(
            events.some(
              (e) =>
                e.reason === "AnalysisNotPassed" && (e.message ?? "").includes(`(${i}/${limit}): holding`),
            ),
            `held at error ${i}/${limit}`,
          );
        }
        assert.match((await sLimit.eventWith("RolledBack")).message ?? "", /unreachable/);

        // The other policy, with a higher limit, holds at its step past the first policy's limit.
        const heldBack = await sBack.until(
          `holding past ${limit} consecutive errors`,
          (st) => st.phase !== "Progressing" || st.errors >= limit,
          ROLLOUT_TIMEOUT_MS,
        );
        assert.equal(heldBack.phase, "Progressing", heldBack.message);
        assert.equal(heldBack.lastAnalysis?.verdict, "error");
        assert.equal(heldBack.failures, 0);
        t.diagnostic(
          `e: ${sLimit.ns} rolled back after ${rolled.errors} consecutive errors; ${sBack.ns} held at step ${heldBack.stepIndex + 1} with ${heldBack.errors}`,
        );
        const heldAt = heldBack.stepIndex;

        // Prometheus comes back (same port, same TSDB): the rollout finishes.
        await ownProm.start();
        const downMs = Date.now() - stoppedAt;
        const promoted = await sBack.until(
          "promoted after Prometheus returned",
          (st) => st.phase === "Promoted",
          ROLLOUT_TIMEOUT_MS,
        );
        assert.equal(promoted.lastAnalysis?.verdict, "pass");
        assert.equal(promoted.errors, 0, "error counter reset by a pass");
        assert.ok(!(await sBack.events()).some((e) => e.reason === "RolledBack"));
        assert.ok(promoted.lastAnalysis.at > heldBack.lastAnalysis.at);
        assert.deepEqual(promBack.shares(), [0, ...steps], `every step once, held at step ${heldAt + 1}`);
        await promLimit.assertNoTrafficTo(promLimit.canary, promLimit.stable);
        const afterRestart = promoted.lastAnalysis.at - stoppedAt - downMs;
        t.diagnostic(
          `e: Prometheus down ${(downMs / 1000).toFixed(1)} s; ${sBack.ns} promoted ${(afterRestart / 1000).toFixed(1)} s after it was ready again`,
        );
        promLimit.close();
        promBack.close();
      } finally {
        await ownProm.stop();
      }
    });
  },
);
