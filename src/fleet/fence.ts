/**
 * The write fence: every route write is made on behalf of one policy, and
 * is refused, before it is sent, unless this replica holds that policy's
 * shard at that instant.
 *
 * The controller already asks before each reconcile, and a reconcile makes
 * its first write without an await in between; the fence asks again at the
 * write itself, so a reconcile that awaits something first (or retries a
 * refused write) still cannot write after the shard was lost. The policy
 * travels with the reconcile's async context (AsyncLocalStorage), so no
 * signature between the controller and the writer has to change.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { JsonPatchOp, ObjectWriter } from "../kube/access.ts";
import type { KObject, ObjectRef } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";

export class ShardLostError extends Error {
  override name = "ShardLostError";
}

export class WriteFence {
  private readonly current = new AsyncLocalStorage<RolloutPolicy>();

  constructor(private readonly holds: (policy: RolloutPolicy) => boolean) {}

  /** Whether this replica may manage the policy now. */
  owns(policy: RolloutPolicy): boolean {
    return this.holds(policy);
  }

  /** Runs `fn` (a reconcile) on behalf of `policy`: its writes are fenced by that policy's shard. */
  run<T>(policy: RolloutPolicy, fn: () => T): T {
    return this.current.run(policy, fn);
  }

  /** The writer, fenced: a write for a policy whose shard is not held now is refused before it is sent. */
  wrap(writer: ObjectWriter): ObjectWriter {
    const fenced = <T>(ref: ObjectRef, write: () => Promise<T>): Promise<T> => {
      const policy = this.current.getStore();
      if (policy && !this.holds(policy)) {
        return Promise.reject(
          new ShardLostError(
            `not writing ${ref.kind} ${ref.namespace}/${ref.name} for policy ${policy.key}: its shard is not held here any more`,
          ),
        );
      }
      return write();
    };
    return {
      jsonPatch: (ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> =>
        fenced(ref, () => writer.jsonPatch(ref, ops)),
      create: (ref: ObjectRef, obj: KObject): Promise<KObject> => fenced(ref, () => writer.create(ref, obj)),
      delete: (ref, preconditions): Promise<void> => fenced(ref, () => writer.delete(ref, preconditions)),
    };
  }
}
