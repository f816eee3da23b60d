import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { KindName, KObject, ObjectRef } from "../../../src/kube/kinds.ts";
import type { RolloutPolicy, TargetKind } from "../../../src/policy/types.ts";
import { AppMeshRouter } from "../../../src/routers/appmesh.ts";
import { GatewayApiRouter, acceptance } from "../../../src/routers/gatewayapi.ts";
import { RouterRegistry, needsAcceptance } from "../../../src/routers/index.ts";
import { RouteError } from "../../../src/routers/types.ts";
import type { Stage } from "../../../src/routers/stagerule.ts";
import { ANNOTATIONS, annotationPath } from "../../../src/contract.ts";
import { type JsonPatchOp, type ObjectReader, type ObjectWriter } from "../../../src/kube/access.ts";

const STATE_PATH = "/metadata/annotations/rolloutd.dev~1state";
const ROLES = { stable: "blue", canary: "green" };

class MapReader implements ObjectReader {
  readonly objects = new Map<string, KObject>();
  constructor(objects: KObject[]) {
    for (const o of objects) this.put(o);
  }
  put(o: KObject): void {
    this.objects.set(`${o.kind}/${o.metadata!.namespace}/${o.metadata!.name}`, o);
  }
  get(kind: KindName, namespace: string, name: string): KObject | undefined {
    return this.objects.get(`${kind}/${namespace}/${name}`);
  }
}

class RecordingWriter implements ObjectWriter {
  readonly calls: Array<{ ref: ObjectRef; ops: JsonPatchOp[] }> = [];
  jsonPatch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> {
    this.calls.push({ ref, ops: structuredClone(ops) });
    return Promise.resolve({});
  }
  create(): Promise<KObject> {
    return Promise.reject(new Error("no object is created here"));
  }
  delete(): Promise<void> {
    return Promise.reject(new Error("no object is deleted here"));
  }
}

function policy(kind: TargetKind, name: string, namespace = "shop"): RolloutPolicy {
  return {
    key: `${namespace}/p`,
    name: "p",
    namespace,
    target: { kind, name },
    stable: "blue",
    canary: "green",
    deployments: {},
    steps: [5, 10, 25, 50, 100],
    intervalMs: 60_000,
    routeReadyTimeoutMs: 30_000,
    source: { file: "p.yaml", line: 1, column: 1 },
  };
}

function meta(namespace: string, name: string, extra: Record<string, unknown> = {}) {
  return { namespace, name, resourceVersion: "41", generation: 3, ...extra };
}

const APPMESH = "appmesh.k8s.aws/v1beta2";
const vsTarget = (name: string, weight: number) => ({ targetRef: { virtualServiceRef: { name } }, weight });
const vnTarget = (name: string, weight: number) => ({ virtualNodeRef: { name }, weight });

void describe("App Mesh: weighted GatewayRoute", () => {
  const gatewayRoute = (annotations?: Record<string, string>): KObject => ({
    apiVersion: APPMESH,
    kind: "GatewayRoute",
    metadata: meta("shop", "gw", annotations ? { annotations } : {}),
    spec: {
      httpRoute: {
        match: { prefix: "/" },
        action: { weightedTargets: [vsTarget("blue", 80), vsTarget("other", 10), vsTarget("green", 10)] },
      },
      grpcRoute: {
        match: { serviceName: "x" },
        action: { weightedTargets: [vsTarget("green", 0), vsTarget("blue", 100)] },
      },
    },
  });

  void it("reads every weight field of the pair in both lists, and the state", () => {
    const reader = new MapReader([gatewayRoute({ [ANNOTATIONS.state]: '{"v":1}', team: "x" })]);
    const view = new AppMeshRouter(reader, new RecordingWriter()).read(policy("GatewayRoute", "gw"), ROLES);
    assert.equal(view.stateAnnotation, '{"v":1}');
    assert.equal(view.object.metadata?.resourceVersion, "41");
    assert.equal(view.accepted, true);
    assert.deepEqual(view.weightsRef, { kind: "GatewayRoute", namespace: "shop", name: "gw" });
    // The request stage's own GatewayRoute is read too, so its removal wakes the policy.
    assert.deepEqual(view.dependsOn, [
      { kind: "GatewayRoute", namespace: "shop", name: "gw" },
      { kind: "GatewayRoute", namespace: "shop", name: "gw-rolloutd-stage" },
    ]);
    assert.equal(view.target.kind, "GatewayRoute");
    assert.equal(view.target.apiVersion, APPMESH);
    assert.deepEqual(
      view.pair.map((l) => [l.backend, l.path, l.weight]),
      [
        ["blue", "/spec/httpRoute/action/weightedTargets/0/weight", 80],
        ["green", "/spec/httpRoute/action/weightedTargets/2/weight", 10],
        ["green", "/spec/grpcRoute/action/weightedTargets/0/weight", 0],
        ["blue", "/spec/grpcRoute/action/weightedTargets/1/weight", 100],
      ],
    );
  });

  void it("plans each list within its own pair total and patches only the pair's weights and the state", async () => {
    const writer = new RecordingWriter();
    const router = new AppMeshRouter(new MapReader([gatewayRoute({ other: "kept" })]), writer);
    const view = router.read(policy("GatewayRoute", "gw"), ROLES);
    const weights = router.plan(view, ROLES, 25);
    // httpRoute: the pair holds 90 beside "other" at 10 and keeps 90 (22.5 rounds to the stable);
    // grpcRoute: the pair is alone at 100.
    assert.deepEqual(
      weights.map((w) => [w.backend, w.path, w.weight]),
      [
        ["blue", "/spec/httpRoute/action/weightedTargets/0/weight", 68],
        ["green", "/spec/httpRoute/action/weightedTargets/2/weight", 22],
        ["green", "/spec/grpcRoute/action/weightedTargets/0/weight", 25],
        ["blue", "/spec/grpcRoute/action/weightedTargets/1/weight", 75],
      ],
    );
    await router.write(view, weights, "STATE");
    assert.equal(writer.calls.length, 1);
    assert.deepEqual(writer.calls[0]!.ref, { kind: "GatewayRoute", namespace: "shop", name: "gw" });
    assert.deepEqual(writer.calls[0]!.ops, [
      { op: "replace", path: "/metadata/resourceVersion", value: "41" },
      { op: "add", path: "/spec/httpRoute/action/weightedTargets/0/weight", value: 68 },
      { op: "add", path: "/spec/httpRoute/action/weightedTargets/2/weight", value: 22 },
      { op: "add", path: "/spec/grpcRoute/action/weightedTargets/0/weight", value: 25 },
      { op: "add", path: "/spec/grpcRoute/action/weightedTargets/1/weight", value: 75 },
      { op: "add", path: STATE_PATH, value: "STATE" },
    ]);
  });

  void it("adoption (no weights) writes the state alone; unchanged fields are not written", async () => {
    const writer = new RecordingWriter();
    const router = new AppMeshRouter(new MapReader([gatewayRoute({ other: "kept" })]), writer);
    const view = router.read(policy("GatewayRoute", "gw"), ROLES);
    await router.write(view, undefined, "ADOPTED");
    await router.write(view, view.pair, "SAME");
    assert.deepEqual(
      writer.calls.map((c) => c.ops),
      [
        [
          { op: "replace", path: "/metadata/resourceVersion", value: "41" },
          { op: "add", path: STATE_PATH, value: "ADOPTED" },
        ],
        [
          { op: "replace", path: "/metadata/resourceVersion", value: "41" },
          { op: "add", path: STATE_PATH, value: "SAME" },
        ],
      ],
    );
  });

  void it("adds /metadata/annotations only when the object has none", async () => {
    const writer = new RecordingWriter();
    const router = new AppMeshRouter(new MapReader([gatewayRoute()]), writer);
    const view = router.read(policy("GatewayRoute", "gw"), ROLES);
    await router.write(view, router.plan(view, { stable: "green", canary: "blue" }, 0), "S");
    const ops = writer.calls[0]!.ops;
    assert.deepEqual(ops.slice(-2), [
      { op: "add", path: "/metadata/annotations", value: {} },
      { op: "add", path: STATE_PATH, value: "S" },
    ]);
    assert.deepEqual(ops[0], { op: "replace", path: "/metadata/resourceVersion", value: "41" });
    assert.deepEqual(
      ops.filter((o) => o.path.endsWith("/weight")).map((o) => (o as { value: unknown }).value),
      [0, 90, 100, 0],
      "after promotion green is the stable and takes the whole pair total of each list",
    );
  });

  void it("fails with a RouteError when a list lacks one of the backends", () => {
    const gr: KObject = {
      kind: "GatewayRoute",
      metadata: meta("shop", "gw"),
      spec: { httpRoute: { action: { weightedTargets: [vsTarget("blue", 100), vsTarget("red", 0)] } } },
    };
    assert.throws(
      () =>
        new AppMeshRouter(new MapReader([gr]), new RecordingWriter()).read(
          policy("GatewayRoute", "gw"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError &&
        e.missing === undefined &&
        /both virtual services blue and green/.test(e.message),
    );
  });

  void it("a list where the pair has no weight stays 0/0; others' sums past 100 are theirs", () => {
    const gr: KObject = {
      kind: "GatewayRoute",
      metadata: meta("shop", "gw"),
      spec: {
        httpRoute: {
          action: {
            weightedTargets: [vsTarget("blue", 0), vsTarget("green", 0), vsTarget("other", 100)],
          },
        },
        http2Route: {
          action: {
            weightedTargets: [vsTarget("blue", 60), vsTarget("green", 40), vsTarget("other", 100)],
          },
        },
      },
    };
    const router = new AppMeshRouter(new MapReader([gr]), new RecordingWriter());
    const view = router.read(policy("GatewayRoute", "gw"), ROLES);
    for (const p of [0, 5, 50, 100]) {
      assert.deepEqual(
        router.plan(view, ROLES, p).map((w) => w.weight),
        [0, 0, 100 - p, p],
        `${p} %`,
      );
    }
  });

  void it("fails when the GatewayRoute has no route spec or no target", () => {
    const bare: KObject = { kind: "GatewayRoute", metadata: meta("shop", "gw"), spec: {} };
    assert.throws(
      () =>
        new AppMeshRouter(new MapReader([bare]), new RecordingWriter()).read(
          policy("GatewayRoute", "gw"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError && e.missing === undefined && /none of spec.httpRoute/.test(e.message),
    );
    const noTarget: KObject = {
      kind: "GatewayRoute",
      metadata: meta("shop", "gw"),
      spec: { httpRoute: { action: {} } },
    };
    assert.throws(
      () =>
        new AppMeshRouter(new MapReader([noTarget]), new RecordingWriter()).read(
          policy("GatewayRoute", "gw"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError && /neither weightedTargets nor target.virtualService/.test(e.message),
    );
  });
});

void describe("App Mesh: GatewayRoute → VirtualService → VirtualRouter", () => {
  const GW: ObjectRef = { kind: "GatewayRoute", namespace: "edge", name: "gw" };
  const VS: ObjectRef = { kind: "VirtualService", namespace: "shop", name: "shop-vs" };
  const VR: ObjectRef = { kind: "VirtualRouter", namespace: "shop", name: "shop-vr" };

  const gw: KObject = {
    apiVersion: APPMESH,
    kind: "GatewayRoute",
    metadata: meta("edge", "gw", { annotations: { [ANNOTATIONS.state]: "on-the-gateway-route" } }),
    spec: {
      httpRoute: {
        action: { target: { virtualService: { virtualServiceRef: { name: "shop-vs", namespace: "shop" } } } },
      },
    },
  };
  const vs = (provider: unknown): KObject => ({
    kind: "VirtualService",
    metadata: meta("shop", "shop-vs"),
    spec: { provider },
  });
  const vr: KObject = {
    kind: "VirtualRouter",
    metadata: meta("shop", "shop-vr", {
      resourceVersion: "777",
      annotations: { [ANNOTATIONS.state]: "on-the-router" },
    }),
    spec: {
      routes: [
        {
          name: "http",
          httpRoute: { action: { weightedTargets: [vnTarget("blue", 95), vnTarget("green", 5)] } },
        },
        { name: "http2-blue-only", http2Route: { action: { weightedTargets: [vnTarget("blue", 100)] } } },
        {
          name: "grpc",
          grpcRoute: {
            action: {
              weightedTargets: [vnTarget("green", 10), vnTarget("blue", 80), vnTarget("legacy", 10)],
            },
          },
        },
        {
          name: "tcp",
          tcpRoute: { action: { weightedTargets: [vnTarget("blue", 50), vnTarget("green", 50)] } },
        },
        { name: "http-others", httpRoute: { action: { weightedTargets: [vnTarget("red", 100)] } } },
      ],
    },
  };
  const chain = () =>
    new MapReader([gw, vs({ virtualRouter: { virtualRouterRef: { name: "shop-vr" } } }), vr]);

  void it("follows the refs (namespace override on the VirtualService ref) to the router's weights", () => {
    const view = new AppMeshRouter(chain(), new RecordingWriter()).read(
      policy("GatewayRoute", "gw", "edge"),
      ROLES,
    );
    assert.deepEqual(view.weightsRef, VR);
    assert.deepEqual(view.dependsOn, [GW, VS, VR]);
    assert.equal(view.target.metadata?.name, "gw", "controls and Events stay on the GatewayRoute");
    assert.equal(view.stateAnnotation, "on-the-router", "state lives beside the weights");
    assert.equal(view.object.metadata?.resourceVersion, "777");
    assert.deepEqual(
      view.pair.map((l) => l.path),
      [
        "/spec/routes/0/httpRoute/action/weightedTargets/0/weight",
        "/spec/routes/0/httpRoute/action/weightedTargets/1/weight",
        "/spec/routes/2/grpcRoute/action/weightedTargets/0/weight",
        "/spec/routes/2/grpcRoute/action/weightedTargets/1/weight",
        "/spec/routes/3/tcpRoute/action/weightedTargets/0/weight",
        "/spec/routes/3/tcpRoute/action/weightedTargets/1/weight",
      ],
    );
  });

  void it("writes the router, leaving routes without both backends alone", async () => {
    const writer = new RecordingWriter();
    const router = new AppMeshRouter(chain(), writer);
    const view = router.read(policy("GatewayRoute", "gw", "edge"), ROLES);
    await router.write(view, router.plan(view, ROLES, 50), "S");
    assert.deepEqual(writer.calls[0]!.ref, VR);
    assert.deepEqual(writer.calls[0]!.ops, [
      { op: "replace", path: "/metadata/resourceVersion", value: "777" },
      // Each route from its own split: 95/5 (alone) → 50/50; 80/10 beside legacy 10 → 45/45; the tcp
      // route is already at 50/50 and is not written.
      { op: "add", path: "/spec/routes/0/httpRoute/action/weightedTargets/0/weight", value: 50 },
      { op: "add", path: "/spec/routes/0/httpRoute/action/weightedTargets/1/weight", value: 50 },
      { op: "add", path: "/spec/routes/2/grpcRoute/action/weightedTargets/0/weight", value: 45 },
      { op: "add", path: "/spec/routes/2/grpcRoute/action/weightedTargets/1/weight", value: 45 },
      { op: "add", path: STATE_PATH, value: "S" },
    ]);
  });

  void it("a namespace on the VirtualRouter ref is honoured", () => {
    const otherVr = { ...vr, metadata: { ...vr.metadata, namespace: "mesh" } };
    const reader = new MapReader([
      gw,
      vs({ virtualRouter: { virtualRouterRef: { name: "shop-vr", namespace: "mesh" } } }),
      otherVr,
    ]);
    const view = new AppMeshRouter(reader, new RecordingWriter()).read(
      policy("GatewayRoute", "gw", "edge"),
      ROLES,
    );
    assert.deepEqual(view.weightsRef, { kind: "VirtualRouter", namespace: "mesh", name: "shop-vr" });
  });

  void it("names each missing link", () => {
    const missing = (objects: KObject[]) => {
      try {
        new AppMeshRouter(new MapReader(objects), new RecordingWriter()).read(
          policy("GatewayRoute", "gw", "edge"),
          ROLES,
        );
      } catch (e) {
        assert.ok(e instanceof RouteError, String(e));
        return { missing: e.missing, dependsOn: e.dependsOn };
      }
      assert.fail("no error");
    };
    const withRouter = vs({ virtualRouter: { virtualRouterRef: { name: "shop-vr" } } });
    assert.deepEqual(missing([]), { missing: GW, dependsOn: [GW] });
    assert.deepEqual(missing([gw]), { missing: VS, dependsOn: [GW, VS] });
    assert.deepEqual(missing([gw, withRouter]), { missing: VR, dependsOn: [GW, VS, VR] });
  });

  void it("a VirtualService backed by a VirtualNode has no weights", () => {
    const reader = new MapReader([gw, vs({ virtualNode: { virtualNodeRef: { name: "blue" } } }), vr]);
    assert.throws(
      () =>
        new AppMeshRouter(reader, new RecordingWriter()).read(policy("GatewayRoute", "gw", "edge"), ROLES),
      (e: unknown) =>
        e instanceof RouteError &&
        e.missing === undefined &&
        /not backed by a VirtualRouter/.test(e.message) &&
        JSON.stringify(e.dependsOn) === JSON.stringify([GW, VS]),
    );
  });

  void it("an ARN instead of a ref is reported as something rolloutd cannot follow", () => {
    const byArn = new MapReader([
      gw,
      vs({ virtualRouter: { virtualRouterARN: "arn:aws:appmesh:eu-west-1:1:mesh/m/virtualRouter/r" } }),
      vr,
    ]);
    assert.throws(
      () => new AppMeshRouter(byArn, new RecordingWriter()).read(policy("GatewayRoute", "gw", "edge"), ROLES),
      (e: unknown) =>
        e instanceof RouteError &&
        e.missing === undefined &&
        /names its VirtualRouter by ARN \(spec.provider.virtualRouter.virtualRouterARN: arn:aws:appmesh:eu-west-1:1:mesh\/m\/virtualRouter\/r\); rolloutd cannot follow an ARN/.test(
          e.message,
        ),
    );
    const gwByArn: KObject = {
      ...gw,
      spec: {
        httpRoute: { action: { target: { virtualService: { virtualServiceARN: "arn:aws:appmesh:x" } } } },
      },
    };
    assert.throws(
      () =>
        new AppMeshRouter(new MapReader([gwByArn]), new RecordingWriter()).read(
          policy("GatewayRoute", "gw", "edge"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError && /names its VirtualService by ARN \(arn:aws:appmesh:x\)/.test(e.message),
    );
  });

  void it("targets by ARN or in another namespace are not the pair unless the policy names that namespace", () => {
    const mixed: KObject = {
      kind: "VirtualRouter",
      metadata: meta("shop", "shop-vr"),
      spec: {
        routes: [
          {
            httpRoute: {
              action: {
                weightedTargets: [
                  { virtualNodeARN: "arn:aws:appmesh:x/virtualNode/blue", weight: 50 },
                  { virtualNodeRef: { name: "blue", namespace: "other" }, weight: 30 },
                  { virtualNodeRef: { name: "green", namespace: "other" }, weight: 20 },
                ],
              },
            },
          },
          {
            httpRoute: {
              action: {
                weightedTargets: [
                  { virtualNodeRef: { name: "blue", namespace: "shop" }, weight: 1 },
                  { virtualNodeRef: { name: "green" }, weight: 1 },
                ],
              },
            },
          },
        ],
      },
    };
    const router = new AppMeshRouter(new MapReader([mixed]), new RecordingWriter());
    assert.deepEqual(
      router.read(policy("VirtualRouter", "shop-vr"), ROLES).pair.map((w) => w.path),
      [
        "/spec/routes/1/httpRoute/action/weightedTargets/0/weight",
        "/spec/routes/1/httpRoute/action/weightedTargets/1/weight",
      ],
    );
    const elsewhere = {
      ...policy("VirtualRouter", "shop-vr"),
      backendNamespaces: { blue: "other", green: "other" },
    };
    assert.deepEqual(
      router.read(elsewhere, ROLES).pair.map((w) => [w.backend, w.path]),
      [
        ["blue", "/spec/routes/0/httpRoute/action/weightedTargets/1/weight"],
        ["green", "/spec/routes/0/httpRoute/action/weightedTargets/2/weight"],
      ],
    );
  });

  void it("a router without a route holding both nodes is an error", () => {
    const lonely: KObject = {
      kind: "VirtualRouter",
      metadata: meta("shop", "shop-vr"),
      spec: { routes: [{ httpRoute: { action: { weightedTargets: [vnTarget("blue", 100)] } } }] },
    };
    assert.throws(
      () =>
        new AppMeshRouter(new MapReader([lonely]), new RecordingWriter()).read(
          policy("VirtualRouter", "shop-vr"),
          ROLES,
        ),
      (e: unknown) => e instanceof RouteError && /both virtual nodes blue and green/.test(e.message),
    );
  });
});

void describe("App Mesh: VirtualRouter named directly", () => {
  const vr: KObject = {
    apiVersion: APPMESH,
    kind: "VirtualRouter",
    metadata: meta("shop", "vr"),
    spec: {
      routes: [{ httpRoute: { action: { weightedTargets: [vnTarget("green", 30), vnTarget("blue", 70)] } } }],
    },
  };

  void it("the router is target and weights object at once", async () => {
    const writer = new RecordingWriter();
    const router = new AppMeshRouter(new MapReader([vr]), writer);
    const view = router.read(policy("VirtualRouter", "vr"), ROLES);
    const ref = { kind: "VirtualRouter", namespace: "shop", name: "vr" };
    assert.deepEqual(view.weightsRef, ref);
    assert.deepEqual(view.dependsOn, [ref]);
    assert.equal(view.target.kind, "VirtualRouter");
    assert.deepEqual(
      view.pair.map((w) => [w.backend, w.weight]),
      [
        ["green", 30],
        ["blue", 70],
      ],
    );
    assert.equal(view.stateAnnotation, undefined);
    await router.write(view, router.plan(view, ROLES, 10), "S");
    assert.deepEqual(writer.calls[0]!.ops, [
      { op: "replace", path: "/metadata/resourceVersion", value: "41" },
      { op: "add", path: "/spec/routes/0/httpRoute/action/weightedTargets/0/weight", value: 10 },
      { op: "add", path: "/spec/routes/0/httpRoute/action/weightedTargets/1/weight", value: 90 },
      { op: "add", path: "/metadata/annotations", value: {} },
      { op: "add", path: STATE_PATH, value: "S" },
    ]);
  });

  void it("a missing VirtualRouter is named", () => {
    assert.throws(
      () =>
        new AppMeshRouter(new MapReader([]), new RecordingWriter()).read(
          policy("VirtualRouter", "vr"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError &&
        JSON.stringify(e.missing) ===
          JSON.stringify({ kind: "VirtualRouter", namespace: "shop", name: "vr" }),
    );
  });
});

void describe("Gateway API", () => {
  const httpRoute = (extra: Partial<KObject> = {}): KObject => ({
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: meta("shop", "web", { annotations: { owner: "team" } }),
    spec: {
      parentRefs: [{ name: "gw" }],
      rules: [
        {
          matches: [{ path: { value: "/" } }],
          backendRefs: [
            { name: "blue", port: 80, weight: 90 },
            { name: "green", port: 80, weight: 10 },
          ],
        },
        {
          backendRefs: [
            { name: "blue", port: 80 },
            { name: "green", port: 80, weight: 0 },
          ],
        },
        { backendRefs: [{ name: "blue", port: 80 }] },
        {
          backendRefs: [
            { group: "multicluster.x-k8s.io", kind: "ServiceImport", name: "green" },
            { name: "blue" },
          ],
        },
        {
          backendRefs: [
            { kind: "Service", name: "green", weight: 3 },
            { name: "red", weight: 5 },
            { group: "", name: "blue", weight: 2 },
          ],
        },
      ],
    },
    status: {
      parents: [
        {
          parentRef: { name: "gw" },
          conditions: [
            { type: "Accepted", status: "True", observedGeneration: 3 },
            { type: "ResolvedRefs", status: "True", observedGeneration: 3 },
          ],
        },
      ],
    },
    ...extra,
  });

  void it("finds both Services in every rule that has both; the default weight is 1", () => {
    const view = new GatewayApiRouter(new MapReader([httpRoute()]), new RecordingWriter()).read(
      policy("HTTPRoute", "web"),
      ROLES,
    );
    assert.deepEqual(
      view.pair.map((l) => [l.backend, l.path, l.weight]),
      [
        ["blue", "/spec/rules/0/backendRefs/0/weight", 90],
        ["green", "/spec/rules/0/backendRefs/1/weight", 10],
        ["blue", "/spec/rules/1/backendRefs/0/weight", 1],
        ["green", "/spec/rules/1/backendRefs/1/weight", 0],
        ["green", "/spec/rules/4/backendRefs/0/weight", 3],
        ["blue", "/spec/rules/4/backendRefs/2/weight", 2],
      ],
    );
    assert.equal(view.accepted, true);
    assert.equal(view.acceptanceDetail, undefined);
    assert.deepEqual(view.weightsRef, { kind: "HTTPRoute", namespace: "shop", name: "web" });
    assert.deepEqual(view.dependsOn, [view.weightsRef]);
  });

  void it("writes every such rule in its own units, setting a defaulted weight explicitly", async () => {
    const writer = new RecordingWriter();
    const router = new GatewayApiRouter(new MapReader([httpRoute()]), writer);
    const view = router.read(policy("HTTPRoute", "web"), ROLES);
    await router.write(view, router.plan(view, ROLES, 25), "S");
    assert.deepEqual(writer.calls[0]!.ops, [
      { op: "replace", path: "/metadata/resourceVersion", value: "41" },
      // 90/10 alone in its rule → 75/25.
      { op: "add", path: "/spec/rules/0/backendRefs/0/weight", value: 75 },
      { op: "add", path: "/spec/rules/0/backendRefs/1/weight", value: 25 },
      // 1 (default) / 0, alone: 25 % of 1 is no whole unit, so the pair is rescaled to 100.
      { op: "add", path: "/spec/rules/1/backendRefs/0/weight", value: 75 },
      { op: "add", path: "/spec/rules/1/backendRefs/1/weight", value: 25 },
      // blue 2 + green 3 beside red 5: the pair keeps 5, so red keeps its half.
      { op: "add", path: "/spec/rules/4/backendRefs/0/weight", value: 1 },
      { op: "add", path: "/spec/rules/4/backendRefs/2/weight", value: 4 },
      { op: "add", path: STATE_PATH, value: "S" },
    ]);
  });

  void it("a backendRef in another namespace is the pair only when the policy names that namespace", () => {
    const route: KObject = {
      kind: "HTTPRoute",
      metadata: meta("shop", "web"),
      spec: {
        rules: [
          {
            backendRefs: [
              { name: "blue", namespace: "shop", weight: 7 },
              { name: "green", weight: 3 },
            ],
          },
          {
            backendRefs: [
              { name: "blue", namespace: "other", weight: 60 },
              { name: "green", namespace: "other", weight: 40 },
            ],
          },
          {
            backendRefs: [
              { name: "blue", namespace: "other", weight: 1 },
              { name: "green", weight: 1 },
            ],
          },
        ],
      },
    };
    const router = new GatewayApiRouter(new MapReader([route]), new RecordingWriter());
    const paths = (p: RolloutPolicy) => router.read(p, ROLES).pair.map((w) => w.path);
    assert.deepEqual(paths(policy("HTTPRoute", "web")), [
      "/spec/rules/0/backendRefs/0/weight",
      "/spec/rules/0/backendRefs/1/weight",
    ]);
    const both = { ...policy("HTTPRoute", "web"), backendNamespaces: { blue: "other", green: "other" } };
    assert.deepEqual(paths(both), [
      "/spec/rules/1/backendRefs/0/weight",
      "/spec/rules/1/backendRefs/1/weight",
    ]);
    const one = { ...policy("HTTPRoute", "web"), backendNamespaces: { blue: "other" } };
    assert.deepEqual(paths(one), [
      "/spec/rules/2/backendRefs/0/weight",
      "/spec/rules/2/backendRefs/1/weight",
    ]);
    const nowhere = { ...policy("HTTPRoute", "web"), backendNamespaces: { blue: "nowhere" } };
    assert.throws(
      () => router.read(nowhere, ROLES),
      (e: unknown) =>
        e instanceof RouteError && /both Service nowhere\/blue and Service green/.test(e.message),
    );
  });

  void it("a Service named twice in one rule is refused, not guessed", () => {
    const route: KObject = {
      kind: "HTTPRoute",
      metadata: meta("shop", "web"),
      spec: {
        rules: [
          {
            backendRefs: [
              { name: "blue", port: 80, weight: 1 },
              { name: "blue", port: 8080, weight: 1 },
              { name: "green", port: 80, weight: 0 },
            ],
          },
        ],
      },
    };
    assert.throws(
      () =>
        new GatewayApiRouter(new MapReader([route]), new RecordingWriter()).read(
          policy("HTTPRoute", "web"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError &&
        /spec.rules\[0\] names Service blue in more than one backendRef/.test(e.message),
    );
  });

  void it("reports acceptance on the view", () => {
    const stale = httpRoute({ metadata: meta("shop", "web", { generation: 4 }) });
    const view = new GatewayApiRouter(new MapReader([stale]), new RecordingWriter()).read(
      policy("HTTPRoute", "web"),
      ROLES,
    );
    assert.equal(view.accepted, false);
    assert.match(view.acceptanceDetail!, /Accepted is for generation 3, route is at 4/);
  });

  void it("GRPCRoute", async () => {
    const grpc: KObject = {
      kind: "GRPCRoute",
      metadata: meta("shop", "rpc"),
      spec: {
        rules: [
          {
            backendRefs: [
              { name: "green", weight: 50 },
              { name: "blue", weight: 50 },
            ],
          },
        ],
      },
    };
    const writer = new RecordingWriter();
    const router = new GatewayApiRouter(new MapReader([grpc]), writer);
    const view = router.read(policy("GRPCRoute", "rpc"), ROLES);
    assert.equal(view.target.kind, "GRPCRoute");
    assert.equal(view.target.apiVersion, "gateway.networking.k8s.io/v1");
    assert.deepEqual(view.weightsRef, { kind: "GRPCRoute", namespace: "shop", name: "rpc" });
    assert.equal(view.accepted, true, "no parentRefs: nothing to wait for");
    await router.write(view, router.plan(view, ROLES, 100), "S");
    assert.deepEqual(writer.calls[0]!.ops, [
      { op: "replace", path: "/metadata/resourceVersion", value: "41" },
      { op: "add", path: "/spec/rules/0/backendRefs/0/weight", value: 100 },
      { op: "add", path: "/spec/rules/0/backendRefs/1/weight", value: 0 },
      { op: "add", path: "/metadata/annotations", value: {} },
      { op: "add", path: STATE_PATH, value: "S" },
    ]);
  });

  void it("errors: missing route, no rule with both", () => {
    assert.throws(
      () =>
        new GatewayApiRouter(new MapReader([]), new RecordingWriter()).read(
          policy("HTTPRoute", "web"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError &&
        JSON.stringify(e.missing) === JSON.stringify({ kind: "HTTPRoute", namespace: "shop", name: "web" }),
    );
    const one: KObject = {
      kind: "HTTPRoute",
      metadata: meta("shop", "web"),
      spec: { rules: [{ backendRefs: [{ name: "blue" }] }, { backendRefs: [{ name: "green" }] }] },
    };
    assert.throws(
      () =>
        new GatewayApiRouter(new MapReader([one]), new RecordingWriter()).read(
          policy("HTTPRoute", "web"),
          ROLES,
        ),
      (e: unknown) =>
        e instanceof RouteError &&
        e.missing === undefined &&
        /both Service blue and Service green/.test(e.message),
    );
  });
});

void describe("acceptance()", () => {
  const route = (
    generation: number,
    parentRefs: unknown[] | undefined,
    parents: unknown[] | undefined,
  ): KObject => ({
    kind: "HTTPRoute",
    metadata: { namespace: "shop", name: "web", generation },
    spec: parentRefs ? { parentRefs } : {},
    ...(parents ? { status: { parents } } : {}),
  });
  const ok = (gen: number) => [
    { type: "Accepted", status: "True", observedGeneration: gen },
    { type: "ResolvedRefs", status: "True", observedGeneration: gen },
  ];

  void it("no parentRefs → accepted", () => {
    assert.deepEqual(acceptance(route(2, undefined, undefined)), { accepted: true });
    assert.deepEqual(acceptance(route(2, [], undefined)), { accepted: true });
  });

  void it("all parents good → accepted", () => {
    const r = route(
      2,
      [{ name: "a" }, { name: "b", namespace: "infra", sectionName: "https" }],
      [
        { parentRef: { name: "a", namespace: "shop" }, conditions: ok(2) },
        { parentRef: { name: "b", namespace: "infra", sectionName: "https" }, conditions: ok(3) },
      ],
    );
    assert.deepEqual(acceptance(r), { accepted: true });
  });

  void it("a parent without status is pending", () => {
    const r = route(
      2,
      [{ name: "a" }, { name: "b", sectionName: "https" }],
      [
        { parentRef: { name: "a" }, conditions: ok(2) },
        { parentRef: { name: "b", sectionName: "http" }, conditions: ok(2) },
      ],
    );
    assert.deepEqual(acceptance(r), { accepted: false, detail: "Gateway shop/b#https: no status yet" });
    assert.deepEqual(acceptance(route(2, [{ name: "a" }], undefined)), {
      accepted: false,
      detail: "Gateway shop/a: no status yet",
    });
  });

  void it("stale observedGeneration is pending", () => {
    const r = route(5, [{ name: "a" }], [{ parentRef: { name: "a" }, conditions: ok(4) }]);
    assert.deepEqual(acceptance(r), {
      accepted: false,
      detail:
        "Gateway shop/a: Accepted is for generation 4, route is at 5; " +
        "Gateway shop/a: ResolvedRefs is for generation 4, route is at 5",
    });
  });

  void it("ResolvedRefs False names the reason; a missing condition is named", () => {
    const r = route(
      2,
      [{ name: "a" }],
      [
        {
          parentRef: { name: "a" },
          conditions: [
            { type: "Accepted", status: "True", observedGeneration: 2 },
            {
              type: "ResolvedRefs",
              status: "False",
              observedGeneration: 2,
              reason: "BackendNotFound",
              message: "service green not found",
            },
          ],
        },
      ],
    );
    assert.deepEqual(acceptance(r), {
      accepted: false,
      detail: "Gateway shop/a: ResolvedRefs=False (BackendNotFound: service green not found)",
    });
    const noResolved = route(
      2,
      [{ name: "a" }],
      [
        {
          parentRef: { name: "a" },
          conditions: [{ type: "Accepted", status: "True", observedGeneration: 2 }],
        },
      ],
    );
    assert.deepEqual(acceptance(noResolved), {
      accepted: false,
      detail: "Gateway shop/a: no ResolvedRefs condition",
    });
  });
});

void describe("registry", () => {
  void it("picks the router by target kind and says which need acceptance", () => {
    const reg = new RouterRegistry(new MapReader([]), new RecordingWriter());
    assert.ok(reg.for("HTTPRoute") instanceof GatewayApiRouter);
    assert.ok(reg.for("GRPCRoute") instanceof GatewayApiRouter);
    assert.ok(reg.for("GatewayRoute") instanceof AppMeshRouter);
    assert.ok(reg.for("VirtualRouter") instanceof AppMeshRouter);
    assert.deepEqual(
      (["HTTPRoute", "GRPCRoute", "GatewayRoute", "VirtualRouter"] as const).map(needsAcceptance),
      [true, true, false, false],
    );
  });

  void it("annotation paths escape / and ~", () => {
    assert.equal(annotationPath(ANNOTATIONS.state), STATE_PATH);
    assert.equal(annotationPath("a~b/c"), "/metadata/annotations/a~0b~1c");
  });
});

void describe("App Mesh: the design document's GatewayRoute, weight inside targetRef", () => {
  // As the document writes it: appmesh.k8s.aws/v1beta1, `weight` next to virtualServiceRef.
  const inside = (name: string, weight: number) => ({ targetRef: { virtualServiceRef: { name }, weight } });
  const documentRoute = (targets: unknown[]): KObject => ({
    apiVersion: "appmesh.k8s.aws/v1beta1",
    kind: "GatewayRoute",
    metadata: meta("shop", "gw"),
    spec: { httpRoute: { match: { prefix: "/" }, action: { weightedTargets: targets } } },
  });

  void it("reads the weights where the document puts them (10/90, not 0/0)", () => {
    const router = new AppMeshRouter(
      new MapReader([documentRoute([inside("green", 10), inside("blue", 90)])]),
      new RecordingWriter(),
    );
    const view = router.read(policy("GatewayRoute", "gw"), ROLES);
    assert.deepEqual(
      view.pair.map((w) => [w.backend, w.path, w.weight]),
      [
        ["green", "/spec/httpRoute/action/weightedTargets/0/targetRef/weight", 10],
        ["blue", "/spec/httpRoute/action/weightedTargets/1/targetRef/weight", 90],
      ],
    );
  });

  void it("steps those fields only, each list within its pair total, another target's inner weight counted", async () => {
    const writer = new RecordingWriter();
    const router = new AppMeshRouter(
      new MapReader([documentRoute([inside("blue", 60), inside("other", 40), inside("green", 0)])]),
      writer,
    );
    const view = router.read(policy("GatewayRoute", "gw"), ROLES);
    const weights = router.plan(view, ROLES, 50);
    await router.write(view, weights, "STATE");
    assert.deepEqual(writer.calls[0]!.ops, [
      { op: "replace", path: "/metadata/resourceVersion", value: "41" },
      { op: "add", path: "/spec/httpRoute/action/weightedTargets/0/targetRef/weight", value: 30 },
      { op: "add", path: "/spec/httpRoute/action/weightedTargets/2/targetRef/weight", value: 30 },
      { op: "add", path: "/metadata/annotations", value: {} },
      { op: "add", path: STATE_PATH, value: "STATE" },
    ]);
  });

  void it("refuses an entry with a weight both beside and inside targetRef", () => {
    const both = { targetRef: { virtualServiceRef: { name: "blue" }, weight: 90 }, weight: 80 };
    const router = new AppMeshRouter(
      new MapReader([documentRoute([both, inside("green", 10)])]),
      new RecordingWriter(),
    );
    assert.throws(
      () => router.read(policy("GatewayRoute", "gw"), ROLES),
      (e: unknown) => e instanceof RouteError && /both beside and inside targetRef/.test(e.message),
    );
  });
});

void describe("App Mesh: the weighted GatewayRoute's stage object against the state", () => {
  const user: KObject = {
    apiVersion: APPMESH,
    kind: "GatewayRoute",
    metadata: meta("shop", "gw", { uid: "u-1" }),
    spec: {
      httpRoute: {
        match: { prefix: "/" },
        action: { weightedTargets: [vsTarget("blue", 100), vsTarget("green", 0)] },
      },
    },
  };
  const header = { match: { header: { name: "x-canary", value: "always", type: "Exact" as const } } };
  const stage0: { index: number; stage: Stage } = { index: 0, stage: header };
  const stage1: { index: number; stage: Stage } = { index: 1, stage: { match: { pathPrefix: "/v2" } } };
  const owned = (stage: number) => ({ name: "gw-rolloutd-stage", stage });
  const plan = (
    others: KObject[],
    desired: typeof stage0 | undefined,
    recorded?: { name: string; stage: number },
  ) => {
    const r = new AppMeshRouter(new MapReader([user, ...others]), new RecordingWriter());
    const view = r.read(policy("GatewayRoute", "gw"), ROLES);
    return r.stageObject(view, ROLES, desired, recorded);
  };
  const ours = (stage: number): KObject => {
    const r = new AppMeshRouter(new MapReader([user]), new RecordingWriter());
    const p = r.stageObject(r.read(policy("GatewayRoute", "gw"), ROLES), ROLES, stage0, owned(0));
    assert.equal(p?.write?.op, "create");
    const o = structuredClone((p.write as { object: KObject }).object);
    o.metadata = {
      ...o.metadata,
      uid: "s-1",
      resourceVersion: "7",
      annotations: { "rolloutd.dev/stage": String(stage) },
    };
    return o;
  };
  const theirs: KObject = {
    apiVersion: APPMESH,
    kind: "GatewayRoute",
    metadata: meta("shop", "gw-rolloutd-stage", { uid: "t-1" }),
    spec: {},
  };

  void it("a stage begins: recorded first (no write yet), then created; moved to the next stage with a guarded patch", () => {
    assert.deepEqual(plan([], stage0, undefined), {
      name: "gw-rolloutd-stage",
      ref: { kind: "GatewayRoute", namespace: "shop", name: "gw-rolloutd-stage" },
      present: false,
    });
    const created = plan([], stage0, owned(0));
    assert.equal(created?.write?.op, "create");
    assert.equal(plan([ours(0)], stage0, owned(0))?.write, undefined, "in place: nothing to write");
    const moved = plan([ours(0)], stage1, owned(0))?.write;
    assert.equal(moved?.op, "patch");
    assert.deepEqual((moved as { ops: JsonPatchOp[] }).ops.slice(0, 2), [
      { op: "test", path: "/metadata/uid", value: "s-1" },
      { op: "test", path: "/metadata/resourceVersion", value: "7" },
    ]);
  });

  void it("stages over: deleted (only that object: uid and resourceVersion) while recorded, then the record forgotten", () => {
    const p = plan([ours(1)], undefined, owned(1));
    assert.equal(p?.present, true, "the state keeps recording it until it is gone");
    assert.deepEqual(p?.write, {
      op: "delete",
      ref: { kind: "GatewayRoute", namespace: "shop", name: "gw-rolloutd-stage" },
      uid: "s-1",
      resourceVersion: "7",
    });
    assert.deepEqual(plan([], undefined, owned(1))?.write, { op: "forget" });
    assert.deepEqual(plan([], undefined, undefined)?.write, undefined);
  });

  void it("someone else's GatewayRoute of that name: never written, a stage does not begin over it, the record is forgotten", () => {
    // Not recorded: left alone, and no stage starts.
    assert.equal(plan([theirs], undefined, undefined)?.write, undefined);
    assert.throws(
      () => plan([theirs], stage0, undefined),
      (e: unknown) => e instanceof RouteError && /does not record it as its own/.test(e.message),
    );
    // Recorded, but without rolloutd's owner reference (put there in a race): never deleted, only forgotten.
    const p = plan([theirs], undefined, owned(0));
    assert.deepEqual(p?.write, { op: "forget" });
    assert.match(p?.foreign ?? "", /will not replace or delete it/);
    // Recorded, stage live: not written, said so, and the rollout goes on (a pause or abort is never held up).
    const live = plan([theirs], stage0, owned(0));
    assert.equal(live?.write, undefined);
    assert.match(live?.foreign ?? "", /will not replace or delete it/);
  });

  void it("by generation: an object that is not rolloutd's is never patched or deleted, one is created only where none is", () => {
    const found = fc.constantFrom("none", "theirs", "ours0", "ours1", "oursOtherOwner");
    const recorded = fc.option(
      fc.record({ name: fc.constantFrom("gw-rolloutd-stage", "rolloutd-stage"), stage: fc.nat(2) }),
      {
        nil: undefined,
      },
    );
    const desired = fc.option(fc.constantFrom(stage0, stage1), { nil: undefined });
    fc.assert(
      fc.property(found, recorded, desired, (f, rec, want) => {
        const obj =
          f === "none"
            ? undefined
            : f === "theirs"
              ? theirs
              : f === "oursOtherOwner"
                ? { ...ours(0), metadata: { ...ours(0).metadata, ownerReferences: [] } }
                : ours(f === "ours0" ? 0 : 1);
        let p;
        try {
          p = plan(obj ? [obj] : [], want, rec);
        } catch (e) {
          // Refusing is always allowed; only a stage that would begin over an object may be refused.
          assert.ok(e instanceof RouteError && want !== undefined && obj !== undefined);
          return;
        }
        const mine = rec?.name === "gw-rolloutd-stage" && (f === "ours0" || f === "ours1");
        const w = p?.write;
        if (w?.op === "patch" || w?.op === "delete")
          assert.ok(mine, `${w.op} of an object that is not rolloutd's`);
        if (w?.op === "create") assert.equal(obj, undefined, "created over an existing object");
        if (w?.op === "create" || w?.op === "patch")
          assert.ok(want && rec?.name === "gw-rolloutd-stage", "written without a record");
        // Once the stages are over, rolloutd's object stays recorded until it is gone; nothing else is.
        if (!want) assert.equal(p?.present, mine);
      }),
      { numRuns: 500 },
    );
  });

  void it("the VirtualRouter form keeps its stage inside the router: no object of its own", () => {
    const r = new AppMeshRouter(new MapReader([user]), new RecordingWriter());
    const view = r.read(policy("GatewayRoute", "gw"), ROLES);
    assert.equal(
      r.stageObject(
        { ...view, weightsRef: { ...view.weightsRef, kind: "VirtualRouter" } },
        ROLES,
        stage0,
        undefined,
      ),
      undefined,
    );
    assert.deepEqual(
      r.stageOps(view, ROLES, stage0, undefined),
      [],
      "nothing inside the user's GatewayRoute",
    );
  });
});
