/**
 * Shared by the routers: where in an object the two backends' weights are,
 * and the JSON Patch that changes only those fields plus our state annotation.
 */
import { ANNOTATIONS, annotationPath, type AppliedWeight } from "../contract.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import type { KObject } from "../kube/kinds.ts";

export interface WeightLocation {
  backend: string;
  /** JSON Pointer of the weight field (it may not exist yet: Gateway API defaults it to 1). */
  path: string;
  current: number;
}

/**
 * The patch: a resourceVersion precondition, the weight fields, the state
 * annotation. `add` on an existing member replaces it, so it also covers a
 * Gateway API backendRef that relied on the default weight.
 */
export function weightsPatch(
  obj: KObject,
  weights: readonly AppliedWeight[] | undefined,
  stateAnnotation: string | undefined,
): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [
    // Setting resourceVersion in a patch makes the API server treat it as a precondition (409 if stale).
    { op: "replace", path: "/metadata/resourceVersion", value: obj.metadata?.resourceVersion },
  ];
  for (const w of weights ?? []) ops.push({ op: "add", path: w.path, value: w.weight });
  if (stateAnnotation === undefined) return ops;
  if (!obj.metadata?.annotations) ops.push({ op: "add", path: "/metadata/annotations", value: {} });
  ops.push({ op: "add", path: annotationPath(ANNOTATIONS.state), value: stateAnnotation });
  return ops;
}

export const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

export const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export const asNumber = (v: unknown, dflt: number): number =>
  typeof v === "number" && Number.isFinite(v) ? v : dflt;
