import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { table, why } from "../../../src/cli/status.ts";
import type { AppliedWeight } from "../../../src/contract.ts";
import { initialState } from "../../../src/machine/state.ts";

void describe("rolloutd status: weights by backend from state.applied", () => {
  // Two rules hold the pair, in opposite orders; the state names each field's backend.
  const applied: AppliedWeight[] = [
    { path: "/spec/rules/0/backendRefs/0/weight", backend: "web-v1", weight: 90 },
    { path: "/spec/rules/0/backendRefs/1/weight", backend: "web-v2", weight: 10 },
    { path: "/spec/rules/1/backendRefs/0/weight", backend: "web-v2", weight: 1 },
    { path: "/spec/rules/1/backendRefs/1/weight", backend: "web-v1", weight: 9 },
  ];

  void it("the table shows one value per location for each backend, stable first", () => {
    const state = {
      ...initialState({ stable: "web-v1", canary: "web-v2", baseline: {}, now: 0 }),
      policy: "shop/web",
      applied,
    };
    const out = table([{ namespace: "shop", route: "httproute/web", state }], 0, false);
    assert.match(out.split("\n")[1]!, /web-v1=90,9 web-v2=10,1/);
  });

  void it("shows the request stage a rollout is in instead of a 0 % weight", () => {
    const state = {
      ...initialState({ stable: "web-v1", canary: "web-v2", baseline: {}, now: 0 }),
      policy: "shop/web",
      phase: "Progressing" as const,
      stepIndex: 0,
      stageRule: { name: "rolloutd-stage", stage: 0, match: "header x-canary=always" },
    };
    const out = table([{ namespace: "shop", route: "httproute/web", state }], 0, false);
    assert.match(out.split("\n")[1]!, /1 \(stage: header x-canary=always\)/);
  });

  void it("shows a blue/green preview route while the rollout is in its preview, the weight after the switch", () => {
    const state = {
      ...initialState({ stable: "web-v1", canary: "web-v2", baseline: {}, now: 0 }),
      policy: "shop/web",
      phase: "Progressing" as const,
      stepIndex: 0,
      previewRoute: {
        kind: "HTTPRoute" as const,
        name: "web-preview",
        canaryPercent: 100 as const,
        applied: [],
      },
    };
    const row = (s: typeof state) =>
      table([{ namespace: "shop", route: "httproute/web", state: s }], 0, false).split("\n")[1]!;
    assert.match(row(state), /1 \(preview: HTTPRoute web-preview\)/);
    assert.match(row({ ...state, stepIndex: 1, canaryWeight: 100 }), /2 \(100%\)/);
  });

  void it("with nothing written yet it names the stable", () => {
    const state = {
      ...initialState({ stable: "web-v1", canary: "web-v2", baseline: {}, now: 0 }),
      policy: "shop/web",
    };
    const out = table([{ namespace: "shop", route: "httproute/web", state }], 0, false);
    assert.match(out.split("\n")[1]!, /web-v1 \(stable\)/);
  });

  void it("says why a held rollout is not moving, and for how long it has been at its step", () => {
    const now = 12 * 60_000;
    const state = {
      ...initialState({ stable: "web-v1", canary: "web-v2", baseline: {}, now: 0 }),
      policy: "shop/web",
      phase: "Progressing" as const,
      stepIndex: 0,
      canaryWeight: 10,
      applied,
      stepStartedAt: 0,
      noData: 12,
      message: "no data or too few requests (12 in a row): holding",
    };
    const [head, row] = table([{ namespace: "shop", route: "httproute/web", state }], now, false).split("\n");
    assert.match(head!, /AGE\s+WHY$/);
    assert.match(row!, /no data or too few requests \(12 in a row\): holding; at this step for 12m$/);
    const long = why({ ...state, message: "x".repeat(300) }, now);
    assert.equal([...long].length, 100);
    assert.ok(long.endsWith("…"));
  });
});
