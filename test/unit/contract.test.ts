import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KObject } from "../../src/kube/kinds.ts";
import {
  ANNOTATIONS,
  MAX_REASON_CHARS,
  cleanText,
  decodeState,
  encodeState,
  readControls,
  type RolloutState,
} from "../../src/contract.ts";

const withAnnotations = (annotations?: Record<string, string>): KObject => ({
  kind: "HTTPRoute",
  metadata: { namespace: "shop", name: "web", ...(annotations ? { annotations } : {}) },
});

void describe("readControls", () => {
  void it("absent annotations: nothing requested", () => {
    const expected = {
      abort: false,
      abortReason: undefined,
      pause: false,
      start: undefined,
      retry: undefined,
      resume: undefined,
      promote: undefined,
    };
    assert.deepEqual(readControls(withAnnotations()), expected);
    assert.deepEqual(readControls(withAnnotations({ unrelated: "true" })), expected);
    assert.deepEqual(readControls({}), expected);
  });

  void it("abort and pause accept true/yes/1/on in any case and with spaces", () => {
    for (const v of ["true", "TRUE", "True", "yes", "YES", "1", "on", " true ", "\tyes\n"]) {
      const c = readControls(withAnnotations({ [ANNOTATIONS.abort]: v, [ANNOTATIONS.pause]: v }));
      assert.equal(c.abort, true, JSON.stringify(v));
      assert.equal(c.pause, true, JSON.stringify(v));
    }
    for (const v of ["false", "no", "0", "off", "", "   ", "truthy", "2", "y"]) {
      const c = readControls(withAnnotations({ [ANNOTATIONS.abort]: v, [ANNOTATIONS.pause]: v }));
      assert.equal(c.abort, false, JSON.stringify(v));
      assert.equal(c.pause, false, JSON.stringify(v));
    }
  });

  void it("abort and pause are independent", () => {
    const c = readControls(withAnnotations({ [ANNOTATIONS.pause]: "yes" }));
    assert.deepEqual([c.abort, c.pause], [false, true]);
  });

  void it("tokens and the abort reason are trimmed; blank means absent", () => {
    const c = readControls(
      withAnnotations({
        [ANNOTATIONS.abortReason]: "  latency regression  ",
        [ANNOTATIONS.start]: " 2026-01-15T12:00 ",
        [ANNOTATIONS.retry]: "r1",
        [ANNOTATIONS.resume]: "\n42\n",
        [ANNOTATIONS.promote]: "   ",
      }),
    );
    assert.equal(c.abortReason, "latency regression");
    assert.equal(c.start, "2026-01-15T12:00");
    assert.equal(c.retry, "r1");
    assert.equal(c.resume, "42");
    assert.equal(c.promote, undefined);
  });

  void it("reads the documented annotation keys", () => {
    assert.deepEqual(ANNOTATIONS, {
      abort: "rolloutd.dev/abort",
      abortReason: "rolloutd.dev/abort-reason",
      pause: "rolloutd.dev/pause",
      start: "rolloutd.dev/start",
      retry: "rolloutd.dev/retry",
      resume: "rolloutd.dev/resume",
      promote: "rolloutd.dev/promote",
      state: "rolloutd.dev/state",
      stage: "rolloutd.dev/stage",
    });
  });
});

void describe("abort reasons are cleaned and bounded", () => {
  void it("a 200 KB reason is kept to MAX_REASON_CHARS characters, ending in an ellipsis", () => {
    const huge = "x".repeat(200_000);
    const c = readControls(withAnnotations({ [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: huge }));
    assert.equal(c.abort, true);
    assert.equal([...c.abortReason!].length, MAX_REASON_CHARS);
    assert.ok(c.abortReason!.endsWith("…"));
  });

  void it("control characters and escapes never reach the state; white space folds", () => {
    const raw = "db\u001b[31m on fire\n\r\tsee\u0000 runbook\u0085 \u2028x";
    assert.equal(cleanText(raw), "db [31m on fire see runbook x");
  });

  void it("a cut never splits a character made of two UTF-16 units", () => {
    const text = "😀".repeat(10);
    const cut = cleanText(text, 4);
    assert.equal(cut, "😀😀😀…");
    assert.ok(!/[\ud800-\udbff]$/.test(cut.slice(0, -1)), "no lone high surrogate before the ellipsis");
  });

  void it("a reason of only white space or control characters counts as no reason", () => {
    const c = readControls(
      withAnnotations({ [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: " \u0007\n " }),
    );
    assert.equal(c.abortReason, undefined);
  });

  void it("one-shot tokens are cleaned and capped too", () => {
    const c = readControls(withAnnotations({ [ANNOTATIONS.retry]: `a\nb${"z".repeat(1000)}` }));
    assert.ok(c.retry!.startsWith("a b"));
    assert.equal([...c.retry!].length, 256);
  });
});

void describe("state encoding", () => {
  const base: RolloutState = {
    v: 1,
    phase: "Progressing",
    stable: "a",
    canary: "b",
    baseline: {},
    stepIndex: 0,
    canaryWeight: 5,
    failures: 0,
    noData: 0,
    errors: 0,
    tokens: {},
    message: "m",
    since: 1,
    updatedAt: 1,
  };

  void it("+Inf, -Inf and NaN measured values survive the round trip (JSON has none of them)", () => {
    const s: RolloutState = {
      ...base,
      lastAnalysis: {
        at: 1,
        stepIndex: 0,
        canaryWeight: 5,
        verdict: "fail",
        summary: "s",
        checks: [
          { name: "p99", value: Number.POSITIVE_INFINITY, outcome: "value", max: 500, verdict: "fail" },
          { name: "low", value: Number.NEGATIVE_INFINITY, outcome: "value", verdict: "pass" },
          { name: "n", value: Number.NaN, outcome: "nan", verdict: "noData" },
          { name: "none", value: null, outcome: "noData", verdict: "noData" },
        ],
      },
    };
    const back = decodeState(encodeState(s));
    assert.deepEqual(
      back.lastAnalysis!.checks.map((c) => c.value),
      [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, null],
    );
  });

  void it("an older state's applied weights by backend name are dropped, not misread", () => {
    const raw = JSON.stringify({ ...base, applied: { a: 95, b: 5 } });
    assert.equal(decodeState(raw).applied, undefined);
  });
});
