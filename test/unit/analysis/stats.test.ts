/**
 * The Mann-Whitney U test against reference values computed with SciPy 1.17.1 (NumPy 2.4.6), Python 3.11:
 * every number marked "scipy" below was printed by
 *   scipy.stats.mannwhitneyu(x, y, alternative=<alt>, method=<method>)            (use_continuity=True)
 * or, where said, scipy.stats.norm.sf(z) / numpy.median(numpy.subtract.outer(x, y)), for exactly the samples
 * written here. The tests never call Python.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  EXACT_MAX_N,
  StatsError,
  exactDistribution,
  hodgesLehmannShift,
  mannWhitneyU,
  median,
  midRanks,
  normalSf,
  smallestP,
} from "../../../src/analysis/stats.ts";

/** |a − b| ≤ rel·|b| (+ a tiny absolute slack for values at 0). */
function close(actual: number, expected: number, rel = 1e-9, what = ""): void {
  const ok = Math.abs(actual - expected) <= rel * Math.abs(expected) + 1e-300;
  assert.ok(ok, `${what} ${actual} ≉ ${expected} (relative tolerance ${rel})`);
}

const range = (n: number, f: (i: number) => number): number[] => Array.from({ length: n }, (_, i) => f(i));

// Case A: a textbook pair of small samples, no ties.
const A = { x: [19, 22, 16, 29, 24], y: [20, 11, 17, 12] };
// Case B: tiny samples (3 and 3), completely separated.
const B = { x: [1.1, 2.2, 3.3], y: [4.4, 5.5, 6.6] };
// Case C: ties within and between the samples.
const C = { x: [1, 2, 2, 3, 3, 3, 4], y: [2, 3, 4, 4, 5, 5, 6] };
// Case E: large samples (60 and 70), no ties: x = (37i mod 101) + 0.5, y = (53j mod 97) + 3.25.
const E = { x: range(60, (i) => ((i * 37) % 101) + 0.5), y: range(70, (j) => ((j * 53) % 97) + 3.25) };
// Case F: 20 and 20, no ties, shifted: x = (7i mod 23) + 4.5, y = (5j mod 21) + 0.25.
const F = { x: range(20, (i) => ((i * 7) % 23) + 4.5), y: range(20, (j) => ((j * 5) % 21) + 0.25) };
// Case G: 50 and 50 (the exact rule's limit), no ties: x = (13i mod 53) + 9.5, y = (11j mod 51) + 0.25.
const G = { x: range(50, (i) => ((i * 13) % 53) + 9.5), y: range(50, (j) => ((j * 11) % 51) + 0.25) };
// Case H: large samples (80 and 90) made of ten values each: heavy ties, a clear shift.
const H = { x: range(80, (i) => (i % 10) + 3), y: range(90, (j) => j % 10) };

void describe("mannWhitneyU: exact distribution (small samples, no ties)", () => {
  void it("case A matches scipy method='exact' for every alternative", () => {
    const two = mannWhitneyU(A.x, A.y, { alternative: "two-sided" });
    assert.equal(two.method, "exact");
    assert.equal(two.u1, 17); // scipy statistic 17.0
    assert.equal(two.u2, 3);
    close(two.p, 0.1111111111111111, 1e-12, "two-sided"); // scipy
    close(mannWhitneyU(A.x, A.y, { alternative: "greater" }).p, 0.05555555555555555, 1e-12); // scipy
    close(mannWhitneyU(A.x, A.y, { alternative: "less" }).p, 0.9682539682539683, 1e-12); // scipy
  });

  void it("case B (3 vs 3): the smallest p the sizes allow, 1/20 one-sided", () => {
    const r = mannWhitneyU(B.x, B.y, { alternative: "less" });
    assert.equal(r.u1, 0); // scipy statistic 0.0
    close(r.p, 0.05, 1e-12); // scipy
    close(mannWhitneyU(B.x, B.y, { alternative: "two-sided" }).p, 0.1, 1e-12); // scipy
    assert.equal(mannWhitneyU(B.x, B.y, { alternative: "greater" }).p, 1); // scipy 1.0
    close(smallestP(3, 3, "greater"), 0.05, 1e-12);
    close(smallestP(3, 3, "two-sided"), 0.1, 1e-12);
  });

  void it("case F (20 vs 20) matches scipy method='exact'", () => {
    const r = mannWhitneyU(F.x, F.y, { alternative: "two-sided" });
    assert.equal(r.method, "exact");
    assert.equal(r.u1, 295); // scipy
    close(r.p, 0.009483607191205003, 1e-10); // scipy
    close(mannWhitneyU(F.x, F.y, { alternative: "greater" }).p, 0.0047418035956025015, 1e-10); // scipy
  });

  void it(`case G (${EXACT_MAX_N} vs ${EXACT_MAX_N}) is still exact and matches scipy method='exact'`, () => {
    const r = mannWhitneyU(G.x, G.y, { alternative: "two-sided" });
    assert.equal(r.method, "exact");
    assert.equal(r.u1, 1710); // scipy
    close(r.p, 0.0013585023019663399, 1e-9); // scipy
    close(mannWhitneyU(G.x, G.y, { alternative: "greater" }).p, 0.0006792511509831699, 1e-9); // scipy
  });

  void it("the exact distribution sums to 1, is symmetric, and counts C(m+n, m) orderings", () => {
    const d = exactDistribution(4, 6);
    assert.equal(d.length, 25);
    close(
      d.reduce((a, b) => a + b, 0),
      1,
      1e-14,
    );
    for (let u = 0; u <= 24; u++) close(d[u]!, d[24 - u]!, 1e-12, `pmf[${u}]`);
    // U = 0 is the single ordering with every x below every y: 1/C(10, 4) = 1/210.
    close(d[0]!, 1 / 210, 1e-12);
    // U = 1: swap the top x with the bottom y: also exactly one ordering.
    close(d[1]!, 1 / 210, 1e-12);
  });
});

void describe("mannWhitneyU: normal approximation with tie and continuity correction", () => {
  void it("case C (ties) matches scipy method='asymptotic'", () => {
    const two = mannWhitneyU(C.x, C.y, { alternative: "two-sided" });
    assert.equal(two.method, "asymptotic");
    assert.equal(two.ties, true);
    assert.equal(two.u1, 8.5); // scipy statistic 8.5
    close(two.p, 0.043051432728945134, 1e-9); // scipy
    close(mannWhitneyU(C.x, C.y, { alternative: "greater" }).p, 0.9843697313699247, 1e-9); // scipy
    close(mannWhitneyU(C.x, C.y, { alternative: "less" }).p, 0.021525716364472567, 1e-9); // scipy
  });

  void it("case E (60 vs 70, no ties) is above the exact limit and matches scipy method='asymptotic'", () => {
    const r = mannWhitneyU(E.x, E.y, { alternative: "two-sided" });
    assert.equal(r.method, "asymptotic");
    assert.equal(r.ties, false);
    assert.equal(r.u1, 2122); // scipy
    close(r.p, 0.920020331905464, 1e-9); // scipy
    close(mannWhitneyU(E.x, E.y, { alternative: "greater" }).p, 0.460010165952732, 1e-9); // scipy
    close(mannWhitneyU(E.x, E.y, { alternative: "less" }).p, 0.5418431427452868, 1e-9); // scipy
  });

  void it("case H (80 vs 90, heavy ties, clear shift): a tail p of 4e-9 to nine digits", () => {
    const r = mannWhitneyU(H.x, H.y, { alternative: "greater" });
    assert.equal(r.u1, 5436); // scipy
    close(r.p, 4.394004858507267e-9, 1e-8); // scipy
    close(mannWhitneyU(H.x, H.y, { alternative: "two-sided" }).p, 8.788009717014533e-9, 1e-8); // scipy
  });

  void it("identical constant samples cannot be told apart: p = 1 (scipy gives 1.0 too)", () => {
    const d = [5, 5, 5, 5];
    for (const alternative of ["two-sided", "greater", "less"] as const) {
      const r = mannWhitneyU(d, d, { alternative });
      assert.equal(r.p, 1, alternative);
      assert.equal(r.u1, 8); // scipy statistic 8.0
    }
  });

  void it("identical varying samples: two-sided p = 1, one-sided 0.5422350133116141 (scipy)", () => {
    const d = [1, 2, 3, 4, 5];
    const two = mannWhitneyU(d, d);
    assert.equal(two.method, "asymptotic"); // every value ties with its twin
    assert.equal(two.u1, 12.5); // scipy
    assert.equal(two.p, 1); // scipy 1.0
    close(mannWhitneyU(d, d, { alternative: "greater" }).p, 0.5422350133116141, 1e-9); // scipy
  });

  void it("method 'exact' with ties is refused, never silently wrong", () => {
    assert.throws(() => mannWhitneyU(C.x, C.y, { method: "exact" }), StatsError);
  });

  void it("forced 'asymptotic' on tie-free small samples still follows scipy's formula", () => {
    // Same z as scipy for A: U = max(17, 3) = 17, μ = 10, σ² = 20·10/12, z = (17 − 10 − 0.5)/σ.
    const r = mannWhitneyU(A.x, A.y, { method: "asymptotic" });
    const z = 6.5 / Math.sqrt((20 * 10) / 12);
    close(r.z ?? Number.NaN, z, 1e-14);
    close(r.p, 2 * normalSf(z), 1e-14);
  });
});

void describe("normalSf against scipy.stats.norm.sf", () => {
  const reference: Array<[number, number]> = [
    [-3, 0.9986501019683699],
    [-0.5, 0.6914624612740131],
    [0, 0.5],
    [0.7, 0.24196365222307303],
    [1.96, 0.024997895148220435],
    [2.4, 0.008197535924596131],
    [2.6, 0.004661188023718747],
    [4, 3.167124183311986e-5],
    [8, 6.22096057427174e-16],
    [12, 1.776482112077653e-33],
  ];
  for (const [z, p] of reference) {
    void it(`sf(${z}) = ${p}`, () => close(normalSf(z), p, 1e-12));
  }
});

void describe("ranks, medians and the Hodges–Lehmann shift", () => {
  void it("mid-ranks average tied positions; the tie term is Σ(t³ − t)", () => {
    const { ranks, tieTerm } = midRanks([3, 1, 3, 2, 3]);
    assert.deepEqual(ranks, [4, 1, 4, 2, 4]);
    assert.equal(tieTerm, 27 - 3);
  });

  void it("median of odd and even lists", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.throws(() => median([]), StatsError);
  });

  void it("the shift is the median pairwise difference (numpy.median(numpy.subtract.outer(x, y)))", () => {
    assert.equal(hodgesLehmannShift(A.x, A.y), 7); // numpy 7.0
    assert.equal(hodgesLehmannShift(C.x, C.y), -2); // numpy -2.0
    assert.equal(hodgesLehmannShift(H.x, H.y), 3); // numpy 3.0
  });

  void it("empty samples and non-finite values are refused", () => {
    assert.throws(() => mannWhitneyU([], [1]), StatsError);
    assert.throws(() => mannWhitneyU([1, Number.NaN], [1]), StatsError);
    assert.throws(() => hodgesLehmannShift([1], [Number.POSITIVE_INFINITY]), StatsError);
  });
});
