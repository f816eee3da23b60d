/**
 * Facts the engine reads from a backend's Deployment before deciding: its
 * revision and whether it has rolled out. Pure functions of objects, so they
 * are unit-testable and identical after a restart. (The operator's controls
 * are part of the public contract: src/contract.ts.)
 */
import { createHash } from "node:crypto";
import type { KObject } from "../kube/kinds.ts";

/**
 * JSON with sorted keys, so equal templates hash equally whatever the key
 * order. Exactly JSON.stringify's value otherwise (toJSON, undefined members
 * left out, holes and undefined in arrays as null): a revision is a function
 * of the JSON, whatever built the object. Undefined where JSON writes nothing.
 */
function canonical(value: unknown): string | undefined {
  const v: unknown =
    value && typeof (value as { toJSON?: unknown }).toJSON === "function"
      ? (value as { toJSON(): unknown }).toJSON()
      : value;
  if (Array.isArray(v)) return `[${Array.from(v, (x) => canonical(x) ?? "null").join(",")}]`;
  if (v && typeof v === "object") {
    const members: string[] = [];
    for (const k of Object.keys(v).sort()) {
      const member = canonical((v as Record<string, unknown>)[k]);
      if (member !== undefined) members.push(`${JSON.stringify(k)}:${member}`);
    }
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(v);
}

/**
 * Where a Deployment kept by the watch cache holds the revision of the pod
 * template it no longer carries (slimDeployment). A symbol: never serialized,
 * never sent in a patch or a log line, and no field a server sends can
 * collide with it.
 */
const TEMPLATE_REVISION = Symbol("rolloutd.templateRevision");

type Kept = KObject & { [TEMPLATE_REVISION]?: string | undefined };

/**
 * A Deployment's revision: a hash of its pod template, like the
 * pod-template-hash the deployment controller computes. Scaling does not
 * change it; a new image, env or annotation on the template does. For a
 * Deployment kept by the watch cache, the hash taken as it entered.
 */
export function templateRevision(deployment: KObject): string | undefined {
  if (Object.hasOwn(deployment, TEMPLATE_REVISION)) return (deployment as Kept)[TEMPLATE_REVISION];
  const template = (deployment.spec as { template?: unknown } | undefined)?.template;
  if (!template) return undefined;
  return createHash("sha256")
    .update(canonical(template) ?? "null")
    .digest("hex")
    .slice(0, 10);
}

/** The fields of a Deployment's spec and status that rolledOut reads: the cache keeps these and no others. */
const SPEC_READ = ["replicas", "paused"] as const;
const STATUS_READ = ["observedGeneration", "updatedReplicas", "availableReplicas", "replicas"] as const;
/** Of its metadata: what the watch needs (name, namespace, resourceVersion), the generation, and who it is. */
const METADATA_KEPT = [
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "deletionTimestamp",
] as const;
/** kubectl apply's copy of the whole object, template included: the largest annotation, and never read. */
const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";

function pick(from: unknown, keys: readonly string[]): Record<string, unknown> | undefined {
  if (!from || typeof from !== "object" || Array.isArray(from)) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of keys) if (Object.hasOwn(from, k)) out[k] = (from as Record<string, unknown>)[k];
  return out;
}

/**
 * What the watch cache keeps of a Deployment (issue 11): what templateRevision
 * and rolledOut read, the template replaced by its revision, and the
 * annotations (whatever wakes a policy urgently, contract.ts asksAbort) less
 * kubectl's last-applied copy. rolloutd never writes a Deployment, so no patch
 * is ever computed from what is left out. A reader of any other field of a
 * Deployment must add it here (the property test in
 * test/unit/controller/observe.test.ts compares the readers on both forms).
 * Never changes the object given; slimming a kept Deployment again keeps its
 * revision.
 */
export function slimDeployment(deployment: KObject): KObject {
  const raw: unknown = deployment;
  if (!raw || typeof raw !== "object") return deployment;
  const kept: Kept = {};
  if (deployment.apiVersion !== undefined) kept.apiVersion = deployment.apiVersion;
  if (deployment.kind !== undefined) kept.kind = deployment.kind;
  const meta = pick(deployment.metadata, METADATA_KEPT);
  if (meta) {
    const annotations = deployment.metadata?.annotations;
    if (annotations && typeof annotations === "object") {
      const { [LAST_APPLIED]: _copy, ...rest } = annotations;
      meta.annotations = rest;
    }
    kept.metadata = meta;
  }
  const spec = pick(deployment.spec, SPEC_READ);
  if (spec) kept.spec = spec;
  const status = pick(deployment.status, STATUS_READ);
  if (status) kept.status = status;
  kept[TEMPLATE_REVISION] = templateRevision(deployment);
  return kept;
}

/** Rolled out: the controller saw this generation and every desired replica is updated and available. */
export function rolledOut(deployment: KObject): { ready: boolean; detail: string } {
  const spec = (deployment.spec ?? {}) as { replicas?: number; paused?: boolean };
  const status = (deployment.status ?? {}) as {
    observedGeneration?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    replicas?: number;
  };
  const want = spec.replicas ?? 1;
  const generation = deployment.metadata?.generation ?? 0;
  if ((status.observedGeneration ?? 0) < generation) {
    return { ready: false, detail: `generation ${generation} not yet observed by the deployment controller` };
  }
  if ((status.updatedReplicas ?? 0) < want)
    return { ready: false, detail: `${status.updatedReplicas ?? 0}/${want} replicas updated` };
  if ((status.availableReplicas ?? 0) < want)
    return { ready: false, detail: `${status.availableReplicas ?? 0}/${want} replicas available` };
  return { ready: true, detail: `${want}/${want} replicas updated and available` };
}
