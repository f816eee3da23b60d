/**
 * The words of a judgement point where the problem is: an analysis that
 * errored (Prometheus unreachable, or an answer such as several series that
 * cannot be read as one value) is not "metrics unavailable".
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { judge, type Settings } from "../../../src/machine/machine.ts";

const settings: Settings = {
  steps: [10, 100],
  intervalMs: 60_000,
  failureLimit: 1,
  onNoData: "hold",
  noDataLimit: 3,
  onError: { action: "hold", limit: 2 },
  needsAcceptance: false,
};
const zero = { failures: 0, noData: 0, errors: 0 };

void describe("judge() wording for errored analyses", () => {
  void it("holding and rolling back on errors name the analysis, not missing metrics", () => {
    const hold = judge(settings, zero, "error");
    assert.equal(hold.outcome, "hold");
    assert.equal(hold.why, "analysis errored (1/2): holding");
    const rollback = judge(settings, { ...zero, errors: 1 }, "error");
    assert.equal(rollback.outcome, "rollback");
    assert.match(rollback.why, /^analysis errored 2 times in a row: Prometheus unreachable or an answer/);
    for (const j of [hold, rollback]) assert.doesNotMatch(j.why, /metrics unavailable/);
  });
});
