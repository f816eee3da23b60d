/**
 * The traffic-router seam: one interface, one implementation per route
 * family. A router finds every weight field of the two named backends in a
 * route object (following references where the route itself has no
 * weights), reports them as read with the persisted rollout state found
 * beside them, plans new values for a canary share, and writes the state and
 * the planned weights together in one request guarded by the object's
 * resourceVersion — so weights and state never disagree, and a stale write
 * fails with 409 instead of clobbering someone's edit.
 *
 * The weight contract (issue 8): a write changes nothing but the pair's
 * weight fields and rolloutd's state annotation; each location (a Gateway API
 * rule, an App Mesh weightedTargets list) moves within its own pair total, in
 * the route's own units, so every other backend keeps its share.
 */
import type { AppliedWeight } from "../contract.ts";
import type { ObjectRef, KObject } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import type { OwnedRule, Stage } from "./stagerule.ts";

/**
 * One weight field of the stable or the canary backend: its JSON Pointer
 * (the field may be absent in the object: Gateway API then means 1), whose it
 * is, and its value. The state records the same shape as `applied`.
 */
export type PairWeight = AppliedWeight;

export interface RouteView {
  /** The object the policy names: control annotations are read here, Events attached here. */
  target: KObject & { apiVersion: string; kind: string };
  /** The object whose weights change; the state annotation lives here. */
  weightsRef: ObjectRef;
  /** Every weight field of the two backends, at every location, as read (Gateway API's default 1 filled in). */
  pair: PairWeight[];
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
  /** Throws RouteError when the route (or a link to it) is missing or holds no location with both backends. */
  read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView;
  /** Pure: the pair's weight at every location for a canary share, each location moved within its own pair total. */
  plan(view: RouteView, roles: { stable: string; canary: string }, canaryPercent: number): PairWeight[];
  /**
   * One request guarded by resourceVersion: the state annotation, plus the
   * given pair weights when present (adoption passes none). Only fields whose
   * value differs from the view are written.
   */
  write(
    view: RouteView,
    weights: PairWeight[] | undefined,
    stateAnnotation: string | undefined,
    /** The owned request-stage rule's operations (stageOps), in the same guarded request. */
    stageOps?: JsonPatchOp[],
  ): Promise<void>;
  /**
   * Pure: the operations that make the route's owned request-stage rule what
   * `desired` says (absent: no rule); [] when it already is. Routers without
   * request stages have none.
   */
  stageOps?(
    view: RouteView,
    roles: { stable: string; canary: string },
    desired: { index: number; stage: Stage } | undefined,
    owned: OwnedRule | undefined,
  ): JsonPatchOp[];
  /**
   * Routers whose owned stage rule is an object of its own (App Mesh's
   * weighted GatewayRoute): that object as it stands against what the state
   * records. Pure; throws RouteError when a stage would begin over an object
   * of that name that is not rolloutd's. Undefined for routes whose rule
   * lives inside them (stageOps).
   */
  stageObject?(
    view: RouteView,
    roles: { stable: string; canary: string },
    desired: { index: number; stage: Stage } | undefined,
    owned: OwnedRule | undefined,
  ): StageObjectPlan | undefined;
  /** Carries out a StageObjectPlan's write (not `forget`, which is a state write); the object as stored, if any. */
  writeStageObject?(write: Exclude<StageObjectWrite, { op: "forget" }>): Promise<KObject | undefined>;
}

/** The one write that brings a stage's own object in line with the state. */
export type StageObjectWrite =
  | { op: "create"; ref: ObjectRef; object: KObject }
  | { op: "patch"; ref: ObjectRef; ops: JsonPatchOp[] }
  | { op: "delete"; ref: ObjectRef; uid: string; resourceVersion: string }
  /** The state records an object that is gone, or not rolloutd's: the record goes, the object stays. */
  | { op: "forget" };

export interface StageObjectPlan {
  /** The object's name, as the state records it. */
  name: string;
  ref: ObjectRef;
  /** rolloutd's object is there (so the state must go on recording it, even once the stages are over). */
  present: boolean;
  /** Absent when the object already is what the state says. */
  write?: StageObjectWrite;
  /** The object the state records exists but is not rolloutd's: left alone, and said so. */
  foreign?: string;
}
