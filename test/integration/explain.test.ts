/**
 * `rolloutd explain` on a real API server after a real rollout: started,
 * stepped, then rolled back on a measured breach. The screen must say where
 * the rollout is and why, the measured value against its bound in words,
 * and each decision in order, read from the state and the route's Events.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { runCli, startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { startFaultyPrometheus, type FaultyPrometheus } from "../support/faults.ts";
import { appMeshVirtualRouter } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

void describe("rolloutd explain", () => {
  let c: Cluster;
  let daemon: DaemonProcess;
  let prom: FaultyPrometheus;
  let policiesDir: string;
  let s: Scenario;

  const cli = (...args: string[]) => runCli(args, { kubeconfig: c.cp.kubeconfigPath });

  before(async () => {
    c = await startCluster();
    prom = await startFaultyPrometheus();
    prom.lie(120);
    policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-explain-"));
    daemon = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir,
      extraArgs: ["--analysis-min-window=1"],
    });
  });

  after(async () => {
    s?.close();
    await prom?.close();
    await daemon?.stop();
    await daemon?.dispose();
    await c?.stop();
    if (policiesDir) rmSync(policiesDir, { recursive: true, force: true });
  });

  void it("tells a rolled-back rollout's story: now, the breach in words, every decision in order", async () => {
    s = new Scenario(c, appMeshVirtualRouter, "explain", policiesDir);
    await s.given();
    s.writePolicy({
      steps: [10, 50, 100],
      interval: "3s",
      extra: [
        "  analysis:",
        `    prometheus: { url: "${prom.url}", timeout: 5s }`,
        "    checks:",
        "      - { name: p99-latency, query: 'vector(0)', max: 500 }",
      ].join("\n"),
    });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("step 2", (st) => st.stepIndex === 1, 30_000);
    prom.lie(912);
    await s.until("rolled back", (st, w) => st.phase === "RolledBack" && w[s.canary] === 0, 30_000);
    await s.eventWith("RolledBack");

    const { code, out } = await cli("explain", "gatewayroute/web", "-n", "explain");
    process.stderr.write(out.replace(/^/gm, "# "));
    assert.equal(code, 0, out);
    assert.match(out, /^gatewayroute\/web in explain — policy explain\/web$/m);
    assert.match(out, /^Now: RolledBack since \d\d:\d\d:\d\d/m);
    assert.match(out, /Weights as last written: web-v1=100 web-v2=0/);
    assert.match(out, /Last analysis at .* \(step 2, canary at 50%\): fail/);
    assert.match(out, /p99-latency measured 912, above its max 500: fail/);
    const history = out.slice(out.indexOf("History"));
    const order = ["Adopted", "RolloutStarted", "StepAdvanced", "RolledBack"].map((r) => history.indexOf(r));
    assert.ok(
      order.every((i) => i > 0),
      `every decision listed:\n${history}`,
    );
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      order,
      "oldest first",
    );
    assert.match(history, /⚠ RolledBack: .*912/);

    const missing = await cli("explain", "httproute/nothing", "-n", "explain");
    assert.equal(missing.code, 1);
    assert.match(missing.out, /HTTPRoute explain\/nothing not found/);
  });
});
