/**
 * The rollout's persisted state. It is stored as one JSON annotation on the
 * object whose weights rolloutd changes, written in the same request as the
 * weights, so the two can never disagree. Everything the engine needs after
 * a restart is here: phase, step, deadlines, consecutive counters, consumed
 * control tokens. Nothing about a rollout lives only in memory.
 */
import type { AnalysisVerdict, CheckVerdict } from "../analysis/types.ts";

export const PHASES = ["Steady", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted"] as const;
export type Phase = (typeof PHASES)[number];

export interface RecordedCheck {
  name: string;
  /** The measured value; null when there was none (no data, NaN, error). */
  value: number | null;
  outcome: "value" | "noData" | "nan" | "error";
  min?: number;
  max?: number;
  verdict: CheckVerdict;
}

export interface RecordedAnalysis {
  at: number;
  stepIndex: number;
  canaryWeight: number;
  verdict: AnalysisVerdict;
  summary: string;
  checks: RecordedCheck[];
}

export interface RolloutState {
  v: 1;
  /** The policy ("namespace/name") that owns this rollout, for `rolloutd status`. */
  policy?: string;
  phase: Phase;
  /** Current roles: they swap on promotion. */
  stable: string;
  canary: string;
  /** Revision of the canary under rollout (or of the last rollout). */
  revision?: string;
  /** Backend → revision already dealt with: a different one starts a rollout. */
  baseline: Record<string, string>;
  /** Index into the policy's steps; -1 when no step is active. */
  stepIndex: number;
  /** Canary share of the pair, percent, as last written. */
  canaryWeight: number;
  /** Raw route weights by backend as last written; a difference means another writer. */
  applied?: Record<string, number>;
  weightsWrittenAt?: number;
  /** When the current weight took effect (route accepted it); the analysis window starts here. */
  stepStartedAt?: number;
  /** Deadline of the next analysis. */
  analysisDueAt?: number;
  /** Consecutive counters; any other outcome resets them. */
  failures: number;
  noData: number;
  errors: number;
  pausedBy?: "annotation" | "drift";
  /** A Warning about a route that does not accept the weights was already emitted for this step. */
  acceptWarned?: boolean;
  /** Values of the one-shot control annotations already acted upon. */
  tokens: { start?: string; retry?: string; resume?: string; promote?: string };
  abort?: { at: number; reason: string };
  lastAnalysis?: RecordedAnalysis;
  /** Why the last decision was taken, for people. */
  message: string;
  /** When the current phase began. */
  since: number;
  updatedAt: number;
}

export function initialState(opts: {
  stable: string;
  canary: string;
  baseline: Record<string, string>;
  now: number;
}): RolloutState {
  return {
    v: 1,
    phase: "Steady",
    stable: opts.stable,
    canary: opts.canary,
    baseline: { ...opts.baseline },
    stepIndex: -1,
    canaryWeight: 0,
    failures: 0,
    noData: 0,
    errors: 0,
    tokens: {},
    message: "adopted: watching for a new canary revision",
    since: opts.now,
    updatedAt: opts.now,
  };
}

export class StateDecodeError extends Error {
  override name = "StateDecodeError";
}

/** Parses the annotation; throws StateDecodeError on anything we did not write. */
export function decodeState(raw: string): RolloutState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new StateDecodeError(`state annotation is not JSON: ${(err as Error).message}`);
  }
  const s = parsed as Partial<RolloutState>;
  if (typeof s !== "object" || s === null || s.v !== 1) {
    throw new StateDecodeError("state annotation has an unknown version (want v: 1)");
  }
  if (!PHASES.includes(s.phase as Phase) || typeof s.stable !== "string" || typeof s.canary !== "string") {
    throw new StateDecodeError("state annotation lacks phase, stable or canary");
  }
  return {
    ...s,
    baseline: s.baseline ?? {},
    tokens: s.tokens ?? {},
    failures: s.failures ?? 0,
    noData: s.noData ?? 0,
    errors: s.errors ?? 0,
    stepIndex: s.stepIndex ?? -1,
    canaryWeight: s.canaryWeight ?? 0,
    message: s.message ?? "",
    since: s.since ?? 0,
    updatedAt: s.updatedAt ?? 0,
  } as RolloutState;
}

export function encodeState(state: RolloutState): string {
  return JSON.stringify(state);
}

/** True for phases in which no step is running. */
export function atRest(phase: Phase): boolean {
  return phase !== "Progressing" && phase !== "Paused";
}
