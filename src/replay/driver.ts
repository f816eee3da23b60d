/**
 * Runs a policy's analysis step by step, offline, through the REAL lifecycle: the rollout machine's `decide()`
 * with the settings the controller derives from the policy (`settingsOf`), fed START, ACCEPTED and ANALYSIS
 * events at the deadlines the persisted state names (`analysisDueAt`), exactly as the daemon would feed them.
 * Only the clock and the metric source are not the daemon's: `rolloutd simulate` scripts the metrics,
 * `rolloutd replay` asks Prometheus about the past.
 *
 * Nothing is written anywhere; the result is a timeline of frames (one per analysis) for a table and a picture.
 */
import type { AnalysisGate, AnalysisReport } from "../analysis/types.ts";
import type { RolloutState } from "../contract.ts";
import { settingsOf } from "../controller/reconcile.ts";
import { decide, type Decision, type RolloutEvent } from "../machine/machine.ts";
import { initialState } from "../machine/state.ts";
import type { RolloutPolicy } from "../policy/types.ts";

export type RehearsalOutcome = "promoted" | "rolledBack" | "incomplete";

/** One analysis and what the machine made of it. */
export interface Frame {
  /** 0-based analysis number. */
  index: number;
  at: number;
  stepIndex: number;
  /** 0-based analysis within this step. */
  attempt: number;
  canaryWeight: number;
  stepStartedAt: number;
  report: AnalysisReport;
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
  beforeAnalysis?: (where: { stepIndex: number; attempt: number }) => string | undefined;
  /** Safety stop. Default 1000 analyses. */
  maxAnalyses?: number;
}

const REVISION = "rehearsal";

function eventBase(now: number): { now: number; revisions: Record<string, string> } {
  return { now, revisions: {} };
}

function recordReason(d: Decision): string | undefined {
  const rec = d.effects.find((e) => e.type === "record");
  return rec?.type === "record" ? rec.reason : undefined;
}

export async function rehearse(o: RehearseOptions): Promise<Timeline> {
  const { policy, gate } = o;
  const settings = settingsOf(policy);
  const max = o.maxAnalyses ?? 1000;
  let state = initialState({ stable: policy.stable, canary: policy.canary, baseline: {}, now: o.start });
  const step = (ev: RolloutEvent): Decision => {
    const d = decide(settings, state, ev);
    state = d.state;
    return d;
  };
  step({ type: "START", token: REVISION, revision: REVISION, ...eventBase(o.start) });

  const frames: Frame[] = [];
  let attempt = 0;
  let lastStep = state.stepIndex;
  const done = (outcome: RehearsalOutcome, ending: string): Timeline => ({
    policy: policy.key,
    start: o.start,
    frames,
    outcome,
    ending,
    final: state,
  });

  while (state.phase === "Progressing") {
    if (state.stepStartedAt === undefined) {
      // Gateway API: the daemon waits for the route's parents to accept the weights; history cannot tell
      // when they did, so they are taken as accepted when written.
      const d = step({ type: "ACCEPTED", ...eventBase(state.weightsWrittenAt ?? o.start) });
      if (!d.changed) return done("incomplete", "the machine did not accept the step's weights");
      continue;
    }
    const at = state.analysisDueAt;
    if (at === undefined) return done("incomplete", "no analysis deadline in the state");
    if (o.end !== undefined && at > o.end) {
      return done(
        "incomplete",
        `the time range ends before the next analysis (step ${state.stepIndex + 1}, due ${new Date(at).toISOString()})`,
      );
    }
    if (frames.length >= max) return done("incomplete", `stopped after ${max} analyses`);
    if (state.stepIndex !== lastStep) {
      lastStep = state.stepIndex;
      attempt = 0;
    }
    const stop = o.beforeAnalysis?.({ stepIndex: state.stepIndex, attempt });
    if (stop !== undefined) return done("incomplete", stop);
    const before = state;
    const report = await gate.analyze({
      policyKey: policy.key,
      namespace: policy.namespace,
      stable: before.stable,
      canary: before.canary,
      canaryWeight: before.canaryWeight,
      stepStartedAt: before.stepStartedAt ?? at,
      now: at,
    });
    const d = step({ type: "ANALYSIS", report, ...eventBase(at) });
    frames.push({
      index: frames.length,
      at,
      stepIndex: before.stepIndex,
      attempt,
      canaryWeight: before.canaryWeight,
      stepStartedAt: before.stepStartedAt ?? at,
      report,
      reason: recordReason(d) ?? (d.changed ? "Decided" : "Ignored"),
      message: state.message,
      phase: state.phase,
    });
    attempt++;
  }
  if (state.phase === "Promoted") return done("promoted", state.message);
  if (state.phase === "RolledBack") return done("rolledBack", state.message);
  return done("incomplete", `ended in phase ${state.phase}: ${state.message}`);
}

/** Exit codes of simulate and replay: 0 promoted, 1 rolled back, 2 neither within the script or time range. */
export function exitCodeOf(outcome: RehearsalOutcome): number {
  return outcome === "promoted" ? 0 : outcome === "rolledBack" ? 1 : 2;
}
