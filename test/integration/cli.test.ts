/**
 * The operator CLI against a real API server and daemon: status reads what
 * the cluster records; abort/pause/resume/retry/promote only set annotations,
 * and the daemon acts on them.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { getObject, startCluster, type Cluster } from "../support/cluster.ts";
import { runCli, startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { FakeGatewayStatus, httpRoute } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

void describe("rolloutd CLI", () => {
  let c: Cluster;
  let daemon: DaemonProcess;
  let gateway: FakeGatewayStatus;
  let policiesDir: string;
  let s: Scenario;

  const cli = (...args: string[]) => runCli(args, { kubeconfig: c.cp.kubeconfigPath });

  before(async () => {
    c = await startCluster();
    gateway = new FakeGatewayStatus(c);
    await gateway.start();
    policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-cli-"));
    daemon = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir });
    s = new Scenario(c, httpRoute, "cli", policiesDir);
    await s.given();
    s.writePolicy({ steps: [10, 20, 30, 40, 50], interval: "2s" });
    await s.until("adopted", (st) => st.phase === "Steady");
  });

  after(async () => {
    s?.close();
    gateway?.stop();
    await daemon?.stop();
    await daemon?.dispose();
    await c?.stop();
    if (policiesDir) rmSync(policiesDir, { recursive: true, force: true });
  });

  void it("status prints the rollout as a table and as JSON", async () => {
    await s.shipCanary("2");
    await s.until("progressing", (st) => st.phase === "Progressing");
    const t = await cli("status", "-n", "cli");
    assert.equal(t.code, 0, t.out);
    const [head, row] = t.out.trim().split("\n");
    assert.match(head!, /^POLICY\s+ROUTE\s+PHASE\s+STEP\s+WEIGHTS\s+LAST ANALYSIS\s+AGE\s+WHY$/);
    assert.match(row!, /^web\s+httproute\/web\s+Progressing\s+\d \(\d+%\)\s+web-v1=\d+ web-v2=\d+/);
    const j = await cli("status", "-A", "-o", "json");
    const rows = JSON.parse(j.out) as Array<{ namespace: string; state: { policy: string; phase: string } }>;
    assert.deepEqual(
      rows.map((r) => [r.namespace, r.state.policy]),
      [["cli", "cli/web"]],
    );
    const none = await cli("status", "nosuchpolicy", "-n", "cli");
    assert.equal(none.code, 1);
    assert.match(none.out, /no rollout found for policy nosuchpolicy/);
  });

  void it("abort sets the annotations kubectl would set, and the daemon sends all traffic to stable", async () => {
    const r = await cli("abort", "httproute/web", "-n", "cli", "--reason", "latency on checkout");
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /httproute\/web annotated: rolloutd.dev\/abort="true" rolloutd.dev\/abort-reason="latency on checkout"/,
    );
    const obj = await getObject(c, "HTTPRoute", "cli", "web");
    assert.equal(obj.metadata?.annotations?.["rolloutd.dev/abort"], "true");
    const st = await s.until("aborted", (x, w) => x.phase === "Aborted" && w["web-v2"] === 0);
    assert.equal(st.abort?.reason, "latency on checkout");
  });

  void it("retry clears the abort and starts again from the first step", async () => {
    const r = await cli("retry", "httproute/web", "-n", "cli");
    assert.equal(r.code, 0, r.out);
    const st = await s.until("restarted", (x) => x.phase === "Progressing");
    assert.ok(st.stepIndex <= 1, `restarted near the first step, at ${st.stepIndex}`);
  });

  void it("pause holds, resume continues, promote finishes at once", async () => {
    assert.equal((await cli("pause", "httproute/web", "-n", "cli")).code, 0);
    const paused = await s.until("paused", (x) => x.phase === "Paused");
    assert.equal((await cli("resume", "httproute/web", "-n", "cli")).code, 0);
    await s.until("resumed", (x) => x.phase === "Progressing" && x.since > paused.since);
    assert.equal((await cli("promote", "httproute/web", "-n", "cli")).code, 0);
    // Weights are in the route's own units (the pair keeps its own total): all of it on web-v2.
    const done = await s.until(
      "promoted",
      (x, w) => x.phase === "Promoted" && w["web-v1"] === 0 && (w["web-v2"] ?? 0) > 0,
    );
    assert.equal(done.stable, "web-v2");
  });

  void it("refuses a malformed route argument and a missing route with a clear message", async () => {
    const bad = await cli("abort", "deployment/web", "-n", "cli");
    assert.equal(bad.code, 1);
    assert.match(bad.out, /"deployment\/web" is not a route: write <kind>\/<name>/);
    const missing = await cli("pause", "httproute/nope", "-n", "cli");
    assert.equal(missing.code, 1);
    assert.match(missing.out, /HTTPRoute cli\/nope not found/);
  });
});
