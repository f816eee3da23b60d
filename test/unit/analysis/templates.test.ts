import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  PROVIDERS,
  TEMPLATE_NAMES,
  TEMPLATE_UNITS,
  TemplateError,
  queryVariables,
  renderQuery,
  requestsTemplateText,
  type TemplateVars,
} from "../../../src/analysis/templates.ts";

const vars: TemplateVars = {
  canary: "checkout-v2",
  stable: "checkout-v1",
  namespace: "shop",
  window: "60s",
  canaryDeployment: "checkout-v2-deploy",
  stableDeployment: "checkout-v1-deploy",
};

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TemplateError, `expected TemplateError, got ${String(err)}`);
    return err.code;
  }
  assert.fail("expected a TemplateError");
}

void describe("templates", () => {
  void it("exports the template names in order, with units", () => {
    assert.deepEqual(
      [...TEMPLATE_NAMES],
      ["request-success-rate", "error-rate", "latency-p99", "latency-p95", "latency-p50", "request-rate"],
    );
    assert.equal(TEMPLATE_UNITS["latency-p99"], "ms");
    assert.equal(TEMPLATE_UNITS["error-rate"], "ratio");
  });

  for (const provider of PROVIDERS) {
    void it(`renders every ${provider} template with the window and the canary, nothing left over`, () => {
      for (const name of TEMPLATE_NAMES) {
        const q = renderQuery({ provider, template: name }, vars);
        assert.ok(q.includes("[60s]"), `${provider}/${name}: ${q}`);
        assert.ok(!q.includes("{{") && !q.includes("}}"), `${provider}/${name}: ${q}`);
        const who = provider === "istio" ? `destination_workload="checkout-v2-deploy"` : "checkout-v2";
        assert.ok(q.includes(who), `${provider}/${name} selects the canary: ${q}`);
        assert.ok(!q.includes("checkout-v1"), `${provider}/${name} must not select the stable: ${q}`);
      }
      const r = renderQuery({ query: requestsTemplateText(provider) }, vars);
      assert.match(r, /^sum\(increase\(.*\[60s\]\)\)$/);
    });
  }

  void it("renders the expected series and labels per provider", () => {
    assert.equal(
      renderQuery({ provider: "app", template: "latency-p99" }, vars),
      `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="checkout-v2",namespace="shop"}[60s]))) * 1000 >= 0`,
    );
    const envoy = renderQuery({ provider: "envoy", template: "error-rate" }, vars);
    assert.ok(
      envoy.includes(
        `envoy_cluster_upstream_rq_xx{envoy_cluster_name=~"(.*_)?checkout-v2(_.*)?",envoy_response_code_class="5"}`,
      ),
    );
    assert.ok(
      renderQuery({ provider: "envoy", template: "latency-p50" }, vars).includes(
        "envoy_cluster_upstream_rq_time_bucket",
      ),
    );
    const istio = renderQuery({ provider: "istio", template: "latency-p95" }, vars);
    assert.ok(
      istio.includes(
        `istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="checkout-v2-deploy",destination_workload_namespace="shop"}`,
      ),
    );
    assert.ok(!istio.includes("* 1000"), "istio durations are already milliseconds");
  });

  void it("substitutes raw queries, placeholders may contain spaces", () => {
    assert.equal(
      renderQuery({ query: `sum(rate(x{svc="{{ canary }}",ns="{{namespace}}"}[{{window}}]))` }, vars),
      `sum(rate(x{svc="checkout-v2",ns="shop"}[60s]))`,
    );
  });

  void it("rejects values that would inject PromQL or are not Kubernetes names", () => {
    for (const canary of [`foo"} or vector(1)`, "Checkout", "check out", "", "-a", "a_b", "x".repeat(254)]) {
      assert.equal(
        code(() => renderQuery({ query: `x{s="{{canary}}"}` }, { canary })),
        "invalidValue",
        canary,
      );
    }
    assert.equal(
      code(() => renderQuery({ query: "{{namespace}}" }, { namespace: "a.b" })),
      "invalidValue",
    );
    assert.equal(
      code(() => renderQuery({ query: "{{namespace}}" }, { namespace: "n".repeat(64) })),
      "invalidValue",
    );
    for (const window of ["5m", "0s", "60", "60s]", " 60s", "1.5s", "-1s"]) {
      assert.equal(
        code(() => renderQuery({ query: "[{{window}}]" }, { window })),
        "invalidValue",
        window,
      );
    }
    // A bad value is rejected even when this query does not use it.
    assert.equal(
      code(() => renderQuery({ query: "up" }, { stable: "Bad" })),
      "invalidValue",
    );
    // Dots are fine in subdomain names.
    assert.equal(renderQuery({ query: `x{s="{{canary}}"}` }, { canary: "a.b-1" }), `x{s="a.b-1"}`);
  });

  void it("rejects unknown variables, missing values, unknown templates and stray braces", () => {
    assert.equal(
      code(() => renderQuery({ query: "{{canry}}" }, vars)),
      "unknownVariable",
    );
    assert.equal(
      code(() => renderQuery({ query: "{{}}" }, vars)),
      "unknownVariable",
    );
    assert.equal(
      code(() => queryVariables(`x{a="{{ CANARY }}"}`)),
      "unknownVariable",
    );
    assert.equal(
      code(() => renderQuery({ query: "up" }, { ...vars, ...({ pod: "a" } as TemplateVars) })),
      "unknownVariable",
    );
    assert.equal(
      code(() => renderQuery({ query: 'x{r="{{route}}"}' }, vars)),
      "missingVariable",
    );
    assert.equal(
      code(() => renderQuery({ provider: "app", template: "latency-p42" }, vars)),
      "unknownTemplate",
    );
    assert.equal(
      code(() => renderQuery({ query: `x{a="{{canary}"}` }, vars)),
      "malformedPlaceholder",
    );
    assert.equal(
      code(() => renderQuery({ query: `x{a="{canary}}"}` }, vars)),
      "malformedPlaceholder",
    );
  });

  void it("lists the variables a query uses", () => {
    assert.deepEqual(queryVariables("{{canary}} {{window}} {{ canary }} {{route}}"), [
      "canary",
      "window",
      "route",
    ]);
  });

  void describe("a name inside a regex matcher matches only itself", () => {
    /** PromQL string text → the RE2 pattern Prometheus compiles (fully anchored). */
    const matcher = (query: string, label: string): RegExp => {
      const m = new RegExp(`${label}[=!]~("(?:[^"\\\\]|\\\\.)*"|\`[^\`]*\`)`).exec(query);
      assert.ok(m?.[1], `no regex matcher on ${label} in ${query}`);
      const literal = m[1];
      const pattern = literal.startsWith("`") ? literal.slice(1, -1) : (JSON.parse(literal) as string); // PromQL's double-quoted escapes are Go's, as JSON's for these
      return new RegExp(`^(?:${pattern})$`);
    };
    const dotted: TemplateVars = { ...vars, canary: "web.v2" };

    void it("envoy: web.v2 matches its own clusters, never webxv2's", () => {
      for (const name of TEMPLATE_NAMES) {
        const q = renderQuery({ provider: "envoy", template: name }, dotted);
        const re = matcher(q, "envoy_cluster_name");
        assert.ok(re.test("cds_ingress_mesh_web.v2_demo_http_8080"), `${name}: own cluster`);
        assert.ok(re.test("web.v2"), `${name}: bare name`);
        assert.ok(!re.test("cds_ingress_mesh_webxv2_demo_http_8080"), `${name}: matched webxv2`);
        assert.ok(!re.test("webxv2"), `${name}: matched bare webxv2`);
      }
      assert.ok(renderQuery({ provider: "envoy", template: "error-rate" }, dotted).includes("web\\\\.v2"));
    });

    void it("raw queries: escaped inside =~ and !~ (double-quoted and raw strings), verbatim elsewhere", () => {
      const q = renderQuery(
        { query: 'sum(x{a=~"{{canary}}-.*",b!~`{{canary}}`,c="{{canary}}"}) by (d) # {{canary}}' },
        dotted,
      );
      assert.equal(q, 'sum(x{a=~"web\\\\.v2-.*",b!~`web\\.v2`,c="web.v2"}) by (d) # web.v2');
      assert.ok(!matcher(q, "a").test("webxv2-1"));
      assert.ok(matcher(q, "a").test("web.v2-1"));
      assert.ok(!matcher(q, "b").test("webxv2"));
    });

    void it("names without metacharacters render as before", () => {
      const q = renderQuery({ provider: "envoy", template: "error-rate" }, vars);
      assert.ok(q.includes('envoy_cluster_name=~"(.*_)?checkout-v2(_.*)?"'));
    });
  });
});
