/**
 * The normalized, validated form of a RolloutPolicy document. Everything
 * downstream (engine, routers, analysis) works with this shape only; the YAML
 * schema and its defaults live in schema.ts.
 */

import type { ChannelSpec } from "../notify/types.ts";

import type { Stage } from "../routers/stagerule.ts";

export type TargetKind = "GatewayRoute" | "VirtualRouter" | "HTTPRoute" | "GRPCRoute";

export type NoDataAction = "hold" | "fail" | "pass";
export type ErrorAction = "hold" | "fail" | "pass";

export interface PrometheusSpec {
  url: string;
  /** Per-query timeout. */
  timeoutMs: number;
  bearerTokenFile?: string;
  caFile?: string;
  insecureSkipVerify?: boolean;
  basicAuth?: { username: string; passwordFile: string };
}

export interface CheckSpec {
  name: string;
  /** Exactly one of template / query is set. */
  template?: string;
  query?: string;
  min?: number;
  max?: number;
  /**
   * Canary versus stable: the same query is also rendered for the stable backend (`{{canary}}` := the
   * stable's name, and the reverse) and evaluated in the same window. Then min/max are not set, and at least
   * one of maxIncrease, maxDecrease, judge is.
   */
  compare?: "stable";
  /** Canary at most `ratio` (0.2 = 20 %) AND at most `absolute` units above the stable; either may be omitted. */
  maxIncrease?: RelativeBound;
  /** Canary at most `ratio` AND at most `absolute` units below the stable. */
  maxDecrease?: RelativeBound;
  /** A statistical judgment of per-interval samples of canary and stable over the step's window. */
  judge?: MannWhitneySpec;
}

export interface RelativeBound {
  ratio?: number;
  absolute?: number;
}

export interface MannWhitneySpec {
  kind: "mann-whitney";
  /** 0.98: a difference counts when the one-sided (two-sided for `either`) p-value is below 0.02. */
  confidence: number;
  /** 0.25: a significant difference fails only when the Hodges–Lehmann shift exceeds 25 % of the stable's median. */
  tolerance: number;
  /** Length of each sample's window and the spacing of the samples (the range query's step). */
  sampleIntervalMs: number;
  /** Which change is a regression: higher values (latency, errors), lower (success rate), or either. */
  direction: "increase" | "decrease" | "either";
}

export interface AnalysisSpec {
  prometheus: PrometheusSpec;
  /** Which family of built-in templates `template:` names refer to. */
  provider: "envoy" | "istio" | "app";
  /** Below this many canary requests in the window a step is inconclusive. 0 disables the check. */
  minRequests: number;
  /** Overrides the provider's request-count query used for minRequests. */
  requestsQuery?: string;
  checks: CheckSpec[];
  /** Consecutive failed analyses before rollback. */
  failureLimit: number;
  /**
   * How often checks run during a step, ms; 0: only at the step's deadline;
   * absent: a fifth of the interval, at least 2 s (cadenceOf). A breach is
   * acted on at once.
   */
  cadenceMs?: number;
  onNoData: NoDataAction;
  /** Consecutive inconclusive analyses tolerated before onNoData applies (hold ignores it). */
  noDataLimit: number;
  onError: { action: ErrorAction; limit: number };
}

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

export interface HoldLimit {
  afterMs: number;
  action: "rollback" | "pause";
}

/** Ten minutes, then back to stable: a canary nobody can measure should not keep its traffic. */
export const DEFAULT_HOLD_LIMIT: HoldLimit = { afterMs: 10 * 60_000, action: "rollback" };

/**
 * In-step cadence: as set, or a fifth of the interval (at least 2 s, about
 * two scrapes at a 1 s interval), so a breach is seen within a small part of
 * the step while the query rate scales down with longer steps. No analysis:
 * no checks to run.
 */
export function cadenceOf(p: Pick<RolloutPolicy, "analysis" | "intervalMs">): number {
  if (!p.analysis) return 0;
  return p.analysis.cadenceMs ?? Math.max(2_000, Math.floor(p.intervalMs / 5));
}

export interface RolloutPolicy {
  /** "namespace/name" — the identity used for queues, metrics and duplicates. */
  key: string;
  name: string;
  namespace: string;
  target: { kind: TargetKind; name: string };
  /** Backend names as they appear in the route (initial roles; they swap on promotion). */
  stable: string;
  canary: string;
  /**
   * Backend name → the namespace the route's reference to it must name, for
   * backends the policy names in another namespace (`stable: { name, namespace }`).
   * Absent: the namespace of the object holding the references (the route's).
   */
  backendNamespaces?: Record<string, string>;
  /** Backend name → Deployment whose pod template revision triggers a rollout of that backend. */
  deployments: Record<string, string>;
  /** Canary weight in percent at each step, strictly increasing, 1..100. */
  steps: number[];
  /**
   * Request stages before the first weight step: only matching requests go
   * to the canary, each stage for one interval with the same analysis as a
   * weight step. The machine sees them as steps at 0 % (allSteps).
   */
  stages?: Stage[];
  /**
   * blueGreen: `stages` is the one preview stage and `steps` is [100]: the
   * preview is analysed, then all traffic switches at once and is analysed
   * for one more interval before promotion; a breach switches back at once.
   */
  strategy?: "blueGreen";
  /**
   * blueGreen with a preview route instead of a request stage: a route of
   * the target's family in the policy's namespace that holds the same pair.
   * Its pair goes to 100 % new version for the rollout (the first step, at
   * 0 % on the target, analyses it) and back to 100 % stable when it ends;
   * nothing else of it is written. No `stages` then.
   */
  previewRoute?: {
    kind: TargetKind;
    name: string;
    /** Where the policy file names it (spec.preview.route.name), for problems found in the cluster. */
    at?: SourceLocation;
  };
  /** Analysis time per step. */
  intervalMs: number;
  /** Optional cron expression; steps advance only inside it. */
  window?: string;
  windowTimeZone?: string;
  /** How long a written weight may wait for the route's parents to accept it before it is reported. */
  routeReadyTimeoutMs: number;
  /**
   * Every hold — no data, too few requests, Prometheus errors, parents not
   * accepting the weights — ends `afterMs` after it began, with `action`.
   */
  holdLimit?: HoldLimit;
  analysis?: AnalysisSpec;
  /** Where this policy's rollouts are announced, besides the daemon's global channels. */
  notify?: ChannelSpec[];
  source: SourceLocation;
}

/** The steps the machine walks: one at 0 % per request stage (or for the preview route), then the weight steps. */
export function allSteps(p: Pick<RolloutPolicy, "steps" | "stages" | "previewRoute">): number[] {
  return [...(p.stages ?? []).map(() => 0), ...(p.previewRoute ? [0] : []), ...p.steps];
}

/** "preview route HTTPRoute web-preview", for messages and `rolloutd status`. */
export function previewRouteLabel(r: { kind: string; name: string }): string {
  return `preview route ${r.kind} ${r.name}`;
}

/** The request stage a step index is in, if any. */
export function stageAt(
  p: Pick<RolloutPolicy, "stages">,
  stepIndex: number,
): { index: number; stage: Stage } | undefined {
  const stage = stepIndex >= 0 ? p.stages?.[stepIndex] : undefined;
  return stage ? { index: stepIndex, stage } : undefined;
}
