/**
 * The watch caches drop metadata.managedFields from every object (issue 11).
 * Nothing rolloutd reads or writes may change for it: the object kept equals
 * the one served except managedFields, and every write a router derives from
 * it — weights, state, request stages, the stage's own GatewayRoute copied
 * from the user's — is the same JSON Patch it derives from the object served.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { KObject } from "../../../src/kube/kinds.ts";
import { withoutManagedFields } from "../../../src/kube/slim.ts";
import { watchedObject } from "../../../src/kube/informer.ts";
import { slimDeployment } from "../../../src/controller/observe.ts";
import { AppMeshRouter } from "../../../src/routers/appmesh.ts";
import { gatewayRouteStageObject, type Stage } from "../../../src/routers/stagerule.ts";
import { RouteError, type TrafficRouter } from "../../../src/routers/types.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";
import { ANNOTATIONS } from "../../../src/contract.ts";
import {
  caseArb,
  CapturingWriter,
  MemoryStore,
  ObjectsReader,
  policyFor,
  routerFor,
  STABLE,
  CANARY,
  type Family,
} from "../../support/contract.ts";
import { managedFieldsArb } from "../../support/managedfields.ts";

const RUNS = Number(process.env.ROLLOUTD_PROPERTY_RUNS ?? 300);

/** The object as the API server serves it: with the managers' field sets, decoded from JSON. */
function served(obj: KObject, managedFields: unknown[]): KObject {
  return JSON.parse(JSON.stringify({ ...obj, metadata: { ...obj.metadata, managedFields } })) as KObject;
}

/** What the cache must keep: everything but managedFields. */
function expected(obj: KObject): KObject {
  const copy = structuredClone(obj);
  if (copy.metadata) delete copy.metadata.managedFields;
  return copy;
}

/** Every write the router derives from `obj` for one step (adoption when percent is undefined), or its refusal. */
async function writesFrom(
  make: (reader: ObjectsReader, writer: CapturingWriter) => TrafficRouter,
  policy: RolloutPolicy,
  objects: KObject[],
  percent: number | undefined,
): Promise<unknown> {
  const writer = new CapturingWriter(new MemoryStore(objects[0]!));
  const router = make(new ObjectsReader(...objects), writer);
  const roles = { stable: policy.stable, canary: policy.canary };
  try {
    const view = router.read(policy, roles);
    const weights = percent === undefined ? undefined : router.plan(view, roles, percent);
    await router.write(view, weights, '{"n":1}');
  } catch (err) {
    if (!(err instanceof RouteError)) throw err;
    return { refused: err.message };
  }
  return writer.calls;
}

void describe("the cache drops managedFields and nothing else", () => {
  for (const family of ["HTTPRoute", "GRPCRoute", "VirtualRouter"] as Family[]) {
    void it(`${family}: kept object = served minus managedFields; the same patches are written from it`, async () => {
      await fc.assert(
        fc.asyncProperty(
          caseArb(family),
          managedFieldsArb,
          fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
          async (c, fields, percent) => {
            const raw = served(c.route, fields);
            const before = structuredClone(raw);
            const kept = withoutManagedFields(raw);
            assert.deepEqual(raw, before, "the object served is not changed");
            assert.deepEqual(kept, expected(raw));
            assert.equal(Object.hasOwn(kept.metadata!, "managedFields"), false);
            assert.deepEqual(withoutManagedFields(kept), kept, "idempotent");
            const policy = policyFor(c);
            const make = (r: ObjectsReader, w: CapturingWriter) => routerFor(family, r, w);
            assert.deepEqual(
              await writesFrom(make, policy, [kept], percent),
              await writesFrom(make, policy, [raw], percent),
            );
          },
        ),
        { numRuns: RUNS },
      );
    });
  }

  const APPMESH = "appmesh.k8s.aws/v1beta2";
  const appMeshPolicy: RolloutPolicy = {
    ...policyFor({ family: "VirtualRouter", pairElsewhere: false, route: { metadata: { name: "gw" } } }),
    target: { kind: "GatewayRoute", name: "gw" },
  };
  const vsTarget = (name: string, weight: number) => ({ targetRef: { virtualServiceRef: { name } }, weight });
  // The user's design document's weighted GatewayRoute, with the annotations and labels a real one carries.
  const weighted: KObject = {
    apiVersion: "appmesh.k8s.aws/v1beta1",
    kind: "GatewayRoute",
    metadata: {
      namespace: "shop",
      name: "gw",
      uid: "u-1",
      resourceVersion: "41",
      generation: 3,
      labels: { gateway: "ingress-gw", "app.kubernetes.io/part-of": "shop" },
      annotations: { "team.example.com/owner": "shop", [ANNOTATIONS.state]: '{"v":1}' },
    },
    spec: {
      priority: 10,
      awsName: "gw_shop",
      httpRoute: {
        match: { prefix: "/", headers: [{ name: "x-tenant", match: { exact: "a" } }] },
        action: { weightedTargets: [vsTarget(STABLE, 90), vsTarget("legacy", 10), vsTarget(CANARY, 0)] },
      },
    },
  };
  const header: Stage = { match: { header: { name: "x-canary", value: "always", type: "Exact" } } };

  void it("App Mesh weighted GatewayRoute: the stage's own GatewayRoute copied from the kept object is the same", () => {
    fc.assert(
      fc.property(managedFieldsArb, (fields) => {
        const raw = served(weighted, fields);
        const kept = withoutManagedFields(raw);
        assert.deepEqual(kept, expected(raw));
        const copy = (o: KObject) =>
          gatewayRouteStageObject(
            o,
            "httpRoute",
            2,
            { index: 0, stage: header },
            "GatewayRoute shop/gw-stage",
          );
        assert.deepEqual(copy(kept), copy(raw));
        assert.equal(JSON.stringify(copy(raw)).includes("managedFields"), false, "the copy never held them");
        // Through the router: the create, and the patch of a stage object of an earlier stage.
        const router = (o: KObject, others: KObject[]) => {
          const r = new AppMeshRouter(
            new ObjectsReader(o, ...others),
            new CapturingWriter(new MemoryStore(o)),
          );
          const roles = { stable: STABLE, canary: CANARY };
          const view = r.read(appMeshPolicy, roles);
          return r.stageObject(
            view,
            roles,
            { index: 1, stage: header },
            { name: "gw-rolloutd-stage", stage: 0 },
          );
        };
        const created = router(raw, []);
        assert.equal(created?.write?.op, "create");
        assert.deepEqual(router(kept, []), created);
        // rolloutd's object for stage 0, as stored: moved to stage 1 by a patch.
        const existing = copy(raw);
        const stored = served(
          { ...existing, metadata: { ...existing.metadata, uid: "u-2", resourceVersion: "50" } },
          fields,
        );
        const patched = router(raw, [stored]);
        assert.equal(patched?.write?.op, "patch");
        assert.deepEqual(router(kept, [withoutManagedFields(stored)]), patched);
      }),
      { numRuns: RUNS },
    );
  });

  void it("App Mesh as shipped (GatewayRoute → VirtualService → VirtualRouter): the same patch from kept objects", async () => {
    const gw: KObject = {
      apiVersion: APPMESH,
      kind: "GatewayRoute",
      metadata: { namespace: "shop", name: "gw", resourceVersion: "7" },
      spec: { httpRoute: { action: { target: { virtualService: { virtualServiceRef: { name: "vs" } } } } } },
    };
    const vs: KObject = {
      apiVersion: APPMESH,
      kind: "VirtualService",
      metadata: { namespace: "shop", name: "vs", resourceVersion: "8" },
      spec: { provider: { virtualRouter: { virtualRouterRef: { name: "vr" } } } },
    };
    const vr: KObject = {
      apiVersion: APPMESH,
      kind: "VirtualRouter",
      metadata: { namespace: "shop", name: "vr", resourceVersion: "9", annotations: { keep: "me" } },
      spec: {
        routes: [
          {
            name: "main",
            httpRoute: {
              action: {
                weightedTargets: [
                  { virtualNodeRef: { name: STABLE }, weight: 100 },
                  { virtualNodeRef: { name: CANARY }, weight: 0 },
                ],
              },
            },
          },
        ],
      },
    };
    await fc.assert(
      fc.asyncProperty(managedFieldsArb, managedFieldsArb, managedFieldsArb, async (a, b, c) => {
        const raw = [served(vr, a), served(gw, b), served(vs, c)];
        const kept = raw.map(withoutManagedFields);
        kept.forEach((k, i) => assert.deepEqual(k, expected(raw[i]!)));
        const make = (r: ObjectsReader, w: CapturingWriter) => new AppMeshRouter(r, w);
        const fromRaw = await writesFrom(make, appMeshPolicy, raw, 25);
        assert.deepEqual(await writesFrom(make, appMeshPolicy, kept, 25), fromRaw);
        assert.ok(Array.isArray(fromRaw) && fromRaw.length === 1, "the router wrote");
      }),
      { numRuns: 50 },
    );
  });

  void it("annotations are kept: the state is added beside the user's, never by replacing the map", async () => {
    const raw = served(weighted, [
      { manager: "kubectl", operation: "Update", fieldsV1: { "f:metadata": {} } },
    ]);
    const calls = (await writesFrom(
      (r, w) => new AppMeshRouter(r, w),
      appMeshPolicy,
      [withoutManagedFields(raw)],
      50,
    )) as Array<Array<{ path: string }>>;
    assert.deepEqual(withoutManagedFields(raw).metadata?.annotations, weighted.metadata?.annotations);
    assert.equal(
      calls[0]!.some((op) => op.path === "/metadata/annotations"),
      false,
      "no map-wide write over the user's annotations",
    );
  });

  void it("hostile shapes: returned as they are, never a throw", () => {
    const odd: unknown[] = [
      {},
      { metadata: null },
      { metadata: "x" },
      { metadata: [] },
      { metadata: {} },
      { kind: "X", spec: null, status: 3 },
      { metadata: { managedFields: null } },
      { metadata: { managedFields: "not a list" } },
      { metadata: { managedFields: { a: 1 } } },
      { metadata: { managedFields: [null, 3, "x"] } },
    ];
    for (const o of odd) {
      const kept = withoutManagedFields(o as KObject);
      const m = (kept as { metadata?: unknown }).metadata;
      if (m && typeof m === "object" && !Array.isArray(m))
        assert.equal(Object.hasOwn(m, "managedFields"), false);
      else assert.deepEqual(kept, o);
    }
    fc.assert(
      fc.property(fc.object({ withNullPrototype: false }), fc.jsonValue(), (obj, fields) => {
        const raw = { ...obj, metadata: { ...obj, managedFields: fields } } as KObject;
        const kept = withoutManagedFields(raw);
        assert.deepEqual(kept, expected(raw));
      }),
      { numRuns: RUNS },
    );
  });
});

void describe("which watch events are slimmed", () => {
  const keep = (o: KObject) => slimDeployment(withoutManagedFields(o));
  const dep: KObject = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      namespace: "shop",
      name: "web-v2",
      resourceVersion: "12",
      managedFields: [{ manager: "kubectl" }],
    },
    spec: { replicas: 2, template: { spec: { containers: [{ name: "app", image: "a:1" }] } } },
  };

  void it("objects added, changed and deleted are; a BOOKMARK and an ERROR's Status are passed as they came", () => {
    for (const phase of ["ADDED", "MODIFIED", "DELETED"]) {
      const kept = watchedObject(phase, dep, keep) as KObject;
      assert.equal((kept.spec as { template?: unknown }).template, undefined, phase);
      assert.equal(kept.metadata?.managedFields, undefined, phase);
      assert.equal(kept.metadata?.resourceVersion, "12", `${phase}: the watch resumes from it`);
    }
    // client-node relists on an ERROR whose Status says 410: a slimmed Status would have lost its code.
    const expired = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "too old resource version: 12 (40)",
      reason: "Expired",
      code: 410,
    };
    assert.equal(watchedObject("ERROR", expired, keep), expired);
    const bookmark = {
      kind: "Deployment",
      apiVersion: "apps/v1",
      metadata: { resourceVersion: "41", annotations: { "k8s.io/initial-events-end": "true" } },
    };
    assert.equal(watchedObject("BOOKMARK", bookmark, keep), bookmark);
  });
});
