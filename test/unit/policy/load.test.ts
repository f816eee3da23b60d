import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, writeFile, mkdir, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadPolicyDir, parsePolicyFile, PolicyError } from "../../../src/policy/load.ts";

const HEADER = `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop }
`;

/** Lines 1-3 are HEADER, so `spec:` is line 4 in every case below. */
const broken: { name: string; yaml: string; expected: string[] }[] = [
  {
    name: "weights out of order",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10, 25, 25, 50]
`,
    expected: ["policies/checkout.yaml:8:22 spec.steps[3]: weights must increase (25 after 25)"],
  },
  {
    name: "a weight above 100",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps:
    - 50
    - 150
`,
    expected: ["policies/checkout.yaml:10:7 spec.steps[1]: must be at most 100 (got 150)"],
  },
  {
    name: "more than 100 steps",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [${Array.from({ length: 101 }, (_, i) => i + 1).join(", ")}]
`,
    expected: ["policies/checkout.yaml:8:10 spec.steps: must have at most 100 items"],
  },
  {
    name: "both steps and stepWeight",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [10, 50]
  stepWeight: 10
`,
    expected: ["policies/checkout.yaml:9:15 spec.stepWeight: use either steps or stepWeight, not both"],
  },
  {
    name: "neither steps nor stepWeight",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
`,
    expected: ["policies/checkout.yaml:4:1 spec.steps: missing: set steps or stepWeight"],
  },
  {
    name: "unknown field, at its key",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  stpes: [5, 10]
  stepWeight: 10
`,
    expected: ["policies/checkout.yaml:8:3 spec.stpes: unknown field"],
  },
  {
    name: "missing canary points at spec",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  steps: [5, 10]
`,
    expected: ["policies/checkout.yaml:4:1 spec.canary: missing required field"],
  },
  {
    name: "stable equals canary",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v1
  steps: [5, 10]
`,
    expected: [
      'policies/checkout.yaml:7:11 spec.canary: must differ from spec.stable (both are "checkout-v1")',
    ],
  },
  {
    name: "bad duration",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10]
  interval: 5 minutes
`,
    expected: [
      'policies/checkout.yaml:9:13 spec.interval: invalid duration "5 minutes": not a duration (use a number with a unit: 500ms, 30s, 1m30s, 2h)',
    ],
  },
  {
    name: "interval below one second",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10]
  interval: 500ms
`,
    expected: ['policies/checkout.yaml:9:13 spec.interval: duration must be at least 1s (got "500ms")'],
  },
  {
    name: "bad cron window and time zone",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10]
  window: "*/1 9-25 * * 1-5"
  windowTimeZone: Europe/Atlantis
`,
    expected: [
      'policies/checkout.yaml:9:11 spec.window: invalid cron expression "*/1 9-25 * * 1-5" (hour field "9-25" is invalid)',
      'policies/checkout.yaml:10:19 spec.windowTimeZone: unknown time zone "Europe/Atlantis" (use an IANA name like Europe/Berlin)',
    ],
  },
  {
    name: "names with spaces or PromQL characters",
    yaml: `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: check out, namespace: shop }
spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: 'foo"}'
  canary: checkout-v2
  trigger: { deployment: "x\\"} or vector(1)" }
  steps: [5, 10]
`,
    expected: [
      `policies/checkout.yaml:3:19 metadata.name: invalid name "check out": must be a Kubernetes name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`,
      `policies/checkout.yaml:6:11 spec.stable: invalid name "foo\\"}": must be a Kubernetes name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`,
      `policies/checkout.yaml:8:26 spec.trigger.deployment: invalid name "x\\"} or vector(1)": must be a Kubernetes name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`,
    ],
  },
  {
    name: "a backend in another namespace: errors inside the mapping are located",
    yaml: `${HEADER}spec:
  target: { kind: HTTPRoute, name: checkout }
  stable: { name: checkout-v1, namespace: Payments }
  canary:
    name: checkout-v2
    namespace: payments
    port: 80
  steps: [5, 10]
`,
    expected: [
      "policies/checkout.yaml:6:43 spec.stable.namespace: invalid name \"Payments\": must be a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
      "policies/checkout.yaml:10:5 spec.canary.port: unknown field",
    ],
  },
  {
    name: "a backend mapping without a name, and one of the wrong type",
    yaml: `${HEADER}spec:
  target: { kind: HTTPRoute, name: checkout }
  stable: { namespace: payments }
  canary: 7
  steps: [5, 10]
`,
    expected: [
      "policies/checkout.yaml:6:3 spec.stable.name: missing required field",
      "policies/checkout.yaml:7:11 spec.canary: expected a name or a mapping {name, namespace}, got 7",
    ],
  },
  {
    name: "backends in two namespaces still need two names",
    yaml: `${HEADER}spec:
  target: { kind: HTTPRoute, name: checkout }
  stable: { name: checkout, namespace: a }
  canary: { name: checkout, namespace: b }
  steps: [5, 10]
`,
    expected: [
      'policies/checkout.yaml:7:11 spec.canary: must have another name than spec.stable (both are "checkout"): rolloutd tells the two backends apart by name',
    ],
  },
  {
    name: "namespace must be a DNS label",
    yaml: `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop.eu }
spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5]
`,
    expected: [
      `policies/checkout.yaml:3:40 metadata.namespace: invalid name "shop.eu": must be a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)`,
    ],
  },
  {
    name: "unknown target kind",
    yaml: `${HEADER}spec:
  target: { kind: Ingress, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10]
`,
    expected: [
      'policies/checkout.yaml:5:19 spec.target.kind: must be one of GatewayRoute, VirtualRouter, HTTPRoute, GRPCRoute (got "Ingress")',
    ],
  },
  {
    name: "trigger key that is not a backend",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  trigger:
    deployments:
      checkout-v3: checkout-green
  steps: [5, 10]
`,
    expected: [
      'policies/checkout.yaml:10:20 spec.trigger.deployments.checkout-v3: "checkout-v3" is not a backend of this policy (stable: checkout-v1, canary: checkout-v2)',
    ],
  },
  {
    name: "analysis: unknown template, unknown variable, duplicate names, min > max, no bounds",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10]
  analysis:
    prometheus: { url: "http://127.0.0.1:9090" }
    requestsQuery: sum(increase(http_requests_total{service="{{ target }}"}[{{window}}]))
    checks:
      - name: latency
        template: latency-p90
        max: 500
      - name: errors
        query: sum(rate(errors_total{service="{{canary}}",ns="{{ns}}"}[{{window}}]))
        max: 1
      - name: latency
        query: up{job="{{stable}}"}
        min: 2
        max: 1
      - name: nothing
        template: error-rate
`,
    expected: [
      "policies/checkout.yaml:11:20 spec.analysis.requestsQuery: unknown template variable {{target}} (did you mean {{canary}}? allowed: canary, stable, namespace, window, route, canaryDeployment, stableDeployment)",
      'policies/checkout.yaml:14:19 spec.analysis.checks[0].template: unknown template "latency-p90" (known: request-success-rate, error-rate, latency-p99, latency-p95, latency-p50, request-rate)',
      "policies/checkout.yaml:17:16 spec.analysis.checks[1].query: unknown template variable {{ns}} (allowed: canary, stable, namespace, window, route, canaryDeployment, stableDeployment)",
      'policies/checkout.yaml:19:15 spec.analysis.checks[2].name: duplicate check name "latency" (also checks[0])',
      "policies/checkout.yaml:21:14 spec.analysis.checks[2].min: min (2) must not exceed max (1)",
      "policies/checkout.yaml:23:9 spec.analysis.checks[3]: set min, max or both: a check without bounds cannot fail",
    ],
  },
  {
    name: "analysis: template and query together, bad URL, bad enum",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [5, 10]
  analysis:
    prometheus: { url: "prometheus:9090" }
    onNoData: skip
    checks:
      - name: latency
        template: latency-p99
        query: up
        max: 500
`,
    expected: [
      'policies/checkout.yaml:10:24 spec.analysis.prometheus.url: invalid URL "prometheus:9090" (expected http://host:port or https://host:port)',
      'policies/checkout.yaml:11:15 spec.analysis.onNoData: must be one of hold, fail, pass (got "skip")',
      "policies/checkout.yaml:15:16 spec.analysis.checks[0].query: set either template or query, not both",
    ],
  },
  {
    name: "wrong type",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  canary:
  steps: "5,10"
`,
    expected: [
      "policies/checkout.yaml:7:3 spec.canary: expected a name or a mapping {name, namespace}, got an empty value",
      'policies/checkout.yaml:8:10 spec.steps: expected a list, got "5,10"',
    ],
  },
  {
    name: "another kind of document",
    yaml: `apiVersion: apps/v1
kind: Deployment
metadata: { name: checkout }
`,
    expected: [
      'policies/checkout.yaml:1:13 apiVersion: unsupported apiVersion "apps/v1" (supported: rolloutd.dev/v1alpha1)',
      'policies/checkout.yaml:2:7 kind: must be RolloutPolicy (got "Deployment")',
    ],
  },
  {
    name: "YAML syntax error, with its line",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout
  stable: checkout-v1
`,
    expected: [
      "policies/checkout.yaml:6:3 YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }",
    ],
  },
  {
    name: "duplicate YAML key",
    yaml: `${HEADER}spec:
  target: { kind: GatewayRoute, name: checkout }
  stable: checkout-v1
  stable: checkout-v2
`,
    expected: ["policies/checkout.yaml:7:3 YAML syntax error: Map keys must be unique"],
  },
];

for (const c of broken) {
  void test(`broken document: ${c.name}`, () => {
    const result = parsePolicyFile("policies/checkout.yaml", c.yaml);
    assert.deepEqual(result.policies, []);
    assert.deepEqual(
      result.errors.map((e) => e.format()),
      c.expected,
    );
  });
}

const GOOD = `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: good, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: web }
  stable: web-v1
  canary: web-v2
  stepWeight: 25
`;

void test("a file with one good and one bad document keeps the good one", () => {
  const text = `# leading comment
---
${GOOD}---
# an empty document is ignored
---
apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: bad, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: web }
  stable: web-v1
  canary: web-v2
  steps: [50, 10]
`;
  const result = parsePolicyFile("p.yaml", text);
  assert.deepEqual(
    result.policies.map((p) => [p.key, p.steps, p.source]),
    [["shop/good", [25, 50, 75, 100], { file: "p.yaml", line: 3, column: 1 }]],
  );
  assert.deepEqual(
    result.errors.map((e) => e.format()),
    ["p.yaml:21:15 spec.steps[1]: weights must increase (10 after 50)"],
  );
  assert.deepEqual(result.brokenKeys, ["shop/bad"]);
  assert.deepEqual(result.opaqueFiles, []);
});

void test("a YAML syntax error in one document does not drop the next one", () => {
  const text = `foo: [1, 2\n---\n${GOOD}`;
  const result = parsePolicyFile("p.yaml", text);
  assert.deepEqual(
    result.policies.map((p) => p.key),
    ["shop/good"],
  );
  assert.equal(result.errors.length, 1);
  assert.match(
    result.errors[0]?.format() ?? "",
    /^p\.yaml:2:1 YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a \]$/,
  );
  assert.deepEqual(result.opaqueFiles, ["p.yaml"]);
});

void test("PolicyError.format", () => {
  assert.equal(
    new PolicyError(
      "policies/checkout.yaml",
      14,
      9,
      "spec.steps[2]",
      "weights must increase (25 after 25)",
    ).format(),
    "policies/checkout.yaml:14:9 spec.steps[2]: weights must increase (25 after 25)",
  );
  assert.equal(
    new PolicyError("a.yaml", 3, 1, "", "YAML syntax error: x").format(),
    "a.yaml:3:1 YAML syntax error: x",
  );
  assert.equal(new PolicyError("a.yaml", 0, 0, "", "cannot read file").format(), "a.yaml: cannot read file");
});

void test("every example in policies/ validates", async () => {
  const files = (await readdir("policies")).filter((f) => /\.ya?ml$/.test(f)).sort();
  assert.deepEqual(files, [
    "checkout-gatewayroute.yaml",
    "frontend-httproute.yaml",
    "payments-virtualrouter.yaml",
    "search-grpcroute.yaml",
    "storefront-bluegreen.yaml",
  ]);
  const result = await loadPolicyDir("policies");
  assert.deepEqual(
    result.errors.map((e) => e.format()),
    [],
  );
  const byKey = new Map(result.policies.map((p) => [p.key, p]));
  assert.deepEqual(
    [...byKey.keys()],
    ["demo/checkout", "demo/frontend", "demo/payments", "demo/search", "demo/storefront"],
  );
  assert.deepEqual(
    result.policies.map((p) => p.target.kind),
    ["GatewayRoute", "HTTPRoute", "GatewayRoute", "GRPCRoute", "HTTPRoute"],
  );
  assert.equal(byKey.get("demo/storefront")?.strategy, "blueGreen");
  assert.deepEqual(byKey.get("demo/search")?.steps, [20, 40, 60, 80]);
  assert.deepEqual(byKey.get("demo/search")?.stages, [
    { match: { header: { name: "x-canary", value: "always", type: "Exact" } } },
  ]);
  assert.equal(byKey.get("demo/storefront")?.strategy, "blueGreen");
  assert.deepEqual(byKey.get("demo/storefront")?.steps, [100]);
  assert.deepEqual(byKey.get("demo/payments")?.deployments, {
    "payments-v1": "payments-blue",
    "payments-v2": "payments-green",
  });
  const frontend = byKey.get("demo/frontend");
  assert.equal(frontend?.window, undefined, "the window is commented out");
  assert.deepEqual(
    frontend?.analysis?.checks.map((c) => c.template ?? "query"),
    ["latency-p99", "query"],
  );
  assert.equal(frontend?.analysis?.minRequests, 50);
  assert.equal(result.policies[0]?.source.file, "policies/checkout-gatewayroute.yaml");
});

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "rolloutd-load-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const policy = (name: string, namespace = "shop") => `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  target: { kind: HTTPRoute, name: ${name} }
  stable: ${name}-v1
  canary: ${name}-v2
  steps: [10, 50]
`;

void test("duplicates across files: the first by file name wins, the later one is reported", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "b.yaml"), policy("checkout"));
  await writeFile(join(dir, "a.yaml"), `# first\n${policy("checkout")}`);
  await writeFile(join(dir, "c.yml"), policy("other"));
  await writeFile(join(dir, "notes.txt"), "not a policy");
  const result = await loadPolicyDir(dir);
  assert.deepEqual(
    result.policies.map((p) => [p.key, p.source]),
    [
      ["shop/checkout", { file: join(dir, "a.yaml"), line: 2, column: 1 }],
      ["shop/other", { file: join(dir, "c.yml"), line: 1, column: 1 }],
    ],
  );
  assert.deepEqual(
    result.errors.map((e) => e.format()),
    [
      `${join(dir, "b.yaml")}:4:9 metadata.name: duplicate policy shop/checkout, first defined at ${join(dir, "a.yaml")}:2:1`,
    ],
  );
  assert.deepEqual(result.files, [join(dir, "a.yaml"), join(dir, "b.yaml"), join(dir, "c.yml")]);

  const preferring = await loadPolicyDir(dir, {
    preferredSources: new Map([["shop/checkout", join(dir, "b.yaml")]]),
  });
  assert.equal(preferring.policies.find((p) => p.key === "shop/checkout")?.source.file, join(dir, "b.yaml"));
  assert.deepEqual(
    preferring.errors.map((e) => e.format()),
    [
      `${join(dir, "a.yaml")}:5:9 metadata.name: duplicate policy shop/checkout, first defined at ${join(dir, "b.yaml")}:1:1`,
    ],
  );
});

void test("the same name in two namespaces is not a duplicate", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "a.yaml"), `${policy("checkout", "shop")}---\n${policy("checkout", "staging")}`);
  const result = await loadPolicyDir(dir);
  assert.deepEqual(
    result.policies.map((p) => p.key),
    ["shop/checkout", "staging/checkout"],
  );
  assert.deepEqual(result.errors, []);
});

void test("relative directories give relative paths; a missing directory is an error, not a throw", async () => {
  const result = await loadPolicyDir("./policies");
  assert.equal(result.policies[0]?.source.file, "policies/checkout-gatewayroute.yaml");
  const missing = await loadPolicyDir("does-not-exist");
  assert.equal(missing.dirReadable, false);
  assert.deepEqual(missing.policies, []);
  assert.match(missing.errors[0]?.format() ?? "", /^does-not-exist: cannot read policy directory \(ENOENT/);
});

void test("ConfigMap volume layout: symlinked files are read, hidden entries skipped, large files refused", async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, "..2025_01_01"));
  await writeFile(join(dir, "..2025_01_01", "a.yaml"), policy("checkout"));
  await symlink("..2025_01_01", join(dir, "..data"));
  await symlink(join("..data", "a.yaml"), join(dir, "a.yaml"));
  await writeFile(join(dir, ".hidden.yaml"), "garbage: [");
  await mkdir(join(dir, "sub.yaml"));
  await writeFile(join(dir, "big.yaml"), `# ${"x".repeat(2000)}\n`);
  const result = await loadPolicyDir(dir, { maxFileBytes: 1000 });
  assert.deepEqual(
    result.policies.map((p) => [p.key, p.source.file]),
    [["shop/checkout", join(dir, "a.yaml")]],
  );
  assert.deepEqual(
    result.errors.map((e) => e.format()),
    [
      `${join(dir, "big.yaml")}: file is 2003 bytes, larger than the 1000-byte limit (a ConfigMap's); not read`,
    ],
  );
  assert.deepEqual(result.opaqueFiles, [join(dir, "big.yaml")]);
});

void test("a blue/green preview route keeps where the file names it, for problems found in the cluster", () => {
  const text = `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: web, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: web }
  stable: web-v1
  canary: web-v2
  strategy: blueGreen
  preview:
    route: { name: web-preview }
`;
  const result = parsePolicyFile("bg.yaml", text);
  assert.deepEqual(result.errors, []);
  assert.deepEqual(result.policies[0]?.previewRoute, {
    kind: "HTTPRoute",
    name: "web-preview",
    at: { file: "bg.yaml", line: 10, column: 20 },
  });
});
