import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkInWords, explainText } from "../../../src/cli/explain.ts";
import type { RolloutState } from "../../../src/contract.ts";

const T = Date.parse("2026-11-30T10:00:00Z");

void describe("rolloutd explain, in words", () => {
  void it("each kind of check result says what it means", () => {
    const base = { name: "p99", max: 500 } as const;
    assert.equal(
      checkInWords({ ...base, value: 612, outcome: "value", verdict: "fail" }),
      "p99 measured 612, above its max 500: fail",
    );
    assert.equal(
      checkInWords({ name: "rate", min: 0.99, value: 0.995, outcome: "value", verdict: "pass" }),
      "rate measured 0.995, within min 0.99: pass",
    );
    assert.match(checkInWords({ ...base, value: null, outcome: "noData", verdict: "noData" }), /no data/);
    assert.match(
      checkInWords({ ...base, value: null, outcome: "nan", verdict: "noData" }),
      /NaN .* counted as no data/,
    );
    assert.match(checkInWords({ ...base, value: null, outcome: "error", verdict: "error" }), /errored/);
  });

  void it("a held rollout says since when, what it counts and when it looks again", () => {
    const s: RolloutState = {
      v: 1,
      policy: "shop/web",
      phase: "Progressing",
      stable: "web-v1",
      canary: "web-v2",
      baseline: {},
      stepIndex: 0,
      canaryWeight: 10,
      applied: [
        { path: "/a", backend: "web-v1", weight: 90 },
        { path: "/b", backend: "web-v2", weight: 10 },
      ],
      stepStartedAt: T - 600_000,
      analysisDueAt: T + 30_000,
      failures: 0,
      noData: 12,
      errors: 0,
      tokens: {},
      message: "no data or too few requests (12 in a row): holding",
      since: T - 720_000,
      updatedAt: T - 30_000,
    };
    const text = explainText({ route: "httproute/web", namespace: "shop", state: s, events: [], now: T });
    assert.match(text, /^Now: Progressing since 09:48:00 \(12m ago\)$/m);
    assert.match(text, /holding/);
    assert.match(text, /Weights as last written: web-v1=90 web-v2=10/);
    assert.match(text, /next analysis due 10:00:30 \(in 30s\)/);
    assert.match(text, /Counting: 12 analyses without enough data in a row/);
    assert.match(text, /none left: Kubernetes keeps Events for an hour/);
  });
});
