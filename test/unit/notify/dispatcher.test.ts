/**
 * Notification delivery against a real HTTP receiver on 127.0.0.1: the
 * signature a receiver checks, retries with the same idempotency key,
 * final answers, duplicates, secrets read from files, and a receiver that
 * never answers holding up neither notify() nor the other channels.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { NotificationDispatcher } from "../../../src/notify/dispatcher.ts";
import { IDEMPOTENCY_HEADER, sign, verifySignature } from "../../../src/notify/sign.ts";
import type { ChannelSpec, Notification } from "../../../src/notify/types.ts";
import { Receiver } from "../../support/receiver.ts";

const silent = pino({ level: "silent" });

function notification(over: Partial<Notification> = {}): Notification {
  return {
    kind: "aborted",
    key: "k-1",
    policy: "shop/checkout",
    route: { kind: "HTTPRoute", namespace: "shop", name: "checkout" },
    reason: "Aborted",
    message: "aborted: INC-7 (alice): checkout 5xx; all traffic on checkout-v1",
    phase: "Aborted",
    step: 0,
    steps: 3,
    canaryWeight: 0,
    stable: "checkout-v1",
    canary: "checkout-v2",
    revision: "7f9c",
    abort: { reason: "INC-7 (alice): checkout 5xx", at: "2026-11-30T09:00:00.000Z" },
    at: "2026-11-30T09:00:00.000Z",
    ...over,
  };
}

async function metric(reg: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await reg.getSingleMetric(name)?.get())?.values ?? [];
  const hit = m.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return hit?.value ?? 0;
}

async function until(what: string, pred: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

void describe("notification delivery", () => {
  const rx = new Receiver();
  let dir: string;
  const secret = "s3cret-key";

  before(async () => {
    await rx.start();
    dir = mkdtempSync(path.join(tmpdir(), "rolloutd-notify-"));
    writeFileSync(path.join(dir, "hmac"), `${secret}\n`);
  });
  after(async () => {
    await rx.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const make = (
    reg = new Registry(),
    over: Partial<ConstructorParameters<typeof NotificationDispatcher>[0]> = {},
  ) => new NotificationDispatcher({ log: silent, registry: reg, retry: { baseMs: 5, maxMs: 20 }, ...over });

  void it("signs webhooks so a receiver can verify them; tampering, another key or an old timestamp fail", async () => {
    const d = make();
    const ch: ChannelSpec = {
      name: "audit",
      type: "webhook",
      url: `${rx.url}/signed`,
      secretFile: path.join(dir, "hmac"),
    };
    d.notify(notification(), [ch]);
    await d.drained();
    const [r] = rx.on("/signed");
    assert.ok(r);
    const ts = r.headers["x-rolloutd-timestamp"] as string;
    const sig = r.headers["x-rolloutd-signature"] as string;
    const nowS = Math.floor(Date.now() / 1000);
    assert.deepEqual(verifySignature({ secret, body: r.body, timestamp: ts, signature: sig, nowS }), {
      ok: true,
    });
    assert.equal(sig, sign(secret, Number(ts), r.body));
    assert.equal(r.headers[IDEMPOTENCY_HEADER], "k-1");
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(body.kind, "RolloutNotification");
    assert.equal(body.type, "aborted");
    assert.deepEqual(body.abort, { reason: "INC-7 (alice): checkout 5xx", at: "2026-11-30T09:00:00.000Z" });
    const bad = (o: Partial<Parameters<typeof verifySignature>[0]>) =>
      verifySignature({ secret, body: r.body, timestamp: ts, signature: sig, nowS, ...o }).ok;
    assert.equal(bad({ body: r.body.replace("alice", "mallory") }), false);
    assert.equal(bad({ secret: "other" }), false);
    assert.equal(bad({ nowS: nowS + 301 }), false);
    assert.equal(bad({ signature: undefined }), false);
  });

  void it("retries 5xx, 429 and a timeout with backoff, the same idempotency key each time", async () => {
    const reg = new Registry();
    const d = make(reg, { timeoutMs: 150 });
    rx.script.set("/flaky", [503, 429, "hang", 200]);
    d.notify(notification({ key: "k-retry" }), [{ name: "flaky", type: "webhook", url: `${rx.url}/flaky` }]);
    await d.drained();
    const got = rx.on("/flaky");
    assert.equal(got.length, 4);
    assert.deepEqual(new Set(got.map((g) => g.headers[IDEMPOTENCY_HEADER])), new Set(["k-retry"]));
    assert.equal(await metric(reg, "rolloutd_notifications_total", { channel: "flaky", result: "sent" }), 1);
    assert.equal(
      await metric(reg, "rolloutd_notification_attempts_total", { channel: "flaky", outcome: "retry" }),
      3,
    );
  });

  void it("gives up after the last attempt, and at once on a 4xx", async () => {
    const reg = new Registry();
    const d = make(reg, { retry: { attempts: 3, baseMs: 5, maxMs: 10 } });
    rx.script.set("/down", [500, 500, 500, 500]);
    rx.script.set("/gone", [404]);
    d.notify(notification({ key: "k-down" }), [
      { name: "down", type: "webhook", url: `${rx.url}/down` },
      { name: "gone", type: "webhook", url: `${rx.url}/gone` },
    ]);
    await d.drained();
    assert.equal(rx.on("/down").length, 3);
    assert.equal(rx.on("/gone").length, 1);
    assert.equal(await metric(reg, "rolloutd_notifications_total", { channel: "down", result: "failed" }), 1);
    assert.equal(await metric(reg, "rolloutd_notifications_total", { channel: "gone", result: "failed" }), 1);
  });

  void it("sends a decision once per channel however often it is handed over", async () => {
    const reg = new Registry();
    const d = make(reg);
    const ch: ChannelSpec = { name: "dup", type: "webhook", url: `${rx.url}/dup` };
    d.notify(notification({ key: "k-dup" }), [ch]);
    d.notify(notification({ key: "k-dup" }), [ch]);
    d.notify(notification({ key: "k-other" }), [ch]);
    await d.drained();
    assert.deepEqual(
      rx
        .on("/dup")
        .map((g) => g.headers[IDEMPOTENCY_HEADER])
        .sort(),
      ["k-dup", "k-other"],
    );
    assert.equal(
      await metric(reg, "rolloutd_notifications_total", { channel: "dup", result: "duplicate" }),
      1,
    );
  });

  void it("a receiver that never answers holds up neither notify() nor the other channels", async () => {
    const reg = new Registry();
    const d = make(reg, { timeoutMs: 60_000 });
    rx.script.set("/hang", ["hang", "hang", "hang"]);
    const t0 = performance.now();
    // More hanging deliveries than a channel may have in flight: the other channel still gets through.
    for (const key of ["k-hang-1", "k-hang-2"])
      d.notify(notification({ key }), [{ name: "hang", type: "webhook", url: `${rx.url}/hang` }]);
    d.notify(notification({ key: "k-hang" }), [
      { name: "hang", type: "webhook", url: `${rx.url}/hang` },
      { name: "ok", type: "webhook", url: `${rx.url}/ok` },
    ]);
    const handOver = performance.now() - t0;
    await until("the other channel delivered", () => rx.on("/ok").length === 1);
    await until("the hanging receiver got its requests", () => rx.on("/hang").length === 2);
    // The delivered one settles (its answer is read) a moment after the receiver saw it; the hanging ones stay.
    await until("only the hanging deliveries pending", () => d.pending === 3);
    assert.equal(rx.on("/hang").length, 2, "2 in flight on the hanging channel, the third waits its turn");
    process.stderr.write(
      `# notify() returned in ${handOver.toFixed(2)} ms with a receiver that never answers\n`,
    );
    await d.close();
    assert.equal(d.pending, 0);
  });

  void it("reads Slack and Teams URLs from files and sends their formats; `on` filters kinds", async () => {
    writeFileSync(path.join(dir, "slack-url"), `${rx.url}/slack\n`);
    writeFileSync(path.join(dir, "teams-url"), `${rx.url}/teams`);
    const d = make();
    const channels: ChannelSpec[] = [
      { name: "slack", type: "slack", urlFile: path.join(dir, "slack-url") },
      { name: "teams", type: "teams", urlFile: path.join(dir, "teams-url"), on: ["rolledBack"] },
    ];
    d.notify(notification({ key: "k-fmt" }), channels);
    d.notify(
      notification({
        key: "k-rb",
        kind: "rolledBack",
        reason: "RolledBack",
        message: "analysis failed (1/1 consecutive)",
        checks: [{ name: "p99-latency", value: 612, outcome: "value", max: 500, verdict: "fail" }],
      }),
      channels,
    );
    await d.drained();
    const slack = rx.on("/slack").map((g) => JSON.parse(g.body) as { text: string });
    assert.equal(slack.length, 2);
    // Two deliveries to one channel may be in flight together: they arrive in either order.
    const aborted = slack.find((m) => m.text.includes("Aborted: shop/checkout"));
    const rolledBack = slack.find((m) => m.text.includes("Rolled back: shop/checkout"));
    assert.match(aborted?.text ?? "", /Who \/ why:\* INC-7 \(alice\): checkout 5xx/);
    assert.match(rolledBack?.text ?? "", /p99-latency=612 \(max 500\) ✗/);
    const teams = rx
      .on("/teams")
      .map(
        (g) =>
          JSON.parse(g.body) as { attachments: Array<{ contentType: string; content: { type: string } }> },
      );
    assert.equal(teams.length, 1, "only rolledBack goes to this Teams channel");
    assert.equal(teams[0]!.attachments[0]!.contentType, "application/vnd.microsoft.card.adaptive");
    assert.equal(teams[0]!.attachments[0]!.content.type, "AdaptiveCard");
  });
});
