/**
 * Notifications end to end: the real daemon against a real API server sends
 * signed notifications to a local receiver, and a receiver that never
 * answers does not delay an abort. The abort latencies printed are
 * measurements; the assertion is a bound that an implementation waiting for
 * the hanging receiver (60 s per attempt here) could not meet.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import { verifySignature } from "../../src/notify/sign.ts";
import { eventually, mergePatch, startCluster, type Cluster } from "../support/cluster.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { Receiver, type Received } from "../support/receiver.ts";
import { appMeshVirtualRouter } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

const SECRET = "e2e-hmac-key";

void describe("notifications reach receivers and never slow an abort", () => {
  let c: Cluster;
  let daemon: DaemonProcess;
  let dir: string;
  let policiesDir: string;
  const rx = new Receiver();
  const scenarios: Scenario[] = [];

  before(async () => {
    c = await startCluster();
    await rx.start();
    rx.hanging.add("/hang");
    dir = mkdtempSync(path.join(tmpdir(), "rolloutd-notify-e2e-"));
    policiesDir = path.join(dir, "policies");
    writeFileSync(path.join(dir, "hmac"), `${SECRET}\n`);
    writeFileSync(path.join(dir, "slack-url"), `${rx.url}/slack\n`);
    writeFileSync(
      path.join(dir, "notify.yaml"),
      [
        "channels:",
        `  - { name: audit, type: webhook, url: "${rx.url}/audit", secretFile: ${path.join(dir, "hmac")} }`,
        `  - { name: chat, type: slack, urlFile: ${path.join(dir, "slack-url")}, on: [aborted] }`,
        "stuckAfter: 2s",
        "",
      ].join("\n"),
    );
    mkdirSync(policiesDir);
    daemon = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir,
      extraArgs: [`--notify-config=${path.join(dir, "notify.yaml")}`],
    });
  });

  after(async () => {
    for (const s of scenarios) s.close();
    await daemon?.stop();
    await daemon?.dispose();
    await rx.close();
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A rollout at step 1 of [10, 50, 100] (1 h per step: it stays there), with extra policy lines. */
  const progressing = async (ns: string, extra?: string): Promise<Scenario> => {
    const s = new Scenario(c, appMeshVirtualRouter, ns, policiesDir);
    scenarios.push(s);
    await s.given();
    s.writePolicy({ steps: [10, 50, 100], interval: "1h", ...(extra ? { extra } : {}) });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("step 1", (st, w) => st.phase === "Progressing" && (w[s.canary] ?? 0) > 0);
    return s;
  };

  const bodies = (p: string, policy: string): Array<{ r: Received; body: Record<string, unknown> }> =>
    rx
      .on(p)
      .map((r) => ({ r, body: JSON.parse(r.body) as Record<string, unknown> }))
      .filter((x) => x.body.policy === policy);

  const abortLatency = async (s: Scenario, reason: string): Promise<number> => {
    const t0 = performance.now();
    await s.annotateTarget({ [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: reason });
    await s.until("aborted at 100 % stable", (x, w) => x.phase === "Aborted" && w[s.canary] === 0, 30_000);
    return performance.now() - t0;
  };

  void it("a started and an aborted notification arrive signed, with who/why, once each", async () => {
    const s = await progressing("notify-ok");
    const policy = `${s.ns}/${s.route}`;
    const started = await eventually(
      "started notification",
      () => bodies("/audit", policy).find((x) => x.body.type === "started"),
      15_000,
    );
    assert.equal(started.body.canaryWeight, 10);
    await abortLatency(s, "INC-42 (carol): checkout 5xx");
    const aborted = await eventually(
      "aborted notification",
      () => bodies("/audit", policy).find((x) => x.body.type === "aborted"),
      15_000,
    );
    const nowS = Math.floor(Date.now() / 1000);
    for (const { r } of [started, aborted]) {
      const v = verifySignature({
        secret: SECRET,
        body: r.body,
        timestamp: r.headers["x-rolloutd-timestamp"] as string,
        signature: r.headers["x-rolloutd-signature"] as string,
        nowS,
      });
      assert.deepEqual(v, { ok: true });
      assert.match(r.headers["idempotency-key"] as string, /^[0-9a-f]{32}$/);
    }
    assert.equal((aborted.body.abort as { reason: string }).reason, "INC-42 (carol): checkout 5xx");
    assert.equal(aborted.body.canaryWeight, 0);
    const slack = await eventually(
      "slack message",
      () => rx.on("/slack").find((r) => r.body.includes("INC-42")),
      15_000,
    );
    assert.match((JSON.parse(slack.body) as { text: string }).text, /Aborted: notify-ok\/web/);
    assert.equal(
      rx.on("/slack").filter((r) => r.body.includes("notify-ok/web")).length,
      1,
      "slack: aborted only",
    );
    // Nothing is sent twice: one delivery per idempotency key.
    const keys = bodies("/audit", policy).map((x) => x.r.headers["idempotency-key"]);
    assert.equal(new Set(keys).size, keys.length);
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text();
    assert.match(metrics, /rolloutd_notifications_total\{channel="audit",kind="aborted",result="sent"\} 1/);
  });

  void it("a route that loses the pair mid-rollout is told as stuck once it lasts, with the reason", async () => {
    const s = await progressing("notify-stuck");
    const policy = `${s.ns}/${s.route}`;
    // Someone edits the router so that the canary is no longer one of its targets.
    await mergePatch(c, "VirtualRouter", s.ns, `${s.route}-router`, {
      spec: {
        routes: [
          {
            name: "main",
            httpRoute: {
              match: { prefix: "/" },
              action: { weightedTargets: [{ virtualNodeRef: { name: s.stable }, weight: 100 }] },
            },
          },
        ],
      },
    });
    const stuck = await eventually(
      "stuck notification",
      () => bodies("/audit", policy).find((x) => x.body.type === "stuck"),
      20_000,
    );
    assert.match(
      String(stuck.body.message),
      /no route whose weightedTargets include both virtual nodes web-v1 and web-v2/,
    );
    assert.equal(stuck.body.phase, "Progressing");
    assert.equal(stuck.body.canaryWeight, 10);
  });

  void it("a restarted daemon does not notify again what was decided before", async () => {
    const s = await progressing("notify-restart");
    const policy = `${s.ns}/${s.route}`;
    await eventually(
      "started notification",
      () => bodies("/audit", policy).find((x) => x.body.type === "started"),
      15_000,
    );
    const before = bodies("/audit", policy).map((x) => x.r.headers["idempotency-key"]);
    await daemon.stop();
    await daemon.dispose();
    daemon = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir,
      extraArgs: [`--notify-config=${path.join(dir, "notify.yaml")}`],
    });
    // The new daemon has looked at the rollout (its state is on the live page), and decided nothing new.
    await eventually(
      "the new daemon saw the rollout",
      async () => {
        const cards = (await (await fetch(`http://127.0.0.1:${daemon.port}/ui/rollouts`)).json()) as Array<{
          policy: string;
          phase: string;
        }>;
        return cards.find((x) => x.policy === policy && x.phase === "Progressing");
      },
      15_000,
    );
    // A decision it made now would be sent at once; give a delivery time to arrive before looking.
    await new Promise((r) => setTimeout(r, 1_000));
    assert.deepEqual(
      bodies("/audit", policy).map((x) => x.r.headers["idempotency-key"]),
      before,
      "nothing sent again after the restart",
    );
    // And the next decision is sent as usual.
    await abortLatency(s, "after restart");
    await eventually(
      "aborted notification",
      () => bodies("/audit", policy).find((x) => x.body.type === "aborted"),
      15_000,
    );
  });

  void it("a receiver that never answers does not delay the abort (measured against one without it)", async () => {
    const quiet = await progressing("notify-baseline");
    const hung = await progressing(
      "notify-hang",
      `  notify:\n    - { name: pager, type: webhook, url: "${rx.url}/hang", timeout: 60s }`,
    );
    await eventually(
      "the hanging receiver holds a request",
      () => rx.on("/hang").length > 0 || undefined,
      15_000,
    );
    const baseline = await abortLatency(quiet, "baseline");
    const withHang = await abortLatency(hung, "INC-43: receiver down");
    process.stderr.write(
      `# abort → 100 % stable: ${baseline.toFixed(0)} ms without, ${withHang.toFixed(0)} ms with a receiver that never answers\n`,
    );
    // Waiting for the hanging receiver would take at least its 60 s timeout.
    assert.ok(withHang < 10_000, `abort took ${withHang.toFixed(0)} ms`);
    await eventually(
      "the abort is notified to the hanging receiver too (and hangs there)",
      () => rx.on("/hang").some((r) => r.body.includes("INC-43")) || undefined,
      15_000,
    );
    // The other channels still got it.
    await eventually(
      "audit got the abort",
      () => bodies("/audit", "notify-hang/web").find((x) => x.body.type === "aborted"),
      15_000,
    );
  });
});
