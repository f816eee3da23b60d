/** Finding the latest rollout in a route's Events, for `rolloutd replay --rollout`. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { latestRollout, type RecordedEvent } from "../../../src/replay/events.ts";

const T = Date.UTC(2026, 10, 30, 9, 0, 0);
const ev = (reason: string, s: number): RecordedEvent => ({
  reason,
  at: T + s * 1000,
  message: `${reason} @${s}`,
});

void describe("latestRollout", () => {
  void it("the latest RolloutStarted up to the first Event that ends it (plus a second)", () => {
    const events = [
      ev("RolloutStarted", 0),
      ev("StepAdvanced", 60),
      ev("Promoted", 120),
      ev("RolloutStarted", 600),
      ev("StepAdvanced", 660),
      ev("AnalysisNotPassed", 700),
      ev("RolledBack", 720),
      ev("WeightsDrifted", 1000),
    ];
    const r = latestRollout(events, T + 5_000_000);
    assert.deepEqual(
      { from: r?.from, to: r?.to, ended: r?.ended?.reason },
      { from: T + 600_000, to: T + 721_000, ended: "RolledBack" },
    );
  });

  void it("Events in any order; the next RolloutStarted ends a rollout that was restarted", () => {
    const r = latestRollout(
      [ev("RolloutStarted", 300), ev("RolloutStarted", 0), ev("StepAdvanced", 60)],
      T + 1e6,
    );
    assert.equal(r?.from, T + 300_000);
    assert.equal(r?.ended, undefined);
    assert.equal(r?.to, T + 1e6, "still going on: up to now");
  });

  void it("no RolloutStarted: nothing to replay", () => {
    assert.equal(latestRollout([ev("Promoted", 10)], T), undefined);
    assert.equal(latestRollout([], T), undefined);
  });
});
