/**
 * rolloutd_abort_seconds: the daemon's own part of an abort's latency, from the watch event that brought the
 * annotation to the abort written. In-memory objects and a real controller, queue and reconciler; a clock the
 * test moves, and a write that takes 40 ms of it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { ANNOTATIONS, decodeState, encodeState } from "../../../src/contract.ts";
import { RolloutController } from "../../../src/controller/controller.ts";
import { RouterRegistry } from "../../../src/routers/index.ts";
import { Metrics } from "../../../src/server/metrics.ts";
import { routeStore, settle, SHOP_REF, SHOP_WEB, shopRouter, STEP_1, T0 } from "./fixtures.ts";

/** The analysis: hanging (never answers), or passing at once. */
function harness(analysis: "hang" | "pass" = "hang") {
  const clock = { t: T0 + 61_000 };
  /** A gate the next write waits at before it is answered, when set. */
  const held: { next?: Promise<void> } = {};
  // At step 1 of 3 at 10 %, its analysis running (hanging, or about to pass).
  const store = routeStore(
    shopRouter({ [ANNOTATIONS.state]: encodeState(STEP_1) }, [90, 10], "7"),
    async () => {
      const gate = held.next;
      held.next = undefined;
      if (gate) await gate;
      clock.t += 40; // the API server's answer takes 40 ms
    },
  );
  const metrics = new Metrics({ processMetrics: false });
  const controller = new RolloutController({
    objects: store.objects,
    routers: new RouterRegistry(store.objects, store.writer),
    gates: {
      gateFor: () => ({
        analyze: () =>
          analysis === "hang"
            ? new Promise<never>(() => {})
            : Promise.resolve({
                verdict: "pass" as const,
                checks: [],
                summary: "all good",
                windowSeconds: 60,
              }),
      }),
    },
    events: { record: () => Promise.resolve() },
    metrics,
    clock: { now: () => clock.t },
    log: pino({ level: "silent" }),
  });
  const annotate = (extra: Record<string, string>) => {
    const route = structuredClone(store.route);
    Object.assign(route.metadata!.annotations!, extra);
    route.metadata!.resourceVersion = String(Number(route.metadata!.resourceVersion) + 1);
    store.route = route;
    controller.onObjectChange(SHOP_REF, route);
  };
  const observed = async () => {
    const m = await metrics.abortLatency.get();
    const v = (name: string) =>
      m.values.find((x) => x.metricName === `rolloutd_abort_seconds_${name}`)?.value;
    return { count: v("count"), sum: v("sum") };
  };
  const phase = () => decodeState(store.route.metadata!.annotations![ANNOTATIONS.state]!)?.phase;
  const hold = () => {
    let open!: () => void;
    held.next = new Promise<void>((r) => (open = r));
    return open;
  };
  return { controller, clock, annotate, observed, phase, hold };
}

void describe("controller: rolloutd_abort_seconds", () => {
  void it("times an abort from the event that brought it to the write answered, once", async () => {
    const h = harness();
    h.controller.setPolicies([SHOP_WEB], []);
    await settle();
    assert.equal(h.phase(), "Progressing", "the step's analysis is running");
    assert.deepEqual(await h.observed(), { count: 0, sum: 0 });

    h.annotate({ [ANNOTATIONS.abort]: "true" });
    await settle();
    assert.equal(h.phase(), "Aborted");
    assert.deepEqual(await h.observed(), { count: 1, sum: 0.04 }, "one abort, 40 ms from event to answer");

    // The annotation stays on the route; later events on it abort nothing and time nothing.
    h.annotate({ unrelated: "x" });
    await settle();
    assert.deepEqual(await h.observed(), { count: 1, sum: 0.04 });
    await h.controller.stop();
  });

  void it("counts the wait for a reconcile already writing when the abort came, and the retry after it", async () => {
    const h = harness("pass");
    const release = h.hold(); // the step's write, once the analysis passes, waits here
    h.controller.setPolicies([SHOP_WEB], []);
    await settle();
    assert.equal(h.phase(), "Progressing", "the step's write is not answered yet");

    h.annotate({ [ANNOTATIONS.abort]: "true" }); // while that write is on the wire
    h.clock.t += 100;
    release();
    await settle();
    assert.equal(h.phase(), "Aborted");
    // 100 ms waiting for the step's write, its answer (40 ms), then the abort's own write (40 ms).
    const { count, sum } = await h.observed();
    assert.equal(count, 1);
    assert.ok(Math.abs(sum! - 0.18) < 1e-9, `the abort took ${sum} s by the metric, 0.18 s in fact`);
    await h.controller.stop();
  });
});
