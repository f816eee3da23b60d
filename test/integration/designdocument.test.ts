/**
 * The user's design document's GatewayRoute, exactly as written (issue 12):
 * appmesh.k8s.aws/v1beta1, `weight` inside targetRef next to
 * virtualServiceRef, split 10/90. The cluster serves GatewayRoute at v1beta1
 * only (test/crds/design-document/gatewayroutes-v1beta1.yaml) and
 * VirtualService/VirtualRouter at v1beta2 (AWS's CRDs), so the daemon and
 * the CLI must find the version by discovery. Given the document's object,
 * the daemon reads 10/90 (not 0/0), steps the canary from 10 % to 50 %, and
 * an abort (through `rolloutd abort`) returns everything to the stable — all
 * in the fields the document wrote, with nothing added beside them.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parse } from "yaml";
import {
  createNamespace,
  createObject,
  deployment,
  eventually,
  markRolledOut,
  shipRevision,
  startCluster,
  type Cluster,
} from "../support/cluster.ts";
import { runCli, startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { ANNOTATIONS, decodeState, type RolloutState } from "../../src/contract.ts";
import type { KObject } from "../../src/kube/kinds.ts";

const NS = "design";

// Verbatim, as the design document writes it.
const DOCUMENT_YAML = `
apiVersion: appmesh.k8s.aws/v1beta1
kind: GatewayRoute
metadata:
  name: checkout
spec:
  httpRoute:
    match:
      prefix: "/"
    action:
      weightedTargets:
        - targetRef:
            virtualServiceRef:
              name: checkout-v2
            weight: 10
        - targetRef:
            virtualServiceRef:
              name: checkout-v1
            weight: 90
`;

type Json = Record<string, any>;

void describe("the design document's GatewayRoute as written (v1beta1, weight inside targetRef)", () => {
  let c: Cluster;
  let daemon: DaemonProcess;
  let policiesDir: string;

  const get = async (ns = NS, name = "checkout"): Promise<KObject> =>
    (await c.custom.getNamespacedCustomObject({
      group: "appmesh.k8s.aws",
      version: "v1beta1",
      namespace: ns,
      plural: "gatewayroutes",
      name,
    })) as KObject;
  const targets = (o: KObject) => (o.spec as Json).httpRoute.action.weightedTargets as Json[];
  /** Weights by virtual service, read where the document puts them. */
  const weights = (o: KObject): Record<string, number> =>
    Object.fromEntries(targets(o).map((t) => [t.targetRef.virtualServiceRef.name, t.targetRef.weight]));
  const state = (o: KObject): RolloutState | undefined => {
    const raw = o.metadata?.annotations?.[ANNOTATIONS.state];
    return raw ? decodeState(raw) : undefined;
  };
  const until = (what: string, pred: (s: RolloutState, w: Record<string, number>) => boolean, ns = NS) =>
    eventually(
      what,
      async () => {
        const o = await get(ns);
        const s = state(o);
        return s && pred(s, weights(o)) ? o : undefined;
      },
      60_000,
      50,
    );
  const cli = (...args: string[]) => runCli(args, { kubeconfig: c.cp.kubeconfigPath });

  before(async () => {
    c = await startCluster({ gatewayRoute: "v1beta1" });
    policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-design-"));
    daemon = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir });
  });

  after(async () => {
    await daemon?.stop();
    await daemon?.dispose();
    await c?.stop();
    if (policiesDir) rmSync(policiesDir, { recursive: true, force: true });
  });

  /** Given: a namespace with both Deployments rolled out, the document's GatewayRoute in it, and a policy. */
  const given = async (ns: string, extra: string[] = []): Promise<void> => {
    await createNamespace(c, ns);
    for (const d of ["checkout-v1", "checkout-v2"]) {
      await createObject(c, "Deployment", deployment(ns, d, "1"));
      await markRolledOut(c, ns, d);
    }
    const doc = parse(DOCUMENT_YAML) as KObject;
    await c.custom.createNamespacedCustomObject({
      group: "appmesh.k8s.aws",
      version: "v1beta1",
      namespace: ns,
      plural: "gatewayroutes",
      body: { ...doc, metadata: { ...doc.metadata, namespace: ns } },
    });
    writeFileSync(
      path.join(policiesDir, `${ns}.yaml`),
      [
        "apiVersion: rolloutd.dev/v1alpha1",
        "kind: RolloutPolicy",
        `metadata: { name: checkout, namespace: ${ns} }`,
        "spec:",
        "  target: { kind: GatewayRoute, name: checkout }",
        "  stable: checkout-v1",
        "  canary: checkout-v2",
        "  steps: [50, 100]",
        "  interval: 10m",
        ...extra,
        "",
      ].join("\n"),
    );
  };

  void it("is stepped from 10/90 where the document puts the weights, and aborted back", async () => {
    await given(NS);
    const created = await get();
    assert.deepEqual(
      weights(created),
      { "checkout-v2": 10, "checkout-v1": 90 },
      "the CRD keeps the document's form",
    );

    // Adopted as it stands: the daemon read the real split (a 0/0 reading would not be 10/90 here either way,
    // but the state records the weights it read).
    const adopted = state(await until("adopted", (s) => s.phase === "Steady"));
    assert.deepEqual(
      weights(await get()),
      { "checkout-v2": 10, "checkout-v1": 90 },
      "adoption writes no weight",
    );
    assert.ok(adopted);

    await shipRevision(c, NS, "checkout-v2", "2");
    const stepped = await until(
      "step 1: 50 %",
      (s, w) => s.phase === "Progressing" && w["checkout-v2"] === 50,
    );
    assert.deepEqual(weights(stepped), { "checkout-v2": 50, "checkout-v1": 50 });
    // Only the document's fields: nothing written beside targetRef, the match untouched.
    for (const t of targets(stepped)) assert.equal(t.weight, undefined, "no weight beside targetRef");
    assert.deepEqual((stepped.spec as Json).httpRoute.match, { prefix: "/" });
    assert.equal(stepped.apiVersion, "appmesh.k8s.aws/v1beta1");
    const applied = state(stepped)!.applied ?? [];
    assert.ok(
      applied.length > 0 && applied.every((a) => a.path.endsWith("/targetRef/weight")),
      `state records the document's fields: ${JSON.stringify(applied)}`,
    );

    const r = await cli("abort", "gatewayroute/checkout", "-n", NS, "--reason", "design document test");
    assert.equal(r.code, 0, r.out);
    const aborted = await until(
      "aborted at 100 % stable",
      (s, w) => s.phase === "Aborted" && w["checkout-v2"] === 0,
    );
    assert.deepEqual(weights(aborted), { "checkout-v2": 0, "checkout-v1": 100 });
    for (const t of targets(aborted)) assert.equal(t.weight, undefined, "no weight beside targetRef");
    assert.equal(state(aborted)!.abort?.reason, "design document test");
    const errors = daemon.lines().filter((l) => l.level === "error" || l.level === "fatal");
    assert.deepEqual(errors, [], "no error logged by the daemon");
  });
  void it("a header stage on the document's GatewayRoute is a v1beta1 GatewayRoute of rolloutd's own, weight inside targetRef", async () => {
    const ns = "design-stage";
    await given(ns, ["  stages:", "    - header: { name: x-canary, value: always }"]);
    const before = await until("adopted", (s) => s.phase === "Steady", ns);
    await shipRevision(c, ns, "checkout-v2", "2");
    await until("stage live", (s) => s.phase === "Progressing" && s.stepIndex === 0, ns);
    const own = await eventually("the stage's GatewayRoute", () => get(ns, "checkout-rolloutd-stage"));
    assert.equal(own.apiVersion, "appmesh.k8s.aws/v1beta1", "created at the version the cluster serves");
    // This abridged schema has no spec.priority: pruned, and the daemon says so rather than trusting it.
    assert.equal((own.spec as Json).priority, undefined);
    const dropped = await eventually("StagePriorityDropped", async () =>
      (await c.core.listNamespacedEvent({ namespace: ns })).items.find(
        (e) => e.reason === "StagePriorityDropped",
      ),
    );
    assert.equal(dropped.type, "Warning");
    assert.deepEqual((own.spec as Json).httpRoute, {
      match: { prefix: "/", headers: [{ name: "x-canary", match: { exact: "always" } }] },
      action: {
        weightedTargets: [{ targetRef: { virtualServiceRef: { name: "checkout-v2" }, weight: 100 } }],
      },
    });
    // A stage is a step at 0 %: only matching requests reach the new version, through rolloutd's GatewayRoute.
    assert.deepEqual(weights(await get(ns)), { "checkout-v2": 0, "checkout-v1": 100 });
    const r = await cli("abort", "gatewayroute/checkout", "-n", ns, "--reason", "stage test");
    assert.equal(r.code, 0, r.out);
    const aborted = await until(
      "aborted, record gone",
      (s) => s.phase === "Aborted" && s.stageRule === undefined,
      ns,
    );
    await assert.rejects(get(ns, "checkout-rolloutd-stage"), "the stage's GatewayRoute is gone");
    assert.deepEqual((aborted.spec as Json).httpRoute.match, (before.spec as Json).httpRoute.match);
  });
});
