/**
 * Test support: a real control plane with the traffic CRDs installed (Gateway
 * API from the upstream module pinned in test/controlplane/crds, App Mesh from
 * test/crds, see the header of each file there), and
 * small helpers to create objects, play the parts no kubelet or controller
 * plays here (Deployment status, Gateway API parent status), and wait for
 * conditions instead of sleeping.
 */
import { readFileSync, readdirSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
  type V1Deployment,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { KINDS, type KindName, type KObject } from "../../src/kube/kinds.ts";
import { startControlPlane, type ControlPlane } from "../controlplane/controlplane.ts";
import { gatewayApiCrdFiles } from "../controlplane/crds.ts";

const CRD_DIR = fileURLToPath(new URL("../crds/", import.meta.url));
/**
 * The weighted GatewayRoute of the design document: not in AWS's CRD, so it
 * lives apart and replaces AWS's GatewayRoute CRD (a kind has one CRD per
 * cluster) unless a test asks for AWS's own.
 */
const WEIGHTED_GATEWAY_ROUTE_CRD = path.join(CRD_DIR, "design-document", "gatewayroutes-weighted.yaml");
const V1BETA1_GATEWAY_ROUTE_CRD = path.join(CRD_DIR, "design-document", "gatewayroutes-v1beta1.yaml");

export interface CrdOptions {
  /**
   * Which GatewayRoute CRD: the weighted form at v1beta2 (default; it also accepts AWS's form), AWS's, or the
   * design document's as written (v1beta1 only, weight inside targetRef).
   */
  gatewayRoute?: "weighted" | "aws" | "v1beta1";
}

export interface Cluster {
  cp: ControlPlane;
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  stop(): Promise<void>;
}

export async function startCluster(
  opts: { crds?: boolean; apiServerArgs?: string[] } & CrdOptions = {},
): Promise<Cluster> {
  const cp = await startControlPlane({
    log: (l) => process.stderr.write(`# ${l}\n`),
    ...(opts.apiServerArgs ? { apiServerArgs: opts.apiServerArgs } : {}),
  });
  try {
    const kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    const cluster: Cluster = {
      cp,
      kc,
      core: kc.makeApiClient(CoreV1Api),
      apps: kc.makeApiClient(AppsV1Api),
      custom: kc.makeApiClient(CustomObjectsApi),
      stop: () => cp.stop(),
    };
    if (opts.crds !== false) await installCrds(kc, opts);
    return cluster;
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

function crdsIn(file: string): V1CustomResourceDefinition[] {
  const out: V1CustomResourceDefinition[] = [];
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS() as V1CustomResourceDefinition | null;
    if (obj?.kind === "CustomResourceDefinition") out.push(obj);
  }
  return out;
}

/** Upstream Gateway API CRDs, then ours (App Mesh), with the GatewayRoute CRD chosen by `opts`. */
export function loadCrds(opts: CrdOptions = {}): V1CustomResourceDefinition[] {
  const ours = readdirSync(CRD_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .flatMap((f) => crdsIn(path.join(CRD_DIR, f)));
  const weighted = crdsIn(
    opts.gatewayRoute === "v1beta1" ? V1BETA1_GATEWAY_ROUTE_CRD : WEIGHTED_GATEWAY_ROUTE_CRD,
  );
  const replaced = new Set(weighted.map((c) => c.metadata!.name));
  return [
    ...gatewayApiCrdFiles().flatMap(crdsIn),
    ...(opts.gatewayRoute === "aws"
      ? ours
      : [...ours.filter((c) => !replaced.has(c.metadata!.name)), ...weighted]),
  ];
}

/**
 * POSTs a CRD as parsed from its file. Not through client-node's typed
 * createCustomResourceDefinition: its serializer maps fields by its model's
 * attribute names and silently drops `x-kubernetes-validations` (the CEL
 * rules) from a plain object, so upstream's rules would never be installed.
 */
async function postCrd(kc: KubeConfig, crd: V1CustomResourceDefinition): Promise<void> {
  const server = new URL(kc.getCurrentCluster()!.server);
  const body = JSON.stringify(crd);
  const opts: https.RequestOptions = {
    method: "POST",
    hostname: server.hostname,
    port: server.port,
    path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
  };
  await kc.applyToHTTPSOptions(opts);
  await new Promise<void>((resolve, reject) => {
    const req = https.request(opts, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () =>
        res.statusCode === 201
          ? resolve()
          : reject(
              new Error(`create CRD ${crd.metadata?.name}: HTTP ${res.statusCode}: ${text.slice(0, 2000)}`),
            ),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

export async function installCrds(kc: KubeConfig, opts: CrdOptions = {}): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const crds = loadCrds(opts);
  for (const crd of crds) await postCrd(kc, crd);
  for (const crd of crds) {
    await eventually(`CRD ${crd.metadata!.name} Established`, async () => {
      const got = await api.readCustomResourceDefinition({ name: crd.metadata!.name! });
      return got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ?? false;
    });
  }
  // Discovery and the watch cache catch up a moment after Established; a list proves it.
  const custom = kc.makeApiClient(CustomObjectsApi);
  for (const crd of crds) {
    const v = (crd.spec.versions.find((x) => x.storage) ?? crd.spec.versions[0]!).name;
    await eventually(`list ${crd.spec.names.plural}`, async () => {
      await custom.listClusterCustomObject({
        group: crd.spec.group,
        version: v,
        plural: crd.spec.names.plural,
      });
      return true;
    });
  }
}

/** Polls until `probe` is truthy; fails with the last value or error after the timeout. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err instanceof Error ? err.message : err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function createNamespace(c: Cluster, name: string): Promise<void> {
  await c.core.createNamespace({ body: { metadata: { name } } });
}

/**
 * Creates an object as JSON, as kubectl would: a Deployment too, not through the typed client, whose
 * serializer keeps only the fields of its model and wants Date objects where the API has strings.
 */
export async function createObject(c: Cluster, kind: KindName, obj: KObject): Promise<KObject> {
  const k = KINDS[kind];
  const ns = obj.metadata!.namespace!;
  return (await c.custom.createNamespacedCustomObject({
    group: k.group,
    version: k.version,
    namespace: ns,
    plural: k.plural,
    body: { apiVersion: `${k.group}/${k.version}`, kind: k.kind, ...obj },
  })) as KObject;
}

/** An object as the API server serves it (JSON, as a watch delivers it). */
export async function getObject(c: Cluster, kind: KindName, ns: string, name: string): Promise<KObject> {
  const k = KINDS[kind];
  return (await c.custom.getNamespacedCustomObject({
    group: k.group,
    version: k.version,
    namespace: ns,
    plural: k.plural,
    name,
  })) as KObject;
}

/** Deletes a custom object, as a person with kubectl would. */
export async function deleteObject(c: Cluster, kind: KindName, ns: string, name: string): Promise<void> {
  const k = KINDS[kind];
  await c.custom.deleteNamespacedCustomObject({
    group: k.group,
    version: k.version,
    namespace: ns,
    plural: k.plural,
    name,
  });
}

export async function mergePatch(
  c: Cluster,
  kind: KindName,
  ns: string,
  name: string,
  body: unknown,
): Promise<KObject> {
  const k = KINDS[kind];
  const opts = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
  if (kind === "Deployment") return c.apps.patchNamespacedDeployment({ namespace: ns, name, body }, opts);
  return (await c.custom.patchNamespacedCustomObject(
    { group: k.group, version: k.version, namespace: ns, plural: k.plural, name, body },
    opts,
  )) as KObject;
}

export async function jsonPatch(
  c: Cluster,
  kind: KindName,
  ns: string,
  name: string,
  body: unknown[],
): Promise<KObject> {
  const k = KINDS[kind];
  const opts = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);
  return (await c.custom.patchNamespacedCustomObject(
    { group: k.group, version: k.version, namespace: ns, plural: k.plural, name, body },
    opts,
  )) as KObject;
}

export async function annotate(
  c: Cluster,
  kind: KindName,
  ns: string,
  name: string,
  annotations: Record<string, string | null>,
): Promise<void> {
  await mergePatch(c, kind, ns, name, { metadata: { annotations } });
}

/** A Deployment with one container; `version` goes into the pod template, so changing it is a new revision. */
export function deployment(ns: string, name: string, version: string, replicas = 2): V1Deployment {
  return {
    metadata: { name, namespace: ns },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: "app", image: `example.com/${name}:${version}` }] },
      },
    },
  };
}

/** Plays the deployment controller: marks the current generation fully rolled out. */
export async function markRolledOut(c: Cluster, ns: string, name: string): Promise<void> {
  const d = await c.apps.readNamespacedDeployment({ namespace: ns, name });
  const replicas = d.spec?.replicas ?? 1;
  await c.apps.patchNamespacedDeploymentStatus(
    {
      namespace: ns,
      name,
      body: {
        status: {
          observedGeneration: d.metadata?.generation,
          replicas,
          updatedReplicas: replicas,
          readyReplicas: replicas,
          availableReplicas: replicas,
        },
      },
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

/** Ships a new revision of a Deployment (new image) and, unless told otherwise, marks it rolled out. */
export async function shipRevision(
  c: Cluster,
  ns: string,
  name: string,
  version: string,
  rolledOut = true,
): Promise<void> {
  await c.apps.patchNamespacedDeployment(
    {
      namespace: ns,
      name,
      body: [
        {
          op: "replace",
          path: "/spec/template/spec/containers/0/image",
          value: `example.com/${name}:${version}`,
        },
      ],
    },
    setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
  );
  if (rolledOut) await markRolledOut(c, ns, name);
}
