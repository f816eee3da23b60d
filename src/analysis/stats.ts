/**
 * The Mann-Whitney U (Wilcoxon rank-sum) test and the Hodges–Lehmann shift, for judging a canary's samples
 * against the stable's. Pure functions, no dependencies: no npm package implements the test with an exact
 * small-sample distribution and a tie-corrected normal approximation, so it is written here and tested against
 * SciPy's reference values (test/unit/analysis/stats.test.ts).
 *
 * Conventions follow `scipy.stats.mannwhitneyu(x, y)`, so results can be checked against it:
 *
 * - `u1` is the statistic of `x`: the number of pairs (xᵢ, yⱼ) with xᵢ > yⱼ, ties counting ½
 *   (= R₁ − n₁(n₁+1)/2 with mid-ranks); `u2 = n₁n₂ − u1`.
 * - `alternative: "greater"`: x tends to be larger than y (for a canary: "the canary is worse" when higher is
 *   worse); `"less"`: x tends to be smaller; `"two-sided"`: either. p = P(U ≥ u) under H₀ for the one-sided
 *   cases (u = u1 for "greater", u2 for "less"); two-sided p = 2·P(U ≥ max(u1, u2)), capped at 1.
 *
 * Method rule ("auto"): **exact** when there are no ties (within or between the samples) and both n₁ ≤ 50 and
 * n₂ ≤ 50 — the exact null distribution is computed by the recursion below in O(n₁²n₂²/4) additions (about
 * 1.6 M at 50 × 50). Otherwise the **normal approximation with tie correction**,
 *   σ² = n₁n₂/12 · ((n+1) − Σ(t³−t)/(n(n−1))),  z = (u − n₁n₂/2 − ½)/σ,  p = P(Z ≥ z),
 * with the continuity correction of ½ always subtracted from the numerator (SciPy's `use_continuity=True`; it
 * makes p slightly larger, i.e. the test slightly more conservative). Exact p-values with ties are not the
 * plain U distribution, which is why ties always take the approximation. When every value of both samples is
 * equal, σ = 0 and nothing can be told apart: p = 1.
 */

export type Alternative = "two-sided" | "greater" | "less";
export type Method = "auto" | "exact" | "asymptotic";

/** Largest sample size for which "auto" uses the exact distribution (no ties). */
export const EXACT_MAX_N = 50;

export interface MannWhitneyResult {
  n1: number;
  n2: number;
  /** Statistic of x (pairs xᵢ > yⱼ, ties ½). */
  u1: number;
  /** n1·n2 − u1. */
  u2: number;
  p: number;
  method: "exact" | "asymptotic";
  /** True when some value occurs more than once in the pooled samples. */
  ties: boolean;
  /** The z score of the approximation (asymptotic only). */
  z?: number;
}

export class StatsError extends Error {
  override readonly name = "StatsError";
}

function checkSample(name: string, s: readonly number[]): void {
  if (s.length === 0) throw new StatsError(`${name} is empty`);
  for (const v of s) {
    if (!Number.isFinite(v))
      throw new StatsError(`${name} contains ${String(v)}; only finite numbers can be ranked`);
  }
}

/** Mid-ranks (1-based) of the pooled values, and the tie term Σ(t³ − t) over groups of equal values. */
export function midRanks(values: readonly number[]): { ranks: number[]; tieTerm: number } {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(values.length).fill(0);
  let tieTerm = 0;
  let i = 0;
  while (i < order.length) {
    let j = i + 1;
    while (j < order.length && order[j]![0] === order[i]![0]) j++;
    const t = j - i;
    const rank = (i + 1 + j) / 2; // average of ranks i+1 … j
    for (let k = i; k < j; k++) ranks[order[k]![1]] = rank;
    if (t > 1) tieTerm += t * t * t - t;
    i = j;
  }
  return { ranks, tieTerm };
}

/**
 * The exact null distribution of U for samples of sizes m and n without ties: `pmf[u] = P(U = u)`,
 * u = 0 … m·n. Recursion on the largest pooled value: it belongs to x with probability m/(m+n) and then beats
 * all n values of y (U = n + U′ of (m−1, n)), else to y (U = U′ of (m, n−1)). Probabilities, not counts, so
 * nothing overflows and no subtraction loses precision.
 */
export function exactDistribution(m: number, n: number): Float64Array {
  // row[j] = distribution for (i, j) at the current i; prev[j] for i − 1.
  let prev: Float64Array[] = [];
  for (let j = 0; j <= n; j++) prev.push(Float64Array.of(1)); // i = 0: U = 0 surely
  for (let i = 1; i <= m; i++) {
    const row: Float64Array[] = [Float64Array.of(1)]; // j = 0: U = 0 surely
    for (let j = 1; j <= n; j++) {
      const d = new Float64Array(i * j + 1);
      const fromX = prev[j]!; // (i−1, j), shifted by j
      const fromY = row[j - 1]!; // (i, j−1)
      const px = i / (i + j);
      const py = j / (i + j);
      for (let u = 0; u < fromX.length; u++) d[u + j]! += px * fromX[u]!;
      for (let u = 0; u < fromY.length; u++) d[u]! += py * fromY[u]!;
      row.push(d);
    }
    prev = row;
  }
  return prev[n]!;
}

/** Tail sums `sf[u] = P(U ≥ u)` per (m, n), computed once: about 9 ms at 50 × 50, then a lookup. */
const SF_CACHE = new Map<string, Float64Array>();
const SF_CACHE_SIZE = 64;

function survival(m: number, n: number): Float64Array {
  const key = `${m},${n}`;
  const hit = SF_CACHE.get(key);
  if (hit !== undefined) return hit;
  const pmf = exactDistribution(m, n);
  const sf = new Float64Array(pmf.length + 1);
  // Summed from the far tail inwards: small terms first.
  for (let k = pmf.length - 1; k >= 0; k--) sf[k] = sf[k + 1]! + pmf[k]!;
  if (SF_CACHE.size >= SF_CACHE_SIZE) SF_CACHE.delete(SF_CACHE.keys().next().value ?? key);
  SF_CACHE.set(key, sf);
  return sf;
}

/** P(U ≥ u) under the exact null distribution (u an integer). */
function exactSf(u: number, m: number, n: number): number {
  const sf = survival(m, n);
  return Math.min(1, sf[Math.max(0, Math.ceil(u))] ?? 0);
}

/**
 * erfc(x) for x ≥ 0, to about 1e-15 relative: the all-positive series erf(x) = 2/√π · e^(−x²) · Σ 2ⁿx^(2n+1) /
 * (1·3·…·(2n+1)) below 2.5, Lentz's continued fraction for erfc above.
 */
function erfcPositive(x: number): number {
  if (x < 2.5) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (2 * x * x) / (2 * n + 1);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
  }
  // erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), evaluated by modified Lentz.
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** P(Z ≥ z) for a standard normal Z. */
export function normalSf(z: number): number {
  if (Number.isNaN(z)) return Number.NaN;
  const x = z / Math.SQRT2;
  return x >= 0 ? erfcPositive(x) / 2 : 1 - erfcPositive(-x) / 2;
}

export interface MannWhitneyOptions {
  alternative?: Alternative;
  /** "auto" (default) follows the rule in the header. "exact" with ties throws StatsError. */
  method?: Method;
}

/** The Mann-Whitney U test of x against y. Throws StatsError on an empty sample or a non-finite value. */
export function mannWhitneyU(
  x: readonly number[],
  y: readonly number[],
  options: MannWhitneyOptions = {},
): MannWhitneyResult {
  checkSample("x", x);
  checkSample("y", y);
  const alternative = options.alternative ?? "two-sided";
  const n1 = x.length;
  const n2 = y.length;
  const { ranks, tieTerm } = midRanks([...x, ...y]);
  let r1 = 0;
  for (let i = 0; i < n1; i++) r1 += ranks[i]!;
  const u1 = r1 - (n1 * (n1 + 1)) / 2;
  const u2 = n1 * n2 - u1;
  const ties = tieTerm > 0;

  const requested = options.method ?? "auto";
  if (requested === "exact" && ties) {
    throw new StatsError("the exact distribution assumes no ties; use the asymptotic method");
  }
  const method: "exact" | "asymptotic" =
    requested === "auto"
      ? !ties && n1 <= EXACT_MAX_N && n2 <= EXACT_MAX_N
        ? "exact"
        : "asymptotic"
      : requested;

  const u = alternative === "greater" ? u1 : alternative === "less" ? u2 : Math.max(u1, u2);
  const factor = alternative === "two-sided" ? 2 : 1;

  if (method === "exact") {
    return { n1, n2, u1, u2, p: Math.min(1, factor * exactSf(u, n1, n2)), method, ties };
  }
  const n = n1 + n2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  if (!(variance > 0)) {
    // Every pooled value is the same: the samples cannot be told apart.
    return { n1, n2, u1, u2, p: 1, method, ties, z: 0 };
  }
  const z = (u - (n1 * n2) / 2 - 0.5) / Math.sqrt(variance);
  return { n1, n2, u1, u2, p: Math.min(1, factor * normalSf(z)), method, ties, z };
}

/** The median of a non-empty list (mean of the two middle values for an even length). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new StatsError("median of an empty list");
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The Hodges–Lehmann estimate of the shift of x against y: the median of all n₁·n₂ differences xᵢ − yⱼ. It is
 * the location shift the rank-sum test is consistent with, and robust to outliers in either sample.
 */
export function hodgesLehmannShift(x: readonly number[], y: readonly number[]): number {
  checkSample("x", x);
  checkSample("y", y);
  const diffs: number[] = [];
  for (const a of x) for (const b of y) diffs.push(a - b);
  return median(diffs);
}

/**
 * The smallest p-value the test can reach with these sample sizes (no ties): 1/C(n₁+n₂, n₁) one-sided, twice
 * that two-sided. When it is above 1 − confidence, no sample can ever be significant: the judge is then
 * inconclusive rather than passing by construction.
 */
export function smallestP(n1: number, n2: number, alternative: Alternative): number {
  let logC = 0;
  for (let i = 1; i <= n1; i++) logC += Math.log(n2 + i) - Math.log(i);
  const p = Math.exp(-logC);
  return Math.min(1, alternative === "two-sided" ? 2 * p : p);
}
