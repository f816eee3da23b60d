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
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { startPrometheus, type PrometheusHandle } from "../controlplane/prometheus.ts";
import type { Cluster } from "../support/cluster.ts";
import type { DaemonProcess } from "../support/daemon.ts";
import { appMeshVirtualRouter, httpRoute, type RouteFamily } from "../support/routes.ts";
import { Rig, RIG_DEFAULTS, startRigWorld, type RigWorld } from "../support/rig.ts";
import { type RecordedCheck, type RolloutState } from "../../src/contract.ts";

/** Analysis interval and the daemon's minimum window: three 1 s scrapes (RIG_DEFAULTS.interval). */
const INTERVAL_S = 3;
const STEPS = RIG_DEFAULTS.steps;
const P99_MAX_MS = RIG_DEFAULTS.p99MaxMs;
const SLOW_MS = 600;
/** Long enough for adoption, acceptance, every step and a few held analyses on a loaded machine. */
const ROLLOUT_TIMEOUT_MS = 90_000;

const short = (fam: RouteFamily) => (fam === httpRoute ? "http" : "vr");

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
    let w: RigWorld;
    let c: Cluster;
    let daemon: DaemonProcess;
    let prom: PrometheusHandle;
    let policiesDir: string;

    const rigs = {
      healthyHttp: new Rig(httpRoute, "http-healthy"),
      healthyVr: new Rig(appMeshVirtualRouter, "vr-healthy"),
      slowHttp: new Rig(httpRoute, "http-slow"),
      slowVr: new Rig(appMeshVirtualRouter, "vr-slow"),
      errors: new Rig(httpRoute, "http-errors"),
      idle: new Rig(httpRoute, "http-idle"),
      beyond: new Rig(httpRoute, "http-beyond"),
      silent: new Rig(httpRoute, "http-silent"),
      inStep: new Rig(httpRoute, "http-instep"),
      infinite: new Rig(httpRoute, "http-inf"),
    };
    /** Scenario e: its own Prometheus, started in the test. */
    const promLimit = new Rig(httpRoute, "http-prom-limit");
    const promBack = new Rig(httpRoute, "http-prom-back");
    const all = [...Object.values(rigs), promLimit, promBack];
    /** Policies whose rollback is the expected outcome: their breach-to-rollback latency is reported. */
    const rollbackPolicies = [
      rigs.slowHttp,
      rigs.slowVr,
      rigs.errors,
      promLimit,
      rigs.beyond,
      rigs.inStep,
    ].map((r) => `${r.ns}/web`);

    before(async () => {
      // Scenario e's rigs are scraped by a Prometheus of their own.
      w = await startRigWorld(all, { minWindowSeconds: INTERVAL_S, scraped: Object.values(rigs) });
      ({ c, daemon, prom, policiesDir } = w);
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
      assert.equal(await w?.stop(), 0, "the daemon exits 0 on SIGTERM");
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
        // Half the answers are 500s from the spike on. An in-step check may catch it while the step's window still
        // holds healthy traffic from before the spike, so the measured share lies between the bound and ~0.5.
        errors.value !== null && errors.value > RIG_DEFAULTS.errorRateMax && errors.value < 0.75,
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

    void it("f: a canary slower than the histogram's top bucket is rolled back, never promoted on the top bucket's bound (http)", async () => {
      // Every canary request takes 3 s; the backends' top finite bucket is 2.5 s; the bound 2.6 s lies above it.
      // histogram_quantile answers 2500 ms, which would pass; the daemon must call it "at least 2500 ms".
      const r = rigs.beyond;
      const s = await r.given(c, policiesDir);
      r.canary.setBehaviour({ latencyMs: 3000 });
      r.writePolicy(prom.url, { p99MaxMs: 2600 });
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      const rolled = await s.until("rolled back", (st) => st.phase === "RolledBack", ROLLOUT_TIMEOUT_MS);
      const p99 = check(rolled, "p99-latency");
      assert.deepEqual([p99.value, p99.atLeast, p99.verdict], [2500, true, "fail"]);
      const ev = await s.eventWith("RolledBack");
      assert.match(ev.message ?? "", /p99-latency ≥ 2500 ms, beyond the histogram's top finite bucket/);
      assert.ok(!(await s.events()).some((e) => e.reason === "Promoted" || e.reason === "StepAdvanced"));
      r.close();
    });

    void it("g: zero traffic does not hold forever: holdLimit rolls back, with one folded Event for the holds (http)", async () => {
      const r = rigs.silent;
      const s = await r.given(c, policiesDir, { paused: true });
      r.writePolicy(prom.url, { spec: ["  holdLimit: { after: 8s, action: rollback }"] });
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      const held = await s.until(
        "holding",
        (st) => st.phase === "Progressing" && st.heldSince !== undefined,
        ROLLOUT_TIMEOUT_MS,
      );
      const rolled = await s.until(
        "rolled back at holdLimit",
        (st, w) => st.phase === "RolledBack" && w[s.canary] === 0,
        ROLLOUT_TIMEOUT_MS,
      );
      assert.match(
        rolled.message,
        /held at step 1 \(25%\) for \d+ s: no data or too few requests; holdLimit reached: rolled back to web-v1/,
      );
      assert.ok(rolled.since - held.heldSince! >= 8_000, "not before the limit");
      const holds = (await s.events()).filter((e) => e.reason === "AnalysisNotPassed");
      assert.equal(
        holds.length,
        1,
        `one folded Event: ${JSON.stringify(holds.map((e) => [e.message, e.count]))}`,
      );
      assert.ok((holds[0]!.count ?? 0) >= 1);
      assert.equal(r.gateway.sentTo(r.canary) + r.gateway.sentTo(r.stable), 0, "there really was no traffic");
      r.close();
    });

    void it("h: a breach during a long step is rolled back before the step's interval ends (in-step detection, http)", async () => {
      const r = rigs.inStep;
      const s = await r.given(c, policiesDir);
      r.canary.setBehaviour({ latencyMs: SLOW_MS });
      // A one-hour interval: only an in-step evaluation (every 3 s) can see the breach in this test's time.
      r.writePolicy(prom.url, { interval: "1h", analysis: ["    cadence: 3s"] });
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      const rolled = await s.until("rolled back", (st) => st.phase === "RolledBack", ROLLOUT_TIMEOUT_MS);
      assert.match(rolled.message, /breach during the step \(1\/1 consecutive\)/);
      assert.equal(check(rolled, "p99-latency").verdict, "fail");
      assert.ok(
        rolled.lastAnalysis!.stepIndex === 0,
        "rolled back at the first step, long before its deadline",
      );
      r.close();
    });

    void it("i: a check measuring +Inf is stored, shown and judged as +Inf, not as 'no value' (http)", async () => {
      // errors per success with no successes at all: Prometheus answers +Inf.
      const r = rigs.infinite;
      const s = await r.given(c, policiesDir);
      r.writePolicy(prom.url, { analysis: ["    cadence: 0"] });
      // Replace the checks with one whose value is +Inf (the Rig's checks stay valid PromQL for the other rigs).
      s.writePolicy({
        steps: STEPS,
        interval: RIG_DEFAULTS.interval,
        extra: [
          "  analysis:",
          `    prometheus: { url: "${prom.url}", timeout: 2s }`,
          "    checks:",
          "      - { name: errors-per-success, query: 'vector(1) / vector(0)', max: 1 }",
        ].join("\n"),
      });
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      const rolled = await s.until("rolled back", (st) => st.phase === "RolledBack", ROLLOUT_TIMEOUT_MS);
      const ch = check(rolled, "errors-per-success");
      assert.deepEqual([ch.outcome, ch.value, ch.verdict], ["value", Number.POSITIVE_INFINITY, "fail"]);
      const raw = (await s.weightsObject()).metadata?.annotations?.["rolloutd.dev/state"] ?? "";
      assert.match(raw, /"value":"\+Inf"/, "stored as +Inf in the annotation");
      assert.match((await s.eventWith("RolledBack")).message ?? "", /errors-per-success \+Inf > 1/);
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
        // The holds raised one Event with a stable message, folded: its count says how many.
        const holds = (await sLimit.events()).filter(
          (e) => e.reason === "AnalysisNotPassed" && /analysis errored/.test(e.message ?? ""),
        );
        assert.equal(holds.length, 1, JSON.stringify(holds.map((e) => e.message)));
        assert.match(holds[0]!.message ?? "", /^holding at step \d+ \(\d+%\): analysis errored;/);
        assert.equal(holds[0]!.count, limit - 1, "one Event counted once per hold");
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
