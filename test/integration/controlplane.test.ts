/**
 * Smoke tests of the real parts everything else is verified on: a CRD with
 * an OpenAPI schema on a real kube-apiserver, client-node create/get/patch/
 * watch against it, optimistic concurrency, schema rejection.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PatchStrategy, Watch, setHeaderOptions } from "@kubernetes/client-node";
import { KubeApiError, toKubeError } from "../../src/kube/errors.ts";
import type { KObject } from "../../src/kube/kinds.ts";
import {
  createNamespace,
  createObject,
  eventually,
  getObject,
  jsonPatch,
  startCluster,
  type Cluster,
} from "../support/cluster.ts";

const NS = "smoke";

void describe("local control plane", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
    await createNamespace(c, NS);
  });
  after(async () => {
    await c?.stop();
  });

  void it("serves our traffic CRDs as Established kinds", async () => {
    const list = await c.custom.listClusterCustomObject({
      group: "gateway.networking.k8s.io",
      version: "v1",
      plural: "httproutes",
    });
    assert.deepEqual((list as { items: unknown[] }).items, []);
  });

  const route = (name: string, weight: number) => ({
    metadata: { name, namespace: NS },
    spec: {
      parentRefs: [{ name: "gw" }],
      rules: [
        {
          backendRefs: [
            { name: "a", port: 80, weight: 100 - weight },
            { name: "b", port: 80, weight },
          ],
        },
      ],
    },
  });

  void it("creates, gets, merge-patches and watches a custom object", async () => {
    const events: string[] = [];
    const watch = new Watch(c.kc);
    const req = await watch.watch(
      `/apis/gateway.networking.k8s.io/v1/namespaces/${NS}/httproutes`,
      {},
      (type, obj: { metadata?: { name?: string } }) => events.push(`${type} ${obj.metadata?.name}`),
      () => {},
    );
    try {
      await createObject(c, "HTTPRoute", route("r1", 0));
      const got = await getObject(c, "HTTPRoute", NS, "r1");
      assert.equal(
        (got.spec as { rules: Array<{ backendRefs: Array<{ weight: number }> }> }).rules[0]!.backendRefs[1]!
          .weight,
        0,
      );
      const patched = (await c.custom.patchNamespacedCustomObject(
        {
          group: "gateway.networking.k8s.io",
          version: "v1",
          namespace: NS,
          plural: "httproutes",
          name: "r1",
          body: { metadata: { labels: { touched: "yes" } } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      )) as { metadata: { labels: Record<string, string> } };
      assert.equal(patched.metadata.labels.touched, "yes");
      await eventually(
        "watch events",
        () => events.includes("ADDED r1") && events.includes("MODIFIED r1"),
        10_000,
      );
    } finally {
      (req as { abort?: () => void }).abort?.();
    }
  });

  void it("refuses a write based on a stale resourceVersion with 409", async () => {
    const created = await createObject(c, "HTTPRoute", route("r2", 10));
    const staleRv = created.metadata!.resourceVersion!;
    await jsonPatch(c, "HTTPRoute", NS, "r2", [
      { op: "add", path: "/metadata/labels", value: { bump: "1" } },
    ]);
    const err = await jsonPatch(c, "HTTPRoute", NS, "r2", [
      { op: "replace", path: "/metadata/resourceVersion", value: staleRv },
      { op: "replace", path: "/spec/rules/0/backendRefs/1/weight", value: 50 },
    ]).then(
      () => undefined,
      (e: unknown) => toKubeError(e, "patch"),
    );
    assert.ok(err instanceof KubeApiError, `expected an API error, got ${String(err)}`);
    assert.equal(err.status, 409);
    const now = await getObject(c, "HTTPRoute", NS, "r2");
    assert.equal(
      (now.spec as { rules: Array<{ backendRefs: Array<{ weight: number }> }> }).rules[0]!.backendRefs[1]!
        .weight,
      10,
    );
  });

  void it("rejects objects the CRD schema does not allow", async () => {
    const bad = route("r3", 0);
    bad.spec.rules[0]!.backendRefs[1]!.weight = 1_000_001;
    const err = await createObject(c, "HTTPRoute", bad).then(
      () => undefined,
      (e: unknown) => toKubeError(e, "create"),
    );
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.status, 422);
    assert.match(err.message, /1000000|less than or equal/);

    const vr = (name: string, targets: unknown[]) => ({
      metadata: { name, namespace: NS },
      spec: {
        listeners: [{ portMapping: { port: 80, protocol: "http" } }],
        routes: [{ name: "r", httpRoute: { match: { prefix: "/" }, action: { weightedTargets: targets } } }],
      },
    });
    const create = (obj: KObject) =>
      createObject(c, "VirtualRouter", obj).then(
        () => undefined,
        (e: unknown) => toKubeError(e, "create"),
      );
    // Like upstream, no rule on the sum: weights are relative, others may sum past 100.
    assert.equal(
      await create(
        vr("sum-150", [
          { virtualNodeRef: { name: "a" }, weight: 90 },
          { virtualNodeRef: { name: "b" }, weight: 60 },
        ]),
      ),
      undefined,
    );
    for (const [name, targets] of [
      ["weight-101", [{ virtualNodeRef: { name: "a" }, weight: 101 }]],
      ["no-weight", [{ virtualNodeRef: { name: "a" } }]],
      ["ref-and-arn", [{ virtualNodeRef: { name: "a" }, virtualNodeARN: "arn:aws:appmesh:x", weight: 1 }]],
      ["neither", [{ weight: 1 }]],
      ["eleven", Array.from({ length: 11 }, (_, i) => ({ virtualNodeRef: { name: `n${i}` }, weight: 1 }))],
    ] as const) {
      const err2 = await create(vr(name, [...targets]));
      assert.ok(err2 instanceof KubeApiError, name);
      assert.equal(err2.status, 422, name);
    }
  });
});

void describe("App Mesh CRDs as AWS ships them", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ gatewayRoute: "aws" });
    await createNamespace(c, NS);
  });
  after(async () => {
    await c?.stop();
  });
  const create = (kind: "GatewayRoute" | "VirtualService", obj: KObject) =>
    createObject(c, kind, obj).then(
      () => undefined,
      (e: unknown) => toKubeError(e, "create"),
    );

  void it("a GatewayRoute needs action.target; the design document's weightedTargets is not AWS's", async () => {
    const weighted = {
      metadata: { name: "weighted", namespace: NS },
      spec: {
        httpRoute: {
          match: { prefix: "/" },
          action: { weightedTargets: [{ targetRef: { virtualServiceRef: { name: "a" } }, weight: 100 }] },
        },
      },
    };
    const err = await create("GatewayRoute", weighted);
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.status, 422);
    assert.match(err.message, /target/);
  });

  void it("a VirtualService names its router by ref or by ARN, exactly one", async () => {
    const vs = (name: string, virtualRouter: unknown) => ({
      metadata: { name, namespace: NS },
      spec: { provider: { virtualRouter } },
    });
    assert.equal(
      await create(
        "VirtualService",
        vs("by-arn", { virtualRouterARN: "arn:aws:appmesh:eu-west-1:1:mesh/m/virtualRouter/r" }),
      ),
      undefined,
    );
    const both = await create(
      "VirtualService",
      vs("both", { virtualRouterRef: { name: "r" }, virtualRouterARN: "arn:aws:appmesh:x" }),
    );
    assert.ok(both instanceof KubeApiError);
    assert.equal(both.status, 422);
  });
});
