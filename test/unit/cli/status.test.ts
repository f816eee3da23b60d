import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { appliedByBackend, table } from "../../../src/cli/status.ts";
import type { KObject } from "../../../src/kube/kinds.ts";
import { initialState } from "../../../src/machine/state.ts";

void describe("rolloutd status: weights by backend from state.applied", () => {
  const route: KObject = {
    kind: "HTTPRoute",
    metadata: { name: "web", namespace: "shop" },
    spec: {
      rules: [
        { backendRefs: [{ name: "web-v1", weight: 90 }, { name: "web-v2", weight: 10 }, { name: "legacy" }] },
        {
          backendRefs: [
            { name: "web-v2", weight: 1 },
            { name: "web-v1", weight: 9 },
          ],
        },
      ],
    },
  };
  const applied = {
    "/spec/rules/0/backendRefs/0/weight": 90,
    "/spec/rules/0/backendRefs/1/weight": 10,
    "/spec/rules/1/backendRefs/0/weight": 1,
    "/spec/rules/1/backendRefs/1/weight": 9,
  };

  void it("names each written field by the entry it sits in, one value per rule", () => {
    assert.deepEqual(appliedByBackend(route, applied), { "web-v1": [90, 9], "web-v2": [10, 1] });
  });

  void it("App Mesh entries are named by their ref; older name-keyed states still show", () => {
    const vr: KObject = {
      kind: "VirtualRouter",
      spec: {
        routes: [
          { httpRoute: { action: { weightedTargets: [{ virtualNodeRef: { name: "a" }, weight: 5 }] } } },
        ],
      },
    };
    assert.deepEqual(
      appliedByBackend(vr, { "/spec/routes/0/httpRoute/action/weightedTargets/0/weight": 5 }),
      {
        a: [5],
      },
    );
    assert.deepEqual(appliedByBackend(vr, { a: 70, b: 30 }), { a: [70], b: [30] });
  });

  void it("the table shows them per backend", () => {
    const state = {
      ...initialState({ stable: "web-v1", canary: "web-v2", baseline: {}, now: 0 }),
      policy: "shop/web",
      applied,
    };
    const out = table(
      [{ namespace: "shop", route: "httproute/web", state, weights: appliedByBackend(route, applied) }],
      0,
      false,
    );
    assert.match(out.split("\n")[1]!, /web-v1=90,9 web-v2=10,1/);
  });
});
