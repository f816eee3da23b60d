/**
 * Shared by the routers: where in an object the two backends' weights are,
 * and the JSON Patch that changes only those fields plus our state annotation.
 */
import type { KObject } from "../kube/kinds.ts";
import { ANNOTATIONS, annotationPath } from "../contract.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import type { PairWeight } from "./types.ts";

/**
 * The list a weight field belongs to: the pointer up to its last array index.
 * "/spec/rules/2/backendRefs/1/weight" → "/spec/rules/2/backendRefs";
 * "/spec/httpRoute/action/weightedTargets/0/targetRef/weight" (the design
 * document's weight inside targetRef) → "/spec/httpRoute/action/weightedTargets".
 */
export function locationOf(weightPath: string): string {
  const parts = weightPath.split("/");
  const last = parts.findLastIndex((p, i) => i > 0 && /^\d+$/.test(p));
  if (last < 0) throw new Error(`${weightPath} is not in a list`);
  return parts.slice(0, last).join("/");
}

/** The index in its list of the entry a weight field belongs to. */
export function entryIndexOf(weightPath: string): number {
  return Number(weightPath.slice(locationOf(weightPath).length + 1).split("/")[0]);
}

/** The value at an RFC 6901 JSON Pointer, or undefined. */
export function pointerGet(obj: unknown, pointer: string): unknown {
  let cur: unknown = obj;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (Array.isArray(cur)) cur = cur[Number(key)];
    else if (cur && typeof cur === "object") cur = (cur as Record<string, unknown>)[key];
    else return undefined;
  }
  return cur;
}

/**
 * The patch: a resourceVersion precondition, the weight fields that change,
 * the state annotation. `add` on an existing member replaces it, so it also
 * covers a Gateway API backendRef that relied on the default weight.
 */
export function weightsPatch(
  obj: KObject,
  asRead: readonly PairWeight[],
  weights: readonly PairWeight[] | undefined,
  stateAnnotation: string | undefined,
): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [
    // Setting resourceVersion in a patch makes the API server treat it as a precondition (409 if stale).
    { op: "replace", path: "/metadata/resourceVersion", value: obj.metadata?.resourceVersion },
  ];
  const read = new Map(asRead.map((w) => [w.path, w.weight]));
  for (const w of weights ?? []) {
    if (!read.has(w.path)) throw new Error(`${w.path} is not a weight field of the pair`);
    if (read.get(w.path) !== w.weight) ops.push({ op: "add", path: w.path, value: w.weight });
  }
  // No state only when the API server refused it: the weights must land all the same.
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

export const asString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
