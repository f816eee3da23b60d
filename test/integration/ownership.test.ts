/**
 * Issue 8: rolloutd never touches traffic its policy does not own. Each
 * scenario is one of the defects seen on upstream objects (Gateway API
 * v1.6.1 CRDs from the pinned module; App Mesh as AWS ships it), run through
 * the real daemon and a real API server:
 *
 *   1. adoption writes nothing but rolloutd's state, and a step moves every
 *      rule / route holding the pair from its own split;
 *   2. a backendRef in another namespace is someone else's traffic, unless the
 *      policy names that namespace;
 *   3. Gateway API weights are stepped in the route's own units, so every
 *      other backend keeps its exact share.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { KObject } from "../../src/kube/kinds.ts";
import { ANNOTATIONS } from "../../src/contract.ts";
import { createNamespace, createObject, type Cluster } from "../support/cluster.ts";
import type { RouteFamily } from "../support/routes.ts";
import { startWorld, type World } from "../support/world.ts";

type Json = Record<string, any>;

/** The object without rolloutd's state annotation and the fields the API server maintains. */
function userOwned(obj: KObject): Json {
  const { metadata, status: _status, ...rest } = obj as Json;
  const annotations = { ...(metadata.annotations ?? {}) } as Record<string, string>;
  delete annotations[ANNOTATIONS.state];
  return {
    ...rest,
    metadata: { name: metadata.name, namespace: metadata.namespace, labels: metadata.labels, annotations },
  };
}

/** backendRef weights of one HTTPRoute rule, as "name" or "namespace/name" → weight (default 1). */
const ruleWeights = (obj: KObject, rule: number): Record<string, number> =>
  Object.fromEntries(
    ((obj.spec as Json).rules[rule].backendRefs as Json[]).map((b) => [
      b.namespace ? `${b.namespace}/${b.name}` : b.name,
      b.weight ?? 1,
    ]),
  );

/** weightedTargets of one VirtualRouter route, by virtual node name → weight. */
const vrWeights = (obj: KObject, route: number): Record<string, number> =>
  Object.fromEntries(
    ((obj.spec as Json).routes[route].httpRoute.action.weightedTargets as Json[]).map((t) => [
      t.virtualNodeRef.name,
      t.weight,
    ]),
  );

/** An HTTPRoute family whose rules are given; `weights` reads rule 0. */
function httpRouteWith(name: string, rules: (stable: string, canary: string) => Json[]): RouteFamily {
  return {
    name,
    targetKind: "HTTPRoute",
    weightsKind: "HTTPRoute",
    async create(c, ns, route, stable, canary) {
      await createObject(c, "HTTPRoute", {
        metadata: { name: route, namespace: ns },
        spec: { parentRefs: [{ name: "gw" }], rules: rules(stable, canary) },
      });
    },
    weightsObjectName: (route) => route,
    weights: (obj) => ruleWeights(obj, 0),
    foreignWeights: () => Promise.reject(new Error("not used")),
    unrelated: () => undefined,
    editUnrelated: () => Promise.reject(new Error("not used")),
  };
}

const prefix = (value: string) => [{ path: { type: "PathPrefix", value } }];

void describe("weight contract on upstream objects (issue 8)", { concurrency: true }, () => {
  let w: World;
  // Shorthands for the world's parts, used throughout the tests.
  let c: Cluster;
  let policiesDir: string;

  before(async () => {
    w = await startWorld();
    ({ c, policiesDir } = w);
  });

  after(async () => {
    await w?.stop();
  });

  const scenario = (fam: RouteFamily, ns: string) => w.scenario(fam, ns);

  void it("HTTPRoute: adoption writes only the state; each rule steps and aborts within its own pair total", async () => {
    const fam = httpRouteWith("two rules, two splits", (stable, canary) => [
      {
        matches: prefix("/a"),
        backendRefs: [
          { name: stable, port: 80, weight: 100 },
          { name: canary, port: 80, weight: 0 },
        ],
      },
      {
        matches: prefix("/b"),
        backendRefs: [
          { name: stable, port: 80, weight: 8 },
          { name: canary, port: 80, weight: 2 },
        ],
      },
    ]);
    const s = await scenario(fam, "own-http");
    const original = await s.weightsObject();
    s.writePolicy({ steps: [10, 50], interval: "10m" });
    await s.until("adopted", (st) => st.phase === "Steady");
    assert.deepEqual(
      userOwned(await s.weightsObject()),
      userOwned(original),
      "adoption writes only the state",
    );

    await s.shipCanary("2");
    await s.until("at step 1", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    const stepped = await s.weightsObject();
    assert.deepEqual(ruleWeights(stepped, 0), { [s.stable]: 90, [s.canary]: 10 });
    assert.deepEqual(ruleWeights(stepped, 1), { [s.stable]: 9, [s.canary]: 1 }, "rule /b keeps its total 10");

    await s.annotateTarget({ "rolloutd.dev/abort": "true" });
    await s.until("aborted", (st) => st.phase === "Aborted");
    const aborted = await s.weightsObject();
    assert.deepEqual(ruleWeights(aborted, 0), { [s.stable]: 100, [s.canary]: 0 });
    assert.deepEqual(ruleWeights(aborted, 1), { [s.stable]: 10, [s.canary]: 0 });
  });

  void it("VirtualRouter: adoption keeps a second route's 70/30; a step keeps each list's pair total and others' weights", async () => {
    const vrFamily: RouteFamily = {
      name: "VirtualRouter with two routes",
      targetKind: "VirtualRouter",
      weightsKind: "VirtualRouter",
      async create(c, ns, route, stable, canary) {
        const target = (n: string, weight: number) => ({ virtualNodeRef: { name: n }, weight });
        await createObject(c, "VirtualRouter", {
          metadata: { name: route, namespace: ns },
          spec: {
            listeners: [{ portMapping: { port: 8080, protocol: "http" } }],
            routes: [
              {
                name: "main",
                httpRoute: {
                  match: { prefix: "/" },
                  action: { weightedTargets: [target(stable, 100), target(canary, 0)] },
                  retryPolicy: {
                    maxRetries: 2,
                    perRetryTimeout: { unit: "ms", value: 250 },
                    httpRetryEvents: ["server-error"],
                  },
                  timeout: { perRequest: { unit: "s", value: 5 } },
                },
              },
              {
                name: "beta",
                httpRoute: {
                  match: { prefix: "/beta" },
                  // Others' weights sum past 100 with the pair's: upstream has no sum rule.
                  action: {
                    weightedTargets: [target(stable, 70), target(canary, 30), target("legacy", 100)],
                  },
                },
              },
            ],
          },
        });
      },
      weightsObjectName: (route) => route,
      weights: (obj) => vrWeights(obj, 0),
      foreignWeights: () => Promise.reject(new Error("not used")),
      unrelated: () => undefined,
      editUnrelated: () => Promise.reject(new Error("not used")),
    };
    const s = await scenario(vrFamily, "own-vr");
    const original = await s.weightsObject();
    s.writePolicy({ steps: [10, 50], interval: "10m" });
    await s.until("adopted", (st) => st.phase === "Steady");
    assert.deepEqual(
      userOwned(await s.weightsObject()),
      userOwned(original),
      "adoption writes only the state",
    );

    await s.shipCanary("2");
    await s.until("at step 1", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    const stepped = await s.weightsObject();
    assert.deepEqual(vrWeights(stepped, 0), { [s.stable]: 90, [s.canary]: 10 });
    assert.deepEqual(vrWeights(stepped, 1), { [s.stable]: 90, [s.canary]: 10, legacy: 100 });
    const { routes: _r, ...restSpec } = stepped.spec as Json;
    const { routes: _o, ...origSpec } = original.spec as Json;
    assert.deepEqual(restSpec, origSpec);
    assert.deepEqual((stepped.spec as Json).routes[0].httpRoute.retryPolicy, {
      maxRetries: 2,
      perRetryTimeout: { unit: "ms", value: 250 },
      httpRetryEvents: ["server-error"],
    });
  });

  void it("HTTPRoute: Services of the same names in another namespace are not the pair", async () => {
    const fam = httpRouteWith("pair here and look-alikes elsewhere", (stable, canary) => [
      {
        matches: prefix("/"),
        backendRefs: [
          { name: stable, port: 80, weight: 100 },
          { name: canary, port: 80, weight: 0 },
        ],
      },
      {
        matches: prefix("/other"),
        backendRefs: [
          { name: stable, namespace: "own-other", port: 80, weight: 60 },
          { name: canary, namespace: "own-other", port: 80, weight: 40 },
        ],
      },
    ]);
    await createNamespace(c, "own-other");
    await grantRoutesFrom(c, "own-other", "own-xns");
    const s = await scenario(fam, "own-xns");
    const original = await s.weightsObject();
    s.writePolicy({ steps: [20, 100], interval: "1s" });
    await s.until("adopted", (st) => st.phase === "Steady");
    assert.deepEqual(
      userOwned(await s.weightsObject()),
      userOwned(original),
      "adoption writes only the state",
    );

    await s.shipCanary("2");
    await s.until("promoted", (st) => st.phase === "Promoted");
    const promoted = await s.weightsObject();
    assert.deepEqual(ruleWeights(promoted, 0), { [s.stable]: 0, [s.canary]: 100 });
    assert.deepEqual(ruleWeights(promoted, 1), ruleWeights(original, 1), "the other namespace's 60/40 stays");
  });

  void it("HTTPRoute: a policy that names the other namespace steps exactly those backendRefs", async () => {
    const fam = httpRouteWith("pair in another namespace", (stable, canary) => [
      {
        matches: prefix("/"),
        backendRefs: [
          { name: stable, port: 80, weight: 5 },
          { name: canary, port: 80, weight: 5 },
        ],
      },
      {
        matches: prefix("/remote"),
        backendRefs: [
          { name: stable, namespace: "own-remote", port: 80, weight: 100 },
          { name: canary, namespace: "own-remote", port: 80, weight: 0 },
        ],
      },
    ]);
    await createNamespace(c, "own-remote");
    await grantRoutesFrom(c, "own-remote", "own-named");
    const s = await scenario(fam, "own-named");
    const original = await s.weightsObject();
    writeFileSync(
      path.join(policiesDir, `${s.ns}.yaml`),
      s
        .policyYaml({ steps: [25, 50], interval: "10m" })
        .replace(`stable: ${s.stable}`, `stable: { name: ${s.stable}, namespace: own-remote }`)
        .replace(`canary: ${s.canary}`, `canary: { name: ${s.canary}, namespace: own-remote }`),
    );
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("at step 1", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    const stepped = await s.weightsObject();
    assert.deepEqual(ruleWeights(stepped, 0), ruleWeights(original, 0), "the local look-alikes stay 5/5");
    assert.deepEqual(ruleWeights(stepped, 1), {
      [`own-remote/${s.stable}`]: 75,
      [`own-remote/${s.canary}`]: 25,
    });
  });

  void it("HTTPRoute: weights move in the route's units, so a third backend keeps its exact share", async () => {
    const fam = httpRouteWith("v1=900, v2=0, legacy=100", (stable, canary) => [
      {
        matches: prefix("/"),
        backendRefs: [
          { name: stable, port: 80, weight: 900 },
          { name: canary, port: 80, weight: 0 },
          { name: "legacy", port: 80, weight: 100 },
        ],
      },
    ]);
    const s = await scenario(fam, "own-units");
    s.writePolicy({ steps: [5, 50], interval: "10m" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("at step 1", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    assert.deepEqual(ruleWeights(await s.weightsObject(), 0), {
      [s.stable]: 855,
      [s.canary]: 45,
      legacy: 100,
    });
  });
});

/** A ReferenceGrant in `to` letting HTTPRoutes of `from` reference its Services. */
async function grantRoutesFrom(c: Cluster, to: string, from: string): Promise<void> {
  await c.custom.createNamespacedCustomObject({
    group: "gateway.networking.k8s.io",
    version: "v1",
    namespace: to,
    plural: "referencegrants",
    body: {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "ReferenceGrant",
      metadata: { name: `from-${from}`, namespace: to },
      spec: {
        from: [{ group: "gateway.networking.k8s.io", kind: "HTTPRoute", namespace: from }],
        to: [{ group: "", kind: "Service" }],
      },
    },
  });
}
