import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { APP_MESH_TOTAL, WeightError, appMeshPairTotal, splitPair } from "../../../src/routers/weights.ts";

void describe("splitPair", () => {
  // [canaryPercent, pairTotal, stable, canary]
  const cases: Array<[number, number, number, number]> = [
    [0, 100, 100, 0],
    [100, 100, 0, 100],
    [5, 100, 95, 5],
    [25, 100, 75, 25],
    [50, 100, 50, 50],
    [0.1, 100, 99, 1],
    [0.5, 100, 99, 1],
    [99, 100, 1, 99],
    [99.4, 100, 1, 99],
    [99.6, 100, 1, 99],
    [99.99, 100, 1, 99],
    // App Mesh with another target at 10: the pair shares 90.
    [0, 90, 90, 0],
    [100, 90, 0, 90],
    [5, 90, 85, 5],
    [10, 90, 81, 9],
    [25, 90, 67, 23],
    [50, 90, 45, 45],
    [1, 90, 89, 1],
    [99, 90, 1, 89],
    // One unit: anything but 0 % needs the unit.
    [0, 1, 1, 0],
    [100, 1, 0, 1],
    [1, 1, 0, 1],
    [50, 1, 0, 1],
    [1, 2, 1, 1],
    [99, 2, 1, 1],
    [1, 7, 6, 1],
    [33, 3, 2, 1],
    [10, 1_000_000, 900_000, 100_000],
  ];
  for (const [percent, total, stable, canary] of cases) {
    void it(`${percent}% of ${total} → ${stable}/${canary}`, () => {
      assert.deepEqual(splitPair(percent, total), { stable, canary });
    });
  }

  void it("always integers summing to the total; non-zero never 0, partial never all", () => {
    for (const total of [1, 2, 3, 7, 10, 50, 89, 90, 99, 100, 1000]) {
      for (let p = 0; p <= 100; p += 0.5) {
        const { stable, canary } = splitPair(p, total);
        const at = `${p}% of ${total}`;
        assert.ok(Number.isInteger(stable) && Number.isInteger(canary), at);
        assert.equal(stable + canary, total, at);
        assert.ok(stable >= 0 && canary >= 0, at);
        if (p > 0) assert.ok(canary > 0, `${at}: a non-zero step gets traffic`);
        else assert.equal(canary, 0, at);
        if (p < 100 && total > 1) assert.ok(stable > 0, `${at}: a partial step keeps the stable`);
        if (p === 100) assert.equal(stable, 0, at);
        assert.ok(Math.abs(canary - (total * p) / 100) <= 1, `${at}: within one unit of exact`);
      }
    }
  });

  void it("rejects bad input", () => {
    for (const [p, t] of [
      [-1, 100],
      [100.5, 100],
      [Number.NaN, 100],
      [Number.POSITIVE_INFINITY, 100],
      [10, 0],
      [10, -100],
      [10, 1.5],
      [10, Number.NaN],
      [10, Number.POSITIVE_INFINITY],
    ] as Array<[number, number]>) {
      assert.throws(() => splitPair(p, t), WeightError, `${p}, ${t}`);
    }
    assert.throws(() => splitPair(101, 100), /within 0\.\.100, got 101/);
    assert.throws(() => splitPair(10, 0), /positive integer weight budget, got 0/);
  });
});

void describe("appMeshPairTotal", () => {
  void it("the pair shares what other targets leave of 100", () => {
    assert.equal(APP_MESH_TOTAL, 100);
    assert.equal(appMeshPairTotal([]), 100);
    assert.equal(appMeshPairTotal([10]), 90);
    assert.equal(appMeshPairTotal([10, 20, 0]), 70);
    assert.equal(appMeshPairTotal([99]), 1);
  });

  void it("throws when nothing is left", () => {
    assert.throws(() => appMeshPairTotal([100]), WeightError);
    assert.throws(() => appMeshPairTotal([60, 40]), /already use 100 of 100/);
    assert.throws(() => appMeshPairTotal([70, 50]), /already use 120 of 100/);
  });
});
