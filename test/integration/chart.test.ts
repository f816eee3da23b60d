/**
 * The Helm chart, proven rather than assumed: helm (built from pinned Go
 * modules) lints and renders it, wrong values fail on the schema, the
 * rendered manifests are created on a real API server that enforces RBAC,
 * and the real daemon runs AS the chart's ServiceAccount (a TokenRequest
 * token): rollouts succeed with exactly the chart's permissions, and with the
 * namespaced setting a route in another namespace is refused and untouched.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type V1ConfigMap,
  type V1Deployment,
  type V1PolicyRule,
} from "@kubernetes/client-node";
import { parse, parseAllDocuments } from "yaml";
import type { KObject } from "../../src/kube/kinds.ts";
import { parseNotifyConfig } from "../../src/notify/config.ts";
import { Metrics } from "../../src/server/metrics.ts";
import { kubeconfig } from "../controlplane/controlplane.ts";
import { ensureHelm, pinnedVersions, runHelm, type HelmResult } from "../helm/build.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { startDaemon, type DaemonProcess, type LogLine } from "../support/daemon.ts";
import {
  FAMILIES,
  FakeGatewayStatus,
  appMeshVirtualRouter,
  weightedGatewayRoute,
  type RouteFamily,
} from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

const CHART = fileURLToPath(new URL("../../charts/rolloutd", import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

/** What the daemon uses (src/kube: informer lists/watches, writer patches, events create/patch), and nothing else. */
/** The fleet's Leases, in the release's namespace only. */
const LEASE_RULES: V1PolicyRule[] = [
  {
    apiGroups: ["coordination.k8s.io"],
    resources: ["leases"],
    verbs: ["get", "list", "watch", "create", "update"],
  },
];

const EXPECTED_RULES: V1PolicyRule[] = [
  {
    apiGroups: ["appmesh.k8s.aws"],
    resources: ["gatewayroutes"],
    // create, delete: a request stage on the weighted GatewayRoute is a GatewayRoute of rolloutd's own.
    verbs: ["get", "list", "watch", "patch", "create", "delete"],
  },
  { apiGroups: ["appmesh.k8s.aws"], resources: ["virtualrouters"], verbs: ["get", "list", "watch", "patch"] },
  { apiGroups: ["appmesh.k8s.aws"], resources: ["virtualservices"], verbs: ["get", "list", "watch"] },
  {
    apiGroups: ["gateway.networking.k8s.io"],
    resources: ["httproutes", "grpcroutes"],
    verbs: ["get", "list", "watch", "patch"],
  },
  { apiGroups: ["apps"], resources: ["deployments"], verbs: ["get", "list", "watch"] },
  { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
];

type Json = Record<string, any>;

let helmBin: string;
let helmHome: string;

async function helm(args: string[]): Promise<HelmResult> {
  return runHelm(helmBin, args, helmHome);
}

/** `helm template` with these values; returns the rendered objects (throws with helm's stderr on failure). */
async function render(
  values: Json = {},
  release = "rolloutd",
  namespace = "rolloutd-system",
): Promise<KObject[]> {
  const file = path.join(helmHome, `values-${release}-${Date.now()}-${Math.random()}.json`);
  writeFileSync(file, JSON.stringify(values));
  const res = await helm(["template", release, CHART, "--namespace", namespace, "-f", file]);
  assert.equal(res.code, 0, `helm template failed:\n${res.stderr}`);
  return parseAllDocuments(res.stdout)
    .map((d) => d.toJS() as KObject | null)
    .filter((o): o is KObject => o !== null);
}

function only(objs: KObject[], kind: string, name?: string): Json {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ""} (have ${found.length})`);
  return found[0] as Json;
}

const kinds = (objs: KObject[]) =>
  objs.map((o) => `${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`);

/** Every field the chart rendered is in what the API server stored: accepted, and nothing silently pruned. */
function assertStored(rendered: unknown, stored: unknown, where: string): void {
  if (Array.isArray(rendered)) {
    assert.ok(Array.isArray(stored), `${where}: expected a list, stored ${JSON.stringify(stored)}`);
    assert.equal(stored.length, rendered.length, `${where}: list length`);
    rendered.forEach((v, i) => assertStored(v, stored[i], `${where}[${i}]`));
  } else if (rendered !== null && typeof rendered === "object") {
    assert.ok(stored !== null && typeof stored === "object", `${where}: expected an object`);
    for (const [k, v] of Object.entries(rendered)) assertStored(v, (stored as Json)[k], `${where}.${k}`);
  } else {
    assert.deepEqual(stored, rendered, `${where}: stored value`);
  }
}

/** Creates every rendered object through KubernetesObjectApi, as `kubectl create` would, and checks what was stored. */
async function applyAll(c: Cluster, objs: KObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(c.kc);
  for (const obj of objs) {
    const created = await api.create(obj).catch((err: unknown) => {
      throw new Error(`the API server refused ${kinds([obj])[0]}: ${(err as Error).message.slice(0, 800)}`);
    });
    assertStored(obj, created, kinds([obj])[0]!);
  }
}

/** A token for the ServiceAccount from the TokenRequest API, and a kubeconfig file that uses it. */
async function serviceAccountKubeconfig(
  c: Cluster,
  namespace: string,
  name: string,
  dir: string,
): Promise<{ file: string; kc: KubeConfig }> {
  const tr = await c.core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const token = tr.status?.token;
  assert.ok(token, "TokenRequest returned a token");
  const yaml = kubeconfig(c.cp.server, c.cp.caData, token, namespace);
  const file = path.join(dir, `kubeconfig-${name}`);
  writeFileSync(file, yaml, { mode: 0o600 });
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return { file, kc };
}

/** As the kubelet would mount it: the policies ConfigMap, read back from the API server, as files. */
async function mountPolicies(c: Cluster, namespace: string, name: string, dir: string): Promise<string[]> {
  const cm: V1ConfigMap = await c.core.readNamespacedConfigMap({ namespace, name });
  for (const [file, text] of Object.entries(cm.data ?? {})) writeFileSync(path.join(dir, file), text);
  return Object.keys(cm.data ?? {});
}

/** The `rolloutd run` arguments the chart renders, minus those the test harness sets itself. */
function chartArgs(deploy: Json): string[] {
  const args = (deploy as V1Deployment).spec!.template.spec!.containers[0]!.args!;
  assert.equal(args[0], "run");
  const harness = ["--policies=", "--metrics-port=", "--log-level=", "--log-format="];
  return args.slice(1).filter((a) => !harness.some((h) => a.startsWith(h)));
}

/** SelfSubjectAccessReview as `kubectl auth can-i`; "httproutes/status" names a subresource. */
async function canI(kc: KubeConfig, verb: string, group: string, resource: string, namespace?: string) {
  const [res, subresource] = resource.split("/");
  const review = await kc.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
    body: {
      spec: {
        resourceAttributes: { verb, group, resource: res, subresource, ...(namespace ? { namespace } : {}) },
      },
    },
  });
  return review.status?.allowed === true;
}

/** Log lines that mean a permission was missing. */
const forbidden = (lines: LogLine[]) =>
  lines.filter((l) => /forbidden|not allowed|check RBAC|could not record Event/i.test(JSON.stringify(l)));

before(async () => {
  helmBin = await ensureHelm((l) => process.stderr.write(`# ${l}\n`));
  helmHome = mkdtempSync(path.join(tmpdir(), "rolloutd-helm-"));
});
after(() => {
  if (helmHome) rmSync(helmHome, { recursive: true, force: true });
});

void describe("Helm chart charts/rolloutd", () => {
  void it("helm lint --strict is clean with default and with namespaced values", async () => {
    const version = await helm(["version", "--short"]);
    assert.match(version.stdout, new RegExp(`^${pinnedVersions().helm.replaceAll(".", "\\.")}\\b`));
    for (const extra of [[], ["--set", "rbac.scope=namespaced", "--set", "rbac.namespaces={a,b}"]]) {
      const res = await helm(["lint", "--strict", CHART, ...extra]);
      assert.equal(res.code, 0, res.stdout + res.stderr);
      assert.match(res.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(res.stdout, /\[(WARNING|ERROR)\]/, res.stdout);
    }
  });

  void it("renders with default values: two replicas rolling one at a time, a PDB, Lease RBAC in its own namespace only, hardened Pod, probes, policies mounted, a ClusterRole with exactly the daemon's rules", async () => {
    const objs = await render();
    assert.deepEqual(kinds(objs).sort(), [
      "ClusterRole//rolloutd",
      "ClusterRoleBinding//rolloutd",
      "ConfigMap/rolloutd-system/rolloutd-policies",
      "Deployment/rolloutd-system/rolloutd",
      "PodDisruptionBudget/rolloutd-system/rolloutd",
      "Role/rolloutd-system/rolloutd-leases",
      "RoleBinding/rolloutd-system/rolloutd-leases",
      "Service/rolloutd-system/rolloutd-metrics",
      "ServiceAccount/rolloutd-system/rolloutd",
    ]);
    const d = only(objs, "Deployment");
    assert.equal(d.spec.replicas, 2);
    assert.deepEqual(d.spec.strategy, {
      type: "RollingUpdate",
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
    assert.equal(only(objs, "PodDisruptionBudget").spec.maxUnavailable, 1);
    assert.deepEqual(only(objs, "Role").rules, LEASE_RULES);
    assert.deepEqual(only(objs, "RoleBinding").subjects, [
      { kind: "ServiceAccount", name: "rolloutd", namespace: "rolloutd-system" },
    ]);
    const pod = d.spec.template.spec;
    assert.equal(pod.serviceAccountName, "rolloutd");
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
    const ctr = pod.containers[0];
    assert.equal(ctr.image, `ghcr.io/rolloutd/rolloutd:${PACKAGE.version}`);
    assert.deepEqual(ctr.securityContext, {
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.ok(ctr.resources.requests.cpu && ctr.resources.requests.memory && ctr.resources.limits.memory);
    assert.deepEqual(ctr.ports, [{ name: "http-metrics", containerPort: 8080, protocol: "TCP" }]);
    assert.deepEqual(ctr.livenessProbe.httpGet, { path: "/healthz", port: "http-metrics" });
    assert.deepEqual(ctr.readinessProbe.httpGet, { path: "/readyz", port: "http-metrics" });
    const args = ctr.args as string[];
    assert.ok(args.includes("--policies=/etc/rolloutd/policies"));
    assert.ok(args.includes("--metrics-port=8080"));
    assert.ok(args.includes("--fleet=rolloutd") && args.includes("--shards=8"), args.join(" "));
    assert.deepEqual(
      (ctr.env as Json[]).filter((e) => e.valueFrom).map((e) => [e.name, e.valueFrom.fieldRef.fieldPath]),
      [
        ["POD_NAME", "metadata.name"],
        ["POD_NAMESPACE", "metadata.namespace"],
      ],
    );
    assert.ok(!args.some((a) => a.startsWith("--namespaces")), "cluster scope watches everywhere");
    const mount = (ctr.volumeMounts as Json[]).find((m) => m.mountPath === "/etc/rolloutd/policies");
    const vol = (pod.volumes as Json[]).find((v) => v.name === mount?.name);
    assert.equal(vol?.configMap.name, "rolloutd-policies");
    assert.deepEqual(only(objs, "ClusterRole").rules, EXPECTED_RULES);
    const binding = only(objs, "ClusterRoleBinding");
    assert.deepEqual(binding.subjects, [
      { kind: "ServiceAccount", name: "rolloutd", namespace: "rolloutd-system" },
    ]);
    const svc = only(objs, "Service");
    assert.deepEqual(svc.spec.ports, [
      { name: "http-metrics", port: 8080, targetPort: "http-metrics", protocol: "TCP" },
    ]);
    assert.deepEqual(svc.spec.selector, d.spec.selector.matchLabels);
    const chart = parse(readFileSync(path.join(CHART, "Chart.yaml"), "utf8")) as Json;
    assert.equal(chart.apiVersion, "v2");
    assert.equal(chart.appVersion, PACKAGE.version, "appVersion follows package.json");
  });

  void it("renders with namespaced values: a Role and RoleBinding per listed namespace, no ClusterRole, the daemon limited by --namespaces", async () => {
    const objs = await render({ rbac: { scope: "namespaced", namespaces: ["team-a", "team-b"] } });
    assert.ok(!objs.some((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding"));
    for (const ns of ["team-a", "team-b"]) {
      const role = objs.find(
        (o) => o.kind === "Role" && o.metadata?.namespace === ns && o.metadata.name === "rolloutd",
      ) as Json;
      assert.deepEqual(role.rules, EXPECTED_RULES);
      const rb = objs.find(
        (o) => o.kind === "RoleBinding" && o.metadata?.namespace === ns && o.metadata.name === "rolloutd",
      ) as Json;
      assert.deepEqual(rb.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "rolloutd" });
      assert.deepEqual(rb.subjects, [
        { kind: "ServiceAccount", name: "rolloutd", namespace: "rolloutd-system" },
      ]);
    }
    assert.deepEqual(
      objs
        .filter((o) => o.kind === "Role")
        .map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`)
        .sort(),
      ["rolloutd-system/rolloutd-leases", "team-a/rolloutd", "team-b/rolloutd"],
    );
    const args = only(objs, "Deployment").spec.template.spec.containers[0].args as string[];
    assert.ok(args.includes("--namespaces=team-a,team-b"), args.join(" "));
  });

  void it("renders the optional parts: ServiceMonitor, PodDisruptionBudget, dashboard; an existing policies ConfigMap; an image override", async () => {
    const objs = await render({
      metrics: { serviceMonitor: { enabled: true, labels: { release: "prom" } } },
      podDisruptionBudget: { enabled: true },
      dashboard: { enabled: true },
      existingPoliciesConfigMap: "my-policies",
      image: { repository: "registry.example.com/rolloutd", tag: "0.2.0-rc.1" },
    });
    const sm = only(objs, "ServiceMonitor");
    assert.equal(sm.apiVersion, "monitoring.coreos.com/v1");
    assert.deepEqual(sm.spec.endpoints[0].port, "http-metrics");
    assert.equal(sm.spec.endpoints[0].path, "/metrics");
    assert.equal(sm.metadata.labels.release, "prom");
    assert.equal(only(objs, "PodDisruptionBudget").spec.maxUnavailable, 1);
    const dash = only(objs, "ConfigMap", "rolloutd-dashboard");
    assert.equal(dash.metadata.labels.grafana_dashboard, "1");
    assert.ok(!objs.some((o) => o.kind === "ConfigMap" && o.metadata?.name === "rolloutd-policies"));
    const pod = only(objs, "Deployment").spec.template.spec;
    assert.equal((pod.volumes as Json[]).find((v) => v.configMap)?.configMap.name, "my-policies");
    assert.equal(pod.containers[0].image, "registry.example.com/rolloutd:0.2.0-rc.1");
  });

  void it("notifications: the notify values become the daemon's --notify-config file, secrets mounted from a Secret", async () => {
    const notify = {
      channels: [
        {
          name: "ops",
          type: "slack",
          urlFile: "/etc/rolloutd/secrets/slack-url",
          on: ["rolledBack", "aborted"],
        },
        {
          name: "audit",
          type: "webhook",
          url: "https://audit.example.com/rolloutd",
          secretFile: "/etc/rolloutd/secrets/hmac",
        },
      ],
      stuckAfter: "2m",
    };
    const objs = await render({ notify, notifySecret: "rolloutd-notify-secrets" });
    const cm = only(objs, "ConfigMap", "rolloutd-notify");
    // The daemon's own parser accepts the rendered file.
    const parsed = parseNotifyConfig("notify.yaml", cm.data["notify.yaml"] as string);
    assert.deepEqual(
      parsed.channels.map((c) => c.name),
      ["ops", "audit"],
    );
    const pod = only(objs, "Deployment").spec.template.spec;
    const c0 = pod.containers[0];
    assert.ok((c0.args as string[]).includes("--notify-config=/etc/rolloutd/notify/notify.yaml"));
    const mounts = Object.fromEntries((c0.volumeMounts as Json[]).map((m) => [m.name, m.mountPath]));
    assert.equal(mounts.notify, "/etc/rolloutd/notify");
    assert.equal(mounts["notify-secrets"], "/etc/rolloutd/secrets");
    const secretVol = (pod.volumes as Json[]).find((v) => v.name === "notify-secrets");
    assert.equal(secretVol?.secret.secretName, "rolloutd-notify-secrets");
    // Without notify values: no flag, no ConfigMap.
    const plain = await render({});
    assert.ok(!plain.some((o) => o.kind === "ConfigMap" && o.metadata?.name === "rolloutd-notify"));
    assert.ok(
      !(only(plain, "Deployment").spec.template.spec.containers[0].args as string[]).some((a) =>
        a.startsWith("--notify-config"),
      ),
    );
  });

  void it("the Grafana dashboard shows rollouts by phase, canary weight, check values, aborts/rollbacks/promotions, from metrics the daemon exports", async () => {
    const objs = await render({ dashboard: { enabled: true } });
    const json = JSON.parse(
      only(objs, "ConfigMap", "rolloutd-dashboard").data["rolloutd.json"] as string,
    ) as Json;
    const panels = (json.panels as Json[]).filter((p) => p.type !== "row");
    const exprs = panels.flatMap((p) => (p.targets as Json[]).map((t) => t.expr as string));
    const exported = new Set(
      new Metrics({ processMetrics: false }).registry.getMetricsAsArray().map((m) => m.name),
    );
    const used = new Set(exprs.flatMap((e) => e.match(/rolloutd_[a-z_]+/g) ?? []));
    for (const name of used) {
      const base = name.replace(/_(bucket|sum|count)$/, "");
      assert.ok(
        exported.has(name) || exported.has(base),
        `dashboard queries ${name}, which rolloutd does not export`,
      );
    }
    const panelFor = (metric: string) =>
      panels.filter((p) => (p.targets as Json[]).some((t) => (t.expr as string).includes(metric)));
    for (const m of [
      "rolloutd_rollouts",
      "rolloutd_canary_weight_percent",
      "rolloutd_check_value",
      "rolloutd_aborts_total",
      "rolloutd_rollbacks_total",
      "rolloutd_promotions_total",
    ]) {
      assert.ok(
        panelFor(m).some((p) => p.type === "timeseries"),
        `a time series panel shows ${m}`,
      );
    }
    assert.ok(
      (json.templating.list as Json[]).some((v) => v.type === "datasource" && v.query === "prometheus"),
    );
  });

  void it("a wrong value fails at template time with a schema error that names it", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--set", "replicas=two"], /\/replicas.*got string, want integer/],
      [["--set", "replicas=65"], /\/replicas.*maximum/],
      [["--set", "fleet.shards=0"], /\/fleet\/shards.*minimum/],
      [["--set", "rbac.scope=galaxy"], /\/rbac\/scope.*value must be one of 'cluster', 'namespaced'/],
      [["--set", "rbac.scope=namespaced"], /\/rbac\/namespaces.*minItems/],
      [
        ["--set", "rbac.scope=namespaced", "--set", "rbac.namespaces={Not_A_Namespace}"],
        /\/rbac\/namespaces\/0/,
      ],
      [["--set", "image.pullPolicy=Sometimes"], /\/image\/pullPolicy/],
      [["--set", "metrics.port=80"], /\/metrics\/port.*minimum/],
      [["--set", "policies.web\\.txt=x"], /web\.txt/],
      [["--set", "replica=1"], /additional properties 'replica' not allowed/],
    ];
    for (const [args, why] of cases) {
      const res = await helm(["template", "rolloutd", CHART, ...args]);
      assert.notEqual(res.code, 0, `${args.join(" ")} must fail`);
      assert.match(res.stderr, /values don't meet the specifications of the schema/, res.stderr);
      assert.match(res.stderr, why, res.stderr);
    }
    const both = await helm([
      "template",
      "rolloutd",
      CHART,
      "--set",
      "existingPoliciesConfigMap=mine",
      "--set",
      "policies.a\\.yaml=x",
    ]);
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /either policies \(inline\) or existingPoliciesConfigMap, not both/);
  });

  void describe("installed on a real API server with RBAC enforced", { concurrency: true }, () => {
    let c: Cluster;
    let gateway: FakeGatewayStatus;
    let dir: string;
    const daemons: DaemonProcess[] = [];
    const scenarios: Scenario[] = [];

    before(async () => {
      c = await startCluster();
      gateway = new FakeGatewayStatus(c);
      await gateway.start();
      dir = mkdtempSync(path.join(tmpdir(), "rolloutd-chart-"));
    });

    after(async () => {
      for (const s of scenarios) s.close();
      gateway?.stop();
      const codes = [];
      for (const d of daemons) {
        codes.push(await d.stop());
        await d.dispose();
      }
      await c?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
      assert.deepEqual(
        codes,
        codes.map(() => 0),
        "every daemon exits 0 on SIGTERM",
      );
    });

    const scenario = async (fam: RouteFamily, ns: string, policiesDir: string) => {
      const s = new Scenario(c, fam, ns, policiesDir);
      scenarios.push(s);
      return s.given();
    };

    void it("cluster scope: every rendered object is accepted; as the chart's ServiceAccount the daemon promotes a rollout on every route family and records Events, and may do nothing else", async () => {
      const release = "rolloutd";
      const ns = "rolloutd-system";
      const policiesDir = mkdtempSync(path.join(dir, "policies-cluster-"));
      const families = FAMILIES.map((fam, i) => ({ fam, ns: `chart-${["gr", "vr", "http", "grpc"][i]}` }));
      const ss = await Promise.all(families.map(({ fam, ns: n }) => scenario(fam, n, policiesDir)));
      const policies = Object.fromEntries(
        ss.map((s) => [`${s.ns}.yaml`, s.policyYaml({ steps: [50, 100], interval: "1s" })]),
      );
      const objs = await render(
        { policies, dashboard: { enabled: true }, podDisruptionBudget: { enabled: true } },
        release,
        ns,
      );
      await c.core.createNamespace({ body: { metadata: { name: ns } } });
      await applyAll(c, objs);
      assert.deepEqual(
        (await mountPolicies(c, ns, "rolloutd-policies", policiesDir)).sort(),
        Object.keys(policies).sort(),
      );

      const sa = await serviceAccountKubeconfig(c, ns, "rolloutd", dir);
      const who = await sa.kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
      assert.equal(who.status?.userInfo?.username, `system:serviceaccount:${ns}:rolloutd`);

      // Exactly the chart's rules: what the daemon needs is allowed, the rest is not.
      for (const [verb, group, resource] of [
        ["watch", "appmesh.k8s.aws", "gatewayroutes"],
        ["create", "appmesh.k8s.aws", "gatewayroutes"],
        ["delete", "appmesh.k8s.aws", "gatewayroutes"],
        ["patch", "appmesh.k8s.aws", "virtualrouters"],
        ["list", "appmesh.k8s.aws", "virtualservices"],
        ["patch", "gateway.networking.k8s.io", "httproutes"],
        ["patch", "gateway.networking.k8s.io", "grpcroutes"],
        ["list", "apps", "deployments"],
        ["create", "", "events"],
        ["patch", "", "events"],
      ] as const)
        assert.ok(await canI(sa.kc, verb, group, resource, "chart-http"), `may ${verb} ${resource}`);
      for (const [verb, group, resource] of [
        ["get", "", "secrets"],
        ["list", "", "configmaps"],
        ["update", "gateway.networking.k8s.io", "httproutes"],
        ["delete", "gateway.networking.k8s.io", "httproutes"],
        ["create", "gateway.networking.k8s.io", "httproutes"],
        ["patch", "gateway.networking.k8s.io", "httproutes/status"],
        ["patch", "appmesh.k8s.aws", "virtualservices"],
        ["delete", "appmesh.k8s.aws", "virtualrouters"],
        ["update", "appmesh.k8s.aws", "gatewayroutes"],
        ["patch", "apps", "deployments"],
        ["delete", "", "events"],
        ["create", "", "pods"],
      ] as const)
        assert.ok(!(await canI(sa.kc, verb, group, resource, "chart-http")), `may not ${verb} ${resource}`);
      for (const verb of ["get", "list", "watch", "create", "update"])
        assert.ok(
          await canI(sa.kc, verb, "coordination.k8s.io", "leases", ns),
          `may ${verb} leases in ${ns}`,
        );
      assert.ok(!(await canI(sa.kc, "delete", "coordination.k8s.io", "leases", ns)), "may not delete leases");
      assert.ok(
        !(await canI(sa.kc, "create", "coordination.k8s.io", "leases", "chart-http")),
        "no Leases outside its own namespace",
      );

      const daemon = await startDaemon({
        kubeconfig: sa.file,
        policiesDir,
        extraArgs: chartArgs(only(objs, "Deployment")),
      });
      daemons.push(daemon);
      const watches = await daemon.waitForLine("watches started", (l) => l.msg === "watches started");
      assert.deepEqual(
        (watches.watches as string[]).filter((w) => !w.endsWith(":synced")),
        [],
        "every watch synced as the ServiceAccount",
      );

      await Promise.all(
        ss.map(async (s) => {
          await s.until("adopted", (st) => st.phase === "Steady");
          await s.shipCanary("2");
          const promoted = await s.until("promoted", (st) => st.phase === "Promoted");
          assert.equal(promoted.stable, s.canary);
          const w = await s.weights();
          assert.equal(w[s.stable], 0, `${s.fam.name}: old stable at 0`);
          const ev = await s.eventWith("Promoted");
          assert.equal(ev.involvedObject.kind, s.fam.targetKind);
          assert.equal(ev.reportingComponent, "rolloutd");
          assert.match(ev.message ?? "", /web-v2 promoted to 100%/);
        }),
      );
      assert.deepEqual(forbidden(daemon.lines()), [], "no permission was missing");
    });

    void it("namespaced scope: a rollout in a listed namespace succeeds; a policy whose route is in another namespace is refused with a clear message and nothing is written; nothing is listed cluster-wide", async () => {
      const release = "team";
      const ns = "rolloutd-team";
      const policiesDir = mkdtempSync(path.join(dir, "policies-ns-"));
      const allowed = await scenario(appMeshVirtualRouter, "team-allowed", policiesDir);
      const other = await scenario(weightedGatewayRoute, "team-other", policiesDir);
      const policyOpts = { steps: [50, 100], interval: "1s" };
      const objs = await render(
        {
          rbac: { scope: "namespaced", namespaces: [allowed.ns] },
          policies: {
            [`${allowed.ns}.yaml`]: allowed.policyYaml(policyOpts),
            [`${other.ns}.yaml`]: other.policyYaml(policyOpts),
          },
        },
        release,
        ns,
      );
      await c.core.createNamespace({ body: { metadata: { name: ns } } });
      await applyAll(c, objs);
      await mountPolicies(c, ns, "team-rolloutd-policies", policiesDir);
      const sa = await serviceAccountKubeconfig(c, ns, "team-rolloutd", dir);
      assert.ok(await canI(sa.kc, "list", "gateway.networking.k8s.io", "httproutes", allowed.ns));
      assert.ok(
        !(await canI(sa.kc, "list", "gateway.networking.k8s.io", "httproutes")),
        "no cluster-wide list",
      );
      assert.ok(!(await canI(sa.kc, "patch", "appmesh.k8s.aws", "gatewayroutes", other.ns)));

      const untouched = await other.weightsObject();
      const args = chartArgs(only(objs, "Deployment"));
      assert.ok(args.includes(`--namespaces=${allowed.ns}`), args.join(" "));
      const daemon = await startDaemon({ kubeconfig: sa.file, policiesDir, extraArgs: args });
      daemons.push(daemon);

      const refused = await daemon.waitForLine(
        "refusal of the other namespace's policy",
        (l) => l.policy === `${other.ns}/web` && /refused/.test(l.msg),
      );
      assert.equal(refused.level, "error");
      assert.match(refused.msg, /GatewayRoute team-other\/web is in namespace "team-other"/);
      assert.match(refused.msg, /limited to \(team-allowed\)/);
      assert.match(refused.msg, /nothing is read or written/);
      assert.match(refused.msg, /rbac\.namespaces/);

      await allowed.until("adopted", (st) => st.phase === "Steady");
      await allowed.shipCanary("2");
      await allowed.until("promoted", (st) => st.phase === "Promoted");
      await allowed.eventWith("Promoted");
      // Meanwhile, and after a new revision there too, the other route is exactly as it was.
      await other.shipCanary("2");
      await new Promise((r) => setTimeout(r, 2500));
      const now = await other.weightsObject();
      assert.equal(now.metadata?.resourceVersion, untouched.metadata?.resourceVersion, "not written");
      assert.deepEqual(now.metadata?.annotations, untouched.metadata?.annotations);
      assert.deepEqual(await other.events(), [], "no Event in the other namespace");
      assert.equal(
        daemon.lines().filter((l) => l.policy === `${other.ns}/web` && /refused/.test(l.msg)).length,
        1,
        "said once, not on every retry",
      );
      assert.deepEqual(
        forbidden(daemon.lines()),
        [],
        "it never tried what it may not do (a cluster-wide list)",
      );
    });
  });
});
