/**
 * rolloutd's public contract with the cluster: the annotation names operators
 * and the CLI set, the field manager every write carries, and the encoding of
 * the rollout state persisted beside the weights. The controller, the
 * routers and the CLI all read it from here, so the three can never drift
 * apart; it imports nothing but types.
 */
import type { AnalysisVerdict, CheckVerdict } from "./analysis/types.ts";
import type { TargetKind } from "./policy/types.ts";

export const ANNOTATIONS = {
  /** Level-triggered: while true, all of the pair's traffic stays on the stable backend. */
  abort: "rolloutd.dev/abort",
  /** Free text from the operator; stored cleaned and cut to MAX_REASON_CHARS. */
  abortReason: "rolloutd.dev/abort-reason",
  /** Level-triggered: while true, weights are held and nothing is analysed. */
  pause: "rolloutd.dev/pause",
  /** One-shot controls: any new value acts once; the value last acted on is kept in the state. */
  start: "rolloutd.dev/start",
  retry: "rolloutd.dev/retry",
  resume: "rolloutd.dev/resume",
  promote: "rolloutd.dev/promote",
  /** rolloutd's own record, written only by the daemon, in the same request as the weights. */
  state: "rolloutd.dev/state",
  /** On a request stage's own GatewayRoute (App Mesh's weighted form): the stage it was written for. */
  stage: "rolloutd.dev/stage",
} as const;

/** The one field manager name of every daemon write (the CLI uses `${FIELD_MANAGER}-cli`). */
export const FIELD_MANAGER = "rolloutd";

/**
 * An abort reason is kept to this many characters. The API server caps all of
 * an object's annotations at 256 KiB together; a reason copied whole into the
 * state could push the abort's own write over it (422), and then the abort
 * would never land.
 */
export const MAX_REASON_CHARS = 1024;

/** A one-shot token longer than this is someone else's data, not a control value. */
const MAX_TOKEN_CHARS = 256;

/**
 * Operator text made safe for state, logs and Events: control characters
 * (terminal escapes, NULs, newlines) become spaces, runs of white space fold
 * to one, and the text is cut to `max` characters (by code point, so a cut
 * never splits a character).
 */
// Matching control characters is the point here.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

export function cleanText(raw: string, max = MAX_REASON_CHARS): string {
  const folded = raw.replace(CONTROL_CHARS, " ").replace(/\s+/g, " ").trim();
  const chars = [...folded];
  return chars.length <= max ? folded : `${chars.slice(0, max - 1).join("")}…`;
}

export interface Controls {
  abort: boolean;
  abortReason?: string;
  pause: boolean;
  start?: string;
  retry?: string;
  resume?: string;
  promote?: string;
}

const TRUE_VALUES = new Set(["true", "yes", "1", "on"]);
const truthy = (v: string | undefined) => v !== undefined && TRUE_VALUES.has(v.trim().toLowerCase());

/** Whether the object carries an abort (cheaper than readControls, for every watch event). */
export function asksAbort(obj: { metadata?: { annotations?: Readonly<Record<string, string>> } }): boolean {
  return truthy(obj.metadata?.annotations?.[ANNOTATIONS.abort]);
}

/** The operator's controls as set on the route's annotations. */
export function readControls(obj: {
  metadata?: { annotations?: Readonly<Record<string, string>> };
}): Controls {
  const a = obj.metadata?.annotations ?? {};
  const token = (k: string) => {
    const v = a[k]?.trim();
    return v ? cleanText(v, MAX_TOKEN_CHARS) : undefined;
  };
  const rawReason = a[ANNOTATIONS.abortReason];
  return {
    abort: truthy(a[ANNOTATIONS.abort]),
    abortReason: rawReason !== undefined ? cleanText(rawReason) || undefined : undefined,
    pause: truthy(a[ANNOTATIONS.pause]),
    start: token(ANNOTATIONS.start),
    retry: token(ANNOTATIONS.retry),
    resume: token(ANNOTATIONS.resume),
    promote: token(ANNOTATIONS.promote),
  };
}

/** "/metadata/annotations/rolloutd.dev~1state": an annotation key as a JSON Pointer. */
export function annotationPath(key: string): string {
  return `/metadata/annotations/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`;
}

// ---------------------------------------------------------------------------
// The persisted state (annotation ANNOTATIONS.state, JSON, version 1)

export const PHASES = ["Steady", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted"] as const;
export type Phase = (typeof PHASES)[number];

/** True for phases in which no step is running. */
export function atRest(phase: Phase): boolean {
  return phase !== "Progressing" && phase !== "Paused";
}

export interface RecordedCheck {
  name: string;
  /** The measured value; null when there was none (no data, NaN, error). */
  value: number | null;
  /** The true value is at least `value` (a quantile beyond the histogram's top finite bucket). */
  atLeast?: true;
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

/** One weight field of the pair as rolloutd last wrote it. */
export interface AppliedWeight {
  /** JSON Pointer of the field in the weights object. */
  path: string;
  backend: string;
  weight: number;
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
  /** The pair's weight fields as last written; a difference means another writer. */
  applied?: AppliedWeight[];
  /**
   * The route rule rolloutd added for the current request stage (Gateway API,
   * a VirtualRouter), written in the same patch as the rule: a rule of that
   * name is rolloutd's only while this says so. On App Mesh's weighted
   * GatewayRoute the stage is a GatewayRoute of its own, which no patch can
   * write together with the state: this records it before it is created and
   * until it is deleted (the stages may be over by then).
   */
  stageRule?: {
    name: string;
    stage: number;
    /** What the stage sends to the canary, for people. */ match?: string;
  };
  /**
   * blueGreen with a preview route (in the policy's namespace): the share of
   * its pair rolloutd keeps on the new version there — 100 while a rollout
   * runs, 0 once it ends — and the pair's weights as planned for that share.
   * `from`: what the rollout had put there, so that at rest the route is put
   * back only while it still holds that (an edit since is someone else's).
   */
  previewRoute?: {
    kind: TargetKind;
    name: string;
    canaryPercent: 0 | 100;
    applied: AppliedWeight[];
    from?: AppliedWeight[];
  };
  weightsWrittenAt?: number;
  /** When the current weight took effect (route accepted it); the analysis window starts here. */
  stepStartedAt?: number;
  /** Deadline of the next analysis. */
  analysisDueAt?: number;
  /** Consecutive counters; any other outcome resets them. */
  failures: number;
  noData: number;
  errors: number;
  pausedBy?: "annotation" | "drift" | "hold";
  /** When the current hold (no data, too few requests, errors) began; the holdLimit counts from here. */
  heldSince?: number;
  /** Why the rollout holds, without counts. */
  holdReason?: string;
  /**
   * The rollout cannot move for a reason outside the lifecycle (its route no
   * longer holds the pair, say): the Event's reason, its message, and since
   * when. Cleared once the route can be used again.
   */
  stuck?: { reason: string; message: string; since: number };
  /** A Warning about a route that does not accept the weights was already emitted for this step. */
  acceptWarned?: boolean;
  /** Values of the one-shot control annotations already acted upon. */
  tokens: { start?: string; retry?: string; resume?: string; promote?: string };
  /** The abort being honoured; `reason` is cleaned and at most MAX_REASON_CHARS long. */
  abort?: { at: number; reason: string };
  lastAnalysis?: RecordedAnalysis;
  /** Why the last decision was taken, for people. */
  message: string;
  /** When the current phase began. */
  since: number;
  updatedAt: number;
}

/** The state's sentence for people; an abort's reason is stored once, in `abort`, and shown from there. */
export function describeState(s: RolloutState): string {
  if (s.stuck) return `${s.stuck.reason}: ${s.stuck.message}`;
  return s.phase === "Aborted" && s.abort
    ? `aborted: ${s.abort.reason}; all traffic on ${s.stable}`
    : s.message;
}

export class StateDecodeError extends Error {
  override name = "StateDecodeError";
}

/**
 * JSON cannot say Infinity or NaN; a measured +Inf latency must not come back
 * as null ("no value"), so non-finite numbers are written as strings.
 */
function encodeNumber(_key: string, v: unknown): unknown {
  if (typeof v === "number" && !Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
  return v;
}

function decodeNumber(v: unknown): number | null {
  if (v === "NaN") return Number.NaN;
  if (v === "+Inf") return Number.POSITIVE_INFINITY;
  if (v === "-Inf") return Number.NEGATIVE_INFINITY;
  return typeof v === "number" ? v : null;
}

export function encodeState(state: RolloutState): string {
  return JSON.stringify(state, encodeNumber);
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
  const last = s.lastAnalysis;
  // An older daemon wrote `applied` by backend name; it cannot be compared field by field, so it is dropped.
  const { applied, ...rest } = s;
  return {
    ...rest,
    ...(Array.isArray(applied) ? { applied } : {}),
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
    ...(last
      ? {
          lastAnalysis: {
            ...last,
            checks: (last.checks ?? []).map((c) => ({ ...c, value: decodeNumber(c.value) })),
          },
        }
      : {}),
  } as RolloutState;
}
