/**
 * App Mesh (appmesh.k8s.aws, whichever version the cluster serves: AWS's
 * v1beta2, or the design document's v1beta1; see kube/discovery.ts), in the
 * two shapes users have:
 *
 * - the weighted GatewayRoute of the user's design document (NOT in AWS's
 *   CRD, which requires action.target and prunes weightedTargets):
 *   spec.{http,http2,grpc}Route.action.weightedTargets[].targetRef.virtualServiceRef
 *   with `weight` inside targetRef, as the document writes it, or beside it;
 * - App Mesh as AWS ships it: a GatewayRoute has one target and no weights, so
 *   we follow action.target.virtualService.virtualServiceRef → the
 *   VirtualService's spec.provider.virtualRouter.virtualRouterRef → the
 *   VirtualRouter, whose spec.routes[].{http,http2,grpc,tcp}Route.action.weightedTargets[]
 *   (virtualNodeRef, weight) carry the weights. A policy may also name the
 *   VirtualRouter directly. An ARN instead of a ref (virtualServiceARN,
 *   virtualRouterARN) names an object outside the cluster: rolloutd cannot
 *   follow it and says so.
 *
 * Weights are relative integers 0..100 with no rule on a list's sum (others'
 * lists may sum past 100); each list's pair moves within its own total
 * (weights.ts). A target is one of the pair only when its ref names that
 * object in that namespace (the policy's explicit namespace for the backend,
 * else the weights object's; a ref without namespace is in the referencing
 * object's). Targets named by ARN are never the pair.
 */
import { KINDS, apiVersionOf, type ObjectRef, type KObject } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { asArray, asNumber, asRecord, asString } from "./locations.ts";
import { PatchRouter } from "./patchrouter.ts";
import { ANNOTATIONS, annotationPath } from "../contract.ts";
import {
  RouteError,
  type PairWeight,
  type RouteView,
  type StageObjectPlan,
  type StageObjectWrite,
} from "./types.ts";
import { APP_MESH_MAX_WEIGHT } from "./weights.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import {
  appMeshStageRoute,
  gatewayRouteStageName,
  gatewayRouteStageObject,
  ownedBy,
  ownedRuleOps,
  stageOfObject,
  type OwnedRule,
  type Stage,
} from "./stagerule.ts";

const GATEWAY_ROUTE_KINDS = ["httpRoute", "http2Route", "grpcRoute"] as const;
const VIRTUAL_ROUTER_ROUTE_KINDS = ["httpRoute", "http2Route", "grpcRoute", "tcpRoute"] as const;

type Roles = { stable: string; canary: string };

interface Lists {
  /** The object holding the lists, for messages. */
  what: string;
  /** Namespace a ref without one means. */
  namespace: string;
  lists: Array<{ path: string; items: unknown[] }>;
  /** The ref of one item ({name, namespace}), or undefined when it has none (an ARN). */
  refOf: (item: Record<string, unknown>) => Record<string, unknown> | undefined;
  /** Where in one item its weight lives, relative to the item ("weight", or the document's "targetRef/weight"). */
  weightField?: (item: Record<string, unknown>, where: string) => string;
  deps: ObjectRef[];
}

/**
 * The design document puts `weight` inside `targetRef`, next to
 * virtualServiceRef; rolloutd's earlier form has it beside targetRef. Either
 * is read and stepped where it is; a field that is absent in both places is
 * added beside (the form of AWS's weightedTargets). Both at once is
 * ambiguous: rolloutd says so instead of guessing which one the mesh reads.
 */
function gatewayRouteWeightField(src: { what: string; deps: ObjectRef[] }) {
  return (item: Record<string, unknown>, where: string): string => {
    const inside = asRecord(item.targetRef)?.weight !== undefined;
    const beside = item.weight !== undefined;
    if (inside && beside) {
      throw new RouteError(
        `${src.what} ${where} has a weight both beside and inside targetRef; ` +
          "rolloutd cannot tell which one the mesh reads: keep one",
        undefined,
        src.deps,
      );
    }
    return inside ? "targetRef/weight" : "weight";
  };
}

/** An entry's weight wherever it is; an entry without one carries no traffic. */
function appMeshWeight(item: Record<string, unknown>): number {
  return asNumber(item.weight, asNumber(asRecord(item.targetRef)?.weight, 0));
}

/** Every weight field of the pair, in each weightedTargets list holding both backends. */
function pairIn(src: Lists, policy: RolloutPolicy, roles: Roles): PairWeight[] {
  const nsOf = (backend: string) => policy.backendNamespaces?.[backend] ?? src.namespace;
  const pair: PairWeight[] = [];
  for (const list of src.lists) {
    const found: Record<string, number[]> = { [roles.stable]: [], [roles.canary]: [] };
    list.items.forEach((raw, i) => {
      const ref = src.refOf(asRecord(raw) ?? {});
      const name = asString(ref?.name);
      if (!name || !(name in found)) return;
      if ((asString(ref?.namespace) || src.namespace) !== nsOf(name)) return;
      found[name]!.push(i);
    });
    const s = found[roles.stable]!;
    const c = found[roles.canary]!;
    if (s.length > 1 || c.length > 1) {
      throw new RouteError(
        `${src.what} ${list.path} names ${s.length > 1 ? roles.stable : roles.canary} in more than one weighted target; ` +
          "rolloutd cannot tell which one to step",
        undefined,
        src.deps,
      );
    }
    if (s.length !== 1 || c.length !== 1) continue;
    // In the order of the list, as read.
    for (const [backend, i] of [[roles.stable, s[0]!] as const, [roles.canary, c[0]!] as const].sort(
      (a, b) => a[1] - b[1],
    )) {
      const item = asRecord(list.items[i]) ?? {};
      const field = src.weightField?.(item, `${list.path}/${i}`) ?? "weight";
      pair.push({
        backend,
        path: `${list.path}/${i}/${field}`,
        weight: appMeshWeight(item),
      });
    }
  }
  return pair;
}

export class AppMeshRouter extends PatchRouter {
  protected readonly maxWeight = APP_MESH_MAX_WEIGHT;
  /** Upstream requires the field; an entry without one carries no traffic. */
  protected readonly defaultWeight = 0;

  protected override entryWeight(entry: Record<string, unknown>): number {
    return appMeshWeight(entry);
  }

  /**
   * Request stages in a VirtualRouter (named directly, or followed from a
   * GatewayRoute): one route rolloutd owns, before the pair's (stagerule.ts).
   * On the weighted GatewayRoute form the stage is an object of its own
   * (stageObject), and nothing in the user's GatewayRoute changes.
   */
  stageOps(
    view: RouteView,
    roles: Roles,
    desired: { index: number; stage: Stage } | undefined,
    owned: OwnedRule | undefined,
  ): JsonPatchOp[] {
    if (view.weightsRef.kind !== "VirtualRouter") return [];
    const what = `VirtualRouter ${view.weightsRef.namespace}/${view.weightsRef.name}`;
    const routes = asArray(asRecord(view.object.spec)?.routes);
    return ownedRuleOps(
      { path: "/spec/routes", items: routes, what },
      (stage) => {
        const m = this.canaryAt(view, roles, /^\/spec\/routes\/(\d+)\//);
        if (!m)
          throw new RouteError(
            `${what}: the pair is in a TCP route; request stages need an HTTP or gRPC route`,
          );
        return appMeshStageRoute(asRecord(routes[m.at]) ?? {}, m.routeKind, m.target, stage, what);
      },
      desired,
      owned,
    );
  }

  /**
   * The weighted GatewayRoute form: a GatewayRoute per stage, rolloutd's own
   * (stagerule.ts gatewayRouteStageObject). Ownership needs both the state's
   * record and the object's controlling owner reference to the user's
   * GatewayRoute: an object of that name without them is never touched.
   */
  stageObject(
    view: RouteView,
    roles: Roles,
    desired: { index: number; stage: Stage } | undefined,
    owned: OwnedRule | undefined,
  ): StageObjectPlan | undefined {
    if (view.weightsRef.kind !== "GatewayRoute") return undefined;
    const { namespace } = view.weightsRef;
    const name = gatewayRouteStageName(view.weightsRef.name);
    const ref: ObjectRef = { kind: "GatewayRoute", namespace, name };
    const what = `GatewayRoute ${namespace}/${name}`;
    const found = this.reader.get("GatewayRoute", namespace, name);
    const recorded = owned?.name === name;
    const ours = recorded && found !== undefined && ownedBy(found, view.object);
    const foreign =
      found && !ours
        ? `${what} exists but rolloutd's state does not record it as its own (or it has no controlling owner ` +
          `reference to GatewayRoute ${namespace}/${view.weightsRef.name}); rolloutd will not replace or delete it`
        : undefined;
    const base = { name, ref, present: ours, ...(foreign && recorded ? { foreign } : {}) };
    if (!desired) {
      if (!recorded) return { name, ref, present: false };
      if (ours) {
        const { uid = "", resourceVersion = "" } = found.metadata ?? {};
        return { ...base, write: { op: "delete", ref, uid, resourceVersion } };
      }
      return { ...base, write: { op: "forget" } };
    }
    // A stage does not begin over it; one already under way goes on (a pause or an abort is never held up by it).
    if (foreign && !recorded)
      throw new RouteError(
        `${foreign}. Rename or remove it to run request stages`,
        undefined,
        view.dependsOn,
      );
    if (foreign) return base;
    if (!recorded) return base; // The decision records it first; a later pass creates it.
    const m = this.canaryAt(view, roles, /^\/spec\//);
    if (!m) throw new Error(`${view.weightsRef.name}: no canary weight found`);
    const want = gatewayRouteStageObject(view.object, m.routeKind, m.target, desired, what);
    if (!found) return { ...base, write: { op: "create", ref, object: want } };
    if (stageOfObject(found) === desired.index) return base;
    const { uid = "", resourceVersion = "" } = found.metadata ?? {};
    return {
      ...base,
      write: {
        op: "patch",
        ref,
        ops: [
          { op: "test", path: "/metadata/uid", value: uid },
          { op: "test", path: "/metadata/resourceVersion", value: resourceVersion },
          { op: "replace", path: "/spec", value: want.spec },
          {
            op: "add",
            path: annotationPath(ANNOTATIONS.stage),
            value: String(desired.index),
          },
        ],
      },
    };
  }

  async writeStageObject(write: Exclude<StageObjectWrite, { op: "forget" }>): Promise<KObject | undefined> {
    if (write.op === "create") return this.writer.create(write.ref, write.object);
    if (write.op === "patch") return this.writer.jsonPatch(write.ref, write.ops);
    await this.writer.delete(write.ref, { uid: write.uid, resourceVersion: write.resourceVersion });
    return undefined;
  }

  /** Where the pair's canary weight is: which route (of the list the prefix names), of which kind, which target. */
  private canaryAt(
    view: RouteView,
    roles: Roles,
    prefix: RegExp,
  ): { at: number; routeKind: "httpRoute" | "http2Route" | "grpcRoute"; target: number } | undefined {
    const first = view.pair.find((w) => w.backend === roles.canary);
    const rest = first && prefix.exec(first.path);
    if (!first || !rest) return undefined;
    const m = /^(httpRoute|http2Route|grpcRoute)\/action\/weightedTargets\/(\d+)\//.exec(
      first.path.slice(rest[0].length),
    );
    if (!m) return undefined;
    return {
      at: rest[1] !== undefined ? Number(rest[1]) : 0,
      routeKind: m[1] as "httpRoute" | "http2Route" | "grpcRoute",
      target: Number(m[2]),
    };
  }

  read(policy: RolloutPolicy, roles: Roles): RouteView {
    const ns = policy.namespace;
    const targetRef: ObjectRef = {
      kind: policy.target.kind === "VirtualRouter" ? "VirtualRouter" : "GatewayRoute",
      namespace: ns,
      name: policy.target.name,
    };
    const target = this.reader.get(targetRef.kind, ns, targetRef.name);
    if (!target)
      throw new RouteError(`${targetRef.kind} ${ns}/${targetRef.name} not found`, targetRef, [targetRef]);
    if (targetRef.kind === "VirtualRouter")
      return this.fromVirtualRouter(policy, target, target, [targetRef], roles);

    const what = `GatewayRoute ${ns}/${targetRef.name}`;
    const spec = asRecord(target.spec) ?? {};
    const routeKinds = GATEWAY_ROUTE_KINDS.filter((k) => asRecord(spec[k]));
    if (routeKinds.length === 0) {
      throw new RouteError(`${what} has none of spec.httpRoute, spec.http2Route, spec.grpcRoute`, undefined, [
        targetRef,
      ]);
    }
    // The weighted form of the design document: weights live on the GatewayRoute itself.
    const weightedLists = routeKinds
      .map((k) => ({ k, action: asRecord(asRecord(spec[k])?.action) }))
      .filter(({ action }) => Array.isArray(action?.weightedTargets))
      .map(({ k, action }) => ({
        path: `/spec/${k}/action/weightedTargets`,
        items: asArray(action?.weightedTargets),
      }));
    if (weightedLists.length) {
      const pair = pairIn(
        {
          what,
          namespace: target.metadata?.namespace ?? ns,
          lists: weightedLists,
          refOf: (it) => asRecord(asRecord(it.targetRef)?.virtualServiceRef),
          weightField: gatewayRouteWeightField({ what, deps: [targetRef] }),
          deps: [targetRef],
        },
        policy,
        roles,
      );
      if (!pair.length) {
        throw new RouteError(
          `${what} has no weightedTargets list with both virtual services ${roles.stable} and ${roles.canary}`,
          undefined,
          [targetRef],
        );
      }
      // A request stage's own GatewayRoute is read too: someone removing it wakes the policy.
      const stageRef: ObjectRef = {
        kind: "GatewayRoute",
        namespace: ns,
        name: gatewayRouteStageName(targetRef.name),
      };
      return this.view(target, target, targetRef, pair, [targetRef, stageRef]);
    }

    // As AWS ships it: follow the single target to the VirtualRouter.
    const action = asRecord(asRecord(spec[routeKinds[0]!])?.action);
    const virtualService = asRecord(asRecord(action?.target)?.virtualService);
    const vsRef = asRecord(virtualService?.virtualServiceRef);
    if (!vsRef?.name) {
      const arn = asString(virtualService?.virtualServiceARN);
      throw new RouteError(
        arn
          ? `${what}: spec.${routeKinds[0]}.action.target names its VirtualService by ARN (${arn}); ` +
              "rolloutd cannot follow an ARN, only a virtualServiceRef to a VirtualService in this cluster"
          : `${what}: spec.${routeKinds[0]}.action has neither weightedTargets nor target.virtualService.virtualServiceRef`,
        undefined,
        [targetRef],
      );
    }
    const vsKey: ObjectRef = {
      kind: "VirtualService",
      namespace: asString(vsRef.namespace) || ns,
      name: vsRef.name as string,
    };
    const vs = this.reader.get("VirtualService", vsKey.namespace, vsKey.name);
    const deps = [targetRef, vsKey];
    const vsWhat = `VirtualService ${vsKey.namespace}/${vsKey.name}`;
    if (!vs) throw new RouteError(`${vsWhat} (target of ${what}) not found`, vsKey, deps);
    const provider = asRecord(asRecord(vs.spec)?.provider);
    const router = asRecord(provider?.virtualRouter);
    const vrRefRaw = asRecord(router?.virtualRouterRef);
    if (!vrRefRaw?.name) {
      const arn = asString(router?.virtualRouterARN);
      throw new RouteError(
        arn
          ? `${vsWhat} names its VirtualRouter by ARN (spec.provider.virtualRouter.virtualRouterARN: ${arn}); ` +
              "rolloutd cannot follow an ARN to a router outside this cluster. Use a virtualRouterRef, or " +
              "name a VirtualRouter of this cluster in the policy (target.kind: VirtualRouter)"
          : `${vsWhat} is not backed by a VirtualRouter (spec.provider.virtualRouter.virtualRouterRef)` +
              (provider?.virtualNode ? " but by a single virtual node" : "") +
              "; weights need a VirtualRouter with weightedTargets",
        undefined,
        deps,
      );
    }
    const vrKey: ObjectRef = {
      kind: "VirtualRouter",
      namespace: asString(vrRefRaw.namespace) || vsKey.namespace,
      name: vrRefRaw.name as string,
    };
    deps.push(vrKey);
    const vr = this.reader.get("VirtualRouter", vrKey.namespace, vrKey.name);
    if (!vr)
      throw new RouteError(
        `VirtualRouter ${vrKey.namespace}/${vrKey.name} (provider of ${vsWhat}) not found`,
        vrKey,
        deps,
      );
    return this.fromVirtualRouter(policy, target, vr, deps, roles);
  }

  private fromVirtualRouter(
    policy: RolloutPolicy,
    target: KObject,
    vr: KObject,
    deps: ObjectRef[],
    roles: Roles,
  ): RouteView {
    const vrRef: ObjectRef = {
      kind: "VirtualRouter",
      namespace: vr.metadata!.namespace!,
      name: vr.metadata!.name!,
    };
    const lists: Array<{ path: string; items: unknown[] }> = [];
    asArray(asRecord(vr.spec)?.routes).forEach((raw, i) => {
      const route = asRecord(raw) ?? {};
      for (const k of VIRTUAL_ROUTER_ROUTE_KINDS) {
        const action = asRecord(asRecord(route[k])?.action);
        if (Array.isArray(action?.weightedTargets))
          lists.push({
            path: `/spec/routes/${i}/${k}/action/weightedTargets`,
            items: action.weightedTargets,
          });
      }
    });
    const what = `VirtualRouter ${vrRef.namespace}/${vrRef.name}`;
    const pair = pairIn(
      { what, namespace: vrRef.namespace, lists, refOf: (it) => asRecord(it.virtualNodeRef), deps },
      policy,
      roles,
    );
    if (!pair.length) {
      throw new RouteError(
        `${what} has no route whose weightedTargets include both virtual nodes ${roles.stable} and ${roles.canary}`,
        undefined,
        deps,
      );
    }
    return this.view(target, vr, vrRef, pair, deps);
  }

  private view(
    target: KObject,
    weightsObj: KObject,
    weightsRef: ObjectRef,
    pair: PairWeight[],
    deps: ObjectRef[],
  ): RouteView {
    return {
      target: {
        ...target,
        apiVersion: target.apiVersion ?? apiVersionOf(KINDS.GatewayRoute),
        kind: target.kind ?? "GatewayRoute",
      },
      weightsRef,
      pair,
      stateAnnotation: weightsObj.metadata?.annotations?.[ANNOTATIONS.state],
      accepted: true,
      dependsOn: deps,
      object: weightsObj,
    };
  }
}
