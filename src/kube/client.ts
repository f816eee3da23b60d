/**
 * Building the API clients from a kubeconfig, with errors a person can act on.
 * Order of precedence, as kubectl: --kubeconfig, $KUBECONFIG, in-cluster
 * service account, ~/.kube/config.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  VersionApi,
  type Cluster,
} from "@kubernetes/client-node";
import type { AgentOptions } from "node:https";
import { toKubeError } from "./errors.ts";

export class KubeConfigError extends Error {
  override name = "KubeConfigError";
}

export interface KubeConfigOptions {
  kubeconfig?: string;
  context?: string;
  env?: NodeJS.ProcessEnv;
}

/** Where a kubeconfig would come from, or undefined when there is none at all. */
export function kubeconfigSource(opts: KubeConfigOptions = {}): string | undefined {
  const env = opts.env ?? process.env;
  if (opts.kubeconfig) return opts.kubeconfig;
  if (env.KUBECONFIG) return env.KUBECONFIG;
  if (env.KUBERNETES_SERVICE_HOST && existsSync("/var/run/secrets/kubernetes.io/serviceaccount/token"))
    return "in-cluster";
  const home = path.join(env.HOME ?? homedir(), ".kube", "config");
  return existsSync(home) ? home : undefined;
}

export function loadKubeConfig(opts: KubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  const source = kubeconfigSource(opts);
  if (!source) {
    throw new KubeConfigError(
      "no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a Pod. " +
        "For a local sandbox cluster run `npm start`.",
    );
  }
  try {
    if (source === "in-cluster") kc.loadFromCluster();
    else if (opts.kubeconfig) {
      if (!existsSync(opts.kubeconfig))
        throw new KubeConfigError(`kubeconfig ${opts.kubeconfig} does not exist`);
      kc.loadFromFile(opts.kubeconfig);
    } else kc.loadFromDefault();
  } catch (err) {
    if (err instanceof KubeConfigError) throw err;
    throw new KubeConfigError(`cannot load kubeconfig from ${source}: ${(err as Error).message}`);
  }
  if (opts.context) {
    if (!kc.getContexts().some((c) => c.name === opts.context)) {
      throw new KubeConfigError(
        `context "${opts.context}" not found in ${source} (have: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(", ") || "none"
        })`,
      );
    }
    kc.setCurrentContext(opts.context);
  }
  shareConnections(kc);
  if (!kc.getCurrentCluster()) {
    throw new KubeConfigError(
      `kubeconfig ${source} has no current cluster (set current-context or pass --context)`,
    );
  }
  return kc;
}

/**
 * @kubernetes/client-node 2.x builds a new undici Agent for every request
 * (applySecurityAuthentication → createDispatcher), so every API call and
 * watch pays a fresh TCP + TLS handshake and leaves its socket idle until the
 * keep-alive timeout. One Agent per distinct TLS configuration pools and
 * reuses connections, as client-go does.
 */
function shareConnections(kc: KubeConfig): void {
  const k = kc as unknown as {
    createDispatcher(cluster: Cluster | null, agentOptions: AgentOptions): unknown;
  };
  const create = k.createDispatcher.bind(kc);
  const shared = new Map<string, unknown>();
  k.createDispatcher = (cluster, agentOptions) => {
    const options = JSON.stringify(kc.createDispatcherOptions(cluster, agentOptions));
    const key = createHash("sha256").update(options).digest("hex");
    let dispatcher = shared.get(key);
    if (dispatcher === undefined) {
      dispatcher = create(cluster, agentOptions);
      shared.set(key, dispatcher);
    }
    return dispatcher;
  };
}

/** The typed clients the daemon uses; built once in the composition root. */
export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  server: string;
}

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    server: kc.getCurrentCluster()?.server ?? "(unknown)",
  };
}

/** Asks the API server for its version, so an unreachable cluster is reported at start, not on first use. */
export async function checkReachable(kc: KubeConfig, timeoutMs = 10_000): Promise<string> {
  const server = kc.getCurrentCluster()?.server ?? "(unknown)";
  const api = kc.makeApiClient(VersionApi);
  let timer: NodeJS.Timeout | undefined;
  try {
    const version = await Promise.race([
      api.getCode(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return version.gitVersion;
  } catch (err) {
    throw new KubeConfigError(
      `cannot reach the Kubernetes API server at ${server}: ${toKubeError(err, "GET /version").message}`,
    );
  } finally {
    clearTimeout(timer);
  }
}
