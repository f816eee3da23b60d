/**
 * The rollout lifecycle as an xstate machine, used as a pure decision
 * function: the controller restores a snapshot from the persisted state,
 * feeds it one event with `transition()`, and gets back the next state and
 * the effects to run (set weights, record a decision). The machine executes
 * nothing itself, owns no timers, and every effect is absolute ("canary at
 * 25 %"), so replaying a decision after a crash is harmless.
 */
import { assign, setup, transition, type SnapshotFrom } from "xstate";
import type { AnalysisReport } from "../analysis/types.ts";
import type { ErrorAction, NoDataAction } from "../policy/types.ts";
import { atRest, describeState, type RecordedAnalysis, type RolloutState } from "../contract.ts";

/** Policy-derived settings: not persisted, re-read from the policy every reconcile. */
export interface Settings {
  steps: number[];
  /** Request stages (the first steps, at 0 %): what each sends to the canary, for messages. */
  stageLabels?: string[];
  intervalMs: number;
  failureLimit: number;
  onNoData: NoDataAction;
  noDataLimit: number;
  onError: { action: ErrorAction; limit: number };
  /** Gateway API: a step starts only when the route's parents accepted it. */
  needsAcceptance: boolean;
  /** What ends a hold that lasted too long (derive sends HOLD_EXPIRED); absent: rollback. */
  holdAction?: "rollback" | "pause";
}

/**
 * The persisted record without its phase: xstate's state value is the phase,
 * and keeping a second copy in the context would let the two disagree.
 */
export type RolloutRecord = Omit<RolloutState, "phase">;

export interface RolloutContext {
  settings: Settings;
  state: RolloutRecord;
}

/** Facts every event carries. */
interface Observed {
  now: number;
  /** Current pod-template revision of each backend's Deployment, where known. */
  revisions: Record<string, string>;
}

export type RolloutEvent =
  | ({ type: "NEW_REVISION"; revision: string } & Observed)
  | ({ type: "START"; token: string; revision: string } & Observed)
  | ({ type: "RETRY"; token: string; revision: string } & Observed)
  | ({ type: "ABORT"; reason: string } & Observed)
  | ({ type: "PAUSE"; resumeToken?: string } & Observed)
  | ({ type: "RESUME"; token?: string } & Observed)
  | ({ type: "ACCEPTED" } & Observed)
  /** The route's parents have not accepted the step's weights within routeReadyTimeout; `reason` says which. */
  | ({ type: "NOT_ACCEPTED"; reason: string } & Observed)
  | ({ type: "DRIFT"; observed: Record<string, number>; resumeToken?: string } & Observed)
  /**
   * `early`: an in-step evaluation before the step's deadline. It can only
   * count toward a breach (or clear the count); passing it advances nothing.
   */
  | ({ type: "ANALYSIS"; report: AnalysisReport; early?: boolean } & Observed)
  /** A hold (no data, too few requests, errors, parents not accepting) outlasted the policy's holdLimit. */
  | ({ type: "HOLD_EXPIRED"; reason: string } & Observed)
  | ({ type: "PROMOTE"; token: string } & Observed);

export type RolloutEventType = RolloutEvent["type"];

export type EventSeverity = "Normal" | "Warning";

/** Effects, as data. */
export type Effect =
  | { type: "setWeights"; canaryPercent: number; stable: string; canary: string }
  | { type: "record"; severity: EventSeverity; reason: string; message: string };

/** "step 2/4, canary web-v2 at 10%", or for a request stage "step 1/4 (stage: header x-canary=always → web-v2)". */
function stepWords(settings: Settings, index: number, canary: string, weight: number): string {
  const stage = settings.stageLabels?.[index];
  const at = `step ${index + 1}/${settings.steps.length}`;
  return stage ? `${at} (stage: ${stage} → ${canary})` : `${at}, canary ${canary} at ${weight}%`;
}

/** Builds the state a (re)started rollout begins with: step 0 of `revision`. */
function begin(ctx: RolloutContext, ev: Observed & { revision: string }, why: string): RolloutRecord {
  const s = ctx.state;
  const weight = ctx.settings.steps[0] ?? 100;
  return {
    ...s,
    revision: ev.revision,
    baseline: { ...s.baseline, [s.canary]: ev.revision },
    stepIndex: 0,
    canaryWeight: weight,
    weightsWrittenAt: ev.now,
    stepStartedAt: ctx.settings.needsAcceptance ? undefined : ev.now,
    analysisDueAt: ctx.settings.needsAcceptance ? undefined : ev.now + ctx.settings.intervalMs,
    failures: 0,
    noData: 0,
    errors: 0,
    pausedBy: undefined,
    acceptWarned: false,
    heldSince: undefined,
    holdReason: undefined,
    abort: undefined,
    message: `${why}: ${stepWords(ctx.settings, 0, s.canary, weight)}`,
    since: ev.now,
    updatedAt: ev.now,
  };
}

function toStep(ctx: RolloutContext, now: number, index: number, why: string): RolloutRecord {
  const weight = ctx.settings.steps[index] ?? 100;
  return {
    ...ctx.state,
    stepIndex: index,
    canaryWeight: weight,
    weightsWrittenAt: now,
    stepStartedAt: ctx.settings.needsAcceptance ? undefined : now,
    analysisDueAt: ctx.settings.needsAcceptance ? undefined : now + ctx.settings.intervalMs,
    failures: 0,
    noData: 0,
    errors: 0,
    acceptWarned: false,
    heldSince: undefined,
    holdReason: undefined,
    message: `${why}: ${stepWords(ctx.settings, index, ctx.state.canary, weight)}`,
    updatedAt: now,
  };
}

function recordAnalysis(s: RolloutRecord, report: AnalysisReport, now: number): RecordedAnalysis {
  return {
    at: now,
    stepIndex: s.stepIndex,
    canaryWeight: s.canaryWeight,
    verdict: report.verdict,
    summary: report.summary,
    checks: report.checks.map((c) => ({
      name: c.name,
      value: c.outcome.kind === "value" ? c.outcome.value : c.outcome.kind === "nan" ? Number.NaN : null,
      ...(c.outcome.kind === "value" && c.outcome.atLeast ? { atLeast: true as const } : {}),
      outcome: c.outcome.kind,
      ...(c.min !== undefined ? { min: c.min } : {}),
      ...(c.max !== undefined ? { max: c.max } : {}),
      verdict: c.verdict,
    })),
  };
}

/**
 * What an analysis means for the rollout, after the policy's onNoData/onError
 * rules and consecutive limits. Pure, so the rules can be tested as a table.
 */
export interface Judgement {
  /**
   * advance, hold, retry (a failure below the limit: a fresh window),
   * rollback; for in-step evaluations also `count` (the consecutive count
   * changed, nothing else) and `ignore` (no evidence either way).
   */
  outcome: "advance" | "hold" | "retry" | "rollback" | "count" | "ignore";
  failures: number;
  noData: number;
  errors: number;
  why: string;
  /** For holds: the reason without counts, so the Events it raises fold into one. */
  hold?: string;
}

/**
 * An in-step evaluation: only a breach is evidence before the deadline. A
 * failure counts toward failureLimit (rolling back when it is reached,
 * without waiting for the interval); a pass clears a count; no data and
 * errors change nothing (the deadline's analysis deals with them).
 */
export function judgeEarly(
  settings: Settings,
  s: Pick<RolloutState, "failures" | "noData" | "errors">,
  verdict: AnalysisReport["verdict"],
): Judgement {
  const keep = { noData: s.noData, errors: s.errors };
  if (verdict === "fail") {
    const failures = s.failures + 1;
    const why = `breach during the step (${failures}/${settings.failureLimit} consecutive)`;
    return failures >= settings.failureLimit
      ? { outcome: "rollback", failures, ...keep, why }
      : { outcome: "count", failures, ...keep, why };
  }
  if (verdict === "pass" && s.failures > 0)
    return { outcome: "count", failures: 0, ...keep, why: "in-step check passed: breach count cleared" };
  return { outcome: "ignore", failures: s.failures, ...keep, why: "in-step check: no evidence" };
}

export function judge(
  settings: Settings,
  s: Pick<RolloutState, "failures" | "noData" | "errors">,
  verdict: AnalysisReport["verdict"],
): Judgement {
  const failed = (why: string) => {
    const failures = s.failures + 1;
    return failures >= settings.failureLimit
      ? {
          outcome: "rollback" as const,
          failures,
          noData: 0,
          errors: 0,
          why: `${why} (${failures}/${settings.failureLimit} consecutive)`,
        }
      : {
          outcome: "retry" as const,
          failures,
          noData: 0,
          errors: 0,
          why: `${why} (${failures}/${settings.failureLimit} consecutive)`,
        };
  };
  switch (verdict) {
    case "pass":
      return { outcome: "advance", failures: 0, noData: 0, errors: 0, why: "analysis passed" };
    case "fail":
      return failed("analysis failed");
    case "inconclusive": {
      const noData = s.noData + 1;
      const limitReached = noData >= settings.noDataLimit;
      if (settings.onNoData === "hold" || !limitReached) {
        return {
          outcome: "hold",
          failures: 0,
          noData,
          errors: 0,
          why: `no data or too few requests (${noData} in a row): holding`,
          hold: "no data or too few requests",
        };
      }
      if (settings.onNoData === "pass") {
        return {
          outcome: "advance",
          failures: 0,
          noData: 0,
          errors: 0,
          why: `no data ${noData} times in a row: onNoData=pass advances`,
        };
      }
      return { ...failed(`no data ${noData} times in a row: onNoData=fail`), noData: 0 };
    }
    case "error": {
      const errors = s.errors + 1;
      if (errors >= settings.onError.limit) {
        return {
          outcome: "rollback",
          failures: s.failures,
          noData: 0,
          errors,
          why: `analysis errored ${errors} times in a row: Prometheus unreachable or an answer unusable as one value (onError.limit ${settings.onError.limit})`,
        };
      }
      if (settings.onError.action === "pass") {
        return {
          outcome: "advance",
          failures: 0,
          noData: 0,
          errors,
          why: "analysis errored: onError=pass advances",
        };
      }
      if (settings.onError.action === "fail") return { ...failed("analysis errored: onError=fail"), errors };
      return {
        outcome: "hold",
        failures: 0,
        noData: 0,
        errors,
        why: `analysis errored (${errors}/${settings.onError.limit}): holding`,
        hold: "analysis errored",
      };
    }
  }
}

/**
 * What the machine itself receives: an analysis arrives judged, once, by
 * decide(), so guards and reducers read one judgement instead of each
 * re-judging the report.
 */
type MachineEvent =
  | Exclude<RolloutEvent, { type: "ANALYSIS" }>
  | (Extract<RolloutEvent, { type: "ANALYSIS" }> & { judgement: Judgement });

type Ev<T extends RolloutEventType> = Extract<MachineEvent, { type: T }>;

// Reducers: pure functions from (context, event) to the next persisted state.

/** `again`: an abort already recorded is re-applied (weights were moved since); its start time stays. */
function reduceAbort(ctx: RolloutContext, e: Ev<"ABORT">, again: boolean): RolloutRecord {
  const s = ctx.state;
  return {
    ...s,
    stepIndex: -1,
    canaryWeight: 0,
    weightsWrittenAt: e.now,
    stepStartedAt: undefined,
    analysisDueAt: undefined,
    pausedBy: undefined,
    // The reason is kept once, here; messages and Events refer to it.
    abort: { at: again && s.abort ? s.abort.at : e.now, reason: e.reason },
    message: `aborted by annotation; all traffic on ${s.stable}`,
    since: again ? s.since : e.now,
    updatedAt: e.now,
  };
}

function reduceBegin(
  ctx: RolloutContext,
  e: Ev<"NEW_REVISION" | "START" | "RETRY">,
  why: string,
  stayPaused: boolean,
): RolloutRecord {
  const next = begin(ctx, e, `${why} ${e.revision}`);
  const tokens = { ...ctx.state.tokens };
  if (e.type === "START") tokens.start = e.token;
  if (e.type === "RETRY") tokens.retry = e.token;
  return stayPaused
    ? {
        ...next,
        tokens,
        pausedBy: ctx.state.pausedBy ?? "annotation",
        message: `${next.message}; still paused`,
      }
    : { ...next, tokens };
}

function reducePause(ctx: RolloutContext, e: Ev<"PAUSE">): RolloutRecord {
  const s = ctx.state;
  return {
    ...s,
    pausedBy: "annotation",
    // Only a resume token set after this pause may end it.
    tokens: e.resumeToken !== undefined ? { ...s.tokens, resume: e.resumeToken } : s.tokens,
    message: `paused by annotation at step ${s.stepIndex + 1}, canary at ${s.canaryWeight}%`,
    since: e.now,
    updatedAt: e.now,
  };
}

function reduceDrift(ctx: RolloutContext, e: Ev<"DRIFT">): RolloutRecord {
  const s = ctx.state;
  return {
    ...s,
    pausedBy: "drift",
    tokens: e.resumeToken !== undefined ? { ...s.tokens, resume: e.resumeToken } : s.tokens,
    message:
      `weights changed by another writer (expected ${fmtApplied(s.applied)}, found ${fmt(e.observed)}): ` +
      `paused instead of fighting; \`rolloutd resume\` re-applies step ${s.stepIndex + 1}`,
    since: e.now,
    updatedAt: e.now,
  };
}

function reduceResume(ctx: RolloutContext, e: Ev<"RESUME">): RolloutRecord {
  const s = ctx.state;
  const next = toStep(ctx, e.now, Math.max(0, s.stepIndex), `resumed (${s.pausedBy ?? "annotation"})`);
  // Weights were held during an annotation pause, so the route already serves them;
  // after drift they are written again and may need to be accepted again.
  const waitAccept =
    ctx.settings.needsAcceptance && (s.pausedBy === "drift" || s.stepStartedAt === undefined);
  return {
    ...next,
    pausedBy: undefined,
    tokens: e.token ? { ...s.tokens, resume: e.token } : s.tokens,
    // Paused time is not evidence: the step's window starts again now.
    stepStartedAt: waitAccept ? undefined : e.now,
    analysisDueAt: waitAccept ? undefined : e.now + ctx.settings.intervalMs,
    since: e.now,
  };
}

function reduceAccepted(ctx: RolloutContext, e: Ev<"ACCEPTED">): RolloutRecord {
  return {
    ...ctx.state,
    stepStartedAt: e.now,
    analysisDueAt: e.now + ctx.settings.intervalMs,
    updatedAt: e.now,
  };
}

function reduceNotAccepted(ctx: RolloutContext, e: Ev<"NOT_ACCEPTED">): RolloutRecord {
  return { ...ctx.state, acceptWarned: true, message: `${e.reason}; holding the step`, updatedAt: e.now };
}

function reducePromote(ctx: RolloutContext, e: Ev<"ANALYSIS" | "PROMOTE">, why: string): RolloutRecord {
  const s = ctx.state;
  const report = e.type === "ANALYSIS" ? e.report : undefined;
  const nextCanary = s.stable;
  const nextCanaryRevision = e.revisions[nextCanary];
  return {
    ...s,
    stable: s.canary,
    canary: nextCanary,
    baseline: {
      ...s.baseline,
      ...(s.revision ? { [s.canary]: s.revision } : {}),
      ...(nextCanaryRevision ? { [nextCanary]: nextCanaryRevision } : {}),
    },
    tokens: e.type === "PROMOTE" ? { ...s.tokens, promote: e.token } : s.tokens,
    lastAnalysis: report ? recordAnalysis(s, report, e.now) : s.lastAnalysis,
    stepIndex: -1,
    canaryWeight: 0,
    weightsWrittenAt: e.now,
    stepStartedAt: undefined,
    analysisDueAt: undefined,
    pausedBy: undefined,
    failures: 0,
    noData: 0,
    errors: 0,
    message: `${report ? `${report.summary}; ` : ""}${why}: ${s.canary} promoted to 100%; ${nextCanary} is the next canary`,
    since: e.now,
    updatedAt: e.now,
  };
}

function reduceRollback(ctx: RolloutContext, e: Ev<"ANALYSIS">): RolloutRecord {
  const s = ctx.state;
  const j = e.judgement;
  return {
    ...s,
    failures: j.failures,
    noData: j.noData,
    errors: j.errors,
    lastAnalysis: recordAnalysis(s, e.report, e.now),
    stepIndex: -1,
    canaryWeight: 0,
    weightsWrittenAt: e.now,
    stepStartedAt: undefined,
    analysisDueAt: undefined,
    message: `${e.report.summary} at step ${s.stepIndex + 1} (${s.canaryWeight}%): ${j.why}; rolled back to ${s.stable}`,
    since: e.now,
    updatedAt: e.now,
  };
}

function reduceAdvance(ctx: RolloutContext, e: Ev<"ANALYSIS">): RolloutRecord {
  const j = e.judgement;
  const next = toStep(ctx, e.now, ctx.state.stepIndex + 1, `${e.report.summary}; ${j.why}`);
  return { ...next, errors: j.errors, lastAnalysis: recordAnalysis(ctx.state, e.report, e.now) };
}

function reduceStay(ctx: RolloutContext, e: Ev<"ANALYSIS">): RolloutRecord {
  const s = ctx.state;
  const j = e.judgement;
  return {
    ...s,
    failures: j.failures,
    noData: j.noData,
    errors: j.errors,
    lastAnalysis: recordAnalysis(s, e.report, e.now),
    // A failed analysis starts a fresh window so one spike is not counted twice;
    // holding on missing data keeps accumulating the same step's traffic.
    stepStartedAt: j.outcome === "retry" ? e.now : s.stepStartedAt,
    analysisDueAt: e.now + ctx.settings.intervalMs,
    // A hold's clock runs from its first analysis; any other outcome stops it.
    heldSince: j.outcome === "hold" ? (s.heldSince ?? e.now) : undefined,
    holdReason: j.outcome === "hold" ? j.hold : undefined,
    message: `${e.report.summary} at step ${s.stepIndex + 1} (${s.canaryWeight}%): ${j.why}`,
    updatedAt: e.now,
  };
}

/** An in-step evaluation that moved the consecutive count: recorded, the step's window and deadline kept. */
function reduceCount(ctx: RolloutContext, e: Ev<"ANALYSIS">): RolloutRecord {
  const s = ctx.state;
  const j = e.judgement;
  return {
    ...s,
    failures: j.failures,
    lastAnalysis: recordAnalysis(s, e.report, e.now),
    message: `${e.report.summary} at step ${s.stepIndex + 1} (${s.canaryWeight}%): ${j.why}`,
    updatedAt: e.now,
  };
}

function reduceHoldExpired(ctx: RolloutContext, e: Ev<"HOLD_EXPIRED">, rollback: boolean): RolloutRecord {
  const s = ctx.state;
  const base = { ...s, heldSince: undefined, holdReason: undefined, since: e.now, updatedAt: e.now };
  return rollback
    ? {
        ...base,
        stepIndex: -1,
        canaryWeight: 0,
        weightsWrittenAt: e.now,
        stepStartedAt: undefined,
        analysisDueAt: undefined,
        message: `${e.reason}; holdLimit reached: rolled back to ${s.stable}`,
      }
    : {
        ...base,
        pausedBy: "hold",
        message: `${e.reason}; holdLimit reached: paused at ${s.canaryWeight}% (rolloutd resume starts the step again)`,
      };
}

const outcomeOf = (e: MachineEvent) => (e as Ev<"ANALYSIS">).judgement.outcome;

export const rolloutMachine = setup({
  types: {
    context: {} as RolloutContext,
    events: {} as MachineEvent,
    input: {} as RolloutContext,
  },
  actions: {
    abort: assign({ state: ({ context, event }) => reduceAbort(context, event as Ev<"ABORT">, false) }),
    reabort: assign({ state: ({ context, event }) => reduceAbort(context, event as Ev<"ABORT">, true) }),
    begin: assign({
      state: ({ context, event }, p: { why: string; stayPaused?: boolean }) =>
        reduceBegin(context, event as Ev<"NEW_REVISION" | "START" | "RETRY">, p.why, p.stayPaused ?? false),
    }),
    consumeRetry: assign({
      state: ({ context, event }) => ({
        ...context.state,
        tokens: { ...context.state.tokens, retry: (event as Ev<"RETRY">).token },
        updatedAt: event.now,
      }),
    }),
    pause: assign({ state: ({ context, event }) => reducePause(context, event as Ev<"PAUSE">) }),
    drift: assign({ state: ({ context, event }) => reduceDrift(context, event as Ev<"DRIFT">) }),
    resume: assign({ state: ({ context, event }) => reduceResume(context, event as Ev<"RESUME">) }),
    accept: assign({ state: ({ context, event }) => reduceAccepted(context, event as Ev<"ACCEPTED">) }),
    notAccepted: assign({
      state: ({ context, event }) => reduceNotAccepted(context, event as Ev<"NOT_ACCEPTED">),
    }),
    promote: assign({
      state: ({ context, event }, p: { why: string }) =>
        reducePromote(context, event as Ev<"ANALYSIS" | "PROMOTE">, p.why),
    }),
    rollback: assign({ state: ({ context, event }) => reduceRollback(context, event as Ev<"ANALYSIS">) }),
    advance: assign({ state: ({ context, event }) => reduceAdvance(context, event as Ev<"ANALYSIS">) }),
    stay: assign({ state: ({ context, event }) => reduceStay(context, event as Ev<"ANALYSIS">) }),
    count: assign({ state: ({ context, event }) => reduceCount(context, event as Ev<"ANALYSIS">) }),
    holdRollback: assign({
      state: ({ context, event }) => reduceHoldExpired(context, event as Ev<"HOLD_EXPIRED">, true),
    }),
    holdPause: assign({
      state: ({ context, event }) => reduceHoldExpired(context, event as Ev<"HOLD_EXPIRED">, false),
    }),
    // Effect markers: they do nothing here. decide() turns them into Effects
    // from the state after the transition, and the controller executes them.
    applyWeights: () => {},
    announce: (_, _p: { severity: EventSeverity; reason: string }) => {},
  },
  guards: {
    awaitingAcceptance: ({ context }) => context.state.stepStartedAt === undefined,
    // The Warning is given once per step, not on every look at a route that still does not accept.
    firstNotAccepted: ({ context }) =>
      context.state.stepStartedAt === undefined && context.state.acceptWarned !== true,
    analysisRollsBack: ({ event }) => outcomeOf(event) === "rollback",
    analysisPromotes: ({ context, event }) =>
      outcomeOf(event) === "advance" && context.state.stepIndex + 1 >= context.settings.steps.length,
    analysisAdvances: ({ event }) => outcomeOf(event) === "advance",
    analysisCounts: ({ event }) => outcomeOf(event) === "count",
    analysisHolds: ({ event }) => outcomeOf(event) === "hold" || outcomeOf(event) === "retry",
    holdRollsBack: ({ context }) => (context.settings.holdAction ?? "rollback") === "rollback",
  },
}).createMachine({
  id: "rollout",
  context: ({ input }) => input,
  initial: "Steady",
  on: {
    // Abort wins in every state, and repeats harmlessly.
    ABORT: {
      target: ".Aborted",
      actions: [
        "abort",
        "applyWeights",
        { type: "announce", params: { severity: "Warning", reason: "Aborted" } },
      ],
    },
  },
  states: {
    Steady: {
      on: {
        NEW_REVISION: begin_("new canary revision"),
        START: begin_("started by annotation"),
        // Nothing failed, so there is nothing to retry; the token is used up so it cannot fire later.
        RETRY: { actions: ["consumeRetry"] },
      },
    },
    Promoted: {
      on: {
        NEW_REVISION: begin_("new canary revision"),
        START: begin_("started by annotation"),
        // Nothing failed, so there is nothing to retry; the token is used up so it cannot fire later.
        RETRY: { actions: ["consumeRetry"] },
      },
    },
    RolledBack: {
      on: {
        NEW_REVISION: begin_("new canary revision"),
        START: begin_("started by annotation"),
        RETRY: begin_("retried by annotation"),
      },
    },
    Aborted: {
      on: {
        // Weights moved away from stable while the abort stands: put them back, keep the abort's record.
        ABORT: {
          actions: [
            "reabort",
            "applyWeights",
            { type: "announce", params: { severity: "Warning", reason: "Aborted" } },
          ],
        },
        NEW_REVISION: begin_("new canary revision"),
        START: begin_("started by annotation"),
        RETRY: begin_("retried by annotation"),
      },
    },
    Progressing: {
      on: {
        NEW_REVISION: begin_("new canary revision, restarting"),
        PAUSE: {
          target: "Paused",
          actions: ["pause", { type: "announce", params: { severity: "Normal", reason: "Paused" } }],
        },
        DRIFT: {
          target: "Paused",
          actions: ["drift", { type: "announce", params: { severity: "Warning", reason: "WeightsDrifted" } }],
        },
        ACCEPTED: { guard: "awaitingAcceptance", actions: ["accept"] },
        NOT_ACCEPTED: {
          guard: "firstNotAccepted",
          actions: [
            "notAccepted",
            { type: "announce", params: { severity: "Warning", reason: "RouteNotAccepted" } },
          ],
        },
        PROMOTE: {
          target: "Promoted",
          actions: [
            { type: "promote", params: { why: "promoted by annotation" } },
            "applyWeights",
            { type: "announce", params: { severity: "Normal", reason: "Promoted" } },
          ],
        },
        ANALYSIS: [
          {
            guard: "analysisRollsBack",
            target: "RolledBack",
            actions: [
              "rollback",
              "applyWeights",
              { type: "announce", params: { severity: "Warning", reason: "RolledBack" } },
            ],
          },
          {
            guard: "analysisPromotes",
            target: "Promoted",
            actions: [
              { type: "promote", params: { why: "all steps passed" } },
              "applyWeights",
              { type: "announce", params: { severity: "Normal", reason: "Promoted" } },
            ],
          },
          {
            guard: "analysisAdvances",
            actions: [
              "advance",
              "applyWeights",
              { type: "announce", params: { severity: "Normal", reason: "StepAdvanced" } },
            ],
          },
          {
            guard: "analysisCounts",
            actions: ["count", { type: "announce", params: { severity: "Warning", reason: "InStepBreach" } }],
          },
          // Hold or retry: stay on this step and analyse again after another interval. (`ignore`: no transition.)
          {
            guard: "analysisHolds",
            actions: [
              "stay",
              { type: "announce", params: { severity: "Warning", reason: "AnalysisNotPassed" } },
            ],
          },
        ],
        HOLD_EXPIRED: [
          {
            guard: "holdRollsBack",
            target: "RolledBack",
            actions: [
              "holdRollback",
              "applyWeights",
              { type: "announce", params: { severity: "Warning", reason: "RolledBack" } },
            ],
          },
          {
            target: "Paused",
            actions: [
              "holdPause",
              { type: "announce", params: { severity: "Warning", reason: "HoldExpired" } },
            ],
          },
        ],
      },
    },
    Paused: {
      on: {
        NEW_REVISION: {
          actions: [
            {
              type: "begin",
              params: { why: "new canary revision while paused, restarting", stayPaused: true },
            },
            "applyWeights",
            { type: "announce", params: { severity: "Normal", reason: "RolloutRestarted" } },
          ],
        },
        RESUME: {
          target: "Progressing",
          actions: [
            "resume",
            "applyWeights",
            { type: "announce", params: { severity: "Normal", reason: "Resumed" } },
          ],
        },
        PROMOTE: {
          target: "Promoted",
          actions: [
            { type: "promote", params: { why: "promoted by annotation" } },
            "applyWeights",
            { type: "announce", params: { severity: "Normal", reason: "Promoted" } },
          ],
        },
      },
    },
  },
});

function begin_(why: string) {
  return {
    target: "Progressing",
    actions: [
      { type: "begin", params: { why } },
      "applyWeights",
      { type: "announce", params: { severity: "Normal", reason: "RolloutStarted" } },
    ],
  } as const;
}

function fmtApplied(w: RolloutState["applied"]): string {
  if (!w?.length) return "nothing";
  return w.map((a) => `${a.backend}=${a.weight}`).join(" ");
}

function fmt(w: Record<string, number> | undefined): string {
  if (!w) return "nothing";
  return Object.entries(w)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

export type RolloutSnapshot = SnapshotFrom<typeof rolloutMachine>;

/** Restores a snapshot from persisted state. Restoring is not a transition: nothing runs. */
export function restore(settings: Settings, state: RolloutState): RolloutSnapshot {
  const { phase, ...record } = state;
  return rolloutMachine.resolveState({ value: phase, context: { settings, state: record } });
}

export interface Decision {
  state: RolloutState;
  effects: Effect[];
  /** False when the event was not accepted in this state (nothing changes). */
  changed: boolean;
}

/** One pure step of the lifecycle. */
export function decide(settings: Settings, state: RolloutState, event: RolloutEvent): Decision {
  const snapshot = restore(settings, state);
  const input: MachineEvent =
    event.type === "ANALYSIS"
      ? {
          ...event,
          judgement: (event.early ? judgeEarly : judge)(settings, state, event.report.verdict),
        }
      : event;
  if (!snapshot.can(input)) return { state, effects: [], changed: false };
  const [next, actions] = transition(rolloutMachine, snapshot, input);
  if (next.context === snapshot.context) return { state, effects: [], changed: false };
  const after: RolloutState = { ...next.context.state, phase: next.value };
  const effects: Effect[] = [];
  for (const a of actions) {
    if (a.type === "applyWeights") {
      effects.push({
        type: "setWeights",
        canaryPercent: after.canaryWeight,
        stable: after.stable,
        canary: after.canary,
      });
    } else if (a.type === "announce") {
      const p = a.params as { severity: EventSeverity; reason: string };
      // The abort reason lives once in the state; the Event carries it for `kubectl describe`.
      // A hold's Event says why without counts or values, so repeats fold into one Event with a count.
      const hold =
        input.type === "ANALYSIS" && input.judgement.outcome === "hold" ? input.judgement.hold : undefined;
      const message =
        p.reason === "Aborted"
          ? describeState(after)
          : hold
            ? `holding at step ${after.stepIndex + 1} (${after.canaryWeight}%): ${hold}; the count and values are in rolloutd status`
            : after.message;
      effects.push({ type: "record", severity: p.severity, reason: p.reason, message });
    }
  }
  return { state: after, effects, changed: true };
}

export { atRest };
