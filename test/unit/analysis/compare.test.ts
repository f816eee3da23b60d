/**
 * Canary-versus-stable checks: the policy fields (compare, maxIncrease/maxDecrease, judge), the pure judgments
 * of compare.ts, and the gate rendering the stable's query and asking for ranges.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { PrometheusGate } from "../../../src/analysis/analyzer.ts";
import { judgeRelative, judgeSamples, relativeBounds } from "../../../src/analysis/compare.ts";
import { classifyRangeResponse } from "../../../src/analysis/prometheus.ts";
import type { MetricSource, QueryOutcome, RangeOutcome } from "../../../src/analysis/types.ts";
import { smallestP } from "../../../src/analysis/stats.ts";
import { parsePolicyFile } from "../../../src/policy/load.ts";
import { judgeMinSamples } from "../../../src/policy/schema.ts";
import type { AnalysisSpec, CheckSpec, MannWhitneySpec } from "../../../src/policy/types.ts";

const value = (v: number): QueryOutcome => ({ kind: "value", value: v });
const series = (values: number[], t0 = 1000): RangeOutcome => ({
  kind: "series",
  points: values.map((v, i) => [t0 + i * 10, v]),
});
const MW: MannWhitneySpec = {
  kind: "mann-whitney",
  confidence: 0.98,
  tolerance: 0.25,
  sampleIntervalMs: 10_000,
  direction: "increase",
};

function policyYaml(checks: string): string {
  return [
    "apiVersion: rolloutd.dev/v1alpha1",
    "kind: RolloutPolicy",
    "metadata: { name: checkout, namespace: shop }",
    "spec:",
    "  target: { kind: HTTPRoute, name: checkout }",
    "  stable: checkout-v1",
    "  canary: checkout-v2",
    "  steps: [10, 50, 100]",
    "  analysis:",
    "    prometheus: { url: http://prometheus:9090 }",
    "    checks:",
    checks,
  ].join("\n");
}

void describe("policy: compare: stable checks", () => {
  void it("parses relative bounds and the judge shorthand with Kayenta's defaults", () => {
    const r = parsePolicyFile(
      "p.yaml",
      policyYaml(
        [
          "      - { name: p99-vs-stable, template: latency-p99, compare: stable, maxIncrease: { ratio: 0.2, absolute: 10 } }",
          "      - { name: success-vs-stable, template: request-success-rate, compare: stable, maxDecrease: { absolute: 0.01 } }",
          "      - { name: p99-judged, template: latency-p99, compare: stable, judge: mann-whitney }",
          "      - name: errors-judged",
          "        template: error-rate",
          "        compare: stable",
          "        judge: { kind: mann-whitney, confidence: 0.95, tolerance: 0.5, sampleInterval: 5s, direction: either }",
          "      - { name: success-judged, template: request-success-rate, compare: stable, judge: mann-whitney }",
        ].join("\n"),
      ),
    );
    assert.deepEqual(
      r.errors.map((e) => e.format()),
      [],
    );
    const checks = r.policies[0]?.analysis?.checks ?? [];
    assert.deepEqual(checks[0], {
      name: "p99-vs-stable",
      template: "latency-p99",
      compare: "stable",
      maxIncrease: { ratio: 0.2, absolute: 10 },
    });
    assert.deepEqual(checks[1]?.maxDecrease, { absolute: 0.01 });
    assert.deepEqual(checks[2]?.judge, MW);
    assert.equal(checks[4]?.judge?.direction, "decrease", "lower success is worse");
    assert.deepEqual(checks[3]?.judge, {
      kind: "mann-whitney",
      confidence: 0.95,
      tolerance: 0.5,
      sampleIntervalMs: 5_000,
      direction: "either",
    });
  });

  const refused: Array<[string, string, RegExp]> = [
    [
      "maxIncrease without compare",
      "      - { name: a, template: latency-p99, maxIncrease: { ratio: 0.2 } }",
      /checks\[0\]\.maxIncrease: maxIncrease compares with the stable backend: add compare: stable/,
    ],
    [
      "compare without any relative bound",
      "      - { name: a, template: latency-p99, compare: stable }",
      /checks\[0\]\.compare: compare: stable needs maxIncrease, maxDecrease or judge/,
    ],
    [
      "an absolute bound on a compare check",
      "      - { name: a, template: latency-p99, compare: stable, max: 5, judge: mann-whitney }",
      /checks\[0\]\.max: max is an absolute bound/,
    ],
    [
      "a raw query that does not select the canary",
      '      - { name: a, query: "sum(up)", compare: stable, maxIncrease: { absolute: 1 } }',
      /checks\[0\]\.query: a compare: stable query must select the canary/,
    ],
    [
      "an empty bound",
      "      - { name: a, template: latency-p99, compare: stable, maxIncrease: {} }",
      /checks\[0\]\.maxIncrease: set ratio, absolute or both/,
    ],
    [
      "a confidence of 1",
      "      - { name: a, template: latency-p99, compare: stable, judge: { kind: mann-whitney, confidence: 1 } }",
      /checks\[0\]\.judge/,
    ],
  ];
  void it("refuses a judge whose interval can never hold enough samples (it would only ever hold)", () => {
    // interval 1m (the default) / sampleInterval 20s = 3 samples; 98 % one-sided needs 4 (1/C(8,4) = 1/70).
    const r = parsePolicyFile(
      "p.yaml",
      policyYaml(
        "      - { name: a, template: latency-p99, compare: stable, judge: { kind: mann-whitney, sampleInterval: 20s } }",
      ),
    );
    assert.equal(r.policies.length, 0);
    assert.match(
      r.errors.map((e) => e.format()).join("\n"),
      /checks\[0\]\.judge: a step's interval \(60s\) holds 3 samples of 20s per side; the Mann-Whitney test needs at least 4 to reach 98 % confidence/,
    );
    assert.equal(judgeMinSamples(0.98, "increase"), 4);
    assert.equal(judgeMinSamples(0.98, "either"), 5); // 2/70 ≥ 0.02, 2/252 < 0.02
    assert.equal(judgeMinSamples(0.9, "increase"), 3); // 1/20 < 0.1
    // Consistent with the test's own smallest p.
    for (const n of [3, 4, 5]) assert.equal(smallestP(n, n, "greater") < 0.02, n >= 4);
  });

  for (const [what, line, message] of refused) {
    void it(`refuses ${what}`, () => {
      const r = parsePolicyFile("p.yaml", policyYaml(line));
      assert.equal(r.policies.length, 0);
      assert.match(r.errors.map((e) => e.format()).join("\n"), message);
    });
  }
});

void describe("judgeRelative", () => {
  const spec = { maxIncrease: { ratio: 0.2, absolute: 10 } };

  void it("both limits must hold: 20 % of 100 is 20, the absolute 10 is the tighter one", () => {
    assert.deepEqual(relativeBounds(100, spec), { max: 110 });
    assert.deepEqual(relativeBounds(20, spec), { max: 24 }); // 20 % of 20 = 4 < 10
    assert.equal(judgeRelative("p99", value(110), value(100), spec, "ms").verdict, "pass");
    const fail = judgeRelative("p99", value(111), value(100), spec, "ms");
    assert.equal(fail.verdict, "fail");
    assert.equal(fail.max, 110);
    assert.equal(fail.reason, "p99 111 ms > 110 ms (stable 100 ms +20 % and +10 ms)");
    assert.equal(judgeRelative("p99", value(25), value(20), spec).verdict, "fail");
  });

  void it("a platform-wide slowdown that moves both sides passes; the same canary value alone fails", () => {
    assert.equal(judgeRelative("p99", value(800), value(790), spec, "ms").verdict, "pass");
    assert.equal(judgeRelative("p99", value(800), value(100), spec, "ms").verdict, "fail");
  });

  void it("maxDecrease bounds from below", () => {
    const dec = { maxDecrease: { absolute: 0.01 } };
    assert.equal(judgeRelative("ok", value(0.985), value(0.999), dec).verdict, "fail");
    assert.equal(judgeRelative("ok", value(0.995), value(0.999), dec).verdict, "pass");
    assert.deepEqual(relativeBounds(0.999, dec), { min: 0.989 });
  });

  void it("honest quantiles: 'at least' never passes a maximum; both beyond the top bucket is inconclusive", () => {
    const atLeast = (v: number): QueryOutcome => ({ kind: "value", value: v, atLeast: true });
    assert.equal(judgeRelative("p99", atLeast(2500), value(2400), spec, "ms").verdict, "fail");
    assert.equal(judgeRelative("p99", atLeast(2500), atLeast(2500), spec, "ms").verdict, "noData");
    // The stable beyond the top bucket: its bound is unknown above, a canary below the known part passes.
    assert.equal(judgeRelative("p99", value(100), atLeast(2500), spec, "ms").verdict, "pass");
    assert.equal(judgeRelative("p99", value(2600), atLeast(2500), spec, "ms").verdict, "noData");
  });

  void it("no data, NaN or an error on either side never passes", () => {
    const noData: QueryOutcome = { kind: "noData" };
    const err: QueryOutcome = { kind: "error", error: { code: "timeout", message: "slow" } };
    assert.equal(judgeRelative("p99", value(1), noData, spec).verdict, "noData");
    assert.equal(judgeRelative("p99", { kind: "nan" }, value(1), spec).verdict, "noData");
    assert.equal(judgeRelative("p99", value(1), err, spec).verdict, "error");
    assert.match(judgeRelative("p99", value(1), noData, spec).reason, /stable no data/);
  });
});

void describe("judgeSamples (Mann-Whitney)", () => {
  const stable = [100, 104, 98, 102, 101, 99, 103, 97];

  void it("a platform-wide incident that raises both sides alike passes", () => {
    const incidentStable = stable.map((v) => v + 400);
    const incidentCanary = [499, 503, 505, 498, 502, 500, 497, 504];
    const r = judgeSamples("p99", series(incidentCanary), series(incidentStable), MW, "ms");
    assert.equal(r.verdict, "pass", r.reason);
    assert.ok((r.evidence?.p ?? 0) > 0.02);
  });

  void it("only the canary slower: significant and far beyond 25 % → fail", () => {
    const canary = stable.map((v) => v + 400);
    const r = judgeSamples("p99", series(canary), series(stable), MW, "ms");
    assert.equal(r.verdict, "fail", r.reason);
    // 8 vs 8, completely separated: exact one-sided p = 1/C(16, 8) = 1/12870.
    assert.equal(r.evidence?.method, "exact");
    assert.ok(Math.abs((r.evidence?.p ?? 1) - 1 / 12870) < 1e-15);
    assert.equal(r.evidence?.shift, 400);
    assert.deepEqual(r.outcome, { kind: "value", value: 500.5 });
    assert.match(r.reason, /canary worse than stable: shift \+400 ms/);
  });

  void it("significant but within the tolerance passes", () => {
    const canary = stable.map((v) => v + 20); // clearly shifted, but only ~20 %
    const r = judgeSamples("p99", series(canary), series(stable), MW, "ms");
    assert.equal(r.verdict, "pass", r.reason);
    assert.ok((r.evidence?.p ?? 1) < 0.02);
    assert.match(r.reason, /within ±25 %/);
  });

  void it("a faster canary never fails an 'increase' judge, but fails 'either'", () => {
    const canary = stable.map((v) => v / 3);
    assert.equal(judgeSamples("p99", series(canary), series(stable), MW).verdict, "pass");
    assert.equal(
      judgeSamples("p99", series(canary), series(stable), { ...MW, direction: "either" }).verdict,
      "fail",
    );
  });

  void it("too few samples to ever reach 98 % are inconclusive, not a pass", () => {
    // 3 vs 3: the smallest one-sided p is 1/20 = 0.05 ≥ 0.02.
    const r = judgeSamples("p99", series([900, 910, 920]), series([100, 101, 102]), MW);
    assert.equal(r.verdict, "noData");
    assert.match(r.reason, /too few to reach 98 % confidence/);
  });

  void it("NaN samples (idle intervals) are left out and said so", () => {
    const canary = [...stable.map((v) => v + 400), Number.NaN, Number.NaN];
    const r = judgeSamples("p99", series(canary), series(stable), MW);
    assert.equal(r.evidence?.canarySamples.length, 8);
    assert.match(r.reason, /2 NaN\/Inf samples left out/);
  });

  void it("no series or an error on either side never passes", () => {
    const err: RangeOutcome = { kind: "error", error: { code: "unreachable", message: "down" } };
    assert.equal(judgeSamples("p99", { kind: "noData" }, series(stable), MW).verdict, "noData");
    assert.equal(judgeSamples("p99", series(stable), err, MW).verdict, "error");
    assert.equal(judgeSamples("p99", series([Number.NaN]), series(stable), MW).verdict, "noData");
  });
});

void describe("classifyRangeResponse", () => {
  void it("one matrix series → points, NaN and +Inf kept as such", () => {
    const body = JSON.stringify({
      status: "success",
      data: {
        resultType: "matrix",
        result: [
          {
            metric: {},
            values: [
              [10, "1.5"],
              [20, "NaN"],
              [30, "+Inf"],
            ],
          },
        ],
      },
    });
    const r = classifyRangeResponse(200, "OK", body);
    assert.equal(r.kind, "series");
    const points = r.kind === "series" ? r.points : [];
    assert.deepEqual(points[0], [10, 1.5]);
    assert.ok(Number.isNaN(points[1]?.[1]));
    assert.equal(points[2]?.[1], Number.POSITIVE_INFINITY);
  });

  void it("no series is noData; two are multipleSeries; a vector is badResponse", () => {
    const wrap = (data: unknown) => JSON.stringify({ status: "success", data });
    assert.deepEqual(classifyRangeResponse(200, "OK", wrap({ resultType: "matrix", result: [] })), {
      kind: "noData",
    });
    const two = classifyRangeResponse(
      200,
      "OK",
      wrap({
        resultType: "matrix",
        result: [
          { metric: { a: "1" }, values: [] },
          { metric: { a: "2" }, values: [] },
        ],
      }),
    );
    assert.equal(two.kind === "error" && two.error.code, "multipleSeries");
    const vec = classifyRangeResponse(200, "OK", wrap({ resultType: "vector", result: [] }));
    assert.equal(vec.kind === "error" && vec.error.code, "badResponse");
  });
});

void describe("PrometheusGate with compare: stable checks", () => {
  const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

  class Source implements MetricSource {
    readonly instant: string[] = [];
    readonly instantAt: number[] = [];
    readonly ranges: Array<{ query: string; start: number; end: number; step: number }> = [];
    query(promql: string, at?: Date): Promise<QueryOutcome> {
      this.instant.push(promql);
      this.instantAt.push(at?.getTime() ?? Number.NaN);
      if (promql.includes("p99-canary-side")) return Promise.resolve(value(1));
      return Promise.resolve(value(promql.includes('"checkout-v2"') ? 130 : 100));
    }
    queryRange(
      promql: string,
      range: { start: Date; end: Date; stepSeconds: number },
    ): Promise<RangeOutcome> {
      this.ranges.push({
        query: promql,
        start: range.start.getTime(),
        end: range.end.getTime(),
        step: range.stepSeconds,
      });
      const base = [100, 104, 98, 102, 101, 99];
      return Promise.resolve(series(promql.includes('"checkout-v2"') ? base.map((v) => v * 3) : base));
    }
  }

  function gate(checks: CheckSpec[], source: MetricSource): PrometheusGate {
    const spec: AnalysisSpec = {
      prometheus: { url: "http://prometheus.invalid:9090", timeoutMs: 1000 },
      provider: "app",
      minRequests: 0,
      checks,
      failureLimit: 1,
      onNoData: "hold",
      noDataLimit: 3,
      onError: { action: "hold", limit: 5 },
    };
    return new PrometheusGate({
      spec,
      source,
      deployments: { "checkout-v1": "checkout-v1", "checkout-v2": "checkout-v2" },
    });
  }
  const req = {
    policyKey: "shop/checkout",
    namespace: "shop",
    stable: "checkout-v1",
    canary: "checkout-v2",
    canaryWeight: 10,
    stepStartedAt: NOW - 60_000,
    now: NOW,
  };

  void it("renders the same template for the stable, judges relative bounds, keeps the policy's order", async () => {
    const source = new Source();
    const report = await gate(
      [
        { name: "p99-vs-stable", template: "latency-p99", compare: "stable", maxIncrease: { ratio: 0.2 } },
        { name: "plain", query: 'x{s="{{canary}}",c="p99-canary-side"}', max: 5 },
      ],
      source,
    ).analyze(req);
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.verdict]),
      [
        ["p99-vs-stable", "fail"],
        ["plain", "pass"],
      ],
    );
    const cmp = report.checks[0]!;
    assert.match(cmp.query, /service="checkout-v2"/);
    assert.match(cmp.baselineQuery ?? "", /service="checkout-v1"/);
    assert.deepEqual(cmp.baseline, value(100));
    assert.equal(cmp.max, 120);
    assert.equal(report.verdict, "fail");
    assert.match(report.summary, /p99-vs-stable 130 ms > 120 ms \(stable 100 ms \+20 %\)/);
  });

  void it("the judge asks ranges from one sample after the step start to now, step = sampleInterval", async () => {
    const source = new Source();
    const report = await gate(
      [{ name: "p99-judged", template: "latency-p99", compare: "stable", judge: MW }],
      source,
    ).analyze(req);
    assert.equal(source.instant.length, 0);
    assert.equal(source.ranges.length, 2);
    for (const r of source.ranges) {
      assert.equal(r.start, req.stepStartedAt + 10_000);
      assert.equal(r.end, NOW);
      assert.equal(r.step, 10);
      assert.match(r.query, /\[10s\]/);
    }
    const check = report.checks[0]!;
    assert.equal(check.verdict, "fail", check.reason);
    assert.equal(check.judge?.canarySamples.length, 6);
    assert.ok((check.judge?.p ?? 1) < 0.02);
  });

  void it("at 100 % the stable (which has no traffic) is measured over the same length just before the step", async () => {
    const source = new Source();
    const report = await gate(
      [
        { name: "p99-vs-stable", template: "latency-p99", compare: "stable", maxIncrease: { ratio: 0.2 } },
        { name: "p99-judged", template: "latency-p99", compare: "stable", judge: MW },
      ],
      source,
    ).analyze({ ...req, canaryWeight: 100 });
    const at = (backend: string) =>
      source.instant.flatMap((q, i) =>
        q.includes(`"${backend}"`) && !q.includes("le=") ? [source.instantAt[i]] : [],
      );
    assert.ok(at("checkout-v2").every((t) => t === NOW));
    assert.ok(at("checkout-v1").length > 0 && at("checkout-v1").every((t) => t === req.stepStartedAt));
    const stableRange = source.ranges.find((r) => r.query.includes('"checkout-v1"'));
    const canaryRange = source.ranges.find((r) => r.query.includes('"checkout-v2"'));
    assert.deepEqual(
      [canaryRange?.start, canaryRange?.end, stableRange?.start, stableRange?.end],
      [req.stepStartedAt + 10_000, NOW, req.stepStartedAt - 60_000 + 10_000, req.stepStartedAt],
    );
    assert.match(
      report.checks[0]?.reason ?? "",
      /stable measured before this step: no stable traffic at 100 %/,
    );
  });

  void it("a step younger than one sample interval asks nothing and is inconclusive", async () => {
    const source = new Source();
    const report = await gate(
      [{ name: "p99-judged", template: "latency-p99", compare: "stable", judge: MW }],
      source,
    ).analyze({ ...req, stepStartedAt: NOW - 5_000 });
    assert.equal(source.ranges.length, 0);
    assert.equal(report.checks[0]?.verdict, "noData");
    assert.equal(report.verdict, "inconclusive");
  });
});
