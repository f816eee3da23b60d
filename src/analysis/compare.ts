/**
 * Canary-versus-stable checks (`compare: stable`): the check's query is rendered a second time for the stable
 * backend (`{{canary}}` := the stable's name, `{{stable}}` := the canary's, Deployments likewise) and both run
 * over the same window, so whatever the whole platform suffers — a slow database, a noisy neighbour, a traffic
 * peak — moves both sides and cancels out. Only a difference the canary alone shows can fail.
 *
 * Relative bounds (`maxIncrease: { ratio: 0.2, absolute: 10 }`): the canary may be at most 20 % AND at most
 * 10 units (of the query: ms for latency templates) above the stable; each limit that is set must hold, so the
 * allowed value is min(stable + |stable|·ratio, stable + absolute). `maxDecrease` is the mirror image, for
 * values where lower is worse (success rate).
 *
 * The statistical judge (`judge: mann-whitney`): per-interval samples of canary and stable over the step's
 * window (a range query stepped by `sampleInterval`, each sample's `{{window}}` = `sampleInterval`), compared
 * with the Mann-Whitney U test (stats.ts) in the policy's direction. A difference fails only when it is
 * significant (p < 1 − confidence, default 98 % → p < 0.02) AND large: the Hodges–Lehmann shift is more than
 * `tolerance` (default 25 %) of the stable's median. The defaults are Kayenta's; its classifier tests whether
 * the shift's confidence interval lies beyond a fraction of the shift's own estimate, here the tolerance is
 * relative to the stable, which is what a policy author can reason about. With too few samples for the test ever to reach
 * significance the check is inconclusive (noData), never a pass by construction. NaN samples (intervals
 * without requests) and ±Inf are left out and counted in the reason.
 *
 * Outcomes that are not values on both sides never pass: no data or NaN on either side is noData (nothing to
 * compare with), an error on either side is error.
 */
import { hodgesLehmannShift, mannWhitneyU, median, smallestP, type Alternative } from "./stats.ts";
import type { MannWhitneySpec, RelativeBound } from "../policy/types.ts";
import type { CheckVerdict, JudgeEvidence, QueryOutcome, RangeOutcome } from "./types.ts";

export interface RelativeSpec {
  maxIncrease?: RelativeBound;
  maxDecrease?: RelativeBound;
}

export interface ComparedVerdict {
  verdict: CheckVerdict;
  reason: string;
  /** The bounds the stable's value implied, recorded like a plain check's min/max. */
  min?: number;
  max?: number;
}

function fmt(v: number, unit?: string): string {
  let text: string;
  if (v === Number.POSITIVE_INFINITY) text = "+Inf";
  else if (v === Number.NEGATIVE_INFINITY) text = "-Inf";
  else if (Number.isInteger(v)) text = String(v);
  else text = String(Number(v.toPrecision(4)));
  return unit === "ms" || unit === "req/s" ? `${text} ${unit}` : text;
}

function pct(r: number): string {
  return `${Number((r * 100).toPrecision(3))} %`;
}

/** The verdict of either side's outcome when it is not a value, or undefined when both are values. */
function notBothValues(
  name: string,
  canary: QueryOutcome,
  stable: QueryOutcome,
): ComparedVerdict | undefined {
  for (const [who, o] of [
    ["canary", canary],
    ["stable", stable],
  ] as const) {
    if (o.kind === "error") {
      return {
        verdict: "error",
        reason: `${name} ${who} error (${o.error.code}): ${o.error.message.slice(0, 200)}`,
      };
    }
  }
  for (const [who, o] of [
    ["canary", canary],
    ["stable", stable],
  ] as const) {
    if (o.kind === "noData")
      return { verdict: "noData", reason: `${name} ${who} no data: nothing to compare` };
    if (o.kind === "nan") return { verdict: "noData", reason: `${name} ${who} NaN: nothing to compare` };
  }
  return undefined;
}

/** The allowed range the stable's value implies. */
export function relativeBounds(stable: number, spec: RelativeSpec): { min?: number; max?: number } {
  const out: { min?: number; max?: number } = {};
  const inc = spec.maxIncrease;
  if (inc !== undefined) {
    const limits: number[] = [];
    if (inc.ratio !== undefined) limits.push(stable + Math.abs(stable) * inc.ratio);
    if (inc.absolute !== undefined) limits.push(stable + inc.absolute);
    out.max = Math.min(...limits);
  }
  const dec = spec.maxDecrease;
  if (dec !== undefined) {
    const limits: number[] = [];
    if (dec.ratio !== undefined) limits.push(stable - Math.abs(stable) * dec.ratio);
    if (dec.absolute !== undefined) limits.push(stable - dec.absolute);
    out.min = Math.max(...limits);
  }
  return out;
}

function describeBound(b: RelativeBound, sign: "+" | "−", unit?: string): string {
  const parts: string[] = [];
  if (b.ratio !== undefined) parts.push(`${sign}${pct(b.ratio)}`);
  if (b.absolute !== undefined) parts.push(`${sign}${fmt(b.absolute, unit)}`);
  return parts.join(" and ");
}

/** Judges a canary value against bounds relative to the stable's value in the same window. */
export function judgeRelative(
  name: string,
  canary: QueryOutcome,
  stable: QueryOutcome,
  spec: RelativeSpec,
  unit?: string,
): ComparedVerdict {
  const missing = notBothValues(name, canary, stable);
  if (missing !== undefined) return missing;
  const c = (canary as { value: number }).value;
  const s = (stable as { value: number }).value;
  // Honest quantiles: `atLeast` values are lower bounds (beyond the histogram's top finite bucket).
  const cAtLeast = canary.kind === "value" && canary.atLeast === true;
  const sAtLeast = stable.kind === "value" && stable.atLeast === true;
  if (cAtLeast && sAtLeast) {
    return {
      verdict: "noData",
      reason: `${name} canary ≥ ${fmt(c, unit)} and stable ≥ ${fmt(s, unit)}: both beyond the histogram's top bucket, nothing to compare`,
    };
  }
  const { min, max } = relativeBounds(s, spec);
  const bounds = { ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) };
  const stableText = `stable ${sAtLeast ? "≥ " : ""}${fmt(s, unit)}`;
  if (cAtLeast && max !== undefined) {
    // As for plain checks, a value known only as "at least" never passes a maximum.
    return {
      verdict: "fail",
      reason: `${name} ≥ ${fmt(c, unit)} (beyond the histogram's top bucket) against ${fmt(max, unit)} (${stableText})`,
      ...bounds,
    };
  }
  if (sAtLeast && ((max !== undefined && !(c <= max)) || min !== undefined)) {
    // The stable's true value, hence its bound, is only known from below.
    return {
      verdict: "noData",
      reason: `${name} ${fmt(c, unit)} against ${stableText} (beyond the histogram's top bucket): its bound is unknown`,
      ...bounds,
    };
  }
  if (cAtLeast && min !== undefined && !(c >= min)) {
    return {
      verdict: "noData",
      reason: `${name} ≥ ${fmt(c, unit)} against ${fmt(min, unit)}: unknown`,
      ...bounds,
    };
  }
  if (max !== undefined && !(c <= max)) {
    const allowed = describeBound(spec.maxIncrease ?? {}, "+", unit);
    return {
      verdict: "fail",
      reason: `${name} ${fmt(c, unit)} > ${fmt(max, unit)} (${stableText} ${allowed})`,
      ...bounds,
    };
  }
  if (min !== undefined && !(c >= min)) {
    const allowed = describeBound(spec.maxDecrease ?? {}, "−", unit);
    return {
      verdict: "fail",
      reason: `${name} ${fmt(c, unit)} < ${fmt(min, unit)} (${stableText} ${allowed})`,
      ...bounds,
    };
  }
  const range =
    min !== undefined && max !== undefined
      ? `in [${fmt(min, unit)}, ${fmt(max, unit)}]`
      : max !== undefined
        ? `≤ ${fmt(max, unit)}`
        : `≥ ${fmt(min ?? Number.NEGATIVE_INFINITY, unit)}`;
  return { verdict: "pass", reason: `${name} ${fmt(c, unit)} ${range} (${stableText})`, ...bounds };
}

export interface JudgedSamples extends ComparedVerdict {
  /** The canary's median sample (the check's value), and the stable's. */
  outcome: QueryOutcome;
  baseline: QueryOutcome;
  evidence?: JudgeEvidence;
}

/**
 * Finite samples, rounded to 10 significant digits: PromQL arithmetic leaves float noise
 * (497.49999999999994 beside 497.5 for the same bucket), which would otherwise rank equal values apart.
 */
function finite(points: Array<[number, number]>): { values: number[]; dropped: number } {
  const values = points
    .map((p) => p[1])
    .filter((v) => Number.isFinite(v))
    .map((v) => Number(v.toPrecision(10)));
  return { values, dropped: points.length - values.length };
}

function rangeToOutcome(r: RangeOutcome, values: number[]): QueryOutcome {
  if (r.kind === "error") return r;
  if (r.kind === "noData") return { kind: "noData" };
  return values.length > 0 ? { kind: "value", value: median(values) } : { kind: "nan" };
}

const ALTERNATIVE: Readonly<Record<MannWhitneySpec["direction"], Alternative>> = {
  increase: "greater",
  decrease: "less",
  either: "two-sided",
};

/** Judges per-interval samples of canary (x) and stable (y) with the Mann-Whitney U test and an effect size. */
export function judgeSamples(
  name: string,
  canary: RangeOutcome,
  stable: RangeOutcome,
  spec: MannWhitneySpec,
  unit?: string,
): JudgedSamples {
  const c = canary.kind === "series" ? finite(canary.points) : { values: [], dropped: 0 };
  const s = stable.kind === "series" ? finite(stable.points) : { values: [], dropped: 0 };
  const outcome = rangeToOutcome(canary, c.values);
  const baseline = rangeToOutcome(stable, s.values);
  const missing = notBothValues(name, outcome, baseline);
  if (missing !== undefined) return { ...missing, outcome, baseline };

  const evidence: JudgeEvidence = { canarySamples: c.values, stableSamples: s.values };
  const dropped = c.dropped + s.dropped;
  const droppedText = dropped > 0 ? `, ${dropped} NaN/Inf samples left out` : "";
  const sizes = `${c.values.length} vs ${s.values.length} samples`;
  const alternative = ALTERNATIVE[spec.direction];
  const alpha = 1 - spec.confidence;
  if (smallestP(c.values.length, s.values.length, alternative) >= alpha) {
    return {
      verdict: "noData",
      reason: `${name} ${sizes}${droppedText}: too few to reach ${pct(spec.confidence)} confidence (inconclusive)`,
      outcome,
      baseline,
      evidence,
    };
  }
  const test = mannWhitneyU(c.values, s.values, { alternative });
  const shift = hodgesLehmannShift(c.values, s.values);
  const stableMedian = (baseline as { value: number }).value;
  const relativeShift =
    stableMedian !== 0
      ? shift / Math.abs(stableMedian)
      : shift === 0
        ? 0
        : Math.sign(shift) * Number.POSITIVE_INFINITY;
  Object.assign(evidence, { p: test.p, method: test.method, shift, relativeShift });

  const significant = test.p < alpha;
  const harmful =
    spec.direction === "increase"
      ? relativeShift > spec.tolerance
      : spec.direction === "decrease"
        ? -relativeShift > spec.tolerance
        : Math.abs(relativeShift) > spec.tolerance;
  const shiftText = `shift ${shift >= 0 ? "+" : ""}${fmt(shift, unit)} (${relativeShift >= 0 ? "+" : ""}${pct(relativeShift)} of stable median ${fmt(stableMedian, unit)})`;
  const pText = `p=${Number(test.p.toPrecision(3))} (${test.method}, ${sizes}${droppedText})`;
  if (significant && harmful) {
    return {
      verdict: "fail",
      reason: `${name} canary worse than stable: ${shiftText}, ${pText} < ${Number(alpha.toPrecision(3))}, beyond ±${pct(spec.tolerance)}`,
      outcome,
      baseline,
      evidence,
    };
  }
  const why = significant ? `within ±${pct(spec.tolerance)}` : `not significant at ${pct(spec.confidence)}`;
  return {
    verdict: "pass",
    reason: `${name} canary like stable: ${shiftText}, ${pText}, ${why}`,
    outcome,
    baseline,
    evidence,
  };
}
