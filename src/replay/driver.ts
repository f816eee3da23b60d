/**
 * Runs a policy's analysis step by step, offline, through the REAL lifecycle: the daemon's `derive()` (facts →
 * one event, or "analyse now", or "wait until") and the machine's `decide()` with the settings the controller
 * derives from the policy (`settingsOf`), on a simulated clock. So the rehearsal keeps the daemon's timing —
 * the step deadline (`analysisDueAt`), in-step evaluations at the policy's cadence (which may roll back before
 * the deadline), hold deadlines (`holdLimit`), retries with a fresh window — without a cluster. Only the clock
 * and the metric source are not the daemon's: `rolloutd simulate` scripts the metrics, `rolloutd replay` asks
 * Prometheus about the past.
 *
 * The facts are those of a rollout nobody interferes with: the canary has a new revision at `start` (so the
 * rollout starts then), no control annotations, the route accepts every weight at once (history cannot tell
 * when parents accepted), the weights are never changed by another writer. The policy's cron window is not
 * applied.
 *
 * Nothing is written anywhere; the result is a timeline of frames (one per decision-relevant analysis or event)
 * for a table and a picture.
 */
import type { AnalysisGate, AnalysisReport } from "../analysis/types.ts";
import type { RolloutState } from "../contract.ts";
import { settingsOf } from "../controller/reconcile.ts";
import { derive, stepKey, type AnalysisSlot, type Facts } from "../machine/derive.ts";
import { decide, type RolloutEvent } from "../machine/machine.ts";
import { initialState } from "../machine/state.ts";
import { cadenceOf, DEFAULT_HOLD_LIMIT, type RolloutPolicy } from "../policy/types.ts";

export type RehearsalOutcome = "promoted" | "rolledBack" | "incomplete";

/** One analysis (or a hold deadline) and what the machine made of it. */
export interface Frame {
  /** 0-based frame number. */
  index: number;
  at: number;
  stepIndex: number;
  /** 0-based deadline analysis within this step (in-step evaluations share the number of the next one). */
  attempt: number;
  canaryWeight: number;
  stepStartedAt: number;
  /** An in-step evaluation before the step's deadline. */
  early: boolean;
  /** Absent for an event without analysis (a hold that outlasted holdLimit). */
  report?: AnalysisReport;
  /** The Kubernetes Event reason the daemon would record (StepAdvanced, AnalysisNotPassed, RolledBack, Promoted…). */
  reason: string;
  /** The state's message after the decision: why. */
  message: string;
  phase: RolloutState["phase"];
}

export interface Timeline {
  policy: string;
  start: number;
  frames: Frame[];
  outcome: RehearsalOutcome;
  /** Why it ended. */
  ending: string;
  final: RolloutState;
  /** In-step evaluations that changed nothing (passes with no breach counted), not shown as frames. */
  quietEvaluations: number;
}

export interface RehearseOptions {
  policy: RolloutPolicy;
  gate: AnalysisGate;
  /** When the rollout starts (its first weight takes effect). */
  start: number;
  /** No analysis after this time (replay's --to). */
  end?: number;
  /**
   * Asked before each analysis; a string stops the rehearsal as incomplete with that reason (simulate: the
   * script has no more data for this step).
   */
  beforeAnalysis?: (where: { stepIndex: number; attempt: number; early: boolean }) => string | undefined;
  /** Safety stop. Default 10,000 analyses. */
  maxAnalyses?: number;
}

const REVISION = "rehearsal";

export async function rehearse(o: RehearseOptions): Promise<Timeline> {
  const { policy, gate } = o;
  const settings = settingsOf(policy);
  const timing = {
    intervalMs: policy.intervalMs,
    routeReadyTimeoutMs: policy.routeReadyTimeoutMs,
    holdAfterMs: (policy.holdLimit ?? DEFAULT_HOLD_LIMIT).afterMs,
  };
  const cadence = cadenceOf(policy);
  const max = o.maxAnalyses ?? 10_000;
  const revisions = { [policy.canary]: REVISION };

  let now = o.start;
  let state = initialState({ stable: policy.stable, canary: policy.canary, baseline: {}, now });
  let slot: AnalysisSlot = { kind: "none" };
  /** The in-step schedule, kept in memory as the reconciler keeps it. */
  let early: { step: string; at: number } | undefined;
  let analyses = 0;
  let quiet = 0;
  const attempts = new Map<number, number>();
  const frames: Frame[] = [];

  const done = (outcome: RehearsalOutcome, ending: string): Timeline => ({
    policy: policy.key,
    start: o.start,
    frames,
    outcome,
    ending,
    final: state,
    quietEvaluations: quiet,
  });

  for (;;) {
    if (state.phase === "Promoted") return done("promoted", state.message);
    if (state.phase === "RolledBack") return done("rolledBack", state.message);
    if (state.phase === "Paused" || state.phase === "Aborted") {
      return done("incomplete", `ended in phase ${state.phase}: ${state.message}`);
    }
    const step =
      state.phase === "Progressing" && state.stepStartedAt !== undefined ? stepKey(state) : undefined;
    if (!cadence || step === undefined) early = undefined;
    else if (early?.step !== step) early = { step, at: (state.stepStartedAt ?? now) + cadence };
    const facts: Facts = {
      controls: { abort: false, pause: false },
      revisions,
      readiness: {},
      pair: [],
      accepted: true,
      analysis: slot,
      ...(early !== undefined ? { nextEarlyAt: early.at } : {}),
    };
    const derived = derive(state, facts, now, timing);

    if (derived.kind === "wait") {
      if (derived.requeueAfterMs === undefined) {
        return done("incomplete", `nothing more would happen: ${derived.note ?? state.message}`);
      }
      now += Math.max(1, derived.requeueAfterMs);
      if (o.end !== undefined && now > o.end) {
        return done(
          "incomplete",
          `the time range ends at step ${state.stepIndex + 1} (${state.canaryWeight}%) before anything more is decided`,
        );
      }
      continue;
    }

    if (derived.kind === "analyze") {
      if (analyses >= max) return done("incomplete", `stopped after ${max} analyses`);
      const isEarly = derived.step !== stepKey(state);
      const attempt = attempts.get(state.stepIndex) ?? 0;
      const stop = o.beforeAnalysis?.({ stepIndex: state.stepIndex, attempt, early: isEarly });
      if (stop !== undefined) return done("incomplete", stop);
      const report = await gate.analyze({
        policyKey: policy.key,
        namespace: policy.namespace,
        stable: state.stable,
        canary: state.canary,
        canaryWeight: state.canaryWeight,
        stepStartedAt: state.stepStartedAt ?? derived.dueAt,
        now: derived.dueAt,
      });
      analyses++;
      slot = { kind: "done", step: derived.step, report };
      continue;
    }

    const event: RolloutEvent = derived.event;
    const before = state;
    const isEarly = event.type === "ANALYSIS" && event.early === true;
    if (isEarly && early !== undefined) early.at = now + cadence;
    const d = decide(settings, state, event);
    if (event.type === "ANALYSIS") slot = { kind: "none" };
    if (!d.changed) {
      if (event.type === "ANALYSIS") {
        quiet++;
        continue;
      }
      return done("incomplete", `the machine did not take ${event.type} in phase ${state.phase}`);
    }
    state = d.state;
    if (event.type !== "ANALYSIS" && event.type !== "HOLD_EXPIRED") continue;
    const attempt = attempts.get(before.stepIndex) ?? 0;
    if (event.type === "ANALYSIS" && !isEarly) attempts.set(before.stepIndex, attempt + 1);
    const rec = d.effects.find((e) => e.type === "record");
    frames.push({
      index: frames.length,
      at: now,
      stepIndex: before.stepIndex,
      attempt,
      canaryWeight: before.canaryWeight,
      stepStartedAt: before.stepStartedAt ?? now,
      early: isEarly,
      ...(event.type === "ANALYSIS" ? { report: event.report } : {}),
      reason: rec?.type === "record" ? rec.reason : "Decided",
      message: state.message,
      phase: state.phase,
    });
  }
}

/** Exit codes of simulate and replay: 0 promoted, 1 rolled back, 2 neither within the script or time range. */
export function exitCodeOf(outcome: RehearsalOutcome): number {
  return outcome === "promoted" ? 0 : outcome === "rolledBack" ? 1 : 2;
}
