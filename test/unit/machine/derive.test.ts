import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { AnalysisReport } from "../../../src/analysis/types.ts";
import type { AppliedWeight, Controls, RolloutState } from "../../../src/contract.ts";
import { derive, earlyKey, stepKey, type Derived, type Facts } from "../../../src/machine/derive.ts";
import { initialState } from "../../../src/machine/state.ts";

const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);
const INTERVAL = 60_000;
const TIMING = { intervalMs: INTERVAL, routeReadyTimeoutMs: 30_000, holdAfterMs: 600_000 };
const P0 = "/spec/rules/0/backendRefs/0/weight";
const P1 = "/spec/rules/0/backendRefs/1/weight";

const pair = (stable: number, canary: number): AppliedWeight[] => [
  { path: P0, backend: "blue", weight: stable },
  { path: P1, backend: "green", weight: canary },
];

const NO_CONTROLS: Controls = { abort: false, pause: false };

const REPORT: AnalysisReport = { verdict: "pass", checks: [], summary: "ok", windowSeconds: 60 };

function steady(): RolloutState {
  return initialState({ stable: "blue", canary: "green", baseline: { blue: "r1", green: "r1" }, now: T0 });
}

function progressing(over: Partial<RolloutState> = {}): RolloutState {
  return {
    ...steady(),
    phase: "Progressing",
    revision: "r2",
    baseline: { blue: "r1", green: "r2" },
    stepIndex: 1,
    canaryWeight: 10,
    applied: pair(90, 10),
    weightsWrittenAt: T0,
    stepStartedAt: T0,
    analysisDueAt: T0 + INTERVAL,
    ...over,
  };
}

function facts(over: Partial<Facts> = {}): Facts {
  return {
    controls: NO_CONTROLS,
    revisions: { blue: "r1", green: "r2" },
    readiness: {},
    pair: pair(90, 10),
    accepted: true,
    analysis: { kind: "none" },
    ...over,
  };
}

const kindOf = (d: Derived): string => (d.kind === "event" ? d.event.type : d.kind);

void describe("derive: facts in, one event out", () => {
  const due = T0 + INTERVAL + 1;
  // [name, state, facts, now, expected event type or derived kind]
  const cases: Array<[string, RolloutState, Facts, number, string]> = [
    [
      "abort wins over everything",
      progressing(),
      facts({ controls: { ...NO_CONTROLS, abort: true, pause: true, promote: "x" } }),
      due,
      "ABORT",
    ],
    [
      "abort wins over a finished analysis",
      progressing(),
      facts({
        controls: { ...NO_CONTROLS, abort: true },
        analysis: { kind: "done", step: stepKey(progressing()), report: REPORT },
      }),
      due,
      "ABORT",
    ],
    [
      "abort does not wait for an analysis in flight",
      progressing(),
      facts({
        controls: { ...NO_CONTROLS, abort: true },
        analysis: { kind: "running", step: stepKey(progressing()) },
      }),
      due,
      "ABORT",
    ],
    [
      "aborted and at stable: nothing more",
      { ...progressing(), phase: "Aborted", stepIndex: -1, canaryWeight: 0, applied: pair(100, 0) },
      facts({ controls: { ...NO_CONTROLS, abort: true }, pair: pair(100, 0) }),
      due,
      "wait",
    ],
    [
      "aborted but someone moved traffic back: abort again",
      { ...progressing(), phase: "Aborted", stepIndex: -1, canaryWeight: 0, applied: pair(100, 0) },
      facts({ controls: { ...NO_CONTROLS, abort: true }, pair: pair(70, 30) }),
      due,
      "ABORT",
    ],
    [
      "aborted at stable in one location but not another: abort again",
      { ...progressing(), phase: "Aborted" },
      facts({
        controls: { ...NO_CONTROLS, abort: true },
        pair: [...pair(100, 0), { path: "/spec/rules/1/backendRefs/1/weight", backend: "green", weight: 3 }],
      }),
      due,
      "ABORT",
    ],
    ["promote token", progressing(), facts({ controls: { ...NO_CONTROLS, promote: "t1" } }), due, "PROMOTE"],
    [
      "promote token already used",
      progressing({ tokens: { promote: "t1" } }),
      facts({ controls: { ...NO_CONTROLS, promote: "t1" } }),
      T0 + 1,
      "wait",
    ],
    [
      "promote at rest is not offered",
      steady(),
      facts({ controls: { ...NO_CONTROLS, promote: "t1" }, revisions: { blue: "r1", green: "r1" } }),
      due,
      "wait",
    ],
    ["new canary revision", steady(), facts(), due, "NEW_REVISION"],
    [
      "new canary revision still rolling out: wait",
      steady(),
      facts({ readiness: { green: { ready: false, detail: "1/2" } } }),
      due,
      "wait",
    ],
    [
      "start token at rest",
      steady(),
      facts({ revisions: { blue: "r1", green: "r1" }, controls: { ...NO_CONTROLS, start: "s" } }),
      due,
      "START",
    ],
    [
      "retry token at rest",
      { ...steady(), phase: "RolledBack" },
      facts({ revisions: { blue: "r1", green: "r1" }, controls: { ...NO_CONTROLS, retry: "r" } }),
      due,
      "RETRY",
    ],
    [
      "paused by annotation, annotation gone: resume",
      progressing({ phase: "Paused", pausedBy: "annotation" }),
      facts(),
      due,
      "RESUME",
    ],
    [
      "paused by annotation, still annotated: wait",
      progressing({ phase: "Paused", pausedBy: "annotation" }),
      facts({ controls: { ...NO_CONTROLS, pause: true } }),
      due,
      "wait",
    ],
    [
      "paused by drift, weights back as written: resume",
      progressing({ phase: "Paused", pausedBy: "drift" }),
      facts(),
      due,
      "RESUME",
    ],
    [
      "paused by drift, weights still moved: wait",
      progressing({ phase: "Paused", pausedBy: "drift" }),
      facts({ pair: pair(50, 50) }),
      due,
      "wait",
    ],
    [
      "pause annotation while progressing",
      progressing(),
      facts({ controls: { ...NO_CONTROLS, pause: true } }),
      due,
      "PAUSE",
    ],
    ["weights moved by someone else", progressing(), facts({ pair: pair(50, 50) }), due, "DRIFT"],
    [
      "a location we wrote disappeared: drift",
      progressing(),
      facts({ pair: pair(90, 10).slice(0, 1) }),
      due,
      "DRIFT",
    ],
    [
      "a new location we never wrote is not drift",
      progressing(),
      facts({
        pair: [...pair(90, 10), { path: "/spec/rules/1/backendRefs/0/weight", backend: "blue", weight: 1 }],
      }),
      T0 + 1,
      "wait",
    ],
    [
      "awaiting acceptance, accepted",
      progressing({ stepStartedAt: undefined, analysisDueAt: undefined }),
      facts(),
      T0 + 1,
      "ACCEPTED",
    ],
    [
      "awaiting acceptance, not yet, within timeout",
      progressing({ stepStartedAt: undefined, analysisDueAt: undefined }),
      facts({ accepted: false }),
      T0 + 1000,
      "wait",
    ],
    [
      "awaiting acceptance past the timeout",
      progressing({ stepStartedAt: undefined, analysisDueAt: undefined }),
      facts({ accepted: false, acceptanceDetail: "Gateway gw: no status" }),
      T0 + 31_000,
      "NOT_ACCEPTED",
    ],
    [
      "awaiting acceptance past the timeout, already warned",
      progressing({ stepStartedAt: undefined, analysisDueAt: undefined, acceptWarned: true }),
      facts({ accepted: false }),
      T0 + 31_000,
      "wait",
    ],
    ["before the step's deadline", progressing(), facts(), T0 + 1000, "wait"],
    [
      "deadline passed, window closed",
      progressing(),
      facts({ window: { open: false, nextOpen: due + 5000, expression: "* 9-17 * * *" } }),
      due,
      "wait",
    ],
    ["deadline passed: start the analysis", progressing(), facts(), due, "analyze"],
    [
      "analysis for this step in flight: wait",
      progressing(),
      facts({ analysis: { kind: "running", step: stepKey(progressing()) } }),
      due,
      "wait",
    ],
    [
      "analysis for this step done: ANALYSIS",
      progressing(),
      facts({ analysis: { kind: "done", step: stepKey(progressing()), report: REPORT } }),
      due,
      "ANALYSIS",
    ],
    [
      "a result for another step is not used: analyse this one",
      progressing(),
      facts({ analysis: { kind: "done", step: "r2|0|1", report: REPORT } }),
      due,
      "analyze",
    ],
  ];

  for (const [name, state, f, now, want] of cases) {
    void it(`${name} → ${want}`, () => {
      const before = structuredClone({ state, f });
      const d = derive(state, f, now, TIMING);
      assert.equal(kindOf(d), want);
      assert.deepEqual({ state, f }, before, "derive mutates nothing");
    });
  }

  void it("the abort carries the operator's reason, or says where it came from", () => {
    const withReason = derive(
      progressing(),
      facts({ controls: { ...NO_CONTROLS, abort: true, abortReason: "INC-42" } }),
      due,
      TIMING,
    );
    assert.equal(
      withReason.kind === "event" && withReason.event.type === "ABORT" && withReason.event.reason,
      "INC-42",
    );
    const without = derive(progressing(), facts({ controls: { ...NO_CONTROLS, abort: true } }), due, TIMING);
    assert.match(
      without.kind === "event" && without.event.type === "ABORT" ? without.event.reason : "",
      /rolloutd.dev\/abort/,
    );
  });

  void it("a wait before the deadline requeues exactly at the deadline", () => {
    const d = derive(progressing(), facts(), T0 + 15_000, TIMING);
    assert.deepEqual(d, { kind: "wait", requeueAfterMs: INTERVAL - 15_000 });
  });

  void it("analyze names the step's window and its deadline", () => {
    const s = progressing();
    assert.deepEqual(derive(s, facts(), due, TIMING), {
      kind: "analyze",
      step: stepKey(s),
      dueAt: T0 + INTERVAL,
    });
  });

  void it("a new step window (retry after a failure restarts it) is a different analysis", () => {
    assert.notEqual(stepKey(progressing()), stepKey(progressing({ stepStartedAt: T0 + 5 })));
    assert.notEqual(stepKey(progressing()), stepKey(progressing({ stepIndex: 2 })));
    assert.notEqual(stepKey(progressing()), stepKey(progressing({ revision: "r3" })));
  });
});

void describe("derive: holds have a deadline; checks run during the step", () => {
  const due = T0 + INTERVAL;
  void it("a hold older than holdAfterMs expires, naming what it held for", () => {
    const s = progressing({
      heldSince: T0,
      holdReason: "no data or too few requests",
      analysisDueAt: T0 + 700_000,
    });
    const d = derive(s, facts(), T0 + 600_000, TIMING);
    assert.equal(kindOf(d), "HOLD_EXPIRED");
    assert.match(
      d.kind === "event" && d.event.type === "HOLD_EXPIRED" ? d.event.reason : "",
      /10 min: no data or too few requests/,
    );
    assert.equal(kindOf(derive(s, facts(), T0 + 599_000, TIMING)), "wait");
  });

  void it("parents that never accept end in HOLD_EXPIRED after holdAfterMs", () => {
    const s = progressing({ stepStartedAt: undefined, analysisDueAt: undefined, acceptWarned: true });
    assert.equal(kindOf(derive(s, facts({ accepted: false }), T0 + 600_000, TIMING)), "HOLD_EXPIRED");
  });

  void it("the wait before the deadline ends at the hold's deadline when that comes first", () => {
    const s = progressing({ heldSince: T0 - 590_000 });
    assert.deepEqual(derive(s, facts(), T0 + 1_000, TIMING), { kind: "wait", requeueAfterMs: 9_000 });
  });

  void it("an in-step evaluation is started when due, waited for, and its result is an early ANALYSIS", () => {
    const s = progressing();
    const at = T0 + 10_000;
    const key = earlyKey(stepKey(s), at);
    assert.deepEqual(derive(s, facts({ nextEarlyAt: at }), T0 + 5_000, TIMING), {
      kind: "wait",
      requeueAfterMs: 5_000,
    });
    assert.deepEqual(derive(s, facts({ nextEarlyAt: at }), at, TIMING), {
      kind: "analyze",
      step: key,
      dueAt: at,
    });
    assert.equal(
      kindOf(derive(s, facts({ nextEarlyAt: at, analysis: { kind: "running", step: key } }), at + 1, TIMING)),
      "wait",
    );
    const done = derive(
      s,
      facts({ nextEarlyAt: at, analysis: { kind: "done", step: key, report: REPORT } }),
      at + 1,
      TIMING,
    );
    assert.ok(done.kind === "event" && done.event.type === "ANALYSIS" && done.event.early === true);
  });

  void it("at the deadline the step's own analysis runs, not an in-step one", () => {
    const s = progressing();
    assert.deepEqual(derive(s, facts({ nextEarlyAt: due + 5_000 }), due, TIMING), {
      kind: "analyze",
      step: stepKey(s),
      dueAt: due,
    });
  });

  void it("abort still wins over an in-step evaluation in flight", () => {
    const s = progressing();
    const key = earlyKey(stepKey(s), T0 + 10_000);
    const d = derive(
      s,
      facts({
        controls: { ...NO_CONTROLS, abort: true },
        nextEarlyAt: T0 + 10_000,
        analysis: { kind: "running", step: key },
      }),
      T0 + 11_000,
      TIMING,
    );
    assert.equal(kindOf(d), "ABORT");
  });
});
