/**
 * Facts the engine reads from a backend's Deployment before deciding: its
 * revision and whether it has rolled out. Pure functions of objects, so they
 * are unit-testable and identical after a restart. (The operator's controls
 * are part of the public contract: src/contract.ts.)
 */
import { createHash } from "node:crypto";
import type { KObject } from "../kube/kinds.ts";

/** JSON with sorted keys, so equal templates hash equally whatever the key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/**
 * A Deployment's revision: a hash of its pod template, like the
 * pod-template-hash the deployment controller computes. Scaling does not
 * change it; a new image, env or annotation on the template does.
 */
export function templateRevision(deployment: KObject): string | undefined {
  const template = (deployment.spec as { template?: unknown } | undefined)?.template;
  if (!template) return undefined;
  return createHash("sha256").update(canonical(template)).digest("hex").slice(0, 10);
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
