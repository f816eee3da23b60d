import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ShardLostError, WriteFence } from "../../../src/fleet/fence.ts";
import type { JsonPatchOp } from "../../../src/kube/access.ts";
import type { KObject, ObjectRef } from "../../../src/kube/kinds.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";

const policy = (key: string) => ({ key }) as RolloutPolicy;
const REF: ObjectRef = { kind: "HTTPRoute", namespace: "shop", name: "web" };

void describe("write fence", () => {
  void it("refuses, before sending, a write for a policy whose shard is not held at the moment of the write", async () => {
    const held = new Set(["shop/a", "shop/b"]);
    const sent: string[] = [];
    const fence = new WriteFence((p) => held.has(p.key));
    const writer = fence.wrap({
      jsonPatch: (ref: ObjectRef, _ops: JsonPatchOp[]) => {
        sent.push(ref.name);
        return Promise.resolve({} as KObject);
      },
      create: () => Promise.reject(new Error("no object is created here")),
      delete: () => Promise.reject(new Error("no object is deleted here")),
    });
    await fence.run(policy("shop/a"), () => writer.jsonPatch({ ...REF, name: "a1" }, []));
    // Lost while the reconcile awaited something: the write after the await is refused.
    await assert.rejects(
      fence.run(policy("shop/b"), async () => {
        await new Promise((r) => setTimeout(r, 5));
        held.delete("shop/b");
        await new Promise((r) => setImmediate(r));
        return writer.jsonPatch({ ...REF, name: "b1" }, []);
      }),
      ShardLostError,
    );
    // Two reconciles interleaved: each write is judged by its own policy.
    await Promise.all([
      fence.run(policy("shop/a"), async () => {
        await new Promise((r) => setTimeout(r, 2));
        return writer.jsonPatch({ ...REF, name: "a2" }, []);
      }),
      assert.rejects(
        fence.run(policy("shop/b"), () => writer.jsonPatch({ ...REF, name: "b2" }, [])),
        /policy shop\/b: its shard is not held here/,
      ),
    ]);
    assert.deepEqual(sent, ["a1", "a2"]);
    assert.equal(fence.owns(policy("shop/a")), true);
    assert.equal(fence.owns(policy("shop/b")), false);
  });
});
