/**
 * PrometheusClient and PrometheusGate against a REAL Prometheus (test/controlplane/prometheus.ts) scraping a
 * small prom-client backend started here on a random loopback port.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import { Counter, Histogram, Registry } from "prom-client";

import { PrometheusGate } from "../../src/analysis/analyzer.ts";
import { PrometheusClient } from "../../src/analysis/prometheus.ts";
import {
  PROVIDERS,
  TEMPLATE_NAMES,
  renderQuery,
  requestsTemplateText,
  BUILTIN_TEMPLATES,
} from "../../src/analysis/templates.ts";
import type { QueryOutcome } from "../../src/analysis/types.ts";
import type { AnalysisSpec } from "../../src/policy/types.ts";
import { startPrometheus, type PrometheusHandle } from "../controlplane/prometheus.ts";

const CANARY = { service: "checkout-v2", namespace: "shop" };

/** Polls `probe` every 250 ms until it returns something other than undefined, or fails after `timeoutMs`. */
async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(250);
  }
}

async function valueOf(client: PrometheusClient, query: string): Promise<number | undefined> {
  const o = await client.query(query);
  return o.kind === "value" ? o.value : undefined;
}

void describe("PrometheusClient against a real Prometheus", () => {
  const registry = new Registry();
  const events = new Counter({ name: "rolloutd_test_events_total", help: "test", registers: [registry] });
  const requests = new Counter({
    name: "http_requests_total",
    help: "requests",
    labelNames: ["service", "namespace", "code"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "latency",
    labelNames: ["service", "namespace"],
    buckets: [0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const backend = http.createServer((_req, res) => {
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  let prom: PrometheusHandle;
  let client: PrometheusClient;

  before(async () => {
    events.inc(7);
    requests.labels({ ...CANARY, code: "200" }).inc(0);
    requests.labels({ ...CANARY, code: "500" }).inc(0);
    duration.zero(CANARY);
    await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
    const port = (backend.address() as AddressInfo).port;
    prom = await startPrometheus({
      targets: [{ job: "backend", url: `http://127.0.0.1:${port}/metrics` }],
      scrapeIntervalSeconds: 1,
    });
    client = new PrometheusClient({ url: prom.url, timeoutMs: 5_000 });
  });

  after(async () => {
    client?.close();
    await prom?.stop();
    backend.closeAllConnections();
    await new Promise<void>((resolve) => backend.close(() => resolve()));
  });

  void it("returns the scraped counter's value", async () => {
    const v = await eventually("the counter to be scraped", async () => {
      const x = await valueOf(client, "sum(rolloutd_test_events_total)");
      return x === 7 ? x : undefined;
    });
    assert.equal(v, 7);
  });

  void it("an empty result is noData", async () => {
    assert.deepEqual(await client.query(`rolloutd_test_events_total{job="nope"}`), { kind: "noData" });
  });

  void it("a PromQL syntax error is a prometheus error with errorType bad_data", async () => {
    const o = await client.query("sum(rate(rolloutd_test_events_total[1m]");
    assert.equal(o.kind, "error");
    assert.equal(o.kind === "error" && o.error.code, "prometheus");
    assert.match(o.kind === "error" ? o.error.message : "", /^bad_data: /);
  });

  void it("a bare metric with several series is multipleSeries", async () => {
    const o = await client.query(`http_requests_total{service="checkout-v2"}`);
    assert.equal(o.kind === "error" && o.error.code, "multipleSeries");
  });

  void it("every built-in template is valid PromQL, and an idle canary is no data, never NaN", async () => {
    // Two scrapes of the zeroed series, so rate() sees a window with no traffic.
    await eventually("two samples of the idle series", async () => {
      const n = await valueOf(
        client,
        `count_over_time(http_request_duration_seconds_count{service="checkout-v2"}[1m])`,
      );
      return n !== undefined && n >= 2 ? n : undefined;
    });
    const vars = {
      canary: CANARY.service,
      namespace: CANARY.namespace,
      window: "30s",
      canaryDeployment: "checkout-v2",
    };
    for (const provider of PROVIDERS) {
      const queries = [...TEMPLATE_NAMES.map((t) => renderQuery({ provider, template: t }, vars))];
      queries.push(renderQuery({ query: requestsTemplateText(provider) }, vars));
      queries.push(renderQuery({ query: BUILTIN_TEMPLATES[provider].finiteShare }, vars));
      for (const q of queries) {
        const o: QueryOutcome = await client.query(q);
        assert.ok(o.kind === "noData" || o.kind === "value", `${provider}: ${q} → ${JSON.stringify(o)}`);
      }
    }
    const appVars = vars;
    for (const t of ["latency-p99", "error-rate", "request-success-rate"]) {
      assert.deepEqual(
        await client.query(renderQuery({ provider: "app", template: t }, appVars)),
        { kind: "noData" },
        t,
      );
    }
    assert.deepEqual(
      await client.query(renderQuery({ provider: "app", template: "request-rate" }, appVars)),
      {
        kind: "value",
        value: 0,
      },
    );
  });

  void it("PrometheusGate with the app templates measures the canary's p99 in the right bucket", async () => {
    const stepStartedAt = Date.now();
    for (let i = 0; i < 100; i++) {
      duration.observe(CANARY, 0.3);
      requests.inc({ ...CANARY, code: "200" });
    }
    await eventually("the 100 observations to be scraped", async () => {
      const n = await valueOf(client, `sum(http_request_duration_seconds_count{service="checkout-v2"})`);
      return n === 100 ? n : undefined;
    });
    const spec: AnalysisSpec = {
      prometheus: { url: prom.url, timeoutMs: 5_000 },
      provider: "app",
      minRequests: 50,
      checks: [
        { name: "p99-latency", template: "latency-p99", max: 1000 },
        { name: "error-rate", template: "error-rate", max: 0.01 },
        { name: "p99-tight", template: "latency-p99", max: 400 },
      ],
      failureLimit: 1,
      onNoData: "hold",
      noDataLimit: 3,
      onError: { action: "hold", limit: 5 },
    };
    const gate = new PrometheusGate({ spec, source: client });
    const report = await gate.analyze({
      policyKey: "shop/checkout",
      namespace: "shop",
      stable: "checkout-v1",
      canary: "checkout-v2",
      canaryWeight: 10,
      stepStartedAt,
      now: Date.now(),
    });
    const [p99, errorRate, tight] = report.checks;
    assert.equal(p99?.outcome.kind, "value", JSON.stringify(report));
    const ms = p99?.outcome.kind === "value" ? p99.outcome.value : NaN;
    assert.ok(ms > 250 && ms <= 500, `p99 ${ms} ms should be in the (250, 500] ms bucket`);
    assert.equal(p99?.verdict, "pass");
    assert.deepEqual(errorRate?.outcome, { kind: "value", value: 0 });
    assert.equal(errorRate?.verdict, "pass");
    assert.equal(tight?.verdict, "fail");
    assert.ok(
      report.requests !== undefined && report.requests.count !== null && report.requests.count >= 50,
      JSON.stringify(report.requests),
    );
    assert.equal(report.verdict, "fail");
    assert.ok(report.windowSeconds >= 10, `window ${report.windowSeconds}s`);
    assert.match(report.summary, /p99-tight \d+(\.\d+)? ms > 400 ms/);
  });

  void it("a canary slower than the histogram's top bucket is measured as 'at least' that bucket and fails, never passes", async () => {
    // Every request takes 3 s; the top finite bucket is 1 s; the bound (2 s) lies above it. histogram_quantile
    // answers 1000 ms here, which alone would read as a pass.
    const SLOW = { service: "slow-v2", namespace: "shop" };
    // The series exist at zero first, so rate() sees the increase.
    duration.zero(SLOW);
    requests.inc({ ...SLOW, code: "200" }, 0);
    await eventually("two samples of the zeroed series", async () => {
      const n = await valueOf(
        client,
        `count_over_time(http_request_duration_seconds_count{service="slow-v2"}[1m])`,
      );
      return n !== undefined && n >= 2 ? n : undefined;
    });
    const stepStartedAt = Date.now();
    for (let i = 0; i < 60; i++) {
      duration.observe(SLOW, 3);
      requests.inc({ ...SLOW, code: "200" });
    }
    await eventually("the slow observations to be scraped", async () => {
      const n = await valueOf(client, `sum(http_request_duration_seconds_count{service="slow-v2"})`);
      return n === 60 ? n : undefined;
    });
    const spec: AnalysisSpec = {
      prometheus: { url: prom.url, timeoutMs: 5_000 },
      provider: "app",
      minRequests: 50,
      checks: [{ name: "p99-latency", template: "latency-p99", max: 2000 }],
      failureLimit: 1,
      onNoData: "hold",
      noDataLimit: 3,
      onError: { action: "hold", limit: 5 },
    };
    const report = await new PrometheusGate({ spec, source: client }).analyze({
      policyKey: "shop/slow",
      namespace: "shop",
      stable: "slow-v1",
      canary: "slow-v2",
      canaryWeight: 10,
      stepStartedAt,
      now: Date.now(),
    });
    const [p99] = report.checks;
    assert.deepEqual(p99?.outcome, { kind: "value", value: 1000, atLeast: true }, JSON.stringify(report));
    assert.equal(p99?.verdict, "fail");
    assert.equal(report.verdict, "fail");
    assert.match(p99?.reason ?? "", /≥ 1000 ms, beyond the histogram's top finite bucket/);
  });

  void it("after stop() the client gets unreachable; after start() on the same port it answers again", async () => {
    const port = prom.port;
    await prom.stop({ keepData: true });
    const o = await client.query("sum(rolloutd_test_events_total)");
    assert.equal(o.kind === "error" && o.error.code, "unreachable", JSON.stringify(o));
    await prom.start();
    assert.equal(prom.port, port);
    const v = await eventually("the counter after the restart", async () => {
      const x = await valueOf(client, "sum(rolloutd_test_events_total)");
      return x === 7 ? x : undefined;
    });
    assert.equal(v, 7);
  });
});
