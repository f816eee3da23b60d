import { allSteps, cadenceOf } from "../../../src/policy/types.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_TEMPLATE_NAMES,
  expandStepWeight,
  formatPath,
  isKubernetesName,
  TEMPLATE_VARIABLES,
  templateVariableError,
  validatePolicyDocument,
  type PolicyValidation,
} from "../../../src/policy/schema.ts";

const minimal = () => ({
  apiVersion: "rolloutd.dev/v1alpha1",
  kind: "RolloutPolicy",
  metadata: { name: "checkout" },
  spec: {
    target: { kind: "HTTPRoute", name: "checkout" },
    stable: "checkout-v1",
    canary: "checkout-v2",
    steps: [10, 50],
  } as Record<string, unknown>,
});

function ok(result: PolicyValidation) {
  if (!result.ok) assert.fail(`expected a valid policy, got ${JSON.stringify(result.issues)}`);
  return result.policy;
}

void test("defaults of a minimal policy", () => {
  assert.deepEqual(ok(validatePolicyDocument(minimal())), {
    key: "default/checkout",
    name: "checkout",
    namespace: "default",
    target: { kind: "HTTPRoute", name: "checkout" },
    stable: "checkout-v1",
    canary: "checkout-v2",
    deployments: { "checkout-v1": "checkout-v1", "checkout-v2": "checkout-v2" },
    steps: [10, 50],
    intervalMs: 60_000,
    routeReadyTimeoutMs: 120_000,
    holdLimit: { afterMs: 600_000, action: "rollback" },
  });
});

void test("holdLimit and the in-step cadence are policy fields; cadence 0 turns in-step checks off", () => {
  const doc = minimal();
  doc.spec.holdLimit = { after: "3m", action: "pause" };
  const analysis: Record<string, unknown> = {
    prometheus: { url: "http://p:9090" },
    checks: [{ name: "e", template: "error-rate", max: 0.01 }],
    cadence: "30s",
  };
  doc.spec.analysis = analysis;
  const p = ok(validatePolicyDocument(doc));
  assert.deepEqual(p.holdLimit, { afterMs: 180_000, action: "pause" });
  assert.equal(p.analysis?.cadenceMs, 30_000);
  analysis.cadence = 0;
  assert.equal(ok(validatePolicyDocument(doc)).analysis?.cadenceMs, 0);
  delete analysis.cadence;
  const dflt = ok(validatePolicyDocument(doc));
  assert.equal(dflt.analysis?.cadenceMs, undefined);
  assert.equal(cadenceOf(dflt), 12_000, "a fifth of the 1m interval");
  assert.equal(cadenceOf({ ...dflt, intervalMs: 5_000 }), 2_000, "never below 2 s");
  assert.equal(cadenceOf({ ...dflt, analysis: undefined }), 0, "no analysis, no checks");
});

void test("a backend may name its namespace; the plain string and a mapping without namespace mean the route's", () => {
  const doc = minimal();
  doc.spec.stable = { name: "checkout-v1", namespace: "payments" };
  doc.spec.canary = { name: "checkout-v2" };
  doc.spec.trigger = { deployments: { "checkout-v1": "co-1" } };
  const p = ok(validatePolicyDocument(doc));
  assert.equal(p.stable, "checkout-v1");
  assert.equal(p.canary, "checkout-v2");
  assert.deepEqual(p.backendNamespaces, { "checkout-v1": "payments" });
  assert.deepEqual(p.deployments, { "checkout-v1": "co-1", "checkout-v2": "checkout-v2" });
  assert.equal(ok(validatePolicyDocument(minimal())).backendNamespaces, undefined);
});

void test("defaults of an analysis block", () => {
  const doc = minimal();
  doc.spec.analysis = {
    prometheus: { url: "https://prometheus.monitoring:9090" },
    checks: [{ name: "errors", template: "error-rate", max: 0.01 }],
  };
  assert.deepEqual(ok(validatePolicyDocument(doc)).analysis, {
    prometheus: { url: "https://prometheus.monitoring:9090", timeoutMs: 10_000 },
    provider: "app",
    minRequests: 0,
    checks: [{ name: "errors", template: "error-rate", max: 0.01 }],
    failureLimit: 1,
    onNoData: "hold",
    noDataLimit: 3,
    onError: { action: "hold", limit: 5 },
  });
});

void test("every analysis field is carried over", () => {
  const doc = minimal();
  doc.spec.interval = "30s";
  doc.spec.routeReadyTimeout = "5m";
  doc.spec.window = "* 9-17 * * 1-5";
  doc.spec.windowTimeZone = "Europe/Berlin";
  doc.spec.analysis = {
    prometheus: {
      url: "http://127.0.0.1:9090",
      timeout: "2s",
      caFile: "/ca.pem",
      insecureSkipVerify: false,
      basicAuth: { username: "u", passwordFile: "/pw" },
    },
    provider: "istio",
    minRequests: 100,
    requestsQuery: 'sum(increase(requests{svc="{{ canary }}"}[{{window}}]))',
    checks: [{ name: "q", query: "vector(1)", min: 0, max: 2 }],
    failureLimit: 3,
    onNoData: "fail",
    noDataLimit: 2,
    onError: { action: "pass", limit: 1 },
  };
  const p = ok(validatePolicyDocument(doc));
  assert.equal(p.intervalMs, 30_000);
  assert.equal(p.routeReadyTimeoutMs, 300_000);
  assert.equal(p.window, "* 9-17 * * 1-5");
  assert.equal(p.windowTimeZone, "Europe/Berlin");
  assert.deepEqual(p.analysis, {
    prometheus: {
      url: "http://127.0.0.1:9090",
      timeoutMs: 2_000,
      caFile: "/ca.pem",
      insecureSkipVerify: false,
      basicAuth: { username: "u", passwordFile: "/pw" },
    },
    provider: "istio",
    minRequests: 100,
    requestsQuery: 'sum(increase(requests{svc="{{ canary }}"}[{{window}}]))',
    checks: [{ name: "q", query: "vector(1)", min: 0, max: 2 }],
    failureLimit: 3,
    onNoData: "fail",
    noDataLimit: 2,
    onError: { action: "pass", limit: 1 },
  });
});

void test("stepWeight expands to [w, 2w, …] up to maxWeight", () => {
  assert.deepEqual(expandStepWeight(20), [20, 40, 60, 80, 100]);
  assert.deepEqual(expandStepWeight(30), [30, 60, 90]);
  assert.deepEqual(expandStepWeight(10, 50), [10, 20, 30, 40, 50]);
  assert.deepEqual(expandStepWeight(1).length, 100);
  const doc = minimal();
  delete doc.spec.steps;
  doc.spec.stepWeight = 15;
  doc.spec.maxWeight = 50;
  assert.deepEqual(ok(validatePolicyDocument(doc)).steps, [15, 30, 45]);
  delete doc.spec.maxWeight;
  assert.deepEqual(ok(validatePolicyDocument(doc)).steps, [15, 30, 45, 60, 75, 90]);
});

void test("maxWeight without stepWeight, or below it", () => {
  const doc = minimal();
  doc.spec.maxWeight = 50;
  assert.deepEqual(validatePolicyDocument(doc), {
    ok: false,
    issues: [{ path: ["spec", "maxWeight"], at: "value", message: "maxWeight needs stepWeight" }],
  });
  delete doc.spec.steps;
  doc.spec.stepWeight = 60;
  assert.deepEqual(validatePolicyDocument(doc), {
    ok: false,
    issues: [
      {
        path: ["spec", "maxWeight"],
        at: "value",
        message: "maxWeight (50) must be at least stepWeight (60)",
      },
    ],
  });
});

void test("trigger: deployment shorthand and per-backend map, normalized to both backends", () => {
  const doc = minimal();
  doc.spec.trigger = { deployment: "checkout-green" };
  assert.deepEqual(ok(validatePolicyDocument(doc)).deployments, {
    "checkout-v1": "checkout-v1",
    "checkout-v2": "checkout-green",
  });
  doc.spec.trigger = { deployments: { "checkout-v1": "checkout-blue" } };
  assert.deepEqual(ok(validatePolicyDocument(doc)).deployments, {
    "checkout-v1": "checkout-blue",
    "checkout-v2": "checkout-v2",
  });
  doc.spec.trigger = { deployment: "a", deployments: { "checkout-v2": "b" } };
  assert.deepEqual(validatePolicyDocument(doc), {
    ok: false,
    issues: [
      {
        path: ["spec", "trigger", "deployment"],
        at: "value",
        message: "conflicts with trigger.deployments.checkout-v2: set the canary's Deployment once",
      },
    ],
  });
});

void test("template names come from the caller", () => {
  const doc = minimal();
  doc.spec.analysis = {
    prometheus: { url: "http://p:9090" },
    checks: [{ name: "custom", template: "my-template", max: 1 }],
  };
  assert.equal(validatePolicyDocument(doc).ok, false);
  assert.equal(validatePolicyDocument(doc, { templateNames: ["my-template"] }).ok, true);
  assert.ok(DEFAULT_TEMPLATE_NAMES.includes("latency-p99"));
});

void test("credentials: no secrets in the URL, one auth method", () => {
  const doc = minimal();
  doc.spec.analysis = {
    prometheus: { url: "http://user:secret@p:9090" },
    checks: [{ name: "a", template: "error-rate", max: 1 }],
  };
  assert.deepEqual(validatePolicyDocument(doc), {
    ok: false,
    issues: [
      {
        path: ["spec", "analysis", "prometheus", "url"],
        at: "value",
        message: "credentials in the URL would end up in logs: use basicAuth.passwordFile or bearerTokenFile",
      },
    ],
  });
  doc.spec.analysis = {
    prometheus: {
      url: "http://p:9090",
      bearerTokenFile: "/t",
      basicAuth: { username: "u", passwordFile: "/p" },
    },
    checks: [{ name: "a", template: "error-rate", max: 1 }],
  };
  assert.deepEqual(validatePolicyDocument(doc), {
    ok: false,
    issues: [
      {
        path: ["spec", "analysis", "prometheus", "basicAuth"],
        at: "value",
        message: "use either bearerTokenFile or basicAuth, not both",
      },
    ],
  });
});

void test("template variables: only the allowed names, well formed", () => {
  assert.deepEqual(
    [...TEMPLATE_VARIABLES],
    ["canary", "stable", "namespace", "window", "route", "canaryDeployment", "stableDeployment"],
  );
  for (const name of TEMPLATE_VARIABLES)
    assert.equal(templateVariableError(`x{a="{{${name}}}"}`), undefined, name);
  assert.equal(templateVariableError('rate(x{a="{{ canary }}"}[{{window}}])'), undefined);
  assert.equal(templateVariableError("sum(rate(x[5m]))"), undefined);
  assert.equal(
    templateVariableError("{{interval}}"),
    "unknown template variable {{interval}} (did you mean {{window}}? allowed: canary, stable, namespace, window, route, canaryDeployment, stableDeployment)",
  );
  assert.equal(
    templateVariableError('x{a="{{canary}"}'),
    'unmatched "{{" in query: placeholders are {{name}}',
  );
  assert.equal(
    templateVariableError('x{a="canary}}"}'),
    'unmatched "}}" in query: placeholders are {{name}}',
  );
  assert.match(templateVariableError("{{ .Canary }}") ?? "", /^unknown template variable \{\{\.Canary\}\}/);
});

void test("kubernetes names", () => {
  for (const good of ["a", "checkout-v2", "checkout.v2", "a".repeat(253), "0abc"])
    assert.equal(isKubernetesName(good), true);
  for (const bad of ["", "A", "a b", 'foo"}', "-a", "a-", "a..b", "a_b", "a".repeat(254), "a{", "a/b"]) {
    assert.equal(isKubernetesName(bad), false, bad);
  }
});

void test("paths print like the YAML reads", () => {
  assert.equal(formatPath(["spec", "analysis", "checks", 1, "query"]), "spec.analysis.checks[1].query");
  assert.equal(formatPath(["spec", "trigger", "deployments", "a.b"]), 'spec.trigger.deployments["a.b"]');
  assert.equal(formatPath([]), "");
});

void test("a document that is not a mapping, or lacks apiVersion", () => {
  assert.deepEqual(validatePolicyDocument(["a"]), {
    ok: false,
    issues: [{ path: [], at: "value", message: "expected a RolloutPolicy mapping, got a list" }],
  });
  const doc: Record<string, unknown> = minimal();
  delete doc.apiVersion;
  assert.deepEqual(validatePolicyDocument(doc), {
    ok: false,
    issues: [
      { path: ["apiVersion"], at: "parent", message: "missing required field (use rolloutd.dev/v1alpha1)" },
    ],
  });
});

void test("every number has a sane range: a 1 ms Prometheus timeout or a limit of 10^15 is refused, naming the field", () => {
  const withAnalysis = (patch: Record<string, unknown>, prometheus: Record<string, unknown> = {}) => {
    const doc = minimal();
    doc.spec.analysis = {
      prometheus: { url: "http://127.0.0.1:9090", ...prometheus },
      checks: [{ name: "errors", template: "error-rate", max: 0.01 }],
      ...patch,
    };
    return validatePolicyDocument(doc);
  };
  const refused = (r: PolicyValidation, path: string, message: RegExp) => {
    assert.ok(!r.ok, `accepted, want an error at ${path}`);
    const issue = r.issues.find((i) => formatPath(i.path) === path);
    assert.ok(issue, `no issue at ${path}: ${JSON.stringify(r.issues)}`);
    assert.match(issue.message, message);
  };
  refused(withAnalysis({}, { timeout: "1ms" }), "spec.analysis.prometheus.timeout", /at least 100ms/);
  refused(withAnalysis({}, { timeout: "99ms" }), "spec.analysis.prometheus.timeout", /at least/);
  ok(withAnalysis({}, { timeout: "100ms" }));
  for (const field of ["failureLimit", "noDataLimit"]) {
    refused(withAnalysis({ [field]: 1e15 }), `spec.analysis.${field}`, /1000/);
    ok(withAnalysis({ [field]: 1000 }));
  }
  refused(withAnalysis({ onError: { limit: 1e15 } }), "spec.analysis.onError.limit", /1000/);
  refused(withAnalysis({ minRequests: 1e15 }), "spec.analysis.minRequests", /1000000/);
  ok(withAnalysis({ minRequests: 1_000_000 }));
});

void test("request stages: each kind of match, in order, as the router writes it", () => {
  const doc = minimal();
  doc.spec.stages = [
    { header: { name: "x-canary", value: "always" } },
    { header: { name: "x-user", regex: "^beta-" } },
    { cookie: { name: "canary", value: "yes" } },
    { query: { name: "v", value: "2" } },
    { pathPrefix: "/api/v2" },
  ];
  assert.deepEqual(ok(validatePolicyDocument(doc)).stages, [
    { match: { header: { name: "x-canary", value: "always", type: "Exact" } } },
    { match: { header: { name: "x-user", value: "^beta-", type: "RegularExpression" } } },
    { match: { cookie: { name: "canary", value: "yes" } } },
    { match: { query: { name: "v", value: "2" } } },
    { match: { pathPrefix: "/api/v2" } },
  ]);
});

void test("request stages: App Mesh targets take them (the router refuses the weighted form); GRPCRoute no paths or queries", () => {
  const mesh = minimal();
  mesh.spec.target = { kind: "GatewayRoute", name: "checkout" };
  mesh.spec.stages = [{ header: { name: "x-canary", value: "always" } }];
  assert.ok(validatePolicyDocument(mesh).ok);
  const grpc = minimal();
  grpc.spec.target = { kind: "GRPCRoute", name: "checkout" };
  grpc.spec.stages = [{ header: { name: "x-canary", value: "a" } }, { pathPrefix: "/x" }];
  const r2 = validatePolicyDocument(grpc);
  assert.ok(!r2.ok && r2.issues.some((i) => /matches headers/.test(i.message)));
  const bad = minimal();
  bad.spec.stages = [{ header: { name: "x canary", value: "a" } }];
  assert.ok(!validatePolicyDocument(bad).ok, "not a header name");
});

void test("blueGreen: the preview is the one stage, then 100 % at once; steps and stages refused", () => {
  const doc = minimal();
  delete doc.spec.steps;
  doc.spec.strategy = "blueGreen";
  doc.spec.preview = { header: { name: "x-preview", value: "1" } };
  const p = ok(validatePolicyDocument(doc));
  assert.equal(p.strategy, "blueGreen");
  assert.deepEqual(p.steps, [100]);
  assert.deepEqual(p.stages, [{ match: { header: { name: "x-preview", value: "1", type: "Exact" } } }]);
  const withSteps = { ...doc, spec: { ...doc.spec, steps: [10, 100] } };
  const r = validatePolicyDocument(withSteps);
  assert.ok(!r.ok && r.issues.some((i) => /switches 100 % at once/.test(i.message)));
  const noPreview = { ...doc, spec: { ...doc.spec, preview: undefined } };
  delete noPreview.spec.preview;
  const r2 = validatePolicyDocument(noPreview);
  assert.ok(!r2.ok && r2.issues.some((i) => /needs a preview/.test(i.message)));
  const canaryWithPreview = minimal();
  canaryWithPreview.spec.preview = { header: { name: "x-preview", value: "1" } };
  assert.ok(!validatePolicyDocument(canaryWithPreview).ok);
});

void test("blueGreen with a preview route: the route is named, no stage, one preview step at 0 % then 100 %", () => {
  const doc = minimal();
  delete doc.spec.steps;
  doc.spec.strategy = "blueGreen";
  doc.spec.preview = { route: { name: "checkout-preview" } };
  const p = ok(validatePolicyDocument(doc));
  assert.equal(p.strategy, "blueGreen");
  assert.deepEqual(p.previewRoute, { kind: "HTTPRoute", name: "checkout-preview" });
  assert.equal(p.stages, undefined, "no request stage: the preview is the route");
  assert.deepEqual(allSteps(p), [0, 100]);
  // Another kind of the same family is fine.
  doc.spec.preview = { route: { kind: "GRPCRoute", name: "checkout-preview" } };
  assert.deepEqual(ok(validatePolicyDocument(doc)).previewRoute, {
    kind: "GRPCRoute",
    name: "checkout-preview",
  });
});

void test("a preview route is refused where it cannot work, each issue located", () => {
  const issues = (preview: unknown, target = { kind: "HTTPRoute", name: "checkout" }) => {
    const doc = minimal();
    delete doc.spec.steps;
    doc.spec.strategy = "blueGreen";
    doc.spec.target = target;
    doc.spec.preview = preview;
    const r = validatePolicyDocument(doc);
    assert.ok(!r.ok, `refused: ${JSON.stringify(preview)}`);
    return r.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
  };
  assert.ok(
    issues({ route: { kind: "VirtualRouter", name: "x" } }).some((m) =>
      /^spec\.preview\.route\.kind: .*target's family.*HTTPRoute or GRPCRoute/.test(m),
    ),
  );
  assert.ok(
    issues({ route: { kind: "HTTPRoute", name: "x" } }, { kind: "GatewayRoute", name: "checkout" }).some(
      (m) => /^spec\.preview\.route\.kind: .*GatewayRoute or VirtualRouter/.test(m),
    ),
  );
  assert.ok(
    issues({ route: { name: "checkout" } }).some((m) =>
      /^spec\.preview\.route\.name: .*another route than the target/.test(m),
    ),
  );
  assert.ok(issues({ route: { name: "Not_A_Name" } }).some((m) => m.startsWith("spec.preview.route.name")));
  assert.ok(issues({ route: { name: "x", namespace: "other" } }).length > 0, "no namespace: the policy's");
  // A preview route needs blueGreen, as a request preview does.
  const canary = minimal();
  canary.spec.preview = { route: { name: "checkout-preview" } };
  const r = validatePolicyDocument(canary);
  assert.ok(!r.ok && r.issues.some((i) => /preview needs strategy: blueGreen/.test(i.message)));
});

void test("a mistyped preview is reported against the form its keys name, not the first form of the union", () => {
  const doc = minimal();
  delete doc.spec.steps;
  doc.spec.strategy = "blueGreen";
  doc.spec.preview = { route: { nme: "checkout-preview" } };
  const r = validatePolicyDocument(doc);
  assert.ok(!r.ok);
  assert.deepEqual(r.issues.map((i) => formatPath(i.path)).sort(), [
    "spec.preview.route.name",
    "spec.preview.route.nme",
  ]);
  doc.spec.preview = { header: { name: "x-preview" } };
  const r2 = validatePolicyDocument(doc);
  assert.ok(!r2.ok && r2.issues.every((i) => formatPath(i.path).startsWith("spec.preview.header")));
});
