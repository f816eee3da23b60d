/**
 * What the controller's unit tests drive: the policy shop/web on an App Mesh VirtualRouter, blue → green, its
 * route, and a rollout at its first step.
 */
import type { RolloutState } from "../../../src/contract.ts";
import type { JsonPatchOp } from "../../../src/kube/access.ts";
import type { CacheFreshness } from "../../../src/kube/cache.ts";
import type { KObject, ObjectRef } from "../../../src/kube/kinds.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";

export const SHOP_WEB: RolloutPolicy = {
  key: "shop/web",
  name: "web",
  namespace: "shop",
  target: { kind: "VirtualRouter", name: "web" },
  stable: "blue",
  canary: "green",
  deployments: {},
  steps: [10, 50, 100],
  intervalMs: 60_000,
  routeReadyTimeoutMs: 30_000,
  source: { file: "web.yaml", line: 1, column: 1 },
};

export const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

/** The JSON pointers of the route's two weights (blue, green). */
export const P0 = "/spec/routes/0/httpRoute/action/weightedTargets/0/weight";
export const P1 = "/spec/routes/0/httpRoute/action/weightedTargets/1/weight";

/** Step 1 of 3 at 10 %, its interval over at T0 + 60 s: its analysis is due. */
export const STEP_1: RolloutState = {
  v: 1,
  policy: "shop/web",
  phase: "Progressing",
  stable: "blue",
  canary: "green",
  revision: "r2",
  baseline: {},
  stepIndex: 0,
  canaryWeight: 10,
  applied: [
    { path: P0, backend: "blue", weight: 90 },
    { path: P1, backend: "green", weight: 10 },
  ],
  weightsWrittenAt: T0,
  stepStartedAt: T0,
  analysisDueAt: T0 + 60_000,
  failures: 0,
  noData: 0,
  errors: 0,
  tokens: {},
  message: "step 1/3",
  since: T0,
  updatedAt: T0,
};

/** shop/web's VirtualRouter: one route, blue and green at these weights. */
export function shopRouter(
  annotations: Record<string, string>,
  weights: [blue: number, green: number],
  resourceVersion: string,
): KObject {
  return {
    apiVersion: "appmesh.k8s.aws/v1beta2",
    kind: "VirtualRouter",
    metadata: { namespace: "shop", name: "web", resourceVersion, annotations },
    spec: {
      routes: [
        {
          name: "r",
          httpRoute: {
            match: { prefix: "/" },
            action: {
              weightedTargets: [
                { virtualNodeRef: { name: "blue" }, weight: weights[0] },
                { virtualNodeRef: { name: "green" }, weight: weights[1] },
              ],
            },
          },
        },
      ],
    },
  };
}

/**
 * `obj` patched as the API server would for these tests: adds and replaces applied, the guards ("test") and
 * removals skipped, and the resourceVersion bumped. A copy; `obj` is left as it was.
 */
export function applyPatch(obj: KObject, ops: readonly JsonPatchOp[]): KObject {
  const out = structuredClone(obj);
  for (const op of ops) {
    if (op.op === "remove" || op.op === "test" || op.path === "/metadata/resourceVersion") continue;
    const parts = op.path
      .split("/")
      .slice(1)
      .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    let at = out as unknown as Record<string, unknown>;
    for (const p of parts.slice(0, -1)) at = at[p] as Record<string, unknown>;
    at[parts.at(-1)!] = op.value;
  }
  out.metadata!.resourceVersion = String(Number(out.metadata!.resourceVersion ?? "0") + 1);
  return out;
}

export const SHOP_REF: ObjectRef = { kind: "VirtualRouter", namespace: "shop", name: "web" };

/**
 * shop/web's route as the only object, for a controller's cache and writer: reads see `route`, each patch
 * (recorded in `writes`) replaces it with applyPatch's result once `beforeAnswer` (the API server's time) is over.
 */
export function routeStore(route: KObject, beforeAnswer?: () => Promise<void> | void) {
  const store = {
    route,
    writes: [] as JsonPatchOp[][],
    objects: {
      get: (kind: string, ns: string, name: string): KObject | undefined =>
        kind === SHOP_REF.kind && ns === SHOP_REF.namespace && name === SHOP_REF.name
          ? store.route
          : undefined,
      freshness: (): CacheFreshness => "synced",
    },
    writer: {
      jsonPatch: async (_ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> => {
        store.writes.push(ops);
        await beforeAnswer?.();
        store.route = applyPatch(store.route, ops);
        return store.route;
      },
      create: (): Promise<KObject> => Promise.reject(new Error("no object is created here")),
      delete: (): Promise<void> => Promise.reject(new Error("no object is deleted here")),
    },
  };
  return store;
}

/** Lets a controller's queue run: a few turns of the event loop. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}
