/**
 * The policy registry's view of which routes a policy writes to: its target
 * and, for blue/green, its preview route. Two policies writing one route
 * would fight over its weights; a preview route's changes must wake its
 * policy (a missing one appearing starts the held rollout).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PolicyRegistry } from "../../../src/controller/registry.ts";
import { validatePolicyDocument } from "../../../src/policy/schema.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";

function policy(name: string, target: string, preview?: string): RolloutPolicy {
  const r = validatePolicyDocument({
    apiVersion: "rolloutd.dev/v1alpha1",
    kind: "RolloutPolicy",
    metadata: { name, namespace: "shop" },
    spec: {
      target: { kind: "HTTPRoute", name: target },
      stable: "web-v1",
      canary: "web-v2",
      ...(preview ? { strategy: "blueGreen", preview: { route: { name: preview } } } : { steps: [50, 100] }),
    },
  });
  if (!r.ok) assert.fail(JSON.stringify(r.issues));
  return { ...r.policy, source: { file: `${name}.yaml`, line: 1, column: 1 } };
}

void test("a preview route is a route the policy writes to: another policy's target there is a conflict", () => {
  const reg = new PolicyRegistry();
  const a = policy("a", "web", "web-preview");
  const b = policy("b", "web-preview");
  const c = policy("c", "other", "web-preview");
  const d = policy("d", "unrelated");
  for (const p of [a, b, c, d]) reg.upsert(p);
  assert.equal(reg.ownerOf(b), "shop/a", "b's target is a's preview route");
  assert.equal(reg.ownerOf(c), "shop/a", "c's preview route is a's too");
  assert.equal(reg.ownerOf(a), "shop/a");
  assert.equal(reg.ownerOf(d), "shop/d");
  assert.deepEqual(reg.sharingRoute(a).sort(), ["shop/b", "shop/c"]);
});

void test("a change to the preview route wakes its policy, also after a reconcile recorded what it read", () => {
  const reg = new PolicyRegistry();
  reg.upsert(policy("a", "web", "web-preview"));
  const preview = { kind: "HTTPRoute" as const, namespace: "shop", name: "web-preview" };
  assert.deepEqual([...reg.dependentsOf(preview)], ["shop/a"]);
  reg.setRead("shop/a", [{ kind: "HTTPRoute", namespace: "shop", name: "web" }]);
  assert.deepEqual([...reg.dependentsOf(preview)], ["shop/a"]);
  assert.deepEqual([...reg.dependentsOf({ ...preview, namespace: "elsewhere" })], []);
});
