/**
 * The traffic-router seam: one interface, one implementation per route
 * family. A router finds the weight fields of the two named backends in a
 * route object (following references where the route itself has no
 * weights), reports them with the persisted rollout state found beside them,
 * and writes new weights and state together in one request guarded by the
 * object's resourceVersion — so weights and state never disagree, and a
 * stale write fails with 409 instead of clobbering someone's edit.
 */
import type { AppliedWeight } from "../contract.ts";
import type { ObjectRef, KObject } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";

/** One weight field of the pair: where it is, whose it is, what it holds. */
export type PairWeight = AppliedWeight;

export interface RouteView {
  /** The object the policy names: control annotations are read here, Events attached here. */
  target: KObject & { apiVersion: string; kind: string };
  /** The object whose weights change; the state annotation lives here. */
  weightsRef: ObjectRef;
  /** Every weight field of the two backends, at every location, as read. */
  pair: PairWeight[];
  /** Raw units the pair shares (100 minus the other targets on App Mesh). */
  pairTotal: number;
  /** The persisted state annotation, if any. */
  stateAnnotation?: string;
  /** Gateway API: every parent accepted the current generation. Routers without parents always report true. */
  accepted: boolean;
  acceptanceDetail?: string;
  /** Every object read to build this view; a change to any of them re-runs the policy. */
  dependsOn: ObjectRef[];
  /** The weights object as read, for the guarded patch. */
  object: KObject;
}

/** The route (or something it points to) is missing or has no place for the named backends. */
export class RouteError extends Error {
  override name = "RouteError";
  constructor(
    message: string,
    /** Names a missing object: the policy waits for it to appear. */
    readonly missing?: ObjectRef,
    readonly dependsOn: ObjectRef[] = [],
  ) {
    super(message);
  }
}

export interface TrafficRouter {
  read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView;
  /**
   * One request guarded by resourceVersion: the given pair weights (none at
   * adoption) and the state annotation (none only when the API server has
   * refused it: the weights must still land).
   */
  write(
    view: RouteView,
    weights: PairWeight[] | undefined,
    stateAnnotation: string | undefined,
  ): Promise<void>;
  /** Pure: the pair's weight at every location for a canary share. */
  plan(view: RouteView, roles: { stable: string; canary: string }, canaryPercent: number): PairWeight[];
}
