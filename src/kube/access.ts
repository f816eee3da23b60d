/**
 * The two seams between the engine and the API server: reads come from the
 * watch caches, writes are JSON Patches (each router changes single fields
 * and nothing else, so a patch says exactly what rolloutd owns).
 */
import type { KindName, KObject, ObjectRef } from "./kinds.ts";

/** Reads objects from the watch caches. */
export interface ObjectReader {
  get(kind: KindName, namespace: string, name: string): KObject | undefined;
}

export type JsonPatchOp =
  { op: "add" | "replace" | "test"; path: string; value: unknown } | { op: "remove"; path: string };

export interface ObjectWriter {
  /** RFC 6902 JSON Patch; returns the object as the server stored it. */
  jsonPatch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject>;
  /** Creates an object of rolloutd's own (a request stage's GatewayRoute); returns it as stored. */
  create(ref: ObjectRef, obj: KObject): Promise<KObject>;
  /**
   * Deletes an object of rolloutd's own, only if it is still the one read:
   * the API server refuses (409) when its UID or resourceVersion differ, so
   * an object someone put in its place is never removed.
   */
  delete(ref: ObjectRef, preconditions: { uid: string; resourceVersion: string }): Promise<void>;
}
