import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  APP_MESH_MAX_WEIGHT,
  GATEWAY_API_MAX_WEIGHT,
  WeightError,
  planLocation,
} from "../../../src/routers/weights.ts";

const GW = GATEWAY_API_MAX_WEIGHT;
const AM = APP_MESH_MAX_WEIGHT;

void describe("planLocation", () => {
  // [stable, canary, others, percent, max, new stable, new canary, why]
  const cases: Array<[number, number, number, number, number, number, number, string]> = [
    [900, 0, 100, 5, GW, 855, 45, "the issue's rule: legacy keeps 100 of 1000"],
    [900, 0, 100, 0, GW, 900, 0, "abort: unchanged"],
    [900, 0, 100, 100, GW, 0, 900, "promotion: the pair total moves whole"],
    [100, 0, 0, 10, GW, 90, 10, "alone, exact"],
    [8, 2, 0, 10, GW, 9, 1, "alone, keeps its own total 10"],
    [1, 1, 0, 5, GW, 95, 5, "default weights 1+1, alone: rescaled to 100"],
    [1, 0, 0, 25, GW, 75, 25, "default 1 alone: rescaled to 100"],
    [150, 0, 0, 25, GW, 114, 38, "alone above 100: the next total that splits exactly, 152"],
    [3, 1, 0, 25, GW, 3, 1, "alone, 25 % of 4 is exact: kept"],
    [1, 0, 0, 0, GW, 1, 0, "0 % keeps 1"],
    [3, 0, 0, 50, GW, 50, 50, "3 alone at 50 %: rescaled to 100"],
    [GW, GW, 0, 5, GW, 950_000, 50_000, "alone, total above the field limit: rescaled into range"],
    [1, 1, 5, 5, GW, 1, 1, "beside others, total 2 at 5 %: 0.1 rounds up to the minimum 1"],
    [1, 1, 5, 50, GW, 1, 1, "beside others, 1/1 is 50 %"],
    [1, 1, 5, 99, GW, 1, 1, "beside others, a partial step never takes all"],
    [1, 0, 5, 40, GW, 1, 0, "beside others, total 1: below 50 % it stays with the stable"],
    [1, 0, 5, 50, GW, 1, 0, "beside others, total 1: a tie stays with the stable"],
    [1, 0, 5, 60, GW, 0, 1, "beside others, total 1: above 50 % it goes to the canary"],
    [45, 45, 10, 25, AM, 68, 22, "22.5 rounds to the stable"],
    [0, 0, 100, 50, GW, 0, 0, "the pair carries nothing here: left alone"],
    [0, 0, 0, 50, GW, 0, 0, "a rule that sends nothing still sends nothing"],
    [999_999, 1, 0, 0, GW, GW, 0, "alone at 0 %: exact as it is"],
    [GW, GW, 3, 50, GW, GW, GW, "beside others, 2,000,000 at 50 %"],
    [GW, GW, 3, 25, GW, GW, GW, "beside others, 25 % of 2,000,000 cannot fit: nearest achievable"],
    [GW, GW, 3, 0, GW, GW, 0, "beside others, abort over the field limit: all to the stable at the limit"],
    [100, 100, 20, 100, AM, 0, 100, "App Mesh list summing past 100: all to the canary at 100"],
    [70, 30, 100, 10, AM, 90, 10, "App Mesh beside legacy 100"],
  ];
  for (const [s, c, others, p, max, ws, wc, why] of cases) {
    void it(`${s}/${c} beside ${others} at ${p} % → ${ws}/${wc} (${why})`, () => {
      assert.deepEqual(planLocation({ stable: s, canary: c }, others, p, max), { stable: ws, canary: wc });
    });
  }

  void it("keeps the pair total whenever others share the location and the total fits", () => {
    for (const total of [1, 2, 3, 7, 10, 99, 100, 101, 999, 1000, 123_457, GW]) {
      for (let p = 0; p <= 100; p++) {
        const { stable, canary } = planLocation({ stable: total, canary: 0 }, 1, p, GW);
        assert.equal(stable + canary, total, `${p}% of ${total}`);
        assert.ok(Number.isInteger(stable) && Number.isInteger(canary));
        if (total >= 2) {
          assert.equal(canary === 0, p === 0, `${p}% of ${total}: canary ${canary}`);
          assert.equal(stable === 0, p === 100, `${p}% of ${total}: stable ${stable}`);
        }
        assert.ok(Math.abs(canary - (total * p) / 100) <= Math.max(1, 0.5 + 1e-9), `${p}% of ${total}`);
      }
    }
  });

  void it("alone, every integer step is hit exactly", () => {
    for (const total of [1, 2, 3, 19, 100, 12_345, GW]) {
      for (let p = 0; p <= 100; p++) {
        const { stable, canary } = planLocation({ stable: total, canary: 0 }, 0, p, GW);
        assert.equal(canary * 100, (stable + canary) * p, `${p}% of ${total}`);
        assert.ok(stable + canary >= Math.min(total, 1) && stable + canary <= GW);
      }
    }
  });

  void it("is idempotent: planning again from its own result changes nothing", () => {
    for (const [s, c, others] of [
      [1, 1, 0],
      [900, 0, 100],
      [3, 4, 0],
      [GW, GW, 0],
      [GW, GW, 7],
    ] as const) {
      for (const p of [0, 1, 5, 33, 50, 99, 100]) {
        const once = planLocation({ stable: s, canary: c }, others, p, GW);
        assert.deepEqual(planLocation(once, others, p, GW), once, `${s}/${c}+${others} at ${p}`);
      }
    }
  });

  void it("rejects a percent outside 0..100", () => {
    for (const p of [-1, 101, Number.NaN, Infinity]) {
      assert.throws(() => planLocation({ stable: 1, canary: 0 }, 0, p, GW), WeightError, String(p));
    }
  });
});
