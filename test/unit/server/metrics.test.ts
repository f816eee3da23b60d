import assert from "node:assert/strict";
import { it } from "node:test";
import { Metrics } from "../../../src/server/metrics.ts";

void it("point-in-time gauges come from the controller at scrape time; a removed policy's series disappear", async () => {
  const m = new Metrics({ processMetrics: false });
  m.observe(
    () => [
      { policy: "shop/a", phase: "Progressing", canaryWeight: 25 },
      { policy: "shop/b", phase: "Promoted", canaryWeight: 0 },
    ],
    () => 3,
    () => 0,
  );
  m.steps.inc({ policy: "shop/a" });
  m.steps.inc({ policy: "shop/b" });
  m.checkValue.set({ policy: "shop/a", check: "p99" }, 812);
  m.checkBound.set({ policy: "shop/a", check: "p99", bound: "max" }, 500);
  let text = await m.registry.metrics();
  assert.match(text, /^rolloutd_rollouts\{phase="Progressing"\} 1$/m);
  assert.match(text, /^rolloutd_rollouts\{phase="Promoted"\} 1$/m);
  assert.match(text, /^rolloutd_rollouts\{phase="Aborted"\} 0$/m);
  assert.match(text, /^rolloutd_canary_weight_percent\{policy="shop\/a"\} 25$/m);
  assert.match(text, /^rolloutd_workqueue_depth 3$/m);
  assert.match(text, /^rolloutd_check_value\{policy="shop\/a",check="p99"\} 812$/m);

  await m.forgetPolicies(["shop/a"]);
  text = await m.registry.metrics();
  assert.doesNotMatch(text, /rolloutd_steps_total\{policy="shop\/a"\}/);
  assert.doesNotMatch(text, /rolloutd_check_value\{policy="shop\/a"/);
  assert.doesNotMatch(text, /rolloutd_check_bound\{policy="shop\/a"/);
  assert.match(text, /^rolloutd_steps_total\{policy="shop\/b"\} 1$/m);
});

void it("forgetting many policies reads each metric once and removes exactly their series", async () => {
  const m = new Metrics({ processMetrics: false });
  const keys = Array.from({ length: 2_000 }, (_, i) => `ns-${i % 7}/p-${i}`);
  for (const k of keys) {
    m.steps.inc({ policy: k });
    m.checkValue.set({ policy: k, check: "p99" }, 1);
  }
  let reads = 0;
  const spied = [m.steps, m.checkValue] as const;
  for (const metric of spied) {
    const get = metric.get.bind(metric);
    metric.get = () => (reads++, get());
  }
  const gone = new Set(keys.filter((_, i) => i % 2 === 0));
  await m.forgetPolicies(gone);
  assert.equal(reads, spied.length, "one read per metric, however many policies go");
  const left = (await m.steps.get()).values.map((v) => v.labels.policy);
  assert.deepEqual(left.sort(), keys.filter((k) => !gone.has(k)).sort());
  const text = await m.registry.metrics();
  assert.doesNotMatch(text, /policy="ns-0\/p-0"/);
  assert.match(text, /^rolloutd_check_value\{policy="ns-1\/p-1",check="p99"\} 1$/m);
});
