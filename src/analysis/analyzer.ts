/**
 * Turns a policy's checks into one AnalysisReport per step deadline.
 *
 * The window covers only the analysed step: `floor((now - stepStartedAt) / 1 s)` seconds, but at least
 * `minWindowSeconds` (default 10 s, two scrapes at the common 5 s interval) so that `rate()` has two samples
 * right after a step starts; only that floor may reach back before the step start. Queries are evaluated at
 * `request.now`, all checks concurrently.
 *
 * Check verdicts: a value within [min, max] (inclusive) passes, outside fails. NaN never passes, but it is no
 * evidence of a breach either: it means the query divided 0 by 0 or took a quantile of an empty histogram, i.e.
 * almost always "no requests" — rolling back a canary for that is the anchors' most complained-about mistake.
 * So NaN counts like no data (inconclusive; the policy's onNoData decides), recorded as NaN. The built-in
 * templates yield no data instead of NaN; raw queries may filter their denominator with `> 0`. A failed query is
 * error: the engine decides what those mean (onError) and counts them.
 *
 * Overall verdict: with fewer than minRequests canary requests the step neither passes nor fails — error if
 * Prometheus could not be asked, else inconclusive, even when a check is out of bounds (one slow request among
 * three is not a regression). Otherwise: any fail → fail; else any error → error; else any noData/NaN →
 * inconclusive; else pass.
 */
import type { AnalysisSpec, CheckSpec, PrometheusSpec, RolloutPolicy } from "../policy/types.ts";
import { judgeRelative, judgeSamples } from "./compare.ts";
import { PrometheusClient, type PrometheusClientOptions } from "./prometheus.ts";
import {
  TEMPLATE_UNITS,
  TemplateError,
  isTemplateName,
  quantileGuard,
  queryVariables,
  renderQuery,
  requestsTemplateText,
  templateText,
  type TemplateUnit,
  type TemplateVars,
} from "./templates.ts";
import type {
  AnalysisGate,
  AnalysisReport,
  AnalysisRequest,
  AnalysisVerdict,
  CheckResult,
  CheckVerdict,
  MetricSource,
  QueryOutcome,
  RangeOutcome,
} from "./types.ts";

export const DEFAULT_MIN_WINDOW_SECONDS = 10;
/** Kubernetes Event messages are capped at 1 KiB; the summary stays below. */
const MAX_SUMMARY_CHARS = 1000;
const MAX_ERROR_CHARS = 200;

/** Seconds the analysis of a step covers: time since the step started, at least `minWindowSeconds`. */
export function analysisWindowSeconds(stepStartedAt: number, now: number, minWindowSeconds: number): number {
  const elapsed = Math.floor((now - stepStartedAt) / 1000);
  return Math.max(minWindowSeconds, elapsed);
}

export interface PrometheusGateOptions {
  spec: AnalysisSpec;
  source: MetricSource;
  /** Backend name → Deployment (RolloutPolicy.deployments); fills {{canaryDeployment}} / {{stableDeployment}}. */
  deployments?: Readonly<Record<string, string>>;
  /** The route's name, for {{route}}. */
  route?: string;
  /** Smallest window, in whole seconds ≥ 1. Default 10. */
  minWindowSeconds?: number;
}

interface CheckPlan {
  name: string;
  text: string;
  /** Latency templates: the finite-share query that says whether the quantile lies beyond the histogram. */
  guard: { q: number; text: string } | undefined;
  unit: TemplateUnit | undefined;
  min: number | undefined;
  max: number | undefined;
  /** compare: stable — judged against the stable backend by compare.ts instead of min/max. */
  compare?: CheckSpec;
}

function formatNumber(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}

function withUnit(v: string, unit: TemplateUnit | undefined): string {
  return unit === "ms" || unit === "req/s" ? `${v} ${unit}` : v;
}

/** Formats a measured value next to a bound, with enough digits that the two never look equal when they differ. */
function formatPair(value: number, bound: number, unit: TemplateUnit | undefined): [string, string] {
  let v = formatNumber(value);
  const b = formatNumber(bound);
  if (v === b && value !== bound) v = String(value);
  return [withUnit(v, unit), withUnit(b, unit)];
}

function shorten(text: string): string {
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text;
}

/** Judges one outcome against bounds (inclusive). */
export function judge(
  name: string,
  outcome: QueryOutcome,
  min: number | undefined,
  max: number | undefined,
  unit?: TemplateUnit,
): { verdict: CheckVerdict; reason: string } {
  switch (outcome.kind) {
    case "noData":
      return { verdict: "noData", reason: `${name} no data (empty result)` };
    case "nan":
      return {
        verdict: "noData",
        reason: `${name} NaN (0/0 or an empty histogram, e.g. no requests in the window): inconclusive`,
      };
    case "error":
      return {
        verdict: "error",
        reason: `${name} error (${outcome.error.code}): ${shorten(outcome.error.message)}`,
      };
    case "value": {
      const v = outcome.value;
      if (outcome.atLeast) {
        const shown = withUnit(formatNumber(v), unit);
        if (max !== undefined) {
          const beyond =
            v >= max
              ? `> ${withUnit(formatNumber(max), unit)}`
              : `(bound ${withUnit(formatNumber(max), unit)} is above the histogram's top finite bucket ${shown}: ` +
                "it can never be measured, so this counts as a breach; add buckets above the bound)";
          return {
            verdict: "fail",
            reason: `${name} ≥ ${shown}, beyond the histogram's top finite bucket, ${beyond}`,
          };
        }
        if (min !== undefined && v < min) {
          // At least v, and v is below the minimum: the true value may or may not be; not evidence either way.
          return {
            verdict: "noData",
            reason: `${name} ≥ ${shown} (beyond the histogram): cannot tell against min`,
          };
        }
        return { verdict: "pass", reason: `${name} ≥ ${shown} (beyond the histogram)` };
      }
      if (max !== undefined && v > max) {
        const [a, b] = formatPair(v, max, unit);
        return { verdict: "fail", reason: `${name} ${a} > ${b}` };
      }
      if (min !== undefined && v < min) {
        const [a, b] = formatPair(v, min, unit);
        return { verdict: "fail", reason: `${name} ${a} < ${b}` };
      }
      const shown = withUnit(formatNumber(v), unit);
      if (min !== undefined && max !== undefined) {
        return {
          verdict: "pass",
          reason: `${name} ${shown} in [${withUnit(formatNumber(min), unit)}, ${withUnit(formatNumber(max), unit)}]`,
        };
      }
      if (max !== undefined)
        return { verdict: "pass", reason: `${name} ${shown} ≤ ${withUnit(formatNumber(max), unit)}` };
      if (min !== undefined)
        return { verdict: "pass", reason: `${name} ${shown} ≥ ${withUnit(formatNumber(min), unit)}` };
      return { verdict: "pass", reason: `${name} ${shown} (no bounds)` };
    }
  }
}

function overallVerdict(
  checks: CheckResult[],
  requestsError: boolean,
  tooFewRequests: boolean,
): AnalysisVerdict {
  if (tooFewRequests) {
    return requestsError || checks.some((c) => c.verdict === "error") ? "error" : "inconclusive";
  }
  if (checks.some((c) => c.verdict === "fail")) return "fail";
  if (requestsError || checks.some((c) => c.verdict === "error")) return "error";
  if (tooFewRequests || checks.some((c) => c.verdict === "noData")) return "inconclusive";
  return "pass";
}

function summarize(parts: string[]): string {
  const line = parts.join("; ");
  return line.length > MAX_SUMMARY_CHARS ? `${line.slice(0, MAX_SUMMARY_CHARS - 1)}…` : line;
}

/**
 * `histogram_quantile` answers with the top finite bucket's bound when the
 * quantile lies in the +Inf bucket: a slow canary would read "p99 250 ms" for
 * requests that took seconds. When fewer than `q` of the requests fell into a
 * finite bucket, the value is marked as a lower bound. A guard that could not
 * be measured leaves the value as it is.
 */
function honest(outcome: QueryOutcome, guard: QueryOutcome | undefined, q: number | undefined): QueryOutcome {
  if (outcome.kind !== "value" || guard?.kind !== "value" || q === undefined) return outcome;
  return guard.value < q - 1e-9 ? { ...outcome, atLeast: true } : outcome;
}

async function ask(
  source: MetricSource,
  query: string,
  at: Date,
  signal: AbortSignal | undefined,
): Promise<QueryOutcome> {
  try {
    return await source.query(query, at, signal);
  } catch (err) {
    // The MetricSource contract says "never throws"; a source that does is reported, not propagated.
    const message = err instanceof Error ? err.message : String(err);
    return { kind: "error", error: { code: "unreachable", message: `metric source failed: ${message}` } };
  }
}

/**
 * An AnalysisGate over PromQL checks. The constructor validates every check (template exists for the
 * provider, variables known and available) and throws TemplateError, so a broken policy is reported when it is
 * loaded, not at its first step deadline. `analyze` never throws.
 */
export class PrometheusGate implements AnalysisGate {
  readonly #spec: AnalysisSpec;
  readonly #source: MetricSource;
  readonly #deployments: Readonly<Record<string, string>>;
  readonly #route: string | undefined;
  readonly #minWindowSeconds: number;
  readonly #checks: CheckPlan[];
  readonly #requestsText: string | undefined;

  constructor(options: PrometheusGateOptions) {
    const { spec } = options;
    this.#spec = spec;
    this.#source = options.source;
    this.#deployments = options.deployments ?? {};
    this.#route = options.route;
    const minWindow = options.minWindowSeconds ?? DEFAULT_MIN_WINDOW_SECONDS;
    if (!Number.isInteger(minWindow) || minWindow < 1) {
      throw new RangeError(`minWindowSeconds must be a whole number ≥ 1, got ${minWindow}`);
    }
    this.#minWindowSeconds = minWindow;
    this.#checks = spec.checks.map((check) => {
      let text: string;
      let unit: TemplateUnit | undefined;
      let guard: CheckPlan["guard"];
      if (check.template !== undefined) {
        text = templateText(spec.provider, check.template);
        guard = quantileGuard(spec.provider, check.template);
        unit = isTemplateName(check.template) ? TEMPLATE_UNITS[check.template] : undefined;
      } else if (check.query !== undefined) {
        text = check.query;
      } else {
        throw new TemplateError("unknownTemplate", `check ${check.name} has neither template nor query`);
      }
      this.#assertAvailable(text, `check ${check.name}`);
      return {
        name: check.name,
        text,
        guard,
        unit,
        min: check.min,
        max: check.max,
        ...(check.compare !== undefined ? { compare: check } : {}),
      };
    });
    if (spec.minRequests > 0) {
      this.#requestsText = spec.requestsQuery ?? requestsTemplateText(spec.provider);
      this.#assertAvailable(this.#requestsText, "requestsQuery");
    }
  }

  #assertAvailable(text: string, what: string): void {
    for (const v of queryVariables(text)) {
      if (v === "route" && this.#route === undefined) {
        throw new TemplateError(
          "missingVariable",
          `${what} uses {{route}} but the gate has no route name`,
          v,
        );
      }
    }
  }

  #compared(plan: CheckPlan, req: AnalysisRequest, vars: TemplateVars): Promise<CheckResult> {
    return compareCheck(this.#source, plan, plan.compare ?? { name: plan.name }, req, vars);
  }

  #vars(req: AnalysisRequest, windowSeconds: number): TemplateVars {
    return {
      canary: req.canary,
      stable: req.stable,
      namespace: req.namespace,
      window: `${windowSeconds}s`,
      canaryDeployment: this.#deployments[req.canary] ?? req.canary,
      stableDeployment: this.#deployments[req.stable] ?? req.stable,
      ...(this.#route !== undefined ? { route: this.#route } : {}),
    };
  }

  async analyze(req: AnalysisRequest): Promise<AnalysisReport> {
    const windowSeconds = analysisWindowSeconds(req.stepStartedAt, req.now, this.#minWindowSeconds);
    const vars = this.#vars(req, windowSeconds);
    const at = new Date(req.now);

    const run = async (name: string, text: string): Promise<{ query: string; outcome: QueryOutcome }> => {
      let query: string;
      try {
        query = renderQuery({ query: text }, vars);
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        // Values come from a validated policy; this is a safety net, reported as an error, never sent.
        return {
          query: text,
          outcome: {
            kind: "error",
            error: { code: "badResponse", message: `${name}: query not sent: ${err.message}` },
          },
        };
      }
      return { query, outcome: await ask(this.#source, query, at, req.signal) };
    };

    const minRequests = this.#spec.minRequests;
    const requestsText = this.#requestsText;
    const [checkRuns, requestsRun, comparedRuns] = await Promise.all([
      Promise.all(
        this.#checks
          .filter((plan) => plan.compare === undefined)
          .map(async (plan) => {
            const [main, guard] = await Promise.all([
              run(plan.name, plan.text),
              plan.guard ? run(`${plan.name} finite share`, plan.guard.text) : Promise.resolve(undefined),
            ]);
            return { plan, query: main.query, outcome: honest(main.outcome, guard?.outcome, plan.guard?.q) };
          }),
      ),
      requestsText !== undefined ? run("requests", requestsText) : Promise.resolve(undefined),
      Promise.all(
        this.#checks.filter((plan) => plan.compare !== undefined).map((p) => this.#compared(p, req, vars)),
      ),
    ]);

    const checks: CheckResult[] = checkRuns.map(({ plan, query, outcome }) => {
      const { verdict, reason } = judge(plan.name, outcome, plan.min, plan.max, plan.unit);
      return {
        name: plan.name,
        query,
        outcome,
        ...(plan.min !== undefined ? { min: plan.min } : {}),
        ...(plan.max !== undefined ? { max: plan.max } : {}),
        verdict,
        reason,
      };
    });

    if (comparedRuns.length > 0) {
      // Back into the policy's order.
      const order = this.#checks.map((p) => p.name);
      checks.push(...comparedRuns);
      checks.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    }

    const parts = checks.map((c) => c.reason);
    let requests: AnalysisReport["requests"];
    let requestsError = false;
    let tooFew = false;
    if (requestsRun !== undefined) {
      const o = requestsRun.outcome;
      let count: number | null = null;
      if (o.kind === "value") {
        count = Math.round(o.value);
        tooFew = count < minRequests;
        parts.push(
          tooFew
            ? `${count} requests < minRequests ${minRequests}`
            : `${count} requests ≥ minRequests ${minRequests}`,
        );
      } else if (o.kind === "error") {
        requestsError = true;
        parts.push(`requests error (${o.error.code}): ${shorten(o.error.message)}`);
      } else {
        tooFew = true;
        parts.push(`requests ${o.kind === "nan" ? "NaN" : "no data"} < minRequests ${minRequests}`);
      }
      requests = { count, min: minRequests };
    }

    return {
      verdict: overallVerdict(checks, requestsError, tooFew),
      checks,
      ...(requests !== undefined ? { requests } : {}),
      summary: summarize(parts.length > 0 ? parts : ["no checks"]),
      windowSeconds,
    };
  }
}

/** A query rendered with validated variables, or the error outcome that stands for it (never sent). */
function rendered(
  name: string,
  text: string,
  vars: TemplateVars,
): { query: string } | { query: string; error: QueryOutcome } {
  try {
    return { query: renderQuery({ query: text }, vars) };
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    return {
      query: text,
      error: {
        kind: "error",
        error: { code: "badResponse", message: `${name}: query not sent: ${err.message}` },
      },
    };
  }
}

/** The template variables for the stable's rendering of a canary query: the two roles swapped. */
function swapped(vars: TemplateVars): TemplateVars {
  const out: TemplateVars = { ...vars, canary: vars.stable, stable: vars.canary };
  if (vars.stableDeployment !== undefined) out.canaryDeployment = vars.stableDeployment;
  if (vars.canaryDeployment !== undefined) out.stableDeployment = vars.canaryDeployment;
  return out;
}

async function askRange(
  source: MetricSource,
  query: string,
  range: { start: Date; end: Date; stepSeconds: number },
  signal: AbortSignal | undefined,
): Promise<RangeOutcome> {
  if (source.queryRange === undefined) {
    return {
      kind: "error",
      error: { code: "badResponse", message: "this metric source has no range queries" },
    };
  }
  try {
    return await source.queryRange(query, range, signal);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { kind: "error", error: { code: "unreachable", message: `metric source failed: ${message}` } };
  }
}

/**
 * One compare: stable check (see compare.ts): relative bounds from instant queries at `req.now` over the
 * analysis window, or the Mann-Whitney judge over per-interval samples since the step started. Never throws.
 */
async function compareCheck(
  source: MetricSource,
  plan: CheckPlan,
  spec: CheckSpec,
  req: AnalysisRequest,
  vars: TemplateVars,
): Promise<CheckResult> {
  const judgeSpec = spec.judge;
  // At 100 % the stable serves nothing in the step's window; it is measured over the same length of time just
  // before the step instead (its traffic of the previous step), and the reason says so.
  const before = req.canaryWeight >= 100 ? req.now - req.stepStartedAt : 0;
  const note = before > 0 ? " [stable measured before this step: no stable traffic at 100 %]" : "";
  if (judgeSpec === undefined) {
    const [c, s] = await Promise.all(
      [vars, swapped(vars)].map(async (v, i) => {
        const at = new Date(i === 0 ? req.now : req.now - before);
        const r = rendered(plan.name, plan.text, v);
        if ("error" in r) return { query: r.query, outcome: r.error };
        // Honest quantiles on both sides: a p99 beyond the top finite bucket is only "at least" that bucket.
        const g = plan.guard !== undefined ? rendered(plan.name, plan.guard.text, v) : undefined;
        const [main, guard] = await Promise.all([
          ask(source, r.query, at, req.signal),
          g !== undefined && !("error" in g)
            ? ask(source, g.query, at, req.signal)
            : Promise.resolve(undefined),
        ]);
        return { query: r.query, outcome: honest(main, guard, plan.guard?.q) };
      }),
    );
    const v = judgeRelative(plan.name, c!.outcome, s!.outcome, spec, plan.unit);
    return {
      name: plan.name,
      query: c!.query,
      outcome: c!.outcome,
      ...(v.min !== undefined ? { min: v.min } : {}),
      ...(v.max !== undefined ? { max: v.max } : {}),
      verdict: v.verdict,
      reason: v.reason + note,
      baseline: s!.outcome,
      baselineQuery: s!.query,
    };
  }
  const stepSeconds = Math.max(1, Math.round(judgeSpec.sampleIntervalMs / 1000));
  const sampleVars: TemplateVars = { ...vars, window: `${stepSeconds}s` };
  // The first sample's window starts at the step start: no sample reaches into the previous step.
  const start = req.stepStartedAt + stepSeconds * 1000;
  const [c, s] = await Promise.all(
    [sampleVars, swapped(sampleVars)].map(async (v, i) => {
      const r = rendered(plan.name, plan.text, v);
      if ("error" in r) return { query: r.query, outcome: r.error as RangeOutcome };
      if (start > req.now) return { query: r.query, outcome: { kind: "series", points: [] } as RangeOutcome };
      const shift = i === 0 ? 0 : before;
      const range = { start: new Date(start - shift), end: new Date(req.now - shift), stepSeconds };
      return { query: r.query, outcome: await askRange(source, r.query, range, req.signal) };
    }),
  );
  const j = judgeSamples(plan.name, c!.outcome, s!.outcome, judgeSpec, plan.unit);
  return {
    name: plan.name,
    query: c!.query,
    outcome: j.outcome,
    verdict: j.verdict,
    reason: j.reason + note,
    baseline: j.baseline,
    baselineQuery: s!.query,
    ...(j.evidence !== undefined ? { judge: j.evidence } : {}),
  };
}

/** The gate of a policy without analysis: every step passes when its interval is over. */
export class AlwaysPassGate implements AnalysisGate {
  analyze(req: AnalysisRequest): Promise<AnalysisReport> {
    return Promise.resolve({
      verdict: "pass",
      checks: [],
      summary: "no checks configured: advancing on interval",
      windowSeconds: Math.max(0, Math.floor((req.now - req.stepStartedAt) / 1000)),
    });
  }
}

export interface AnalysisGateFactory {
  /**
   * The gate for a policy: AlwaysPassGate when it has no analysis (or neither checks nor minRequests), else a
   * PrometheusGate over a client shared with every policy naming the same Prometheus (URL, timeout and auth).
   * Throws TemplateError for a check that cannot be rendered (unknown template or variable).
   */
  gateFor(policy: Pick<RolloutPolicy, "analysis" | "deployments" | "target">): AnalysisGate;
  /** Distinct Prometheus clients created so far. */
  readonly clientCount: number;
  /** Closes every client's idle connections. */
  close(): void;
}

export interface AnalysisGateFactoryOptions {
  minWindowSeconds?: number;
  clientOptions?: PrometheusClientOptions;
  /** Replaces PrometheusClient (tests). */
  createSource?: (spec: PrometheusSpec) => MetricSource & { close?: () => void };
}

function clientKey(spec: PrometheusSpec): string {
  return JSON.stringify([
    new URL(spec.url).toString(),
    spec.timeoutMs,
    spec.bearerTokenFile ?? null,
    spec.caFile ?? null,
    spec.insecureSkipVerify === true,
    spec.basicAuth?.username ?? null,
    spec.basicAuth?.passwordFile ?? null,
  ]);
}

export function createAnalysisGateFactory(options: AnalysisGateFactoryOptions = {}): AnalysisGateFactory {
  const clients = new Map<string, MetricSource & { close?: () => void }>();
  const create =
    options.createSource ?? ((spec: PrometheusSpec) => new PrometheusClient(spec, options.clientOptions));
  const always = new AlwaysPassGate();
  return {
    gateFor(policy) {
      const spec = policy.analysis;
      if (spec === undefined || (spec.checks.length === 0 && spec.minRequests <= 0)) return always;
      const key = clientKey(spec.prometheus);
      let source = clients.get(key);
      if (source === undefined) {
        source = create(spec.prometheus);
        clients.set(key, source);
      }
      return new PrometheusGate({
        spec,
        source,
        deployments: policy.deployments,
        route: policy.target.name,
        ...(options.minWindowSeconds !== undefined ? { minWindowSeconds: options.minWindowSeconds } : {}),
      });
    },
    get clientCount() {
      return clients.size;
    },
    close() {
      for (const c of clients.values()) c.close?.();
    },
  };
}
