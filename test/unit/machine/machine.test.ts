import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  decide,
  judge,
  type Effect,
  type EventSeverity,
  type RolloutEvent,
  type Settings,
} from "../../../src/machine/machine.ts";
import { initialState } from "../../../src/machine/state.ts";
import type { AnalysisReport, AnalysisVerdict } from "../../../src/analysis/types.ts";
import {
  PHASES,
  StateDecodeError,
  decodeState,
  encodeState,
  type Phase,
  type RolloutState,
} from "../../../src/contract.ts";

const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);
const INTERVAL = 60_000;
const STEPS = [5, 10, 25, 50, 100];
const NOW = T0 + 10 * INTERVAL;
const REVISIONS = { blue: "blue-r1", green: "green-r2" };

function settings(over: Partial<Settings> = {}): Settings {
  return {
    steps: STEPS,
    intervalMs: INTERVAL,
    failureLimit: 1,
    onNoData: "hold",
    noDataLimit: 3,
    onError: { action: "hold", limit: 5 },
    needsAcceptance: false,
    ...over,
  };
}

function report(verdict: AnalysisVerdict): AnalysisReport {
  return {
    verdict,
    checks: [
      {
        name: "p99-latency",
        query: "histogram_quantile(0.99, ...)",
        outcome:
          verdict === "pass" || verdict === "fail" ? { kind: "value", value: 420 } : { kind: "noData" },
        max: 500,
        verdict: verdict === "pass" ? "pass" : verdict === "fail" ? "fail" : "noData",
        reason: "p99-latency 420",
      },
    ],
    summary: `analysis ${verdict}`,
    windowSeconds: 60,
  };
}

type EventKind =
  | "NEW_REVISION"
  | "START"
  | "RETRY"
  | "ABORT"
  | "PAUSE"
  | "RESUME"
  | "ACCEPTED"
  | "NOT_ACCEPTED"
  | "DRIFT"
  | "ANALYSIS:pass"
  | "ANALYSIS:fail"
  | "ANALYSIS:inconclusive"
  | "ANALYSIS:error"
  | "PROMOTE";

const EVENT_KINDS: EventKind[] = [
  "NEW_REVISION",
  "START",
  "RETRY",
  "ABORT",
  "PAUSE",
  "RESUME",
  "ACCEPTED",
  "NOT_ACCEPTED",
  "DRIFT",
  "ANALYSIS:pass",
  "ANALYSIS:fail",
  "ANALYSIS:inconclusive",
  "ANALYSIS:error",
  "PROMOTE",
];

function eventOf(kind: EventKind, now = NOW, revisions: Record<string, string> = REVISIONS): RolloutEvent {
  const base = { now, revisions };
  switch (kind) {
    case "NEW_REVISION":
      return { type: "NEW_REVISION", revision: "rev-new", ...base };
    case "START":
      return { type: "START", token: "start-1", revision: "rev-new", ...base };
    case "RETRY":
      return { type: "RETRY", token: "retry-1", revision: "rev-new", ...base };
    case "ABORT":
      return { type: "ABORT", reason: "bad canary", ...base };
    case "PAUSE":
      return { type: "PAUSE", ...base };
    case "RESUME":
      return { type: "RESUME", ...base };
    case "ACCEPTED":
      return { type: "ACCEPTED", ...base };
    case "NOT_ACCEPTED":
      return { type: "NOT_ACCEPTED", reason: "Gateway shop/gw: no status yet", ...base };
    case "DRIFT":
      return { type: "DRIFT", observed: { blue: 50, green: 50 }, ...base };
    case "PROMOTE":
      return { type: "PROMOTE", token: "promote-1", ...base };
    default:
      return { type: "ANALYSIS", report: report(kind.slice("ANALYSIS:".length) as AnalysisVerdict), ...base };
  }
}

/** A state in each phase, as the controller would have persisted it. Blue is stable, except after a promotion. */
function stateIn(phase: Phase): RolloutState {
  const base = initialState({ stable: "blue", canary: "green", baseline: { blue: "blue-r1" }, now: T0 });
  const running: RolloutState = {
    ...base,
    phase: "Progressing",
    revision: "green-r2",
    baseline: { blue: "blue-r1", green: "green-r2" },
    stepIndex: 2,
    canaryWeight: 25,
    applied: [
      { path: "/spec/rules/0/backendRefs/0/weight", backend: "blue", weight: 75 },
      { path: "/spec/rules/0/backendRefs/1/weight", backend: "green", weight: 25 },
    ],
    weightsWrittenAt: T0,
    stepStartedAt: T0,
    analysisDueAt: T0 + INTERVAL,
    message: "step 3/5",
  };
  switch (phase) {
    case "Steady":
      return base;
    case "Progressing":
      return running;
    case "Paused":
      return { ...running, phase: "Paused", pausedBy: "annotation" };
    case "Promoted":
      return {
        ...base,
        phase: "Promoted",
        stable: "green",
        canary: "blue",
        revision: "green-r2",
        baseline: { blue: "blue-r1", green: "green-r2" },
      };
    case "RolledBack":
      return {
        ...base,
        phase: "RolledBack",
        revision: "green-r2",
        baseline: { blue: "blue-r1", green: "green-r2" },
      };
    case "Aborted":
      return { ...base, phase: "Aborted", abort: { at: T0, reason: "earlier abort" } };
  }
}

type ExpectedEffect = { w: [number, string, string] } | { r: [EventSeverity, string] };
type Expected = "ignored" | { phase: Phase; step: [number, number]; effects: ExpectedEffect[] };

const W = (canaryPercent: number, stable: string, canary: string): ExpectedEffect => ({
  w: [canaryPercent, stable, canary],
});
const R = (severity: EventSeverity, reason: string): ExpectedEffect => ({ r: [severity, reason] });
const I = "ignored" as const;

/** `retry`: only a failed rollout (aborted, rolled back) can be retried; elsewhere the token is used up. */
const restStarts = (
  stable: string,
  canary: string,
  retry: boolean,
  rest: Phase,
): Record<EventKind, Expected> => ({
  NEW_REVISION: {
    phase: "Progressing",
    step: [0, 5],
    effects: [W(5, stable, canary), R("Normal", "RolloutStarted")],
  },
  START: {
    phase: "Progressing",
    step: [0, 5],
    effects: [W(5, stable, canary), R("Normal", "RolloutStarted")],
  },
  RETRY: retry
    ? { phase: "Progressing", step: [0, 5], effects: [W(5, stable, canary), R("Normal", "RolloutStarted")] }
    : { phase: rest, step: [-1, 0], effects: [] },
  ABORT: { phase: "Aborted", step: [-1, 0], effects: [W(0, stable, canary), R("Warning", "Aborted")] },
  PAUSE: I,
  RESUME: I,
  ACCEPTED: I,
  NOT_ACCEPTED: I,
  DRIFT: I,
  "ANALYSIS:pass": I,
  "ANALYSIS:fail": I,
  "ANALYSIS:inconclusive": I,
  "ANALYSIS:error": I,
  PROMOTE: I,
});

/** Default settings (failureLimit 1, onNoData hold, onError hold/5), steps 5-10-25-50-100, no acceptance. */
const TABLE: Record<Phase, Record<EventKind, Expected>> = {
  Steady: restStarts("blue", "green", false, "Steady"),
  Promoted: restStarts("green", "blue", false, "Promoted"),
  RolledBack: restStarts("blue", "green", true, "RolledBack"),
  Aborted: restStarts("blue", "green", true, "Aborted"),
  Progressing: {
    NEW_REVISION: {
      phase: "Progressing",
      step: [0, 5],
      effects: [W(5, "blue", "green"), R("Normal", "RolloutStarted")],
    },
    START: I,
    RETRY: I,
    ABORT: { phase: "Aborted", step: [-1, 0], effects: [W(0, "blue", "green"), R("Warning", "Aborted")] },
    PAUSE: { phase: "Paused", step: [2, 25], effects: [R("Normal", "Paused")] },
    RESUME: I,
    ACCEPTED: I,
    NOT_ACCEPTED: I,
    DRIFT: { phase: "Paused", step: [2, 25], effects: [R("Warning", "WeightsDrifted")] },
    "ANALYSIS:pass": {
      phase: "Progressing",
      step: [3, 50],
      effects: [W(50, "blue", "green"), R("Normal", "StepAdvanced")],
    },
    "ANALYSIS:fail": {
      phase: "RolledBack",
      step: [-1, 0],
      effects: [W(0, "blue", "green"), R("Warning", "RolledBack")],
    },
    "ANALYSIS:inconclusive": {
      phase: "Progressing",
      step: [2, 25],
      effects: [R("Warning", "AnalysisNotPassed")],
    },
    "ANALYSIS:error": { phase: "Progressing", step: [2, 25], effects: [R("Warning", "AnalysisNotPassed")] },
    PROMOTE: { phase: "Promoted", step: [-1, 0], effects: [W(0, "green", "blue"), R("Normal", "Promoted")] },
  },
  Paused: {
    NEW_REVISION: {
      phase: "Paused",
      step: [0, 5],
      effects: [W(5, "blue", "green"), R("Normal", "RolloutRestarted")],
    },
    START: I,
    RETRY: I,
    ABORT: { phase: "Aborted", step: [-1, 0], effects: [W(0, "blue", "green"), R("Warning", "Aborted")] },
    PAUSE: I,
    RESUME: {
      phase: "Progressing",
      step: [2, 25],
      effects: [W(25, "blue", "green"), R("Normal", "Resumed")],
    },
    ACCEPTED: I,
    NOT_ACCEPTED: I,
    DRIFT: I,
    "ANALYSIS:pass": I,
    "ANALYSIS:fail": I,
    "ANALYSIS:inconclusive": I,
    "ANALYSIS:error": I,
    PROMOTE: { phase: "Promoted", step: [-1, 0], effects: [W(0, "green", "blue"), R("Normal", "Promoted")] },
  },
};

function simplify(effects: Effect[]): ExpectedEffect[] {
  return effects.map((e) =>
    e.type === "setWeights" ? W(e.canaryPercent, e.stable, e.canary) : R(e.severity, e.reason),
  );
}

void describe("every phase × every event", () => {
  for (const phase of PHASES) {
    for (const kind of EVENT_KINDS) {
      const expected = TABLE[phase][kind];
      const label =
        expected === "ignored" ? "ignored" : `${expected.phase} at step ${expected.step.join("/")}`;
      void it(`${phase} + ${kind} → ${label}`, () => {
        const state = stateIn(phase);
        const snapshotBefore = structuredClone(state);
        const d = decide(settings(), state, eventOf(kind));
        assert.deepEqual(state, snapshotBefore, "the input state is never mutated");
        if (expected === "ignored") {
          assert.equal(d.changed, false);
          assert.equal(d.state, state, "an ignored event returns the very same state object");
          assert.deepEqual(d.effects, []);
          return;
        }
        assert.equal(d.changed, true);
        assert.equal(d.state.phase, expected.phase);
        assert.deepEqual([d.state.stepIndex, d.state.canaryWeight], expected.step);
        assert.deepEqual(simplify(d.effects), expected.effects);
        for (const e of d.effects) {
          // The abort reason is stored once (state.abort); the Event carries it.
          if (e.type === "record" && e.reason === "Aborted")
            assert.ok(e.message.includes(d.state.abort!.reason), e.message);
          // A hold's Event is a stable sentence (so repeats fold); the state keeps counts and values.
          else if (e.type === "record" && e.reason === "AnalysisNotPassed" && d.state.heldSince !== undefined)
            assert.match(
              e.message,
              /^holding at step \d+ \(\d+%\): [a-z ]+; the count and values are in rolloutd status$/,
            );
          else if (e.type === "record") assert.equal(e.message, d.state.message);
          else assert.deepEqual([e.stable, e.canary], [d.state.stable, d.state.canary]);
        }
        assert.ok(d.state.message.length > 0);
        assert.equal(d.state.updatedAt, NOW);
      });
    }
  }
});

void describe("abort", () => {
  for (const phase of PHASES) {
    void it(`from ${phase}: Aborted, all traffic on the current stable, a Warning with the reason`, () => {
      const state = stateIn(phase);
      const d = decide(settings(), state, { type: "ABORT", reason: "p99 on fire", now: NOW, revisions: {} });
      assert.equal(d.state.phase, "Aborted");
      // Re-aborting (weights moved while aborted) keeps when the abort began.
      assert.deepEqual(d.state.abort, { at: phase === "Aborted" ? T0 : NOW, reason: "p99 on fire" });
      assert.equal(d.state.pausedBy, undefined);
      assert.equal(d.state.stepStartedAt, undefined);
      assert.equal(d.state.analysisDueAt, undefined);
      const sets = d.effects.filter((e) => e.type === "setWeights");
      assert.deepEqual(sets, [
        { type: "setWeights", canaryPercent: 0, stable: state.stable, canary: state.canary },
      ]);
      const records = d.effects.filter((e) => e.type === "record");
      assert.equal(records.length, 1);
      assert.equal(records[0]!.severity, "Warning");
      assert.equal(records[0]!.reason, "Aborted");
      assert.match(records[0]!.message, /p99 on fire/);
      assert.match(records[0]!.message, new RegExp(`all traffic on ${state.stable}`));
    });
  }

  void it("repeated abort writes the same weights and keeps when the abort began", () => {
    const first = decide(settings(), stateIn("Progressing"), {
      type: "ABORT",
      reason: "manual",
      now: NOW,
      revisions: {},
    });
    const second = decide(settings(), first.state, {
      type: "ABORT",
      reason: "manual",
      now: NOW + 5000,
      revisions: {},
    });
    assert.equal(second.state.phase, "Aborted");
    assert.deepEqual(
      second.effects.find((e) => e.type === "setWeights"),
      first.effects.find((e) => e.type === "setWeights"),
    );
    assert.equal(second.state.since, first.state.since);
    assert.equal(second.state.canaryWeight, 0);
    assert.equal(second.state.stable, first.state.stable);
  });
});

void describe("full promotion through 5-10-25-50-100", () => {
  void it("without acceptance: each step starts its window when written, then roles swap", () => {
    const s = settings();
    let state = initialState({ stable: "blue", canary: "green", baseline: {}, now: T0 });
    const revisions = { blue: "blue-r1", green: "green-r2" };
    let now = T0 + 1000;
    let d = decide(s, state, { type: "NEW_REVISION", revision: "green-r2", now, revisions });
    const weights: number[] = [];
    const indexes: number[] = [];
    for (;;) {
      state = d.state;
      if (state.phase !== "Progressing") break;
      weights.push(state.canaryWeight);
      indexes.push(state.stepIndex);
      assert.equal(state.stepStartedAt, now, `step ${state.stepIndex} window starts when written`);
      assert.equal(state.analysisDueAt, now + INTERVAL);
      assert.equal(state.weightsWrittenAt, now);
      assert.deepEqual(d.effects[0], {
        type: "setWeights",
        canaryPercent: state.canaryWeight,
        stable: "blue",
        canary: "green",
      });
      now += INTERVAL;
      d = decide(s, state, { type: "ANALYSIS", report: report("pass"), now, revisions });
    }
    assert.deepEqual(weights, [5, 10, 25, 50, 100]);
    assert.deepEqual(indexes, [0, 1, 2, 3, 4]);
    assert.equal(state.phase, "Promoted");
    assert.equal(state.stable, "green");
    assert.equal(state.canary, "blue");
    assert.deepEqual(state.baseline, { green: "green-r2", blue: "blue-r1" });
    assert.equal(state.revision, "green-r2");
    assert.equal(state.stepIndex, -1);
    assert.equal(state.canaryWeight, 0);
    assert.equal(state.stepStartedAt, undefined);
    assert.equal(state.analysisDueAt, undefined);
    assert.equal(state.lastAnalysis?.stepIndex, 4);
    assert.equal(state.lastAnalysis?.canaryWeight, 100);
    assert.deepEqual(simplify(d.effects), [W(0, "green", "blue"), R("Normal", "Promoted")]);

    // The next revision of the other backend starts the next rollout with roles swapped.
    const next = decide(s, state, {
      type: "NEW_REVISION",
      revision: "blue-r3",
      now: now + 1,
      revisions: { blue: "blue-r3", green: "green-r2" },
    });
    assert.deepEqual(simplify(next.effects), [W(5, "green", "blue"), R("Normal", "RolloutStarted")]);
    assert.deepEqual(next.state.baseline, { green: "green-r2", blue: "blue-r3" });
  });

  void it("with acceptance: a step's window starts only at ACCEPTED", () => {
    const s = settings({ needsAcceptance: true });
    let state = initialState({ stable: "blue", canary: "green", baseline: {}, now: T0 });
    let now = T0 + 1000;
    let d = decide(s, state, { type: "NEW_REVISION", revision: "green-r2", now, revisions: REVISIONS });
    const weights: number[] = [];
    while (d.state.phase === "Progressing") {
      state = d.state;
      weights.push(state.canaryWeight);
      assert.equal(state.stepStartedAt, undefined, "not started before the parents accept");
      assert.equal(state.analysisDueAt, undefined);
      assert.equal(state.weightsWrittenAt, now);
      now += 700;
      const acc = decide(s, state, { type: "ACCEPTED", now, revisions: REVISIONS });
      assert.equal(acc.changed, true);
      assert.deepEqual(acc.effects, [], "acceptance writes no weights");
      assert.equal(acc.state.stepStartedAt, now);
      assert.equal(acc.state.analysisDueAt, now + INTERVAL);
      assert.equal(acc.state.canaryWeight, state.canaryWeight);
      const again = decide(s, acc.state, { type: "ACCEPTED", now: now + 5, revisions: REVISIONS });
      assert.equal(again.changed, false, "a second ACCEPTED does not move the window");
      assert.equal(again.state.stepStartedAt, now);
      now += INTERVAL;
      d = decide(s, acc.state, { type: "ANALYSIS", report: report("pass"), now, revisions: REVISIONS });
    }
    assert.deepEqual(weights, [5, 10, 25, 50, 100]);
    assert.equal(d.state.phase, "Promoted");
    assert.equal(d.state.stable, "green");
  });

  void it("with acceptance: a step never accepted is reported once, holds, and still starts when accepted", () => {
    const s = settings({ needsAcceptance: true });
    const state = initialState({ stable: "blue", canary: "green", baseline: {}, now: T0 });
    const started = decide(s, state, {
      type: "NEW_REVISION",
      revision: "green-r2",
      now: T0,
      revisions: REVISIONS,
    });
    const reason =
      "weights blue=95 green=5 written 120 s ago are not accepted by every parent: Gateway shop/gw: no status yet";
    const warned = decide(s, started.state, {
      type: "NOT_ACCEPTED",
      reason,
      now: T0 + 120_000,
      revisions: REVISIONS,
    });
    assert.equal(warned.changed, true);
    assert.deepEqual(
      simplify(warned.effects),
      [R("Warning", "RouteNotAccepted")],
      "a Warning, and no weight write",
    );
    assert.equal(warned.state.message, `${reason}; holding the step`);
    assert.equal(warned.state.acceptWarned, true);
    assert.equal(warned.state.stepStartedAt, undefined);
    assert.equal(warned.state.canaryWeight, 5);
    const again = decide(s, warned.state, {
      type: "NOT_ACCEPTED",
      reason,
      now: T0 + 180_000,
      revisions: REVISIONS,
    });
    assert.equal(again.changed, false, "warned once per step");
    const acc = decide(s, warned.state, { type: "ACCEPTED", now: T0 + 200_000, revisions: REVISIONS });
    assert.equal(acc.state.stepStartedAt, T0 + 200_000);
  });
});

interface Counters {
  failures: number;
  noData: number;
  errors: number;
}
type Row = [
  label: string,
  over: Partial<Settings>,
  prior: Counters,
  verdict: AnalysisVerdict,
  outcome: "advance" | "hold" | "retry" | "rollback",
  after: Counters,
];
const c = (failures: number, noData: number, errors: number): Counters => ({ failures, noData, errors });

const JUDGE: Row[] = [
  ["defaults: pass resets everything", {}, c(0, 2, 3), "pass", "advance", c(0, 0, 0)],
  ["defaults: one failure rolls back", {}, c(0, 0, 0), "fail", "rollback", c(1, 0, 0)],
  ["defaults: no data holds", {}, c(0, 0, 0), "inconclusive", "hold", c(0, 1, 0)],
  ["defaults: hold ignores noDataLimit", {}, c(0, 7, 0), "inconclusive", "hold", c(0, 8, 0)],
  ["defaults: one error holds", {}, c(0, 0, 0), "error", "hold", c(0, 0, 1)],
  ["defaults: error 4/5 holds", {}, c(0, 0, 3), "error", "hold", c(0, 0, 4)],
  ["defaults: error 5/5 rolls back", {}, c(0, 0, 4), "error", "rollback", c(0, 0, 5)],
  ["failureLimit 3: 1st failure retries", { failureLimit: 3 }, c(0, 0, 0), "fail", "retry", c(1, 0, 0)],
  ["failureLimit 3: 2nd failure retries", { failureLimit: 3 }, c(1, 0, 0), "fail", "retry", c(2, 0, 0)],
  ["failureLimit 3: 3rd failure rolls back", { failureLimit: 3 }, c(2, 0, 0), "fail", "rollback", c(3, 0, 0)],
  [
    "failureLimit 3: failure resets noData/errors",
    { failureLimit: 3 },
    c(0, 2, 3),
    "fail",
    "retry",
    c(1, 0, 0),
  ],
  ["failureLimit 3: pass after failures", { failureLimit: 3 }, c(2, 0, 0), "pass", "advance", c(0, 0, 0)],
  [
    "failureLimit 3: no data breaks a failure streak",
    { failureLimit: 3 },
    c(2, 0, 0),
    "inconclusive",
    "hold",
    c(0, 1, 0),
  ],
  [
    "failureLimit 3: error breaks a failure streak",
    { failureLimit: 3 },
    c(2, 0, 0),
    "error",
    "hold",
    c(0, 0, 1),
  ],
  ["error breaks a no-data streak", { onNoData: "fail" }, c(0, 2, 0), "error", "hold", c(0, 0, 1)],
  [
    "onNoData fail: below noDataLimit holds",
    { onNoData: "fail", noDataLimit: 2 },
    c(0, 0, 0),
    "inconclusive",
    "hold",
    c(0, 1, 0),
  ],
  [
    "onNoData fail: at noDataLimit counts a failure",
    { onNoData: "fail", noDataLimit: 2, failureLimit: 2 },
    c(0, 1, 0),
    "inconclusive",
    "retry",
    c(1, 0, 0),
  ],
  [
    "onNoData fail: at noDataLimit and failureLimit rolls back",
    { onNoData: "fail", noDataLimit: 2 },
    c(0, 1, 0),
    "inconclusive",
    "rollback",
    c(1, 0, 0),
  ],
  [
    "onNoData pass: below noDataLimit holds",
    { onNoData: "pass", noDataLimit: 2 },
    c(0, 0, 0),
    "inconclusive",
    "hold",
    c(0, 1, 0),
  ],
  [
    "onNoData pass: at noDataLimit advances",
    { onNoData: "pass", noDataLimit: 2 },
    c(0, 1, 0),
    "inconclusive",
    "advance",
    c(0, 0, 0),
  ],
  [
    "onError fail: counts a failure",
    { onError: { action: "fail", limit: 3 }, failureLimit: 2 },
    c(0, 0, 0),
    "error",
    "retry",
    c(1, 0, 1),
  ],
  [
    "onError fail: reaches failureLimit",
    { onError: { action: "fail", limit: 3 }, failureLimit: 2 },
    c(1, 0, 1),
    "error",
    "rollback",
    c(2, 0, 2),
  ],
  [
    "onError pass: advances below the limit",
    { onError: { action: "pass", limit: 3 } },
    c(0, 0, 0),
    "error",
    "advance",
    c(0, 0, 1),
  ],
  [
    "onError pass: rolls back at the limit",
    { onError: { action: "pass", limit: 3 } },
    c(0, 0, 2),
    "error",
    "rollback",
    c(0, 0, 3),
  ],
  [
    "onError hold limit 1: first error rolls back",
    { onError: { action: "hold", limit: 1 } },
    c(0, 0, 0),
    "error",
    "rollback",
    c(0, 0, 1),
  ],
];

void describe("judge()", () => {
  for (const [label, over, prior, verdict, outcome, after] of JUDGE) {
    void it(label, () => {
      const j = judge(settings(over), prior, verdict);
      assert.deepEqual(
        { outcome: j.outcome, failures: j.failures, noData: j.noData, errors: j.errors },
        { outcome, ...after },
      );
      assert.ok(j.why.length > 0);
    });
  }

  const run = (over: Partial<Settings>, verdicts: AnalysisVerdict[]) => {
    let counters = c(0, 0, 0);
    const outcomes: string[] = [];
    for (const v of verdicts) {
      const j = judge(settings(over), counters, v);
      outcomes.push(j.outcome);
      counters = { failures: j.failures, noData: j.noData, errors: j.errors };
    }
    return outcomes;
  };

  void it("failures are consecutive, not cumulative", () => {
    assert.deepEqual(run({ failureLimit: 2 }, ["fail", "pass", "fail", "pass", "fail"]), [
      "retry",
      "advance",
      "retry",
      "advance",
      "retry",
    ]);
    assert.deepEqual(run({ failureLimit: 2 }, ["fail", "inconclusive", "fail"]), ["retry", "hold", "retry"]);
    assert.deepEqual(run({ failureLimit: 2 }, ["fail", "error", "fail"]), ["retry", "hold", "retry"]);
    assert.deepEqual(run({ failureLimit: 2 }, ["pass", "fail", "fail"]), ["advance", "retry", "rollback"]);
    assert.deepEqual(run({ failureLimit: 2, onNoData: "fail", noDataLimit: 1 }, ["fail", "inconclusive"]), [
      "retry",
      "rollback",
    ]);
  });

  void it("defaults never roll back on one Prometheus error nor advance on no data", () => {
    assert.equal(judge(settings(), c(0, 0, 0), "error").outcome, "hold");
    const outcomes = run({}, Array<AnalysisVerdict>(50).fill("inconclusive"));
    assert.deepEqual(new Set(outcomes), new Set(["hold"]));
    assert.deepEqual(run({}, ["error", "error", "error", "error"]), ["hold", "hold", "hold", "hold"]);
  });
});

void describe("analysis outcomes through decide()", () => {
  const at = (s: RolloutState, verdict: AnalysisVerdict, over: Partial<Settings> = {}) =>
    decide(settings(over), s, { type: "ANALYSIS", report: report(verdict), now: NOW, revisions: REVISIONS });

  void it("a failure below failureLimit restarts the window; a hold keeps it", () => {
    const s = stateIn("Progressing");
    const retry = at(s, "fail", { failureLimit: 3 });
    assert.equal(retry.state.phase, "Progressing");
    assert.equal(retry.state.failures, 1);
    assert.equal(retry.state.stepStartedAt, NOW);
    assert.equal(retry.state.analysisDueAt, NOW + INTERVAL);
    assert.equal(retry.state.canaryWeight, 25);
    assert.deepEqual(simplify(retry.effects), [R("Warning", "AnalysisNotPassed")]);

    const hold = at(s, "inconclusive");
    assert.equal(hold.state.noData, 1);
    assert.equal(hold.state.stepStartedAt, T0, "no data keeps accumulating the same step's traffic");
    assert.equal(hold.state.analysisDueAt, NOW + INTERVAL);

    const err = at(s, "error");
    assert.equal(err.state.errors, 1);
    assert.equal(err.state.stepStartedAt, T0);
  });

  void it("the analysis and its measured values are recorded", () => {
    const d = at(stateIn("Progressing"), "fail", { failureLimit: 3 });
    assert.deepEqual(d.state.lastAnalysis, {
      at: NOW,
      stepIndex: 2,
      canaryWeight: 25,
      verdict: "fail",
      summary: "analysis fail",
      checks: [{ name: "p99-latency", value: 420, outcome: "value", max: 500, verdict: "fail" }],
    });
    const nd = at(stateIn("Progressing"), "inconclusive");
    assert.equal(nd.state.lastAnalysis?.checks[0]?.value, null);
    assert.equal(nd.state.lastAnalysis?.checks[0]?.outcome, "noData");
  });

  void it("rollback puts all traffic back on the stable in one write", () => {
    const d = at({ ...stateIn("Progressing"), failures: 1 }, "fail", { failureLimit: 2 });
    assert.equal(d.state.phase, "RolledBack");
    assert.equal(d.state.failures, 2);
    assert.deepEqual(d.effects.filter((e) => e.type === "setWeights").length, 1);
    assert.match(d.state.message, /rolled back to blue/);
  });

  void it("no data at the last step does not promote with default settings", () => {
    const s = { ...stateIn("Progressing"), stepIndex: 4, canaryWeight: 100 };
    const d = at(s, "inconclusive");
    assert.equal(d.state.phase, "Progressing");
    assert.equal(d.state.canaryWeight, 100);
    assert.equal(
      d.effects.some((e) => e.type === "setWeights"),
      false,
    );
  });
});

void describe("new revisions", () => {
  void it("during Progressing restart at step 0 with fresh counters and window", () => {
    const s: RolloutState = {
      ...stateIn("Progressing"),
      stepIndex: 3,
      canaryWeight: 50,
      failures: 2,
      noData: 1,
    };
    const d = decide(settings(), s, {
      type: "NEW_REVISION",
      revision: "green-r3",
      now: NOW,
      revisions: { blue: "blue-r1", green: "green-r3" },
    });
    assert.equal(d.state.phase, "Progressing");
    assert.equal(d.state.stepIndex, 0);
    assert.equal(d.state.canaryWeight, 5);
    assert.equal(d.state.revision, "green-r3");
    assert.deepEqual(d.state.baseline, { blue: "blue-r1", green: "green-r3" });
    assert.deepEqual([d.state.failures, d.state.noData, d.state.errors], [0, 0, 0]);
    assert.equal(d.state.stepStartedAt, NOW);
    assert.equal(d.state.analysisDueAt, NOW + INTERVAL);
    assert.deepEqual(d.effects[0], { type: "setWeights", canaryPercent: 5, stable: "blue", canary: "green" });
  });

  void it("during Paused restart at step 0 and stay paused by the same cause", () => {
    for (const pausedBy of ["annotation", "drift"] as const) {
      const s: RolloutState = { ...stateIn("Paused"), pausedBy, stepIndex: 3, canaryWeight: 50 };
      const d = decide(settings(), s, {
        type: "NEW_REVISION",
        revision: "green-r3",
        now: NOW,
        revisions: REVISIONS,
      });
      assert.equal(d.state.phase, "Paused");
      assert.equal(d.state.pausedBy, pausedBy);
      assert.equal(d.state.stepIndex, 0);
      assert.equal(d.state.canaryWeight, 5);
      assert.equal(d.state.revision, "green-r3");
      assert.deepEqual(d.effects[0], {
        type: "setWeights",
        canaryPercent: 5,
        stable: "blue",
        canary: "green",
      });
    }
  });
});

void describe("pause, drift and resume", () => {
  const resume = (s: RolloutState, over: Partial<Settings> = {}, token?: string) =>
    decide(settings(over), s, {
      type: "RESUME",
      now: NOW,
      revisions: REVISIONS,
      ...(token ? { token } : {}),
    });

  void it("pause holds weights and analysis; resume from an annotation pause re-emits the held weight", () => {
    const paused = decide(settings(), stateIn("Progressing"), {
      type: "PAUSE",
      now: NOW - 1000,
      revisions: {},
    });
    assert.equal(paused.state.phase, "Paused");
    assert.equal(paused.state.pausedBy, "annotation");
    assert.equal(paused.state.canaryWeight, 25);
    assert.equal(
      paused.effects.some((e) => e.type === "setWeights"),
      false,
    );
    const d = resume(paused.state);
    assert.equal(d.state.phase, "Progressing");
    assert.equal(d.state.pausedBy, undefined);
    assert.equal(d.state.stepIndex, 2);
    assert.deepEqual(d.effects[0], {
      type: "setWeights",
      canaryPercent: 25,
      stable: "blue",
      canary: "green",
    });
    assert.equal(d.state.stepStartedAt, NOW, "paused time is not evidence");
    assert.equal(d.state.analysisDueAt, NOW + INTERVAL);
  });

  void it("resume after drift re-applies the current step's weights", () => {
    const drifted = decide(settings(), stateIn("Progressing"), {
      type: "DRIFT",
      observed: { blue: 100, green: 0 },
      now: NOW - 1000,
      revisions: {},
    });
    assert.equal(drifted.state.pausedBy, "drift");
    assert.match(drifted.state.message, /expected blue=75 green=25, found blue=100 green=0/);
    const d = resume(drifted.state);
    assert.equal(d.state.phase, "Progressing");
    assert.deepEqual(simplify(d.effects), [W(25, "blue", "green"), R("Normal", "Resumed")]);
    assert.equal(d.state.stepStartedAt, NOW);

    const gw = resume(drifted.state, { needsAcceptance: true });
    assert.equal(gw.state.stepStartedAt, undefined, "re-written weights must be accepted again");
    assert.equal(gw.state.analysisDueAt, undefined);
  });

  void it("with acceptance, an annotation pause taken after acceptance resumes at once", () => {
    const paused: RolloutState = { ...stateIn("Paused"), pausedBy: "annotation" };
    const d = resume(paused, { needsAcceptance: true });
    assert.equal(d.state.stepStartedAt, NOW);
  });

  void it("with acceptance, weights never accepted before or during the pause still await acceptance", () => {
    const s = settings({ needsAcceptance: true });
    const running = decide(s, stateIn("Steady"), {
      type: "NEW_REVISION",
      revision: "green-r2",
      now: T0,
      revisions: REVISIONS,
    });
    assert.equal(running.state.stepStartedAt, undefined);
    const paused = decide(s, running.state, { type: "PAUSE", now: T0 + 10, revisions: REVISIONS });
    const resumed = decide(s, paused.state, { type: "RESUME", now: NOW, revisions: REVISIONS });
    assert.equal(resumed.state.phase, "Progressing");
    assert.equal(
      resumed.state.stepStartedAt,
      undefined,
      "the window must not start before the parents accept",
    );

    // The same after a restart at step 0 while paused: those weights were written during the pause.
    const restarted = decide(
      s,
      { ...stateIn("Paused"), pausedBy: "annotation" },
      {
        type: "NEW_REVISION",
        revision: "green-r3",
        now: T0,
        revisions: REVISIONS,
      },
    );
    const after = decide(s, restarted.state, { type: "RESUME", now: NOW, revisions: REVISIONS });
    assert.equal(after.state.canaryWeight, 5);
    assert.equal(after.state.stepStartedAt, undefined);
  });
});

void describe("control tokens", () => {
  void it("START, RETRY, RESUME and PROMOTE tokens are kept in the state", () => {
    const start = decide(settings(), stateIn("Steady"), {
      type: "START",
      token: "s-1",
      revision: "green-r2",
      now: NOW,
      revisions: REVISIONS,
    });
    assert.deepEqual(start.state.tokens, { start: "s-1" });
    const retry = decide(
      settings(),
      { ...stateIn("RolledBack"), tokens: { start: "s-1" } },
      {
        type: "RETRY",
        token: "r-1",
        revision: "green-r2",
        now: NOW,
        revisions: REVISIONS,
      },
    );
    assert.deepEqual(retry.state.tokens, { start: "s-1", retry: "r-1" });
    const resumed = decide(
      settings(),
      { ...stateIn("Paused"), tokens: { retry: "r-1" } },
      {
        type: "RESUME",
        token: "u-1",
        now: NOW,
        revisions: REVISIONS,
      },
    );
    assert.deepEqual(resumed.state.tokens, { retry: "r-1", resume: "u-1" });
    const promoted = decide(settings(), resumed.state, {
      type: "PROMOTE",
      token: "p-1",
      now: NOW,
      revisions: REVISIONS,
    });
    assert.deepEqual(promoted.state.tokens, { retry: "r-1", resume: "u-1", promote: "p-1" });
    assert.equal(promoted.state.phase, "Promoted");
    const plain = decide(settings(), stateIn("Paused"), { type: "RESUME", now: NOW, revisions: REVISIONS });
    assert.deepEqual(plain.state.tokens, {});
  });
});

void describe("persisted state", () => {
  const full: RolloutState = {
    ...stateIn("Progressing"),
    pausedBy: "drift",
    acceptWarned: true,
    tokens: { start: "a", retry: "b", resume: "c", promote: "d" },
    abort: { at: T0, reason: "x" },
    lastAnalysis: {
      at: T0,
      stepIndex: 1,
      canaryWeight: 10,
      verdict: "fail",
      summary: "s",
      checks: [{ name: "n", value: null, outcome: "nan", min: 0, verdict: "fail" }],
    },
  };

  void it("encode/decode round-trips", () => {
    assert.deepEqual(decodeState(encodeState(full)), full);
    const fresh = initialState({ stable: "a", canary: "b", baseline: { a: "1" }, now: 5 });
    assert.deepEqual(decodeState(encodeState(fresh)), fresh);
  });

  void it("decode fills defaults for optional counters", () => {
    const d = decodeState(JSON.stringify({ v: 1, phase: "Steady", stable: "a", canary: "b" }));
    assert.deepEqual(
      [d.baseline, d.tokens, d.failures, d.noData, d.errors, d.stepIndex, d.canaryWeight],
      [{}, {}, 0, 0, 0, -1, 0],
    );
  });

  void it("decode rejects what we did not write", () => {
    const bad: Array<[string, RegExp]> = [
      ["{not json", /not JSON/],
      ["", /not JSON/],
      ["null", /unknown version/],
      ["[]", /unknown version/],
      ['"v1"', /unknown version/],
      [JSON.stringify({ ...full, v: 2 }), /unknown version/],
      [JSON.stringify({ phase: "Steady", stable: "a", canary: "b" }), /unknown version/],
      [JSON.stringify({ v: 1, stable: "a", canary: "b" }), /lacks phase, stable or canary/],
      [JSON.stringify({ v: 1, phase: "Running", stable: "a", canary: "b" }), /lacks phase/],
      [JSON.stringify({ v: 1, phase: "Steady", canary: "b" }), /lacks phase, stable or canary/],
      [JSON.stringify({ v: 1, phase: "Steady", stable: "a", canary: 3 }), /lacks phase, stable or canary/],
    ];
    for (const [raw, message] of bad) {
      assert.throws(
        () => decodeState(raw),
        (err: unknown) => err instanceof StateDecodeError && message.test(err.message),
        raw,
      );
    }
  });
});

void describe("holds end: a deadline on every hold", () => {
  const progressing = (): RolloutState => {
    const base = initialState({ stable: "blue", canary: "green", baseline: {}, now: T0 });
    return {
      ...base,
      phase: "Progressing",
      revision: "green-r2",
      stepIndex: 1,
      canaryWeight: 10,
      stepStartedAt: T0,
      analysisDueAt: T0 + INTERVAL,
    };
  };

  void it("a hold starts its clock at the first inconclusive analysis and keeps it on the next", () => {
    const first = decide(settings(), progressing(), eventOf("ANALYSIS:inconclusive"));
    assert.equal(first.state.heldSince, NOW);
    assert.equal(first.state.holdReason, "no data or too few requests");
    const second = decide(settings(), first.state, {
      ...eventOf("ANALYSIS:inconclusive"),
      now: NOW + 60_000,
    });
    assert.equal(second.state.heldSince, NOW, "the clock is not restarted by a repeat");
    assert.equal(second.state.noData, 2);
    const [a, b] = [first, second].map((d) => d.effects.find((e) => e.type === "record")!.message);
    assert.equal(a, b, "repeats raise the same Event message, so they fold");
  });

  void it("any other outcome stops the clock", () => {
    const held = decide(settings(), progressing(), eventOf("ANALYSIS:inconclusive")).state;
    const passed = decide(settings(), held, { ...eventOf("ANALYSIS:pass"), now: NOW + 1 });
    assert.equal(passed.state.heldSince, undefined);
    const failed = decide(settings({ failureLimit: 3 }), held, { ...eventOf("ANALYSIS:fail"), now: NOW + 1 });
    assert.equal(failed.state.heldSince, undefined);
  });

  void it("HOLD_EXPIRED rolls back by default, all traffic to stable, with the reason", () => {
    const d = decide(settings(), progressing(), {
      type: "HOLD_EXPIRED",
      reason: "held for 10 min",
      now: NOW,
      revisions: {},
    });
    assert.equal(d.state.phase, "RolledBack");
    assert.deepEqual(
      d.effects.map((e) => (e.type === "setWeights" ? `w${e.canaryPercent}` : e.reason)),
      ["w0", "RolledBack"],
    );
    assert.match(d.state.message, /held for 10 min; holdLimit reached: rolled back to blue/);
  });

  void it("HOLD_EXPIRED with action pause holds the weights and waits for a resume", () => {
    const d = decide(settings({ holdAction: "pause" }), progressing(), {
      type: "HOLD_EXPIRED",
      reason: "held",
      now: NOW,
      revisions: {},
    });
    assert.equal(d.state.phase, "Paused");
    assert.equal(d.state.pausedBy, "hold");
    assert.equal(d.state.canaryWeight, 10);
    assert.deepEqual(
      d.effects.map((e) => e.type),
      ["record"],
      "no weight changes",
    );
  });
});

void describe("in-step evaluations", () => {
  const running = (): RolloutState => ({
    ...initialState({ stable: "blue", canary: "green", baseline: {}, now: T0 }),
    phase: "Progressing",
    revision: "green-r2",
    stepIndex: 1,
    canaryWeight: 10,
    stepStartedAt: T0,
    analysisDueAt: T0 + INTERVAL,
  });
  const early = (verdict: AnalysisVerdict): RolloutEvent => ({
    type: "ANALYSIS",
    report: report(verdict),
    early: true,
    now: T0 + 10_000,
    revisions: {},
  });

  void it("a breach rolls back at once when it reaches failureLimit, without waiting for the interval", () => {
    const d = decide(settings({ failureLimit: 1 }), running(), early("fail"));
    assert.equal(d.state.phase, "RolledBack");
  });

  void it("below failureLimit it counts, keeping the step's window and deadline", () => {
    const d = decide(settings({ failureLimit: 2 }), running(), early("fail"));
    assert.equal(d.state.phase, "Progressing");
    assert.equal(d.state.failures, 1);
    assert.equal(d.state.stepStartedAt, T0);
    assert.equal(d.state.analysisDueAt, T0 + INTERVAL);
    const again = decide(settings({ failureLimit: 2 }), d.state, { ...early("fail"), now: T0 + 20_000 });
    assert.equal(again.state.phase, "RolledBack");
  });

  void it("a pass never advances before the deadline; it clears a count, else changes nothing", () => {
    assert.equal(decide(settings(), running(), early("pass")).changed, false);
    const counted = decide(settings({ failureLimit: 3 }), running(), early("fail")).state;
    const cleared = decide(settings({ failureLimit: 3 }), counted, { ...early("pass"), now: T0 + 20_000 });
    assert.equal(cleared.state.failures, 0);
    assert.equal(cleared.state.stepIndex, 1);
  });

  void it("no data and errors before the deadline are no evidence: nothing changes", () => {
    assert.equal(decide(settings(), running(), early("inconclusive")).changed, false);
    assert.equal(decide(settings(), running(), early("error")).changed, false);
  });
});
