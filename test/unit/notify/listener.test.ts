/**
 * Which decisions become which notifications, the idempotency key that
 * makes one decision one message across replicas and restarts, and the
 * channel configuration (global file and a policy's spec.notify).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RolloutState } from "../../../src/contract.ts";
import { parseNotifyConfig, NotifyConfigError } from "../../../src/notify/config.ts";
import { NotifyListener, kindOf } from "../../../src/notify/listener.ts";
import type { ChannelSpec, Notification, Notifier } from "../../../src/notify/types.ts";
import { parsePolicyFile } from "../../../src/policy/load.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";

const state = (over: Partial<RolloutState> = {}): RolloutState => ({
  v: 1,
  phase: "Progressing",
  stable: "web-v1",
  canary: "web-v2",
  revision: "abc",
  baseline: {},
  stepIndex: 1,
  canaryWeight: 50,
  failures: 0,
  noData: 0,
  errors: 0,
  tokens: {},
  message: "",
  since: 1,
  updatedAt: 1_000,
  ...over,
});

class Collect implements Notifier {
  readonly sent: Array<{ n: Notification; channels: readonly ChannelSpec[] }> = [];
  notify(n: Notification, channels: readonly ChannelSpec[]): void {
    this.sent.push({ n, channels });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const policyText = `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: web, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: web }
  stable: web-v1
  canary: web-v2
  steps: [10, 50, 100]
  notify:
    - { type: slack, urlFile: /secrets/slack-url, on: [rolledBack, aborted] }
    - { type: webhook, url: "http://127.0.0.1:9/hook", secretFile: /secrets/hmac, timeout: 2s }
`;

function policy(): RolloutPolicy {
  const r = parsePolicyFile("p.yaml", policyText);
  assert.equal(r.errors.length, 0, r.errors.map((e) => e.format()).join("\n"));
  return r.policies[0]!;
}

void describe("notifications: what is sent", () => {
  void it("maps decisions to kinds; only the first hold of a run says stuck", () => {
    assert.equal(kindOf("RolloutStarted", state()), "started");
    assert.equal(kindOf("RolloutRestarted", state()), "started");
    assert.equal(kindOf("RolledBack", state()), "rolledBack");
    assert.equal(kindOf("Aborted", state()), "aborted");
    assert.equal(kindOf("Promoted", state()), "promoted");
    assert.equal(kindOf("WeightsDrifted", state()), "stuck");
    assert.equal(kindOf("RouteNotAccepted", state()), "stuck");
    assert.equal(kindOf("HoldExpired", state({ phase: "Paused" })), "stuck");
    assert.equal(kindOf("InStepBreach", state({ failures: 1 })), "stepFailed");
    assert.equal(kindOf("AnalysisNotPassed", state({ failures: 1 })), "stepFailed");
    assert.equal(kindOf("AnalysisNotPassed", state({ noData: 1 })), "stuck");
    assert.equal(kindOf("AnalysisNotPassed", state({ noData: 2 })), undefined);
    assert.equal(kindOf("AnalysisNotPassed", state({ errors: 1 })), "stuck");
    assert.equal(kindOf("StepAdvanced", state()), undefined);
    assert.equal(kindOf("Adopted", state()), undefined);
  });

  void it("a decision has one key on every replica and after a restart; another decision another key", () => {
    const p = policy();
    const a = new Collect();
    const b = new Collect();
    const abort = state({
      phase: "Aborted",
      canaryWeight: 0,
      abort: { at: 900, reason: "INC-9 (bob): 5xx" },
    });
    const ann = [
      { type: "record" as const, severity: "Warning" as const, reason: "Aborted", message: "aborted" },
    ];
    new NotifyListener(a, []).decided(p, abort, ann);
    new NotifyListener(b, []).decided(p, abort, ann);
    new NotifyListener(b, []).decided(p, { ...abort, updatedAt: 2_000 }, ann);
    assert.equal(a.sent.length, 1);
    assert.equal(a.sent[0]!.n.key, b.sent[0]!.n.key);
    assert.notEqual(b.sent[0]!.n.key, b.sent[1]!.n.key);
    assert.deepEqual(a.sent[0]!.n.abort, { reason: "INC-9 (bob): 5xx", at: new Date(900).toISOString() });
    assert.deepEqual(
      a.sent[0]!.channels.map((c) => c.name),
      ["shop/web/slack", "shop/web/webhook"],
    );
  });

  void it("global channels come first; a warning that persists is a stuck notification", async () => {
    const { channels: global } = parseNotifyConfig(
      "notify.yaml",
      "channels:\n  - { name: ops, type: teams, url: 'https://example.invalid/x' }\n",
    );
    const c = new Collect();
    const l = new NotifyListener(c, global, { stuckAfterMs: 20 });
    const p = policy();
    const settle = () => new Promise((r) => setTimeout(r, 60));
    l.problem(p, "warn", "no state seen yet: nothing to describe");
    await settle();
    assert.equal(c.sent.length, 0);
    l.observed(p, state());
    l.problem(p, "info", "routine");
    await settle();
    assert.equal(c.sent.length, 0, "info is routine");
    // Gone before it persisted: a pass reached the state again, or a decision was written.
    l.problem(p, "warn", "the watch of HTTPRoute is re-establishing");
    l.observed(p, state());
    l.problem(p, "warn", "transient");
    l.decided(p, state({ updatedAt: 2_000 }), []);
    await settle();
    assert.equal(c.sent.length, 0, "problems that did not persist are not told");
    l.problem(p, "warn", "the route no longer holds the pair");
    assert.equal(c.sent.length, 0, "not before it persisted");
    for (let waited = 0; c.sent.length === 0 && waited < 5_000; waited += 10)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(c.sent.length, 1);
    assert.equal(c.sent[0]!.n.kind, "stuck");
    assert.equal(c.sent[0]!.n.message, "the route no longer holds the pair");
    assert.deepEqual(
      c.sent[0]!.channels.map((x) => x.name),
      ["ops", "shop/web/slack", "shop/web/webhook"],
    );
  });

  void it("refuses bad channel configuration with the field", () => {
    assert.throws(
      () => parseNotifyConfig("n.yaml", "channels:\n  - { type: slack }\n"),
      (e: Error) =>
        e instanceof NotifyConfigError &&
        /channels\.0\.url: set exactly one of url and urlFile/.test(e.message),
    );
    assert.throws(
      () => parseNotifyConfig("n.yaml", "channels:\n  - { type: slack, url: 'http://x', secretFile: /k }\n"),
      /secretFile is for type webhook/,
    );
    assert.throws(
      () =>
        parseNotifyConfig(
          "n.yaml",
          "channels:\n  - { name: a, type: slack, url: 'http://x' }\n  - { name: a, type: teams, url: 'http://y' }\n",
        ),
      /used twice/,
    );
    const bad = parsePolicyFile("p.yaml", policyText.replace("on: [rolledBack, aborted]", "on: [exploded]"));
    assert.equal(bad.errors.length, 1);
    assert.match(bad.errors[0]!.format(), /p\.yaml:10:\d+ spec\.notify\[0\]\.on\[0\]/);
  });
});
