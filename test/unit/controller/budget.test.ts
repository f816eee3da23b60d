import { it } from "node:test";
import assert from "node:assert/strict";
import { TokenBucket } from "../../../src/controller/budget.ts";

void it("a token bucket spends its burst, then refills at its rate, never above the burst", () => {
  const b = new TokenBucket(2, 3);
  const t0 = 1_000_000;
  assert.deepEqual([b.take(t0), b.take(t0), b.take(t0), b.take(t0)], [true, true, true, false]);
  assert.equal(b.take(t0 + 400), false, "0.8 of a token after 400 ms at 2/s");
  assert.equal(b.take(t0 + 500), true, "a whole token after 500 ms");
  assert.deepEqual(
    [b.take(t0 + 60_000), b.take(t0 + 60_000), b.take(t0 + 60_000), b.take(t0 + 60_000)],
    [true, true, true, false],
    "a long pause refills to the burst, not beyond",
  );
});
