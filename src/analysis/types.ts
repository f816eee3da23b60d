/**
 * The analysis seam between the rollout engine and whatever judges a canary.
 * The engine asks once per step deadline; the gate answers with a verdict and
 * the evidence behind it. Counting consecutive failures, and deciding what
 * "no data" or "error" means for the rollout, is the engine's job because
 * those counters must survive a restart (they live in the persisted state).
 */

/** What one query returned. Only `value` can ever pass a check. */
export type QueryOutcome =
  /**
   * `atLeast`: the true value is known only to be at least `value` (a
   * latency quantile beyond the histogram's top finite bucket). Such a value
   * never passes a maximum.
   */
  | { kind: "value"; value: number; atLeast?: boolean }
  | { kind: "noData" }
  | { kind: "nan" }
  | { kind: "error"; error: MetricError };

export type MetricErrorCode =
  | "unreachable" // connection refused, DNS, TLS
  | "timeout"
  | "http" // non-2xx without a Prometheus error body
  | "prometheus" // status: "error" with errorType
  | "multipleSeries" // the query returned several series where one was expected
  | "badResponse" // not JSON, or not the shape Prometheus writes
  | "cancelled"; // the caller no longer wanted the answer

export interface MetricError {
  code: MetricErrorCode;
  message: string;
}

/** A metric backend. The Prometheus HTTP API is the real one. */
export interface MetricSource {
  /**
   * Instant query evaluated at `at` (default: now). Never throws; errors are
   * outcomes. An aborted `signal` ends the request at once (outcome: error).
   */
  query(promql: string, at?: Date, signal?: AbortSignal): Promise<QueryOutcome>;
  /**
   * Range query: one series sampled every `stepSeconds` from `start` to `end` (inclusive). Never throws; an
   * aborted `signal` ends the request at once. Optional: a source without it cannot serve `judge:` checks.
   */
  queryRange?(
    promql: string,
    range: { start: Date; end: Date; stepSeconds: number },
    signal?: AbortSignal,
  ): Promise<RangeOutcome>;
}

/** What one range query returned: the points of exactly one series (NaN kept as NaN), no series, or an error. */
export type RangeOutcome =
  | { kind: "series"; points: Array<[unixSeconds: number, value: number]> }
  | { kind: "noData" }
  | { kind: "error"; error: MetricError };

/** The evidence of a `judge: mann-whitney` check. */
export interface JudgeEvidence {
  /** Samples used (finite values only). */
  canarySamples: number[];
  stableSamples: number[];
  /** p-value of the test in the policy's direction; undefined when too few samples to test. */
  p?: number;
  method?: "exact" | "asymptotic";
  /** Hodges–Lehmann shift canary − stable, and that shift relative to the stable's median. */
  shift?: number;
  relativeShift?: number;
}

export type CheckVerdict = "pass" | "fail" | "noData" | "error";

export interface CheckResult {
  name: string;
  /** The PromQL actually sent, after template substitution. */
  query: string;
  outcome: QueryOutcome;
  min?: number;
  max?: number;
  verdict: CheckVerdict;
  /** One human sentence: "p99-latency 812 > 500". */
  reason: string;
  /** compare: stable — the stable's outcome in the same window (for a judge: the median of its samples). */
  baseline?: QueryOutcome;
  /** compare: stable — the stable's query as sent. */
  baselineQuery?: string;
  /** judge: mann-whitney — the samples and the test's result. */
  judge?: JudgeEvidence;
}

/**
 * pass: every check passed with a value and enough requests were seen.
 * fail: at least one check had a value out of bounds (or NaN).
 * inconclusive: nothing failed, but something had no data or too few requests.
 * error: nothing failed, but the metric source could not be asked.
 */
export type AnalysisVerdict = "pass" | "fail" | "inconclusive" | "error";

export interface AnalysisReport {
  verdict: AnalysisVerdict;
  checks: CheckResult[];
  /** Requests counted for the canary in the window, when the policy asks for a minimum. */
  requests?: { count: number | null; min: number };
  /** Human summary for Events and logs. */
  summary: string;
  /** The window the queries covered, in whole seconds. */
  windowSeconds: number;
}

export interface AnalysisRequest {
  policyKey: string;
  namespace: string;
  stable: string;
  canary: string;
  /** Canary weight in percent during the analysed step. */
  canaryWeight: number;
  /** When the step's weight took effect; the window never reaches before it. */
  stepStartedAt: number;
  now: number;
  /** Cancels every query of this analysis: the rollout moved on (abort, pause, new revision, policy change). */
  signal?: AbortSignal;
}

/** The seam the engine depends on. A policy without checks gets a gate that always passes. */
export interface AnalysisGate {
  analyze(request: AnalysisRequest): Promise<AnalysisReport>;
}
