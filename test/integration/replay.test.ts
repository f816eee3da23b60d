/**
 * Canary-versus-stable judgment and `rolloutd replay` on a REAL Prometheus (test/controlplane/prometheus.ts)
 * scraping two prom-client backends (test/support/backend.ts) every second, with load on both.
 *
 * First a history is recorded, in three phases of PHASE_MS each, with the exact phase boundaries kept:
 *   healthy     — stable and canary answer in 20 ms;
 *   regression  — only the canary slows down to 400 ms;
 *   incident    — a platform-wide incident: both slow down to 400 ms.
 * Then policies are replayed over each phase, as if a rollout had started at its beginning, and the outcome
 * the daemon would have reached is checked: an absolute bound promotes the healthy rollout and rolls back
 * both the regression and the incident; canary-versus-stable checks (relative bounds and the Mann-Whitney
 * judge) roll back the regression but not the incident. Each outcome is decided by data well inside its
 * phase (20 ms against 400 ms, p99 24.85 ms against 497.5 ms in the histogram's buckets), never by timing.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import { PrometheusGate } from "../../src/analysis/analyzer.ts";
import { PrometheusClient } from "../../src/analysis/prometheus.ts";
import { replayCommand } from "../../src/cli/replay.ts";
import { parsePolicyFile } from "../../src/policy/load.ts";
import type { RolloutPolicy } from "../../src/policy/types.ts";
import { rehearse, type Timeline } from "../../src/replay/driver.ts";
import { isoTime } from "../../src/replay/table.ts";
import { startPrometheus, type PrometheusHandle } from "../controlplane/prometheus.ts";
import { startBackend, type TestBackend } from "../support/backend.ts";
import { startCluster } from "../support/cluster.ts";
import { runCli } from "../support/daemon.ts";

const NS = "replay";
const PHASE_MS = 24_000;
/** Requests per second to each backend. */
const RPS = 20;
interface Phase {
  from: number;
  to: number;
}

/** Fires RPS requests per second at a backend without waiting for the answers (latency must not slow the load). */
function load(backend: TestBackend): () => void {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const timer = setInterval(() => {
    http
      .get(backend.url, { agent }, (res) => res.resume())
      .on("error", () => {
        /* the backend is stopping */
      });
  }, 1000 / RPS);
  return () => {
    clearInterval(timer);
    agent.destroy();
  };
}

function policyText(prometheusUrl: string, name: string, body: string[], analysis: string[] = []): string {
  return [
    "apiVersion: rolloutd.dev/v1alpha1",
    "kind: RolloutPolicy",
    `metadata: { name: ${name}, namespace: ${NS} }`,
    "spec:",
    "  target: { kind: HTTPRoute, name: web }",
    "  stable: web-v1",
    "  canary: web-v2",
    ...body.map((l) => `  ${l}`),
    "  analysis:",
    `    prometheus: { url: "${prometheusUrl}", timeout: 5s }`,
    "    provider: app",
    "    minRequests: 10",
    "    failureLimit: 1",
    ...analysis.map((l) => `    ${l}`),
    "    checks:",
  ].join("\n");
}

void describe("replay and canary-versus-stable judgment on a recorded history", () => {
  const dir = mkdtempSync(join(tmpdir(), "rolloutd-replay-"));
  let prom: PrometheusHandle;
  let stable: TestBackend;
  let canary: TestBackend;
  const stops: Array<() => void> = [];
  const phases: Record<"healthy" | "regression" | "incident", Phase> = {
    healthy: { from: 0, to: 0 },
    regression: { from: 0, to: 0 },
    incident: { from: 0, to: 0 },
  };
  let absoluteFile = "";
  let relative: RolloutPolicy;

  before(async () => {
    [stable, canary] = await Promise.all([startBackend("web-v1", NS), startBackend("web-v2", NS)]);
    prom = await startPrometheus({
      targets: [stable, canary].map((b) => ({ job: "backends", url: b.metricsUrl })),
      scrapeIntervalSeconds: 1,
    });
    stops.push(load(stable), load(canary));
    await delay(3_000); // a few scrapes of traffic before the history starts

    const record = async (phase: Phase, stableMs: number, canaryMs: number): Promise<void> => {
      stable.setBehaviour({ latencyMs: stableMs });
      canary.setBehaviour({ latencyMs: canaryMs });
      phase.from = Date.now();
      await delay(PHASE_MS);
      phase.to = Date.now();
    };
    await record(phases.healthy, 20, 20);
    await record(phases.regression, 20, 400);
    await record(phases.incident, 400, 400);
    await delay(3_000); // the last phase's samples scraped
    for (const stop of stops.splice(0)) stop();

    absoluteFile = join(dir, "absolute.yaml");
    writeFileSync(
      absoluteFile,
      [
        policyText(prom.url, "absolute", ["steps: [25, 50, 100]", "interval: 6s"]),
        "      - { name: p99-latency, template: latency-p99, max: 300 }",
        "      - { name: error-rate, template: error-rate, max: 0.05 }",
        "",
      ].join("\n"),
    );
    const relativeText = [
      // Deadlines only: the judge's verdict over a whole step is what is checked here (in-step: test/unit/replay).
      policyText(prom.url, "relative", ["steps: [50, 100]", "interval: 10s"], ["cadence: 0"]),
      "      - { name: p99-vs-stable, template: latency-p99, compare: stable, maxIncrease: { ratio: 0.5, absolute: 50 } }",
      "      - name: p99-judged",
      "        template: latency-p99",
      "        compare: stable",
      "        judge: { kind: mann-whitney, sampleInterval: 2s }",
      "",
    ].join("\n");
    const parsed = parsePolicyFile("relative.yaml", relativeText);
    assert.deepEqual(
      parsed.errors.map((e) => e.format()),
      [],
    );
    relative = parsed.policies[0]!;
  });

  after(async () => {
    for (const stop of stops) stop();
    await prom?.stop();
    await Promise.all([stable?.stop(), canary?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  class Capture {
    text = "";
    write(s: string): void {
      this.text += s;
    }
  }

  async function replayAbsolute(phase: Phase, svg?: string): Promise<{ code: number; text: string }> {
    const out = new Capture();
    const code = await replayCommand(
      absoluteFile,
      {
        from: new Date(phase.from).toISOString(),
        to: new Date(phase.to).toISOString(),
        analysisMinWindow: 3,
        ...(svg !== undefined ? { svg } : {}),
      },
      out,
    );
    return { code, text: out.text };
  }

  async function replayRelative(phase: Phase): Promise<Timeline> {
    const client = new PrometheusClient(relative.analysis!.prometheus);
    try {
      const gate = new PrometheusGate({
        spec: relative.analysis!,
        source: client,
        deployments: relative.deployments,
        route: relative.target.name,
        minWindowSeconds: 3,
      });
      return await rehearse({ policy: relative, gate, start: phase.from, end: phase.to });
    } finally {
      client.close();
    }
  }

  void it("replay: the recorded healthy rollout is promoted after three analyses (exit 0)", async () => {
    const svg = join(dir, "healthy.svg");
    const { code, text } = await replayAbsolute(phases.healthy, svg);
    assert.equal(code, 0, text);
    const rows = text.split("\n").filter((l) => /^\d+\s/.test(l));
    assert.equal(rows.length, 3, text);
    assert.match(
      rows[0]!,
      /StepAdvanced\s+p99-latency 24\.85 ms ≤ 300 ms; error-rate 0 ≤ 0\.05; \d+ requests/,
    );
    assert.match(rows[2]!, /Promoted/);
    assert.match(text, /^PROMOTED: /m);
    const picture = readFileSync(svg, "utf8");
    assert.match(picture, /<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.ok(picture.includes(">p99-latency</text>") && picture.includes(">error-rate</text>"));
  });

  void it("replay: the recorded regression is rolled back at the first analysis (exit 1)", async () => {
    const { code, text } = await replayAbsolute(phases.regression);
    assert.equal(code, 1, text);
    // In-step (cadence: a fifth of 6 s, so 2 s): rolled back at the first evaluation after the slowdown.
    assert.match(text, /RolledBack\s+p99-latency 4\d\d(\.\d+)? ms > 300 ms/);
  });

  void it("an absolute bound also rolls back on a platform-wide incident (the control)", async () => {
    const { code, text } = await replayAbsolute(phases.incident);
    assert.equal(code, 1, text);
    assert.match(text, /p99-latency 4\d\d(\.\d+)? ms > 300 ms/);
  });

  void it("canary versus stable: only the canary slower → both relative checks fail, rolled back", async () => {
    const t = await replayRelative(phases.regression);
    assert.equal(t.outcome, "rolledBack", t.ending);
    const checks = t.frames[0]!.report!.checks;
    const [relativeCheck, judged] = checks;
    assert.equal(relativeCheck?.verdict, "fail", relativeCheck?.reason);
    // The stable's p99 in the same window: 20 ms answers interpolated in the (10, 25] ms bucket.
    const base = relativeCheck?.baseline;
    assert.ok(base?.kind === "value" && Math.abs(base.value - 24.85) < 1e-9, JSON.stringify(base));
    console.log(`regression, canary vs stable: ${relativeCheck?.reason}; ${judged?.reason}`);
    assert.equal(judged?.verdict, "fail", judged?.reason);
    assert.ok((judged?.judge?.p ?? 1) < 0.02, judged?.reason);
    assert.ok((judged?.judge?.canarySamples.length ?? 0) >= 4, judged?.reason);
  });

  void it("canary versus stable: a platform-wide incident that slows both alike does not roll back", async () => {
    const t = await replayRelative(phases.incident);
    assert.notEqual(t.outcome, "rolledBack", t.ending);
    for (const f of t.frames) {
      for (const c of f.report?.checks ?? []) {
        assert.ok(c.verdict === "pass" || c.verdict === "noData", `${c.name}: ${c.reason}`);
      }
    }
    const judged = t.frames[0]!.report!.checks[1];
    console.log(`incident, canary vs stable: ${t.frames.map((f) => f.report?.summary).join(" | ")}`);
    assert.deepEqual(judged?.baseline, judged?.outcome, "both sides measured the same p99");
    assert.equal(t.outcome, "promoted", t.ending);
  });

  void it("--rollout finds the latest rollout in the route's Events on a real API server and replays it", async () => {
    const cluster = await startCluster({ crds: false });
    try {
      await cluster.core.createNamespace({ body: { metadata: { name: NS } } });
      let n = 0;
      const record = (name: string, reason: string, at: number) =>
        cluster.core.createNamespacedEvent({
          namespace: NS,
          body: {
            metadata: { name: `${name}.test${n++}`, namespace: NS },
            involvedObject: {
              apiVersion: "gateway.networking.k8s.io/v1",
              kind: "HTTPRoute",
              namespace: NS,
              name,
            },
            reason,
            message: `${reason} (recorded by the test)`,
            type: reason === "RolledBack" ? "Warning" : "Normal",
            source: { component: "rolloutd" },
            firstTimestamp: new Date(at),
            lastTimestamp: new Date(at),
            count: 1,
          },
        });
      // An earlier, promoted rollout; then the regression's, rolled back 6 s in; a later start on another route.
      await record("web", "RolloutStarted", phases.healthy.from);
      await record("web", "Promoted", phases.healthy.from + 18_000);
      await record("web", "RolloutStarted", phases.regression.from);
      await record("web", "RolledBack", phases.regression.from + 6_000);
      await record("other", "RolloutStarted", phases.incident.from);
      const out = new Capture();
      const code = await replayCommand(
        absoluteFile,
        { rollout: true, kubeconfig: cluster.cp.kubeconfigPath, analysisMinWindow: 3 },
        out,
      );
      assert.equal(code, 1, out.text);
      // Event times have whole seconds.
      const started = isoTime(Math.floor(phases.regression.from / 1000) * 1000);
      assert.ok(out.text.includes(`rollout found in Events: started ${started}`), out.text);
      // The whole second before the regression is in the window too: p99 just under 497.5 ms.
      assert.match(out.text, /RolledBack\s+p99-latency 4\d\d(\.\d+)? ms > 300 ms/);
    } finally {
      await cluster.stop();
    }
  });

  void it("the CLI runs replay as a command: rolled back is exit 1, the picture is written", async () => {
    const svg = join(dir, "cli.svg");
    const { code, stdout, stderr } = await runCli([
      "replay",
      absoluteFile,
      "--from",
      String(phases.regression.from / 1000),
      "--to",
      new Date(phases.regression.to).toISOString(),
      "--prometheus",
      prom.url,
      "--analysis-min-window",
      "3",
      "--svg",
      svg,
    ]);
    assert.equal(code, 1, `${stdout}\n${stderr}`);
    assert.match(stdout, /^ROLLED BACK: /m);
    assert.ok(existsSync(svg));
  });
});
