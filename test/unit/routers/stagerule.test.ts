import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KObject } from "../../../src/kube/kinds.ts";
import {
  appMeshStageRoute,
  gatewayRouteStageName,
  gatewayRouteStageObject,
  ownedBy,
  STAGE_RULE_NAME,
  stageOfObject,
  stageRule,
  stageRuleOps,
  type Stage,
} from "../../../src/routers/stagerule.ts";
import { RouteError } from "../../../src/routers/types.ts";

const pairRule = {
  name: "main",
  matches: [
    { path: { type: "PathPrefix", value: "/shop" }, headers: [{ name: "x-tenant", value: "a" }] },
    { path: { type: "Exact", value: "/" } },
  ],
  filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { add: [{ name: "x", value: "y" }] } }],
  backendRefs: [
    { name: "v1", port: 80, weight: 90 },
    { name: "v2", port: 80, weight: 10 },
  ],
};
const route = (rules: unknown[]): KObject => ({
  apiVersion: "gateway.networking.k8s.io/v1",
  kind: "HTTPRoute",
  metadata: { namespace: "shop", name: "web" },
  spec: { rules },
});
const header: Stage = { match: { header: { name: "x-canary", value: "always", type: "Exact" } } };

void describe("the owned stage rule", () => {
  void it("copies the pair's rule, adds the stage's condition to every match, keeps only the canary", () => {
    const r = stageRule("HTTPRoute", pairRule, 1, header);
    assert.deepEqual(r, {
      name: STAGE_RULE_NAME,
      matches: [
        {
          path: { type: "PathPrefix", value: "/shop" },
          headers: [
            { name: "x-tenant", value: "a" },
            { type: "Exact", name: "x-canary", value: "always" },
          ],
        },
        {
          path: { type: "Exact", value: "/" },
          headers: [{ type: "Exact", name: "x-canary", value: "always" }],
        },
      ],
      filters: pairRule.filters,
      backendRefs: [{ name: "v2", port: 80 }],
    });
  });

  void it("cookie: a regular expression on the Cookie header that matches the cookie and nothing longer", () => {
    const r = stageRule("HTTPRoute", { backendRefs: [{ name: "v2" }] }, 0, {
      match: { cookie: { name: "canary", value: "a.b" } },
    });
    const h = (r.matches as Array<{ headers: Array<{ name: string; value: string }> }>)[0]!.headers[0]!;
    assert.equal(h.name, "Cookie");
    const re = new RegExp(h.value);
    assert.ok(re.test("canary=a.b"));
    assert.ok(re.test("x=1; canary=a.b; y=2"));
    assert.ok(!re.test("canary=aXb"), "the dot is literal");
    assert.ok(!re.test("notcanary=a.b"));
    assert.ok(!re.test("canary=a.bc"));
  });

  void it("query and path prefix on HTTPRoute; GRPCRoute refuses them", () => {
    const q = stageRule("HTTPRoute", pairRule, 1, { match: { query: { name: "v", value: "2" } } });
    assert.deepEqual((q.matches as Array<Record<string, unknown>>)[1]!.queryParams, [
      { type: "Exact", name: "v", value: "2" },
    ]);
    const p = stageRule("HTTPRoute", pairRule, 1, { match: { pathPrefix: "/api/v2" } });
    assert.deepEqual((p.matches as Array<Record<string, unknown>>)[0]!.path, {
      type: "PathPrefix",
      value: "/api/v2",
    });
    assert.throws(() => stageRule("GRPCRoute", pairRule, 1, { match: { pathPrefix: "/x" } }));
  });

  void it("a pair rule without matches gets one match: the stage's", () => {
    const r = stageRule("HTTPRoute", { backendRefs: [{ name: "v1" }, { name: "v2" }] }, 1, header);
    assert.deepEqual(r.matches, [{ headers: [{ type: "Exact", name: "x-canary", value: "always" }] }]);
  });
});

void describe("stageRuleOps: the route's owned rule made what the state says", () => {
  const pair = { rule: 0, canaryIndex: 1 };
  const desired = { index: 0, stage: header };
  const owned = { name: STAGE_RULE_NAME, stage: 0 };

  void it("adds it at the end when a stage begins", () => {
    const ops = stageRuleOps(route([pairRule]), "HTTPRoute", pair, desired, undefined);
    assert.deepEqual(ops, [
      { op: "add", path: "/spec/rules/-", value: stageRule("HTTPRoute", pairRule, 1, header) },
    ]);
  });

  void it("does nothing when the rule for this stage is there (compared by stage, not by defaulted fields)", () => {
    const stored = { ...stageRule("HTTPRoute", pairRule, 1, header), timeouts: { request: "10s" } };
    assert.deepEqual(stageRuleOps(route([pairRule, stored]), "HTTPRoute", pair, desired, owned), []);
  });

  void it("replaces it for the next stage, guarded by its name", () => {
    const stored = stageRule("HTTPRoute", pairRule, 1, header);
    const next = { index: 1, stage: { match: { pathPrefix: "/beta" } } as Stage };
    const ops = stageRuleOps(route([pairRule, { name: "other" }, stored]), "HTTPRoute", pair, next, owned);
    assert.deepEqual(ops[0], { op: "test", path: "/spec/rules/2/name", value: STAGE_RULE_NAME });
    assert.equal(ops[1]!.op, "replace");
    assert.equal(ops[1]!.path, "/spec/rules/2");
  });

  void it("removes only its own rule when the stages end", () => {
    const stored = stageRule("HTTPRoute", pairRule, 1, header);
    assert.deepEqual(stageRuleOps(route([pairRule, stored]), "HTTPRoute", pair, undefined, owned), [
      { op: "test", path: "/spec/rules/1/name", value: STAGE_RULE_NAME },
      { op: "remove", path: "/spec/rules/1" },
    ]);
    // Someone else's rule of that name (the state does not record it): never removed, never replaced.
    assert.deepEqual(stageRuleOps(route([pairRule, stored]), "HTTPRoute", pair, undefined, undefined), []);
    assert.throws(
      () => stageRuleOps(route([pairRule, stored]), "HTTPRoute", pair, desired, undefined),
      (e: unknown) => e instanceof RouteError && /does not record as its own/.test(e.message),
    );
    // Recorded but gone (someone deleted it): nothing to remove.
    assert.deepEqual(stageRuleOps(route([pairRule]), "HTTPRoute", pair, undefined, owned), []);
  });
});

void describe("App Mesh: the owned route in a VirtualRouter", () => {
  const pairRoute = {
    name: "main",
    priority: 10,
    httpRoute: {
      match: { prefix: "/", headers: [{ name: "x-tenant", match: { exact: "a" } }] },
      action: {
        weightedTargets: [
          { virtualNodeRef: { name: "v1" }, weight: 90 },
          { virtualNodeRef: { name: "v2" }, weight: 10 },
        ],
      },
      timeout: { perRequest: { unit: "s", value: 5 } },
    },
  };

  void it("copies the pair's route, one priority higher, the match narrowed, the canary its only target", () => {
    const r = appMeshStageRoute(pairRoute, "httpRoute", 1, header, "VirtualRouter shop/r");
    assert.deepEqual(r, {
      name: STAGE_RULE_NAME,
      priority: 9,
      httpRoute: {
        match: {
          prefix: "/",
          headers: [
            { name: "x-tenant", match: { exact: "a" } },
            { name: "x-canary", match: { exact: "always" } },
          ],
        },
        action: { weightedTargets: [{ virtualNodeRef: { name: "v2" }, weight: 1 }] },
        timeout: { perRequest: { unit: "s", value: 5 } },
      },
    });
  });

  void it("query, prefix and cookie; no priority counts as 1000; priority 0 cannot be preceded", () => {
    const q = appMeshStageRoute(
      pairRoute,
      "httpRoute",
      1,
      { match: { query: { name: "v", value: "2" } } },
      "vr",
    );
    assert.deepEqual((q.httpRoute as { match: unknown }).match, {
      prefix: "/",
      headers: [{ name: "x-tenant", match: { exact: "a" } }],
      queryParameters: [{ name: "v", match: { exact: "2" } }],
    });
    const p = appMeshStageRoute(pairRoute, "httpRoute", 1, { match: { pathPrefix: "/api/v2" } }, "vr");
    assert.equal((p.httpRoute as { match: { prefix: string } }).match.prefix, "/api/v2");
    const { priority: _p, ...noPriority } = pairRoute;
    assert.equal(appMeshStageRoute(noPriority, "httpRoute", 1, header, "vr").priority, 999);
    assert.throws(
      () => appMeshStageRoute({ ...pairRoute, priority: 0 }, "httpRoute", 1, header, "vr"),
      (e: unknown) => e instanceof RouteError && /priority 0/.test(e.message),
    );
    assert.throws(
      () => appMeshStageRoute(pairRoute, "grpcRoute", 1, { match: { pathPrefix: "/x" } }, "vr"),
      RouteError,
    );
  });
});

void describe("App Mesh: a gRPC route's stage matches metadata", () => {
  void it("a header (or cookie) goes to match.metadata: a gRPC route has no headers, which the API server prunes", () => {
    const grpc = {
      grpcRoute: {
        match: { serviceName: "shop.Cart", metadata: [{ name: "x-tenant", match: { exact: "a" } }] },
        action: {
          weightedTargets: [
            { virtualNodeRef: { name: "v1" }, weight: 100 },
            { virtualNodeRef: { name: "v2" }, weight: 0 },
          ],
        },
      },
    };
    const r = appMeshStageRoute(grpc, "grpcRoute", 1, header, "vr") as {
      grpcRoute: { match: Record<string, unknown> };
    };
    assert.deepEqual(r.grpcRoute.match, {
      serviceName: "shop.Cart",
      metadata: [
        { name: "x-tenant", match: { exact: "a" } },
        { name: "x-canary", match: { exact: "always" } },
      ],
    });
    assert.equal("headers" in r.grpcRoute.match, false);
  });
});

void describe("App Mesh: the weighted GatewayRoute's stage is a GatewayRoute of rolloutd's own", () => {
  const user: KObject = {
    apiVersion: "appmesh.k8s.aws/v1beta1",
    kind: "GatewayRoute",
    metadata: {
      namespace: "shop",
      name: "web",
      uid: "u-1",
      labels: { gateway: "ingress" },
      annotations: { a: "b" },
    },
    spec: {
      awsName: "web_shop",
      priority: 20,
      virtualGatewayRef: { name: "ingress", uid: "g" },
      httpRoute: {
        match: { prefix: "/", hostname: { exact: "shop.example" } },
        action: {
          weightedTargets: [
            { targetRef: { virtualServiceRef: { name: "v1" }, weight: 90 } },
            { targetRef: { virtualServiceRef: { name: "v2" }, weight: 10 } },
          ],
          rewrite: { prefix: { defaultPrefix: "DISABLED" } },
        },
      },
    },
  };
  const at = { index: 0, stage: header };

  void it("copies the user's GatewayRoute (labels, gateway, rewrite), narrows the match, one priority higher, the canary alone", () => {
    assert.equal(gatewayRouteStageName("web"), "web-rolloutd-stage");
    const o = gatewayRouteStageObject(user, "httpRoute", 1, at, "gr");
    assert.deepEqual(o.metadata, {
      name: "web-rolloutd-stage",
      namespace: "shop",
      labels: { gateway: "ingress" },
      annotations: { "rolloutd.dev/stage": "0" },
      ownerReferences: [
        {
          apiVersion: "appmesh.k8s.aws/v1beta1",
          kind: "GatewayRoute",
          name: "web",
          uid: "u-1",
          controller: true,
        },
      ],
    });
    assert.deepEqual(o.spec, {
      priority: 19,
      virtualGatewayRef: { name: "ingress", uid: "g" },
      httpRoute: {
        match: {
          prefix: "/",
          hostname: { exact: "shop.example" },
          headers: [{ name: "x-canary", match: { exact: "always" } }],
        },
        action: {
          // The weight where the user's form keeps it (inside targetRef here), at full weight.
          weightedTargets: [{ targetRef: { virtualServiceRef: { name: "v2" }, weight: 100 } }],
          rewrite: { prefix: { defaultPrefix: "DISABLED" } },
        },
      },
    });
    assert.ok(ownedBy(o, user));
    assert.equal(stageOfObject(o), 0);
    // Someone else's object of that name, or one controlled by another object, is not rolloutd's.
    assert.ok(!ownedBy({ metadata: { name: "web-rolloutd-stage" } }, user));
    assert.ok(!ownedBy(o, { metadata: { uid: "u-2" } }));
  });

  void it("query and path prefix on httpRoute; priority 0 cannot be preceded; no priority counts as 1000", () => {
    const q = gatewayRouteStageObject(
      user,
      "httpRoute",
      1,
      { index: 1, stage: { match: { query: { name: "v", value: "2" } } } },
      "gr",
    );
    assert.deepEqual((q.spec as { httpRoute: { match: unknown } }).httpRoute.match, {
      prefix: "/",
      hostname: { exact: "shop.example" },
      queryParameters: [{ name: "v", match: { exact: "2" } }],
    });
    const p = gatewayRouteStageObject(
      user,
      "httpRoute",
      1,
      { index: 1, stage: { match: { pathPrefix: "/api/v2" } } },
      "gr",
    );
    assert.equal((p.spec as { httpRoute: { match: { prefix: string } } }).httpRoute.match.prefix, "/api/v2");
    const spec = user.spec as Record<string, unknown>;
    assert.throws(
      () => gatewayRouteStageObject({ ...user, spec: { ...spec, priority: 0 } }, "httpRoute", 1, at, "gr"),
      (e: unknown) => e instanceof RouteError && /priority 0/.test(e.message),
    );
    const { priority: _p, ...noPriority } = spec;
    assert.equal(
      (
        gatewayRouteStageObject({ ...user, spec: noPriority }, "httpRoute", 1, at, "gr").spec as {
          priority: number;
        }
      ).priority,
      999,
    );
  });
});
