/**
 * The controller's fleet seam: only policies of shards held at the moment
 * are reconciled; a lost shard's policies are let go (no write) even before
 * the fleet says so; a gained one is read afresh. In-memory objects, a real
 * WorkQueue and WriteFence.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { ANNOTATIONS } from "../../../src/contract.ts";
import { RolloutController } from "../../../src/controller/controller.ts";
import { WriteFence } from "../../../src/fleet/fence.ts";
import type { KObject } from "../../../src/kube/kinds.ts";
import { RouterRegistry } from "../../../src/routers/index.ts";
import { Metrics } from "../../../src/server/metrics.ts";
import { routeStore, settle, SHOP_REF, SHOP_WEB, shopRouter } from "./fixtures.ts";

const ROUTE: KObject = shopRouter({}, [100, 0], "1");

const POLICY = SHOP_WEB;

function harness() {
  const store = routeStore(structuredClone(ROUTE));
  const fleet = { held: false };
  const fence = new WriteFence(() => fleet.held);
  const metrics = new Metrics({ processMetrics: false });
  const controller = new RolloutController({
    objects: store.objects,
    routers: new RouterRegistry(store.objects, fence.wrap(store.writer)),
    gates: { gateFor: () => ({ analyze: () => new Promise(() => {}) }) },
    events: { record: () => Promise.resolve() },
    metrics,
    clock: { now: () => Date.UTC(2026, 0, 15) },
    log: pino({ level: "silent" }),
    fence,
  });
  return {
    controller,
    metrics,
    writes: store.writes,
    fleet,
    state: () => store.route.metadata!.annotations![ANNOTATIONS.state],
    dropState: () => {
      const route = structuredClone(store.route);
      delete route.metadata!.annotations![ANNOTATIONS.state];
      route.metadata!.resourceVersion = String(Number(route.metadata!.resourceVersion) + 1);
      store.route = route;
    },
  };
}

void describe("controller: only policies of shards held now", () => {
  void it("manages a policy only while its shard is held; lets it go without writing when it is not", async () => {
    const h = harness();
    h.controller.setPolicies([POLICY], []);
    await settle();
    assert.equal(h.writes.length, 0, "not adopted while the shard is held elsewhere");
    assert.equal(h.controller.policyCount(), 0);
    assert.equal(h.controller.knownPolicyCount(), 1);

    h.fleet.held = true;
    h.controller.ownershipChanged();
    await settle();
    assert.equal(h.writes.length, 1, "adopted once the shard is held");
    assert.ok(h.state(), "state written");
    assert.equal(h.controller.policyCount(), 1);

    // Lost without the fleet having said so yet (a process waking from SIGSTOP): the next pass writes nothing.
    // Someone removed the state: a managing replica would adopt the route again (a write).
    h.fleet.held = false;
    h.dropState();
    h.controller.onObjectChange(SHOP_REF);
    await settle();
    assert.equal(h.writes.length, 1);
    assert.equal(h.controller.policyCount(), 0, "let go at the pass");

    h.fleet.held = true;
    h.controller.ownershipChanged();
    await settle();
    assert.equal(h.controller.policyCount(), 1);
    assert.equal(h.writes.length, 2, "read afresh when gained: adopted again");
    await h.controller.stop();
  });

  void it("letting many policies go at once forgets their metrics in one pass", async () => {
    const h = harness();
    const policies = Array.from({ length: 300 }, (_, i) => ({
      ...POLICY,
      key: `shop/web-${i}`,
      name: `web-${i}`,
      target: { ...POLICY.target, name: `web-${i}` },
    }));
    h.fleet.held = true;
    h.controller.setPolicies(policies, []);
    assert.equal(h.controller.policyCount(), 300);
    const batches: string[][] = [];
    const metrics = h.metrics;
    const forget = metrics.forgetPolicies.bind(metrics);
    metrics.forgetPolicies = (keys) => (batches.push([...keys]), forget(keys));
    h.fleet.held = false;
    h.controller.ownershipChanged();
    await settle();
    assert.equal(h.controller.policyCount(), 0);
    assert.equal(batches.length, 1, "one pass over the metrics");
    assert.equal(new Set(batches[0]).size, 300);
    await h.controller.stop();
  });
});
