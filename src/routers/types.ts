/**
 * The traffic-router seam: one interface, one implementation per route
 * family. A router finds the weight fields of the two named backends in a
 * route object (following references where the route itself has no
 * weights), reports them with the persisted rollout state found beside them,
 * and writes new weights and state together in one request guarded by the
 * object's resourceVersion — so weights and state never disagree, and a
 * stale write fails with 409 instead of clobbering someone's edit.
 */
import type { KindName, ObjectRef, KObject } from "../kube/kinds.ts";
import type { WeightLocation } from "./locations.ts";
import type { RolloutPolicy } from "../policy/types.ts";

/** Reads objects from the watch caches. */
export interface ObjectReader {
  get(kind: KindName, namespace: string, name: string): KObject | undefined;
}

export type JsonPatchOp =
  { op: "add" | "replace" | "test"; path: string; value: unknown } | { op: "remove"; path: string };

export interface ObjectWriter {
  /** RFC 6902 JSON Patch; returns the object as the server stored it. */
  jsonPatch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject>;
}

export interface RouteView {
  /** The object the policy names: control annotations are read here, Events attached here. */
  target: KObject & { apiVersion: string; kind: string };
  /** The object whose weights change; the state annotation lives here. */
  weightsRef: ObjectRef;
  resourceVersion: string;
  /** Current raw weights of the two backends, by backend name. */
  weights: Record<string, number>;
  /** Raw units the pair shares (100 minus the other targets on App Mesh). */
  pairTotal: number;
  /** The persisted state annotation, if any. */
  stateAnnotation?: string;
  /** Gateway API: every parent accepted the current generation. Routers without parents always report true. */
  accepted: boolean;
  acceptanceDetail?: string;
  /** Every object read to build this view; a change to any of them re-runs the policy. */
  dependsOn: ObjectRef[];
  /** The weights object as read, and where the two backends' weights are in it. */
  object: KObject;
  locations: WeightLocation[];
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
  /** Writes raw weights (by backend name) and the state annotation in one request. */
  write(view: RouteView, weights: Record<string, number>, stateAnnotation: string): Promise<void>;
  /** Raw weights for a canary share, respecting the route kind's rules. */
  plan(
    view: RouteView,
    roles: { stable: string; canary: string },
    canaryPercent: number,
  ): Record<string, number>;
}

export const STATE_ANNOTATION = "rolloutd.dev/state";

/** "/metadata/annotations/rolloutd.dev~1state" */
export function annotationPath(key: string): string {
  return `/metadata/annotations/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`;
}
