/**
 * Facts in, one lifecycle event out. The controller observes the cluster
 * (route weights, acceptance, operator annotations, Deployment revisions)
 * and the analysis job of the current step; this pure function says which
 * single event those facts mean for the persisted state, or what to wait
 * for. It is the only place that reads facts; the machine is the only place
 * that decides what an event does. Both are tested by table.
 *
 * Priority, highest first: abort, promote, new revision, start/retry,
 * pause/resume, drift, acceptance, analysis. An abort is never behind
 * anything slow: deriving is synchronous and nothing here waits on I/O.
 */
import type { AnalysisReport } from "../analysis/types.ts";
import { atRest, type AppliedWeight, type Controls, type RolloutState } from "../contract.ts";
import type { RolloutEvent } from "./machine.ts";

/** The analysis of the current step, as the controller's job runner has it. */
export type AnalysisSlot =
  | { kind: "none" }
  | { kind: "running"; step: string }
  | { kind: "done"; step: string; report: AnalysisReport };

export interface Facts {
  controls: Controls;
  /** Current pod-template revision of each backend's Deployment, where known. */
  revisions: Record<string, string>;
  /** Whether each backend's Deployment has finished rolling out, where known. */
  readiness: Record<string, { ready: boolean; detail: string }>;
  /** The pair's weight fields as the route has them now. */
  pair: AppliedWeight[];
  accepted: boolean;
  acceptanceDetail?: string;
  /** The policy's cron window at `now`, when it has one. */
  window?: { open: boolean; nextOpen?: number; expression: string };
  analysis: AnalysisSlot;
  /** When the next in-step evaluation is due (the controller keeps the cadence; none when disabled). */
  nextEarlyAt?: number;
}

export interface Timing {
  intervalMs: number;
  routeReadyTimeoutMs: number;
  /** A hold ends this long after it began (HOLD_EXPIRED). */
  holdAfterMs: number;
}

export type Derived =
  | { kind: "event"; event: RolloutEvent }
  /** The step's analysis is due: start its job (the result comes back as a fact). */
  | { kind: "analyze"; step: string; dueAt: number }
  | {
      kind: "wait";
      /** Look again after this long even if nothing changes (a deadline). */
      requeueAfterMs?: number;
      /** Why nothing happens, for the log; `quiet` notes are routine. */
      note?: string;
      quiet?: boolean;
    };

/** Identity of a step's analysis window: a result for any other window is stale. */
export function stepKey(s: RolloutState): string {
  return `${s.revision ?? ""}|${s.stepIndex}|${s.stepStartedAt ?? ""}`;
}

/** Identity of one in-step evaluation of that window. */
export function earlyKey(step: string, at: number): string {
  return `${step}|early@${at}`;
}

/** The job keys that belong to a step's window: its deadline analysis and its in-step evaluations. */
export function ofStep(jobStep: string, step: string): boolean {
  return jobStep === step || jobStep.startsWith(`${step}|early@`);
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

/** The canary has no weight anywhere: all of the pair's traffic is on stable. */
export function canaryAtZero(pair: readonly AppliedWeight[], canary: string): boolean {
  return pair.every((w) => w.backend !== canary || w.weight === 0);
}

/** Every field rolloutd last wrote still holds what it wrote. */
export function sameAsApplied(applied: readonly AppliedWeight[], pair: readonly AppliedWeight[]): boolean {
  const now = new Map(pair.map((w) => [w.path, w]));
  return applied.every((a) => {
    const w = now.get(a.path);
    return w !== undefined && w.backend === a.backend && w.weight === a.weight;
  });
}

const wait = (
  note?: string,
  requeueAfterMs?: number,
  quiet?: boolean,
): Extract<Derived, { kind: "wait" }> => ({
  kind: "wait",
  ...(note !== undefined ? { note } : {}),
  ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
  ...(quiet ? { quiet } : {}),
});

export function derive(s: RolloutState, f: Facts, now: number, t: Timing): Derived {
  const base = { now, revisions: f.revisions };
  const c = f.controls;
  const event = (e: RolloutEvent): Derived => ({ kind: "event", event: e });

  if (c.abort) {
    if (s.phase !== "Aborted" || !canaryAtZero(f.pair, s.canary)) {
      return event({ type: "ABORT", reason: c.abortReason ?? "rolloutd.dev/abort annotation set", ...base });
    }
    return wait("aborted: remove the rolloutd.dev/abort annotation to allow new rollouts");
  }

  if (c.promote && c.promote !== s.tokens.promote && !atRest(s.phase)) {
    return event({ type: "PROMOTE", token: c.promote, ...base });
  }

  const canaryRev = f.revisions[s.canary];
  if (canaryRev && canaryRev !== s.baseline[s.canary]) {
    const ready = f.readiness[s.canary];
    if (ready && !ready.ready) {
      return wait(
        `new revision ${canaryRev} of ${s.canary} is rolling out (${ready.detail}); waiting before starting`,
      );
    }
    return event({ type: "NEW_REVISION", revision: canaryRev, ...base });
  }

  if (atRest(s.phase)) {
    if (c.start && c.start !== s.tokens.start) {
      return event({ type: "START", token: c.start, revision: canaryRev ?? "unknown", ...base });
    }
    if (c.retry && c.retry !== s.tokens.retry) {
      return event({
        type: "RETRY",
        token: c.retry,
        revision: canaryRev ?? s.revision ?? "unknown",
        ...base,
      });
    }
    return wait();
  }

  if (s.phase === "Paused") {
    if (s.pausedBy === "annotation" && !c.pause) {
      return event({ type: "RESUME", ...(c.resume !== s.tokens.resume ? { token: c.resume } : {}), ...base });
    }
    if (c.resume && c.resume !== s.tokens.resume) return event({ type: "RESUME", token: c.resume, ...base });
    if (s.pausedBy === "drift" && s.applied && sameAsApplied(s.applied, f.pair)) {
      return event({ type: "RESUME", ...base });
    }
    return wait(s.message);
  }

  // Progressing.
  if (c.pause) return event({ type: "PAUSE", resumeToken: c.resume, ...base });
  if (s.applied && !sameAsApplied(s.applied, f.pair)) {
    return event({ type: "DRIFT", observed: byBackend(f.pair), resumeToken: c.resume, ...base });
  }
  if (s.stepStartedAt === undefined) {
    if (f.accepted) return event({ type: "ACCEPTED", ...base });
    const waited = now - (s.weightsWrittenAt ?? now);
    if (waited >= t.holdAfterMs) {
      return event({
        type: "HOLD_EXPIRED",
        reason: `the route's parents have not accepted step ${s.stepIndex + 1} for ${duration(waited)}: ${f.acceptanceDetail ?? "unknown"}`,
        ...base,
      });
    }
    if (waited >= t.routeReadyTimeoutMs && !s.acceptWarned) {
      return event({
        type: "NOT_ACCEPTED",
        reason:
          `weights ${formatPair(f.pair)} written ${Math.round(waited / 1000)} s ago are not accepted by every parent: ` +
          (f.acceptanceDetail ?? "unknown"),
        ...base,
      });
    }
    const nextLook = s.acceptWarned
      ? t.holdAfterMs - waited
      : Math.min(t.routeReadyTimeoutMs, t.holdAfterMs) - waited;
    return wait(
      `waiting for the route's parents to accept the weights: ${f.acceptanceDetail ?? ""}`,
      Math.max(1000, nextLook),
      true,
    );
  }

  if (s.heldSince !== undefined && now - s.heldSince >= t.holdAfterMs) {
    return event({
      type: "HOLD_EXPIRED",
      reason: `held at step ${s.stepIndex + 1} (${s.canaryWeight}%) for ${duration(now - s.heldSince)}: ${s.holdReason ?? "no conclusive analysis"}`,
      ...base,
    });
  }

  const due = s.analysisDueAt ?? s.stepStartedAt + t.intervalMs;
  const step = stepKey(s);
  if (now < due) {
    // In-step detection: evaluate before the deadline; only a breach can come of it.
    const early = f.nextEarlyAt;
    if (early !== undefined && early < due) {
      const key = earlyKey(step, early);
      if (f.analysis.kind === "done" && f.analysis.step === key) {
        return event({ type: "ANALYSIS", report: f.analysis.report, early: true, ...base });
      }
      if (f.analysis.kind === "running" && f.analysis.step === key) {
        return wait(`in-step check of step ${s.stepIndex + 1} in flight`, undefined, true);
      }
      if (now >= early) return { kind: "analyze", step: key, dueAt: early };
    }
    const holdEnds = s.heldSince !== undefined ? s.heldSince + t.holdAfterMs : Infinity;
    const next = Math.min(due, early !== undefined && early > now ? early : Infinity, holdEnds);
    return wait(undefined, next - now);
  }
  if (f.window && !f.window.open) {
    const next = f.window.nextOpen;
    return wait(
      `outside the rollout window "${f.window.expression}"; holding at ${s.canaryWeight}% until ${next ? new Date(next).toISOString() : "the window opens"}`,
      next ? Math.max(1000, next - now) : 3_600_000,
    );
  }
  if (f.analysis.kind === "done" && f.analysis.step === step) {
    return event({ type: "ANALYSIS", report: f.analysis.report, ...base });
  }
  if (f.analysis.kind === "running" && f.analysis.step === step) {
    return wait(`analysis of step ${s.stepIndex + 1} in flight`, undefined, true);
  }
  return { kind: "analyze", step, dueAt: due };
}

function byBackend(pair: readonly AppliedWeight[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const w of pair) if (!(w.backend in out)) out[w.backend] = w.weight;
  return out;
}

function formatPair(pair: readonly AppliedWeight[]): string {
  return pair.map((w) => `${w.backend}=${w.weight}`).join(" ");
}
