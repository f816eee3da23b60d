/**
 * The controller's side of a blue/green preview route (rules in
 * src/machine/preview.ts): reading the route through the target's router,
 * recording its planned pair in the state a decision writes, and the level
 * based upkeep that makes the route hold what the state says — one guarded
 * write of the pair's weights, nothing else of the route, no state on it.
 */
import type { RolloutState } from "../contract.ts";
import type { ObjectRef } from "../kube/kinds.ts";
import { previewChange, previewUpkeep, type PreviewRecord, type PreviewRef } from "../machine/preview.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import type { RouterRegistry } from "../routers/index.ts";
import { RouteError, type RouteView } from "../routers/types.ts";

export type PreviewUpkeep =
  /** The route was written: its watch event brings the next pass. */
  | { kind: "written" }
  /** Nothing to write; whether the route's parents accepted it (counts only while the rollout needs it). */
  | { kind: "ok"; accepted: boolean; detail?: string };

export class PreviewRoutes {
  constructor(private readonly routers: RouterRegistry) {}

  /** The preview route of `policy` named `ref`, read with `roles`; RouteError when it cannot be used. */
  read(
    policy: RolloutPolicy,
    ref: PreviewRef,
    roles: { stable: string; canary: string },
    target: ObjectRef,
  ): RouteView {
    const at = policy.previewRoute?.at ?? policy.source;
    const where = `${at.file}:${at.line}:${at.column} spec.preview.route`;
    let view: RouteView;
    try {
      view = this.routers
        .for(ref.kind)
        .read({ ...policy, target: { kind: ref.kind, name: ref.name } }, roles);
    } catch (err) {
      if (!(err instanceof RouteError)) throw err;
      throw new RouteError(`${where}: ${err.message}`, err.missing, err.dependsOn);
    }
    const w = view.weightsRef;
    if (w.kind === target.kind && w.namespace === target.namespace && w.name === target.name) {
      throw new RouteError(
        `${where}: ${ref.kind} ${policy.namespace}/${ref.name} leads to ${w.kind} ${w.namespace}/${w.name}, ` +
          "the object the target's weights are in; a preview route needs weights of its own",
        undefined,
        view.dependsOn,
      );
    }
    return view;
  }

  /**
   * `next` with the preview route's record the decision implies. Throws
   * RouteError only when a rollout is to begin and its preview route cannot
   * be used: the start waits, nothing is written. Ending a rollout never
   * throws, so an abort is never held up by the preview route.
   */
  record(policy: RolloutPolicy, target: ObjectRef, was: RolloutState, next: RolloutState): RolloutState {
    const change = previewChange(policy.previewRoute, was, next);
    if (change.kind === "keep") {
      const { previewRoute: _dropped, ...rest } = next;
      return was.previewRoute ? { ...rest, previewRoute: was.previewRoute } : rest;
    }
    const roles = { stable: next.stable, canary: next.canary };
    let applied: PreviewRecord["applied"] = [];
    try {
      const view = this.read(policy, change.ref, roles, target);
      applied = this.routers.for(change.ref.kind).plan(view, roles, change.canaryPercent);
    } catch (err) {
      if (change.required || !(err instanceof RouteError)) throw err;
    }
    return {
      ...next,
      previewRoute: {
        ...change.ref,
        canaryPercent: change.canaryPercent,
        applied,
        ...(change.from ? { from: change.from } : {}),
      },
    };
  }

  /** Makes the preview route hold what the state's record says; RouteError when it cannot be read. */
  async upkeep(policy: RolloutPolicy, target: ObjectRef, s: RolloutState): Promise<PreviewUpkeep> {
    const rec = s.previewRoute;
    if (!rec) return { kind: "ok", accepted: true };
    const roles = { stable: s.stable, canary: s.canary };
    const router = this.routers.for(rec.kind);
    const view = this.read(policy, rec, roles, target);
    const weights = previewUpkeep(rec, view.pair, router.plan(view, roles, rec.canaryPercent));
    if (weights) {
      await router.write(view, weights, undefined);
      return { kind: "written" };
    }
    return {
      kind: "ok",
      accepted: view.accepted,
      ...(view.acceptanceDetail !== undefined
        ? { detail: `preview route ${rec.kind} ${rec.name}: ${view.acceptanceDetail}` }
        : {}),
    };
  }
}
