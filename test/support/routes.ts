/**
 * The three route families under test, behind one small interface, so every
 * engine scenario runs unchanged against each: App Mesh GatewayRoute in the
 * weighted form, App Mesh as AWS ships it (GatewayRoute → VirtualService →
 * VirtualRouter), and Gateway API HTTPRoute.
 */
import { PatchStrategy, Watch, setHeaderOptions } from "@kubernetes/client-node";
import type { KindName, KObject } from "../../src/kube/kinds.ts";
import { createObject, getObject, jsonPatch, type Cluster } from "./cluster.ts";
import { ANNOTATIONS, type RolloutState, decodeState } from "../../src/contract.ts";

export interface RouteFamily {
  name: string;
  /** The kind the policy names. */
  targetKind: "GatewayRoute" | "VirtualRouter" | "HTTPRoute" | "GRPCRoute";
  /** The kind carrying the weights and the state. */
  weightsKind: KindName;
  create(c: Cluster, ns: string, route: string, stable: string, canary: string): Promise<void>;
  weightsObjectName(route: string): string;
  /** Weights of every backend in the first list/rule holding both, by name. */
  weights(obj: KObject): Record<string, number>;
  /** A JSON Patch by another writer setting the pair's weights. */
  foreignWeights(c: Cluster, ns: string, route: string, stable: number, canary: number): Promise<void>;
  /** Something no rollout may touch: a rule/route/match the user owns. */
  unrelated(obj: KObject): unknown;
  editUnrelated(c: Cluster, ns: string, route: string): Promise<void>;
}

type Json = Record<string, any>;

export const weightedGatewayRoute: RouteFamily = {
  name: "App Mesh GatewayRoute (weighted form)",
  targetKind: "GatewayRoute",
  weightsKind: "GatewayRoute",
  async create(c, ns, route, stable, canary) {
    await createObject(c, "GatewayRoute", {
      metadata: { name: route, namespace: ns },
      spec: {
        httpRoute: {
          match: { prefix: "/" },
          action: {
            weightedTargets: [
              { targetRef: { virtualServiceRef: { name: stable } }, weight: 90 },
              { targetRef: { virtualServiceRef: { name: canary } }, weight: 0 },
              { targetRef: { virtualServiceRef: { name: "legacy" } }, weight: 10 },
            ],
          },
        },
      },
    });
  },
  weightsObjectName: (route) => route,
  weights: (obj) =>
    Object.fromEntries(
      ((obj.spec as Json).httpRoute.action.weightedTargets as Json[]).map((t) => [
        t.targetRef.virtualServiceRef.name as string,
        t.weight as number,
      ]),
    ),
  async foreignWeights(c, ns, route, stable, canary) {
    await jsonPatch(c, "GatewayRoute", ns, route, [
      { op: "replace", path: "/spec/httpRoute/action/weightedTargets/0/weight", value: stable },
      { op: "replace", path: "/spec/httpRoute/action/weightedTargets/1/weight", value: canary },
    ]);
  },
  unrelated: (obj) => [
    (obj.spec as Json).httpRoute.match,
    (obj.spec as Json).httpRoute.action.weightedTargets[2],
  ],
  async editUnrelated(c, ns, route) {
    await jsonPatch(c, "GatewayRoute", ns, route, [
      { op: "replace", path: "/spec/httpRoute/match/prefix", value: "/shop" },
    ]);
  },
};

export const appMeshVirtualRouter: RouteFamily = {
  name: "App Mesh as shipped (GatewayRoute → VirtualService → VirtualRouter)",
  targetKind: "GatewayRoute",
  weightsKind: "VirtualRouter",
  async create(c, ns, route, stable, canary) {
    await createObject(c, "VirtualRouter", {
      metadata: { name: `${route}-router`, namespace: ns },
      spec: {
        listeners: [{ portMapping: { port: 8080, protocol: "http" } }],
        routes: [
          {
            name: "admin",
            httpRoute: {
              match: { prefix: "/admin" },
              action: { weightedTargets: [{ virtualNodeRef: { name: stable }, weight: 100 }] },
            },
          },
          {
            name: "main",
            httpRoute: {
              match: { prefix: "/" },
              action: {
                weightedTargets: [
                  { virtualNodeRef: { name: stable }, weight: 100 },
                  { virtualNodeRef: { name: canary }, weight: 0 },
                ],
              },
            },
          },
        ],
      },
    });
    await createObject(c, "VirtualService", {
      metadata: { name: `${route}-svc`, namespace: ns },
      spec: {
        awsName: `${route}.${ns}.svc.cluster.local`,
        provider: { virtualRouter: { virtualRouterRef: { name: `${route}-router` } } },
      },
    });
    await createObject(c, "GatewayRoute", {
      metadata: { name: route, namespace: ns },
      spec: {
        httpRoute: {
          match: { prefix: "/" },
          action: { target: { virtualService: { virtualServiceRef: { name: `${route}-svc` } } } },
        },
      },
    });
  },
  weightsObjectName: (route) => `${route}-router`,
  weights: (obj) =>
    Object.fromEntries(
      ((obj.spec as Json).routes[1].httpRoute.action.weightedTargets as Json[]).map((t) => [
        t.virtualNodeRef.name as string,
        t.weight as number,
      ]),
    ),
  async foreignWeights(c, ns, route, stable, canary) {
    await jsonPatch(c, "VirtualRouter", ns, `${route}-router`, [
      { op: "replace", path: "/spec/routes/1/httpRoute/action/weightedTargets/0/weight", value: stable },
      { op: "replace", path: "/spec/routes/1/httpRoute/action/weightedTargets/1/weight", value: canary },
    ]);
  },
  unrelated: (obj) => [
    (obj.spec as Json).routes[0],
    (obj.spec as Json).routes[1].httpRoute.match,
    (obj.spec as Json).listeners,
  ],
  async editUnrelated(c, ns, route) {
    await jsonPatch(c, "VirtualRouter", ns, `${route}-router`, [
      { op: "replace", path: "/spec/routes/0/httpRoute/match/prefix", value: "/ops" },
    ]);
  },
};

export const httpRoute: RouteFamily = {
  name: "Gateway API HTTPRoute",
  targetKind: "HTTPRoute",
  weightsKind: "HTTPRoute",
  async create(c, ns, route, stable, canary) {
    await createObject(c, "HTTPRoute", {
      metadata: { name: route, namespace: ns },
      spec: {
        parentRefs: [{ name: "gw" }],
        rules: [
          {
            matches: [{ path: { type: "PathPrefix", value: "/static" } }],
            backendRefs: [{ name: "static", port: 80 }],
          },
          {
            matches: [{ path: { type: "PathPrefix", value: "/" } }],
            filters: [
              {
                type: "RequestHeaderModifier",
                requestHeaderModifier: { add: [{ name: "x-team", value: "shop" }] },
              },
            ],
            // The stable relies on the default weight (1): the first write must add the field.
            backendRefs: [
              { name: stable, port: 80 },
              { name: canary, port: 80, weight: 0 },
            ],
          },
        ],
      },
    });
  },
  weightsObjectName: (route) => route,
  weights: (obj) =>
    Object.fromEntries(
      ((obj.spec as Json).rules[1].backendRefs as Json[]).map((b) => [
        b.name as string,
        (b.weight as number | undefined) ?? 1,
      ]),
    ),
  async foreignWeights(c, ns, route, stable, canary) {
    await jsonPatch(c, "HTTPRoute", ns, route, [
      { op: "add", path: "/spec/rules/1/backendRefs/0/weight", value: stable },
      { op: "add", path: "/spec/rules/1/backendRefs/1/weight", value: canary },
    ]);
  },
  unrelated: (obj) => [
    (obj.spec as Json).rules[0],
    (obj.spec as Json).rules[1].matches,
    (obj.spec as Json).rules[1].filters,
    (obj.spec as Json).parentRefs,
  ],
  async editUnrelated(c, ns, route) {
    await jsonPatch(c, "HTTPRoute", ns, route, [
      { op: "replace", path: "/spec/rules/0/matches/0/path/value", value: "/assets" },
    ]);
  },
};

export const grpcRoute: RouteFamily = {
  name: "Gateway API GRPCRoute",
  targetKind: "GRPCRoute",
  weightsKind: "GRPCRoute",
  async create(c, ns, route, stable, canary) {
    await createObject(c, "GRPCRoute", {
      metadata: { name: route, namespace: ns },
      spec: {
        parentRefs: [{ name: "gw", sectionName: "grpc" }],
        rules: [
          {
            matches: [{ method: { service: "search.v1.Search", method: "Query" } }],
            backendRefs: [
              { name: stable, port: 9000, weight: 100 },
              { name: canary, port: 9000, weight: 0 },
            ],
          },
          {
            matches: [{ method: { service: "search.v1.Admin" } }],
            backendRefs: [{ name: "search-admin", port: 9000 }],
          },
        ],
      },
    });
  },
  weightsObjectName: (route) => route,
  weights: (obj) =>
    Object.fromEntries(
      ((obj.spec as Json).rules[0].backendRefs as Json[]).map((b) => [
        b.name as string,
        (b.weight as number | undefined) ?? 1,
      ]),
    ),
  async foreignWeights(c, ns, route, stable, canary) {
    await jsonPatch(c, "GRPCRoute", ns, route, [
      { op: "replace", path: "/spec/rules/0/backendRefs/0/weight", value: stable },
      { op: "replace", path: "/spec/rules/0/backendRefs/1/weight", value: canary },
    ]);
  },
  unrelated: (obj) => [
    (obj.spec as Json).rules[1],
    (obj.spec as Json).rules[0].matches,
    (obj.spec as Json).parentRefs,
  ],
  async editUnrelated(c, ns, route) {
    await jsonPatch(c, "GRPCRoute", ns, route, [
      { op: "replace", path: "/spec/rules/1/matches/0/method/service", value: "search.v1.Ops" },
    ]);
  },
};

export const FAMILIES = [weightedGatewayRoute, appMeshVirtualRouter, httpRoute, grpcRoute];

export function stateOf(obj: KObject): RolloutState | undefined {
  const raw = obj.metadata?.annotations?.[ANNOTATIONS.state];
  // The daemon's own decoder: it restores +Inf, -Inf and NaN, which JSON cannot write as numbers.
  return raw ? decodeState(raw) : undefined;
}

export async function readWeightsObject(
  c: Cluster,
  fam: RouteFamily,
  ns: string,
  route: string,
): Promise<KObject> {
  return getObject(c, fam.weightsKind, ns, fam.weightsObjectName(route));
}

/**
 * Plays the Gateway API implementation: for every HTTPRoute/GRPCRoute in the
 * namespaces it is given, reports each parent Accepted and ResolvedRefs for
 * the current generation. `hold` lets a test withhold acceptance.
 */
export class FakeGatewayStatus {
  private readonly reqs: Array<{ abort(): void }> = [];
  private stopped = false;
  readonly holdNamespaces = new Set<string>();

  constructor(private readonly c: Cluster) {}

  async start(): Promise<void> {
    for (const plural of ["httproutes", "grpcroutes"]) await this.watch(plural);
  }

  private async watch(plural: string): Promise<void> {
    if (this.stopped) return;
    const watch = new Watch(this.c.kc);
    this.reqs.push(
      await watch.watch(
        `/apis/gateway.networking.k8s.io/v1/${plural}`,
        {},
        (_type, obj: KObject) => void this.accept(obj, plural).catch(() => {}),
        // The client ends a watch after 30 s without events: watch again (a relist; accept() is idempotent).
        () => void setTimeout(() => void this.watch(plural).catch(() => {}), 100).unref(),
      ),
    );
  }

  private async accept(obj: KObject, plural: string): Promise<void> {
    const ns = obj.metadata!.namespace!;
    if (this.holdNamespaces.has(ns)) return;
    const gen = obj.metadata!.generation!;
    const parents = ((obj.spec as Json).parentRefs ?? []) as Json[];
    const status = (obj.status as Json | undefined)?.parents as Json[] | undefined;
    const done = status?.every((p) => (p.conditions as Json[]).every((c) => c.observedGeneration >= gen));
    if (done && status?.length === parents.length) return;
    const now = new Date().toISOString();
    const cond = (type: string) => ({
      type,
      status: "True",
      reason: type,
      message: "",
      observedGeneration: gen,
      lastTransitionTime: now,
    });
    await this.c.custom.patchNamespacedCustomObjectStatus(
      {
        group: "gateway.networking.k8s.io",
        version: "v1",
        namespace: ns,
        plural,
        name: obj.metadata!.name!,
        body: {
          status: {
            parents: parents.map((p) => ({
              parentRef: p,
              controllerName: "example.com/test-gateway",
              conditions: [cond("Accepted"), cond("ResolvedRefs")],
            })),
          },
        },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  /** Re-sends acceptance for one route (after a test stopped holding its namespace). */
  async kick(ns: string, name: string, kind: "HTTPRoute" | "GRPCRoute" = "HTTPRoute"): Promise<void> {
    await this.accept(
      await getObject(this.c, kind, ns, name),
      kind === "HTTPRoute" ? "httproutes" : "grpcroutes",
    );
  }

  stop(): void {
    this.stopped = true;
    for (const r of this.reqs) r.abort();
  }
}

/** The name of the blue/green preview route createPreviewRoute makes. */
export const PREVIEW = "web-preview";

/**
 * A blue/green preview route (an HTTPRoute) as a user would write it beside
 * the scenario's route: its own hostname, two rules, a filter, the pair
 * (web-v1 at the default weight, web-v2 at 0) in the second rule.
 */
export async function createPreviewRoute(c: Cluster, ns: string): Promise<void> {
  await createObject(c, "HTTPRoute", {
    metadata: {
      name: PREVIEW,
      namespace: ns,
      labels: { team: "shop" },
      annotations: { "example.com/owner": "shop-team" },
    },
    spec: {
      parentRefs: [{ name: "gw" }],
      hostnames: ["preview.shop.example"],
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/healthz" } }],
          backendRefs: [{ name: "web-v1", port: 80 }],
        },
        {
          matches: [{ path: { type: "PathPrefix", value: "/" } }],
          filters: [
            {
              type: "RequestHeaderModifier",
              requestHeaderModifier: { set: [{ name: "x-preview", value: "yes" }] },
            },
          ],
          backendRefs: [
            { name: "web-v1", port: 80 },
            { name: "web-v2", port: 80, weight: 0 },
          ],
        },
      ],
    },
  });
}

/** The pair's weights in the preview route's second rule (an absent weight is 1). */
export const previewWeights = (o: KObject): Record<string, number> =>
  Object.fromEntries(
    ((o.spec as Json).rules[1].backendRefs as Json[]).map((b) => [
      b.name as string,
      (b.weight as number | undefined) ?? 1,
    ]),
  );

export const getPreviewRoute = (c: Cluster, ns: string): Promise<KObject> =>
  getObject(c, "HTTPRoute", ns, PREVIEW);
