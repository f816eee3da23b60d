/**
 * Blue/green's preview route (src/machine/preview.ts): which record a
 * decision writes, when the route is written, and — by generation, through
 * the real machine — that whatever happens the route ends where the
 * lifecycle says: all on the new version while a rollout runs, all on the
 * stable when it ends (the new version after a promotion, the old one after
 * a rollback or an abort).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { atRest, PHASES, type AppliedWeight, type RolloutState } from "../../../src/contract.ts";
import { decide, type RolloutEvent, type Settings } from "../../../src/machine/machine.ts";
import {
  previewChange,
  previewPercent,
  previewUpkeep,
  type PreviewRecord,
} from "../../../src/machine/preview.ts";
import { initialState } from "../../../src/machine/state.ts";
import type { AnalysisVerdict } from "../../../src/analysis/types.ts";

const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);
const REF = { kind: "HTTPRoute" as const, name: "web-preview" };
const BLUE = "/spec/rules/0/backendRefs/0/weight";
const GREEN = "/spec/rules/0/backendRefs/1/weight";

/** The preview route's pair with `green` on `greenShare` of a total of 100. */
const pair = (greenShare: number): AppliedWeight[] => [
  { path: BLUE, backend: "blue", weight: 100 - greenShare },
  { path: GREEN, backend: "green", weight: greenShare },
];

const record = (canaryPercent: 0 | 100, over: Partial<PreviewRecord> = {}): PreviewRecord => ({
  ...REF,
  canaryPercent,
  applied: pair(canaryPercent),
  ...over,
});

void describe("previewChange: the record a decision writes", () => {
  for (const phase of PHASES) {
    const inFlight = !atRest(phase);
    void it(`${phase}: ${inFlight ? "all on the new version" : "all on the stable"}`, () => {
      assert.equal(previewPercent({ phase }), inFlight ? 100 : 0);
      const none = previewChange(REF, {}, { phase });
      assert.deepEqual(
        none,
        inFlight ? { kind: "set", ref: REF, canaryPercent: 100, required: true } : { kind: "keep" },
        "no record yet: a rollout beginning needs the route; at rest nothing is touched",
      );
      const live = previewChange(REF, { previewRoute: record(100) }, { phase });
      assert.deepEqual(
        live,
        inFlight
          ? { kind: "keep" }
          : { kind: "set", ref: REF, canaryPercent: 0, from: pair(100), required: false },
        "the end of a rollout puts it back, never waiting for the route",
      );
      const done = previewChange(REF, { previewRoute: record(0) }, { phase });
      assert.equal(done.kind, inFlight ? "set" : "keep");
    });
  }

  void it("a rollout keeps the route it began with; the next one takes the policy's", () => {
    const other = { kind: "GRPCRoute" as const, name: "renamed" };
    assert.deepEqual(previewChange(other, { previewRoute: record(100) }, { phase: "Paused" }), {
      kind: "keep",
    });
    assert.deepEqual(previewChange(other, { previewRoute: record(100) }, { phase: "Aborted" }), {
      kind: "set",
      ref: REF,
      canaryPercent: 0,
      from: pair(100),
      required: false,
    });
    assert.deepEqual(previewChange(other, { previewRoute: record(0) }, { phase: "Progressing" }), {
      kind: "set",
      ref: other,
      canaryPercent: 100,
      required: true,
    });
    assert.deepEqual(previewChange(undefined, {}, { phase: "Progressing" }), { kind: "keep" });
  });
});

void describe("previewUpkeep: when the route is written", () => {
  void it("in flight: brought to all-new from anything, left alone once there", () => {
    for (const share of [0, 1, 50, 99])
      assert.deepEqual(previewUpkeep(record(100), pair(share), pair(100)), pair(100));
    assert.equal(previewUpkeep(record(100), pair(100), pair(100)), undefined);
  });

  void it("at rest: put back only while it holds what the rollout put there", () => {
    const rest = record(0, { from: pair(100) });
    assert.deepEqual(previewUpkeep(rest, pair(100), pair(0)), pair(0), "still ours: put back");
    assert.equal(previewUpkeep(rest, pair(0), pair(0)), undefined, "already back");
    assert.equal(previewUpkeep(rest, pair(30), pair(0)), undefined, "edited since: someone else's");
    assert.equal(previewUpkeep(record(0), pair(100), pair(0)), undefined, "nothing put there by a rollout");
    assert.equal(previewUpkeep(record(0, { from: [] }), pair(100), pair(0)), undefined);
  });
});

void describe("through the machine: the preview route ends where the lifecycle says", () => {
  const settings: Settings = {
    steps: [0, 100],
    stageLabels: ["preview route HTTPRoute web-preview"],
    intervalMs: 60_000,
    failureLimit: 1,
    onNoData: "hold",
    noDataLimit: 3,
    onError: { action: "hold", limit: 5 },
    needsAcceptance: true,
    holdAction: "rollback",
  };
  const verdicts: AnalysisVerdict[] = ["pass", "fail", "inconclusive", "error"];
  const event = fc.oneof(
    fc.constantFrom("NEW_REVISION", "START", "RETRY", "ABORT", "PAUSE", "RESUME", "ACCEPTED", "PROMOTE"),
    fc.constantFrom(...verdicts).map((v) => `ANALYSIS:${v}`),
  );

  const eventOf = (kind: string, i: number): RolloutEvent => {
    const base = { now: T0 + (i + 1) * 1000, revisions: { blue: "b1", green: `g${i}` } };
    switch (kind) {
      case "NEW_REVISION":
        return { type: "NEW_REVISION", revision: `g${i}`, ...base };
      case "START":
      case "RETRY":
        return { type: kind, token: `t${i}`, revision: `g${i}`, ...base };
      case "ABORT":
        return { type: "ABORT", reason: "on call", ...base };
      case "PAUSE":
      case "RESUME":
      case "ACCEPTED":
        return { type: kind, ...base };
      case "PROMOTE":
        return { type: "PROMOTE", token: `p${i}`, ...base };
      default: {
        const verdict = kind.slice("ANALYSIS:".length) as AnalysisVerdict;
        return {
          type: "ANALYSIS",
          report: { verdict, checks: [], summary: `analysis ${verdict}`, windowSeconds: 60 },
          ...base,
        };
      }
    }
  };

  /** The preview route's pair planned for a share, by the state's roles (the route holds blue then green). */
  const plan = (s: RolloutState, canaryPercent: 0 | 100): AppliedWeight[] =>
    pair((s.canary === "green") === (canaryPercent === 100) ? 100 : 0);

  void it("after every decision and one upkeep: all on the canary in flight, all on the stable at rest", () => {
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 40 }), (kinds) => {
        let s: RolloutState = {
          ...initialState({ stable: "blue", canary: "green", baseline: { blue: "b1", green: "g" }, now: T0 }),
        };
        // Before any rollout the route is the user's: half and half, never touched at rest.
        let route = pair(50);
        let touched = false;
        kinds.forEach((kind, i) => {
          const d = decide(settings, s, eventOf(kind, i));
          if (!d.changed) return;
          const next: RolloutState = { ...d.state };
          const change = previewChange(REF, s, next);
          if (change.kind === "set") {
            next.previewRoute = {
              ...change.ref,
              canaryPercent: change.canaryPercent,
              applied: plan(next, change.canaryPercent),
              ...(change.from ? { from: change.from } : {}),
            };
          } else if (s.previewRoute) next.previewRoute = s.previewRoute;
          s = next;
          const rec = s.previewRoute;
          if (!rec) return;
          const write = previewUpkeep(rec, route, plan(s, rec.canaryPercent));
          if (write) {
            route = write;
            touched = true;
          }
          assert.equal(rec.canaryPercent, previewPercent(s), `${kinds.slice(0, i + 1).join(" ")}`);
          if (!touched) return;
          const onCanary = route.find((w) => w.backend === s.canary)!.weight;
          assert.equal(
            onCanary,
            atRest(s.phase) ? 0 : 100,
            `${s.phase} after ${kinds.slice(0, i + 1).join(" ")}`,
          );
        });
        if (touched && kinds.includes("ABORT") && s.phase === "Aborted")
          assert.equal(
            route.find((w) => w.backend === s.canary)!.weight,
            0,
            "an abort lands on the preview route",
          );
      }),
      { numRuns: 500 },
    );
  });
});
