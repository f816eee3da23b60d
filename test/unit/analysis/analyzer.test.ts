import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AlwaysPassGate,
  PrometheusGate,
  analysisWindowSeconds,
  createAnalysisGateFactory,
} from "../../../src/analysis/analyzer.ts";
import { TemplateError } from "../../../src/analysis/templates.ts";
import type { AnalysisRequest, MetricSource, QueryOutcome } from "../../../src/analysis/types.ts";
import type { AnalysisSpec, CheckSpec, PrometheusSpec } from "../../../src/policy/types.ts";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const value = (v: number): QueryOutcome => ({ kind: "value", value: v });
const noData: QueryOutcome = { kind: "noData" };
const nan: QueryOutcome = { kind: "nan" };
const timeout: QueryOutcome = {
  kind: "error",
  error: { code: "timeout", message: "no answer within 1000 ms" },
};

/** Answers by the first `key` found in the query text; records every query and its evaluation time. */
class ScriptedSource implements MetricSource {
  readonly sent: { query: string; at: Date | undefined }[] = [];
  constructor(private readonly script: Record<string, QueryOutcome>) {}
  query(promql: string, at?: Date): Promise<QueryOutcome> {
    this.sent.push({ query: promql, at });
    for (const [key, outcome] of Object.entries(this.script))
      if (promql.includes(key)) return Promise.resolve(outcome);
    return Promise.reject(new Error(`unscripted query ${promql}`));
  }
}

const LAT: CheckSpec = { name: "p99-latency", template: "latency-p99", max: 500 };
const ERR: CheckSpec = { name: "error-rate", query: `errors{svc="{{canary}}"}[{{window}}]`, max: 0.01 };

function spec(checks: CheckSpec[], over: Partial<AnalysisSpec> = {}): AnalysisSpec {
  return {
    prometheus: { url: "http://prometheus.invalid:9090", timeoutMs: 1000 },
    provider: "app",
    minRequests: 0,
    checks,
    failureLimit: 1,
    onNoData: "hold",
    noDataLimit: 3,
    onError: { action: "hold", limit: 5 },
    ...over,
  };
}

function request(over: Partial<AnalysisRequest> = {}): AnalysisRequest {
  return {
    policyKey: "shop/checkout",
    namespace: "shop",
    stable: "checkout-v1",
    canary: "checkout-v2",
    canaryWeight: 10,
    stepStartedAt: NOW - 60_000,
    now: NOW,
    ...over,
  };
}

async function run(
  checks: CheckSpec[],
  script: Record<string, QueryOutcome>,
  over: Partial<AnalysisSpec> = {},
) {
  const source = new ScriptedSource(script);
  const gate = new PrometheusGate({ spec: spec(checks, over), source });
  return { report: await gate.analyze(request()), source };
}

void describe("PrometheusGate verdicts", () => {
  void it("passes when every check is within bounds, with units in the summary", async () => {
    const { report } = await run([LAT, ERR], { histogram_quantile: value(120), errors: value(0.002) });
    assert.equal(report.verdict, "pass");
    assert.deepEqual(
      report.checks.map((c) => c.verdict),
      ["pass", "pass"],
    );
    assert.equal(report.summary, "p99-latency 120 ms ≤ 500 ms; error-rate 0.002 ≤ 0.01");
    assert.equal(report.windowSeconds, 60);
    assert.equal(report.requests, undefined);
  });

  void it("fails when one check is out of bounds, and says by how much", async () => {
    const { report } = await run([LAT, ERR], { histogram_quantile: value(812), errors: value(0.002) });
    assert.equal(report.verdict, "fail");
    assert.equal(report.summary, "p99-latency 812 ms > 500 ms; error-rate 0.002 ≤ 0.01");
    const lat = report.checks[0]!;
    assert.equal(lat.verdict, "fail");
    assert.deepEqual(lat.outcome, value(812));
    assert.equal(lat.max, 500);
    assert.equal(lat.min, undefined);
    assert.match(lat.query, /^histogram_quantile\(0\.99, .*service="checkout-v2",namespace="shop"\}\[60s\]/);
  });

  void it("NaN never passes, nor is it a breach: inconclusive, recorded as NaN", async () => {
    const { report } = await run([LAT, ERR], { histogram_quantile: value(1), errors: nan });
    assert.equal(report.verdict, "inconclusive");
    assert.equal(report.checks[1]!.verdict, "noData");
    assert.equal(report.checks[1]!.outcome.kind, "nan");
    assert.match(report.checks[1]!.reason, /^error-rate NaN .*inconclusive/);
  });

  void it("no data is inconclusive, not a failure", async () => {
    const { report } = await run([LAT, ERR], { histogram_quantile: noData, errors: value(0) });
    assert.equal(report.verdict, "inconclusive");
    assert.equal(report.checks[0]!.verdict, "noData");
    assert.match(report.summary, /^p99-latency no data/);
  });

  void it("a query error is error", async () => {
    const { report } = await run([LAT, ERR], { histogram_quantile: value(1), errors: timeout });
    assert.equal(report.verdict, "error");
    assert.equal(report.checks[1]!.verdict, "error");
    assert.match(report.checks[1]!.reason, /^error-rate error \(timeout\): no answer/);
  });

  void it("a source that throws is an error outcome, not a rejection", async () => {
    const { report } = await run([LAT], {});
    assert.equal(report.verdict, "error");
    assert.match(report.checks[0]!.reason, /metric source failed: unscripted query/);
  });

  void it("precedence: fail > error > inconclusive > pass", async () => {
    const C = (n: string): CheckSpec => ({ name: n, query: `${n}[{{window}}]`, max: 1 });
    const checks = [C("a"), C("b"), C("c")];
    const verdict = async (a: QueryOutcome, b: QueryOutcome, c: QueryOutcome) =>
      (await run(checks, { "a[": a, "b[": b, "c[": c })).report.verdict;
    assert.equal(await verdict(value(2), timeout, noData), "fail");
    assert.equal(await verdict(noData, timeout, value(0)), "error");
    assert.equal(await verdict(noData, value(1), value(0)), "inconclusive");
    assert.equal(await verdict(value(1), value(1), value(0)), "pass");
    // Below minRequests a step neither passes nor fails: an out-of-bounds value among 3 requests is no breach,
    // but Prometheus being unreachable is still an error the policy's onError counts.
    const few = { minRequests: 50, requestsQuery: "reqs[{{window}}]" };
    assert.equal(
      (await run(checks, { "a[": value(2), "b[": value(0), "c[": value(0), reqs: value(3) }, few)).report
        .verdict,
      "inconclusive",
    );
    assert.equal(
      (await run(checks, { "a[": timeout, "b[": value(0), "c[": value(0), reqs: value(3) }, few)).report
        .verdict,
      "error",
    );
  });

  void it("bounds are inclusive; ±Inf are values that fail a bound", async () => {
    const check: CheckSpec = { name: "x", query: "x", min: 0.95, max: 1 };
    const v = async (o: QueryOutcome) => (await run([check], { x: o })).report.checks[0]!;
    assert.equal((await v(value(0.95))).verdict, "pass");
    assert.equal((await v(value(1))).verdict, "pass");
    assert.equal((await v(value(1))).reason, "x 1 in [0.95, 1]");
    assert.equal((await v(value(0.9499))).verdict, "fail");
    assert.equal((await v(value(0.9499))).reason, "x 0.9499 < 0.95");
    assert.equal(
      (await v(value(1.0000001))).reason,
      "x 1.0000001 > 1",
      "never prints equal numbers for a breach",
    );
    assert.equal((await v(value(Infinity))).reason, "x +Inf > 1");
    assert.equal((await v(value(-Infinity))).verdict, "fail");
    const minOnly = (
      await run([{ name: "sr", template: "request-success-rate", min: 0.99 }], { "1 - (": value(0.995) })
    ).report;
    assert.equal(minOnly.summary, "sr 0.995 ≥ 0.99");
  });
});

void describe("PrometheusGate minRequests", () => {
  void it("below the minimum is inconclusive, with the count in the reason", async () => {
    const { report, source } = await run(
      [ERR],
      { errors: value(0), increase: value(12.4) },
      { minRequests: 50 },
    );
    assert.equal(report.verdict, "inconclusive");
    assert.deepEqual(report.requests, { count: 12, min: 50 });
    assert.equal(report.summary, "error-rate 0 ≤ 0.01; 12 requests < minRequests 50");
    const reqQuery = source.sent.find((s) => s.query.includes("increase"))!.query;
    assert.equal(reqQuery, `sum(increase(http_requests_total{service="checkout-v2",namespace="shop"}[60s]))`);
  });

  void it("at the minimum passes", async () => {
    const { report } = await run([ERR], { errors: value(0), increase: value(50) }, { minRequests: 50 });
    assert.equal(report.verdict, "pass");
    assert.match(report.summary, /50 requests ≥ minRequests 50$/);
  });

  void it("uses requestsQuery when given; no data counts as too few; an error is error", async () => {
    const over = { minRequests: 10, requestsQuery: `my_requests{b="{{canary}}"}[{{window}}]` };
    const none = await run([ERR], { errors: value(0), my_requests: noData }, over);
    assert.equal(none.report.verdict, "inconclusive");
    assert.deepEqual(none.report.requests, { count: null, min: 10 });
    assert.ok(none.source.sent.some((s) => s.query === `my_requests{b="checkout-v2"}[60s]`));
    const broken = await run([ERR], { errors: value(0), my_requests: timeout }, over);
    assert.equal(broken.report.verdict, "error");
    assert.match(broken.report.summary, /requests error \(timeout\)/);
  });

  void it("minRequests 0 sends no requests query", async () => {
    const { source } = await run([ERR], { errors: value(0) });
    assert.equal(source.sent.length, 1);
  });
});

void describe("PrometheusGate window", () => {
  const windows = async (stepStartedAt: number, minWindowSeconds?: number) => {
    const source = new ScriptedSource({ "": value(0) });
    const gate = new PrometheusGate({
      spec: spec([LAT, { name: "er", template: "error-rate", max: 0.01 }], { minRequests: 1 }),
      source,
      ...(minWindowSeconds !== undefined ? { minWindowSeconds } : {}),
    });
    const report = await gate.analyze(request({ stepStartedAt }));
    for (const s of source.sent) assert.equal(s.at?.getTime(), NOW, "evaluated at request.now");
    return {
      report,
      ranges: source.sent.map((s) => [...s.query.matchAll(/\[(\w+)\]/g)].map((m) => m[1])).flat(),
    };
  };

  void it("covers the seconds since the step started (floored), in every query", async () => {
    const { report, ranges } = await windows(NOW - 95_900);
    assert.equal(report.windowSeconds, 95);
    assert.equal(
      ranges.length,
      7,
      "latency 1 + its finite-share guard 2 + error-rate 3 (5xx by code, by status_code, total) + requests 1",
    );
    assert.ok(
      ranges.every((r) => r === "95s"),
      ranges.join(","),
    );
  });

  void it("never reaches before the step start by more than the minimum window", async () => {
    const early = await windows(NOW - 3_000);
    assert.ok(
      early.ranges.every((r) => r === "10s"),
      early.ranges.join(","),
    );
    const custom = await windows(NOW - 3_000, 30);
    assert.ok(custom.ranges.every((r) => r === "30s"));
    const skewed = await windows(NOW + 5_000);
    assert.equal(skewed.report.windowSeconds, 10);
    assert.equal(analysisWindowSeconds(NOW - 10_999, NOW, 10), 10);
    assert.equal(analysisWindowSeconds(NOW - 11_000, NOW, 10), 11);
  });
});

void describe("PrometheusGate construction and variables", () => {
  void it("runs checks concurrently", async () => {
    let inFlight = 0;
    let peak = 0;
    const release: (() => void)[] = [];
    const source: MetricSource = {
      query: () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        return new Promise((resolve) => {
          release.push(() => {
            inFlight--;
            resolve(value(0));
          });
          if (release.length === 3) for (const r of release) r();
        });
      },
    };
    const checks = ["a", "b"].map((n) => ({ name: n, query: n, max: 1 }));
    const report = await new PrometheusGate({
      spec: spec(checks, { minRequests: 1, requestsQuery: "r" }),
      source,
    }).analyze(request());
    assert.equal(peak, 3);
    assert.equal(report.verdict, "inconclusive");
  });

  void it("fills deployment variables from the map, following the current canary (roles swap)", async () => {
    const source = new ScriptedSource({ "": value(1) });
    const gate = new PrometheusGate({
      spec: spec([{ name: "lat", template: "latency-p50", max: 900 }], { provider: "istio" }),
      source,
      deployments: { "checkout-v1": "checkout-blue", "checkout-v2": "checkout-green" },
    });
    await gate.analyze(request());
    await gate.analyze(request({ canary: "checkout-v1", stable: "checkout-v2" }));
    // Each analysis sends the quantile and its finite-share guard.
    assert.equal(source.sent.length, 4);
    assert.ok(source.sent.slice(0, 2).every((s) => /destination_workload="checkout-green"/.test(s.query)));
    assert.ok(source.sent.slice(2).every((s) => /destination_workload="checkout-blue"/.test(s.query)));
  });

  void it("rejects an unknown template, an unknown variable and {{route}} without a route at construction", () => {
    const source = new ScriptedSource({});
    const make = (c: CheckSpec, route?: string) =>
      new PrometheusGate({ spec: spec([c]), source, ...(route !== undefined ? { route } : {}) });
    assert.throws(
      () => make({ name: "x", template: "latency-p42" }),
      (e) => e instanceof TemplateError && e.code === "unknownTemplate",
    );
    assert.throws(
      () => make({ name: "x", query: "{{pod}}" }),
      (e) => e instanceof TemplateError && e.code === "unknownVariable",
    );
    assert.throws(
      () => make({ name: "x", query: `x{r="{{route}}"}` }),
      (e) => e instanceof TemplateError && e.code === "missingVariable",
    );
    assert.doesNotThrow(() => make({ name: "x", query: `x{r="{{route}}"}` }, "checkout"));
  });

  void it("an invalid name at analysis time is an error result, and nothing is sent", async () => {
    const source = new ScriptedSource({ "": value(0) });
    const gate = new PrometheusGate({ spec: spec([ERR]), source });
    const report = await gate.analyze(request({ canary: `x"} or vector(1)` }));
    assert.equal(report.verdict, "error");
    assert.match(report.checks[0]!.reason, /query not sent: invalid value/);
    assert.equal(source.sent.length, 0);
  });
});

void describe("AlwaysPassGate and the factory", () => {
  void it("AlwaysPassGate passes with a fixed summary", async () => {
    const report = await new AlwaysPassGate().analyze(request());
    assert.deepEqual(report, {
      verdict: "pass",
      checks: [],
      summary: "no checks configured: advancing on interval",
      windowSeconds: 60,
    });
  });

  void it("shares one client per Prometheus config and gives checkless policies AlwaysPassGate", async () => {
    const created: PrometheusSpec[] = [];
    let closed = 0;
    const factory = createAnalysisGateFactory({
      createSource: (p) => {
        created.push(p);
        return { query: () => Promise.resolve(value(0)), close: () => closed++ };
      },
    });
    const policy = (url: string, checks = [ERR]) => ({
      analysis: { ...spec(checks), prometheus: { url, timeoutMs: 1000 } },
      deployments: {},
      target: { kind: "HTTPRoute" as const, name: "checkout" },
    });
    factory.gateFor(policy("http://prom-a:9090"));
    factory.gateFor(policy("http://prom-a:9090"));
    const gate = factory.gateFor(policy("http://prom-b:9090"));
    assert.equal(factory.clientCount, 2);
    assert.deepEqual(
      created.map((p) => p.url),
      ["http://prom-a:9090", "http://prom-b:9090"],
    );
    assert.equal((await gate.analyze(request())).verdict, "pass");
    assert.ok(factory.gateFor(policy("http://prom-c:9090", [])) instanceof AlwaysPassGate);
    assert.ok(factory.gateFor({ ...policy("x"), analysis: undefined }) instanceof AlwaysPassGate);
    assert.equal(factory.clientCount, 2);
    factory.close();
    assert.equal(closed, 2);
  });
});

void describe("honest quantiles: a quantile beyond the histogram's top finite bucket", () => {
  // histogram_quantile answers 250 (the top finite bound) whatever the true latency beyond it.
  const gateWith = (finiteShare: number, check: CheckSpec = LAT) => {
    const source = new ScriptedSource({
      "histogram_quantile(0.99": value(250),
      "max(sum by (le)": value(finiteShare),
    });
    return new PrometheusGate({ spec: spec([check]), source });
  };

  void it("is a lower bound that fails a maximum above it, and says the bound can never be measured", async () => {
    const r = await gateWith(0.6).analyze(request());
    assert.equal(r.verdict, "fail");
    assert.deepEqual(r.checks[0]!.outcome, { kind: "value", value: 250, atLeast: true });
    assert.match(r.checks[0]!.reason, /p99-latency ≥ 250 ms, beyond the histogram's top finite bucket/);
    assert.match(r.checks[0]!.reason, /can never be measured/);
  });

  void it("fails a maximum below the top bucket as a plain breach", async () => {
    const r = await gateWith(0.6, { ...LAT, max: 100 }).analyze(request());
    assert.equal(r.verdict, "fail");
    assert.match(r.checks[0]!.reason, /≥ 250 ms, beyond the histogram's top finite bucket, > 100 ms/);
  });

  void it("is an ordinary value when at least the quantile's share of requests is inside the histogram", async () => {
    const r = await gateWith(0.995).analyze(request());
    assert.equal(r.verdict, "pass");
    assert.deepEqual(r.checks[0]!.outcome, { kind: "value", value: 250 });
  });

  void it("a guard that cannot be measured leaves the value as it is", async () => {
    const source = new ScriptedSource({
      "histogram_quantile(0.99": value(250),
      "max(sum by (le)": { kind: "noData" },
    });
    const r = await new PrometheusGate({ spec: spec([LAT]), source }).analyze(request());
    assert.equal(r.verdict, "pass");
  });
});
