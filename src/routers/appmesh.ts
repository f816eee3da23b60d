/**
 * App Mesh (appmesh.k8s.aws/v1beta2), in the two shapes users have:
 *
 * - the weighted GatewayRoute of the user's design document:
 *   spec.{http,http2,grpc}Route.action.weightedTargets[].targetRef.virtualServiceRef.name + weight;
 * - App Mesh as AWS ships it: a GatewayRoute has one target and no weights, so
 *   we follow action.target.virtualService.virtualServiceRef → the
 *   VirtualService's spec.provider.virtualRouter.virtualRouterRef → the
 *   VirtualRouter, whose spec.routes[].{http,http2,grpc,tcp}Route.action.weightedTargets[]
 *   (virtualNodeRef, weight) carry the weights. A policy may also name the
 *   VirtualRouter directly.
 *
 * Weights are integers 0..100 and a list may sum to at most 100.
 */
import { KINDS, apiVersionOf, type ObjectRef, type KObject } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { asArray, asNumber, asRecord, type WeightLocation } from "./locations.ts";
import { PatchRouter } from "./patchrouter.ts";
import { ANNOTATIONS } from "../contract.ts";
import { RouteError, type RouteView } from "./types.ts";
import { appMeshPairTotal, WeightError } from "./weights.ts";

const GATEWAY_ROUTE_KINDS = ["httpRoute", "http2Route", "grpcRoute"] as const;
const VIRTUAL_ROUTER_ROUTE_KINDS = ["httpRoute", "http2Route", "grpcRoute", "tcpRoute"] as const;

interface Found {
  locations: WeightLocation[];
  pairTotal: number;
}

/** Finds, in each weightedTargets list holding both backends, their weight fields. */
function findInLists(
  lists: Array<{ path: string; items: unknown[] }>,
  nameOf: (item: Record<string, unknown>) => string | undefined,
  roles: { stable: string; canary: string },
  where: { what: string; deps: ObjectRef[] },
): Found | undefined {
  const locations: WeightLocation[] = [];
  let pairTotal = Infinity;
  for (const list of lists) {
    const names = list.items.map((it) => nameOf(asRecord(it) ?? {}));
    if (!names.includes(roles.stable) || !names.includes(roles.canary)) continue;
    const others: number[] = [];
    list.items.forEach((raw, i) => {
      const it = asRecord(raw) ?? {};
      const name = names[i];
      const weight = asNumber(it.weight, 0);
      if (name === roles.stable || name === roles.canary) {
        locations.push({ backend: name, path: `${list.path}/${i}/weight`, current: weight });
      } else others.push(weight);
    });
    try {
      pairTotal = Math.min(pairTotal, appMeshPairTotal(others));
    } catch (err) {
      // A route with no room for the pair is a configuration problem to report, like a missing backend.
      if (err instanceof WeightError)
        throw new RouteError(`${where.what} ${list.path}: ${err.message}`, undefined, where.deps);
      throw err;
    }
  }
  return locations.length ? { locations, pairTotal } : undefined;
}

export class AppMeshRouter extends PatchRouter {
  read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView {
    const ns = policy.namespace;
    const targetRef: ObjectRef = {
      kind: policy.target.kind === "VirtualRouter" ? "VirtualRouter" : "GatewayRoute",
      namespace: ns,
      name: policy.target.name,
    };
    const target = this.reader.get(targetRef.kind, ns, targetRef.name);
    if (!target)
      throw new RouteError(`${targetRef.kind} ${ns}/${targetRef.name} not found`, targetRef, [targetRef]);
    if (targetRef.kind === "VirtualRouter") return this.fromVirtualRouter(target, target, [targetRef], roles);

    const spec = asRecord(target.spec) ?? {};
    const routeKinds = GATEWAY_ROUTE_KINDS.filter((k) => asRecord(spec[k]));
    if (routeKinds.length === 0) {
      throw new RouteError(
        `GatewayRoute ${ns}/${targetRef.name} has none of spec.httpRoute, spec.http2Route, spec.grpcRoute`,
        undefined,
        [targetRef],
      );
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
      const found = findInLists(
        weightedLists,
        (it) => asRecord(asRecord(it.targetRef)?.virtualServiceRef)?.name as string | undefined,
        roles,
        { what: `GatewayRoute ${ns}/${targetRef.name}`, deps: [targetRef] },
      );
      if (!found) {
        throw new RouteError(
          `GatewayRoute ${ns}/${targetRef.name} has no weightedTargets list with both virtual services ${roles.stable} and ${roles.canary}`,
          undefined,
          [targetRef],
        );
      }
      return this.view(target, target, targetRef, found, [targetRef]);
    }

    // As AWS ships it: follow the single target to the VirtualRouter.
    const action = asRecord(asRecord(spec[routeKinds[0]!])?.action);
    const vsRef = asRecord(asRecord(asRecord(action?.target)?.virtualService)?.virtualServiceRef);
    if (!vsRef?.name) {
      throw new RouteError(
        `GatewayRoute ${ns}/${targetRef.name}: spec.${routeKinds[0]}.action has neither weightedTargets nor target.virtualService.virtualServiceRef`,
        undefined,
        [targetRef],
      );
    }
    const vsKey: ObjectRef = {
      kind: "VirtualService",
      namespace: (vsRef.namespace as string) || ns,
      name: vsRef.name as string,
    };
    const vs = this.reader.get("VirtualService", vsKey.namespace, vsKey.name);
    const deps = [targetRef, vsKey];
    if (!vs)
      throw new RouteError(
        `VirtualService ${vsKey.namespace}/${vsKey.name} (target of GatewayRoute ${ns}/${targetRef.name}) not found`,
        vsKey,
        deps,
      );
    const provider = asRecord(asRecord(vs.spec)?.provider);
    const vrRefRaw = asRecord(asRecord(provider?.virtualRouter)?.virtualRouterRef);
    if (!vrRefRaw?.name) {
      throw new RouteError(
        `VirtualService ${vsKey.namespace}/${vsKey.name} is not backed by a VirtualRouter (spec.provider.virtualRouter.virtualRouterRef); ` +
          "weights need a VirtualRouter with weightedTargets",
        undefined,
        deps,
      );
    }
    const vrKey: ObjectRef = {
      kind: "VirtualRouter",
      namespace: (vrRefRaw.namespace as string) || vsKey.namespace,
      name: vrRefRaw.name as string,
    };
    deps.push(vrKey);
    const vr = this.reader.get("VirtualRouter", vrKey.namespace, vrKey.name);
    if (!vr)
      throw new RouteError(
        `VirtualRouter ${vrKey.namespace}/${vrKey.name} (provider of VirtualService ${vsKey.namespace}/${vsKey.name}) not found`,
        vrKey,
        deps,
      );
    return this.fromVirtualRouter(target, vr, deps, roles);
  }

  private fromVirtualRouter(
    target: KObject,
    vr: KObject,
    deps: ObjectRef[],
    roles: { stable: string; canary: string },
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
    const found = findInLists(lists, (it) => asRecord(it.virtualNodeRef)?.name as string | undefined, roles, {
      what: `VirtualRouter ${vrRef.namespace}/${vrRef.name}`,
      deps,
    });
    if (!found) {
      throw new RouteError(
        `VirtualRouter ${vrRef.namespace}/${vrRef.name} has no route whose weightedTargets include both virtual nodes ${roles.stable} and ${roles.canary}`,
        undefined,
        deps,
      );
    }
    return this.view(target, vr, vrRef, found, deps);
  }

  private view(
    target: KObject,
    weightsObj: KObject,
    weightsRef: ObjectRef,
    found: Found,
    deps: ObjectRef[],
  ): RouteView {
    return {
      target: {
        ...target,
        apiVersion: target.apiVersion ?? apiVersionOf(KINDS.GatewayRoute),
        kind: target.kind ?? "GatewayRoute",
      },
      weightsRef,
      pair: found.locations.map((l) => ({ path: l.path, backend: l.backend, weight: l.current })),
      pairTotal: found.pairTotal,
      stateAnnotation: weightsObj.metadata?.annotations?.[ANNOTATIONS.state],
      accepted: true,
      dependsOn: deps,
      object: weightsObj,
    };
  }
}
