/**
 * metadata.managedFields as an API server writes them: one entry per field
 * manager and operation (kubectl, helm, controllers, a status subresource),
 * each a FieldsV1 tree of "f:" keys. Generated for the cache's slimming tests
 * (issue 11), where they must vanish and nothing else may change.
 */
import fc from "fast-check";

type Tree = { [k: string]: Tree };

const fieldKey = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9.-]{0,15}$/).map((k) => `f:${k}`);

/** A FieldsV1 tree a few levels deep, with the "." markers the server writes for owned maps. */
const fieldsV1: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant({}),
    fc.dictionary(fieldKey, tie("tree"), { maxKeys: 4 }).map((d) => ({ ".": {}, ...d })),
  ),
})).tree;

export const managedFieldsEntryArb = fc.record(
  {
    manager: fc.constantFrom(
      "kubectl-client-side-apply",
      "kubectl-edit",
      "helm",
      "kube-controller-manager",
      "rolloutd",
      "argocd-controller",
    ),
    operation: fc.constantFrom("Update", "Apply"),
    apiVersion: fc.constantFrom("apps/v1", "gateway.networking.k8s.io/v1", "appmesh.k8s.aws/v1beta2"),
    time: fc.constant("2026-11-30T10:00:00Z"),
    fieldsType: fc.constant("FieldsV1"),
    fieldsV1: fieldsV1,
    subresource: fc.constant("status"),
  },
  { requiredKeys: ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"] },
);

/** Several managers, usually; sometimes none, or one. */
export const managedFieldsArb = fc
  .array(managedFieldsEntryArb, { minLength: 0, maxLength: 6 })
  // Plain JSON, as decoded from a response (fast-check builds some objects without a prototype).
  .map((entries) => JSON.parse(JSON.stringify(entries)) as unknown[]);
