/**
 * The benchmark's rollouts: for each, a namespace (100 rollouts share one),
 * a stable and a canary Deployment marked rolled out (this harness plays the
 * deployment controller), an HTTPRoute, and a policy document; shipping v2 of
 * the canary starts the rollout. Objects are created with bounded
 * concurrency, so a large run does not drown the API server it measures.
 */
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { mapLimit } from "../support/chaos.ts";
import { createNamespace, deployment, type Cluster } from "../support/cluster.ts";
import { httpRoute } from "../support/routes.ts";

export interface Rollout {
  ns: string;
  name: string;
  stable: string;
  canary: string;
}

export const PER_NAMESPACE = 100;

export function rolloutsFor(prefix: string, n: number): Rollout[] {
  return Array.from({ length: n }, (_, i) => {
    const ns = `${prefix}-${Math.floor(i / PER_NAMESPACE)}`;
    const name = `app-${i}`;
    return { ns, name, stable: `${name}-v1`, canary: `${name}-v2` };
  });
}

const statusPatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/** Plays the deployment controller for one generation (no read needed: the write returned it). */
async function rolledOut(
  c: Cluster,
  ns: string,
  name: string,
  generation: number | undefined,
): Promise<void> {
  await c.apps.patchNamespacedDeploymentStatus(
    {
      namespace: ns,
      name,
      body: {
        status: {
          observedGeneration: generation,
          replicas: 1,
          updatedReplicas: 1,
          readyReplicas: 1,
          availableReplicas: 1,
        },
      },
    },
    statusPatch,
  );
}

/** Namespaces, both Deployments rolled out at v1 (unless `deployments` is false) and the HTTPRoute. Returns objects created. */
export async function createRollouts(
  c: Cluster,
  rs: Rollout[],
  concurrency: number,
  deployments = true,
): Promise<number> {
  const namespaces = [...new Set(rs.map((r) => r.ns))];
  await mapLimit(namespaces, concurrency, (ns) => createNamespace(c, ns));
  await mapLimit(rs, concurrency, async (r) => {
    if (deployments) {
      for (const d of [r.stable, r.canary]) {
        const created = await c.apps.createNamespacedDeployment({
          namespace: r.ns,
          body: deployment(r.ns, d, "1", 1),
        });
        await rolledOut(c, r.ns, d, created.metadata?.generation);
      }
    }
    await httpRoute.create(c, r.ns, r.name, r.stable, r.canary);
  });
  return namespaces.length + rs.length * (deployments ? 3 : 1);
}

/** Deletes the rollouts' Deployments and HTTPRoutes, one collection request per namespace and kind. */
export async function deleteRollouts(c: Cluster, rs: Rollout[], concurrency: number): Promise<void> {
  await mapLimit([...new Set(rs.map((r) => r.ns))], concurrency, async (ns) => {
    await c.apps.deleteCollectionNamespacedDeployment({ namespace: ns });
    await c.custom.deleteCollectionNamespacedCustomObject({
      group: "gateway.networking.k8s.io",
      version: "v1",
      namespace: ns,
      plural: "httproutes",
    });
  });
}

/** Ships v2 of the canary's Deployment and marks it rolled out: the daemon starts a rollout. */
export async function ship(c: Cluster, r: Rollout): Promise<void> {
  const d = await c.apps.patchNamespacedDeployment(
    {
      namespace: r.ns,
      name: r.canary,
      body: [
        { op: "replace", path: "/spec/template/spec/containers/0/image", value: `example.com/${r.canary}:2` },
      ],
    },
    setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
  );
  await rolledOut(c, r.ns, r.canary, d.metadata?.generation);
}

/** One policy file per namespace, `<prefix>-<ns>.yaml`, one document per rollout with `spec` lines appended. */
export function writePolicies(dir: string, prefix: string, rs: Rollout[], spec: string[]): void {
  const byNs = new Map<string, Rollout[]>();
  for (const r of rs) byNs.set(r.ns, [...(byNs.get(r.ns) ?? []), r]);
  for (const [ns, list] of byNs) {
    const docs = list.map((r) =>
      [
        "apiVersion: rolloutd.dev/v1alpha1",
        "kind: RolloutPolicy",
        `metadata: { name: ${r.name}, namespace: ${ns} }`,
        "spec:",
        `  target: { kind: HTTPRoute, name: ${r.name} }`,
        `  stable: ${r.stable}`,
        `  canary: ${r.canary}`,
        ...spec,
      ].join("\n"),
    );
    writeFileSync(path.join(dir, `${prefix}-${ns}.yaml`), `${docs.join("\n---\n")}\n`);
  }
}

export function removePolicies(dir: string, prefix: string, rs: Rollout[]): void {
  for (const ns of new Set(rs.map((r) => r.ns)))
    rmSync(path.join(dir, `${prefix}-${ns}.yaml`), { force: true });
}
