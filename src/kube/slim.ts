/**
 * What the watch caches keep of an object (issue 11). Every replica caches
 * every route and Deployment of the cluster, so what each object costs there
 * is paid once per object per replica. `metadata.managedFields` (one entry per
 * field manager, each a tree of every field it set) is often the largest part
 * of a small object, and rolloutd never reads it: writes are JSON Patches of
 * single fields (kube/writer.ts), and the request stage's own GatewayRoute is
 * built from the user's name, labels, uid and spec (routers/stagerule.ts).
 * Everything else is kept — annotations above all, since a patch that adds
 * rolloutd's state to an object read without them would replace the user's.
 *
 * A kind may keep less on top (a Deployment keeps only what the engine reads
 * of it: controller/observe.ts, slimDeployment); the composition root says which.
 */
import type { KObject } from "./kinds.ts";

/** Applied to every object before it enters a watch cache: listed or watched, added, changed or deleted. */
export type CacheSlim = (obj: KObject) => KObject;

/**
 * The object without metadata.managedFields, never changing the one given
 * (a shallow copy of the object and its metadata; the rest is shared). Any
 * shape is accepted: what is not an object with an object metadata is
 * returned as it is.
 */
export function withoutManagedFields(obj: KObject): KObject {
  const meta: unknown = obj?.metadata;
  if (!meta || typeof meta !== "object" || Array.isArray(meta) || !Object.hasOwn(meta, "managedFields"))
    return obj;
  const { managedFields: _dropped, ...rest } = meta as NonNullable<KObject["metadata"]>;
  return { ...obj, metadata: rest };
}
