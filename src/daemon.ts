/**
 * The composition root: the one place that builds the clients, logger,
 * metrics registry, clock and configuration, and wires them together. No
 * other module reads the environment or creates a singleton.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { createAnalysisGateFactory } from "./analysis/analyzer.ts";
import { systemClock, type Clock } from "./clock.ts";
import { RolloutController } from "./controller/controller.ts";
import { slimDeployment } from "./controller/observe.ts";
import { AgentPool } from "./kube/agents.ts";
import { ClusterCache } from "./kube/cache.ts";
import { checkReachable, loadKubeConfig, makeClients } from "./kube/client.ts";
import { KubeEventRecorder } from "./kube/events.ts";
import { ApiHealth, apiServerReadyz } from "./kube/health.ts";
import { KubeWriter } from "./kube/writer.ts";
import { Fleet, FLEET_DEFAULTS, type FleetOptions } from "./fleet/fleet.ts";
import { WriteFence } from "./fleet/fence.ts";
import { countedLeaseApi, KubeLeaseApi } from "./fleet/lease.ts";
import { shardOf } from "./fleet/shards.ts";
import { discoveryGet } from "./kube/discovery.ts";
import { loadNotifyConfig } from "./notify/config.ts";
import { NotificationDispatcher } from "./notify/dispatcher.ts";
import { NotifyListener } from "./notify/listener.ts";
import { PolicyStore, type PolicyChangeSet } from "./policy/store.ts";
import { RouterRegistry } from "./routers/index.ts";
import { HttpServer } from "./server/http.ts";
import { Metrics } from "./server/metrics.ts";
import { RolloutBoard } from "./ui/board.ts";
import { UiRoutes } from "./ui/routes.ts";

export interface DaemonOptions {
  kubeconfig?: string;
  context?: string;
  policiesDir: string;
  metricsPort: number;
  metricsHost?: string;
  workers?: number;
  /** Minimum analysis window, seconds (about two scrape intervals). */
  minWindowSeconds?: number;
  /** Limit watches and writes to these namespaces (namespaced RBAC); all namespaces when absent. */
  namespaces?: readonly string[];
  /** How long a watch may be blind (or the API server unready) before /readyz says so, ms. */
  readinessGraceMs?: number;
  /** YAML file of the global notification channels (`--notify-config`). */
  notifyConfig?: string;
  /** Serve the read-only live page at /ui on the metrics port (default true). */
  ui?: boolean;
  clock?: Clock;
  /** The fleet's Leases; every field has a default, so one replica needs none of them. */
  fleet?: Partial<FleetOptions> & {
    /** Namespace of the Leases (default: $POD_NAMESPACE, the kubeconfig context's, else "default"). */
    namespace?: string;
  };
  /** The environment read for defaults (POD_NAMESPACE, POD_NAME, HOSTNAME); default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Namespace of the fleet's Leases: flag, then the Pod's own, then the kubeconfig context's, then "default". */
function leaseNamespace(kc: KubeConfig, env: NodeJS.ProcessEnv, flag?: string): string {
  return flag ?? env.POD_NAMESPACE ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
}

/**
 * Who this replica is in the Leases. A Pod's name is unique while it lives and
 * stays the same when its container restarts (the old process is then dead,
 * so taking its Leases back at once is safe); elsewhere the host name plus a
 * random suffix, so two processes on one machine never share an identity.
 */
function fleetIdentity(env: NodeJS.ProcessEnv, flag?: string): string {
  return flag ?? env.POD_NAME ?? `${env.HOSTNAME ?? hostname()}-${randomBytes(3).toString("hex")}`;
}

export interface Daemon {
  port: number;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions, log: Logger): Promise<Daemon> {
  const clock = opts.clock ?? systemClock;
  const kc = loadKubeConfig({ kubeconfig: opts.kubeconfig, context: opts.context });
  const server = kc.getCurrentCluster()?.server;
  const version = await checkReachable(kc);
  log.info({ server, version }, "connected to the Kubernetes API server");

  const clients = makeClients(kc);
  // Keep-alive connections for the plain HTTPS calls: Lease renewals, /readyz beats, discovery.
  const agents = new AgentPool();
  const metrics = new Metrics();
  const namespaces = opts.namespaces?.length ? opts.namespaces : undefined;
  if (namespaces) log.info({ namespaces }, "limited to namespaces: watching and writing only in these");
  const cache = new ClusterCache(clients, log, {
    namespaces,
    discovery: discoveryGet(kc, undefined, agents),
    // A Deployment is read for its revision and readiness only: the cache keeps those, not its pod template.
    slim: { Deployment: slimDeployment },
  });
  const env = opts.env ?? process.env;
  const fleetOptions: FleetOptions = {
    ...FLEET_DEFAULTS,
    ...opts.fleet,
    identity: fleetIdentity(env, opts.fleet?.identity),
  };
  const fleetNamespace = leaseNamespace(kc, env, opts.fleet?.namespace);
  // Every route write is fenced by the shard of the policy it is made for (fleet/fence.ts).
  const fence = new WriteFence((p) => fleet.holds(shardOf(p, fleetOptions.shards)));
  const routers = new RouterRegistry(
    cache,
    fence.wrap(new KubeWriter(clients, (kind) => cache.served(kind))),
  );
  const notifyConfig = opts.notifyConfig ? await loadNotifyConfig(opts.notifyConfig) : { channels: [] };
  const channels = notifyConfig.channels;
  if (channels.length)
    log.info({ channels: channels.map((c) => `${c.name} (${c.type})`) }, "notifications configured");
  // Delivery runs beside the loop: the controller hands a notification over and never waits for it.
  const notifier = new NotificationDispatcher({
    log: log.child({ component: "notify" }),
    registry: metrics.registry,
  });
  const notifyListener = new NotifyListener(notifier, channels, {
    now: () => clock.now(),
    ...(notifyConfig.stuckAfterMs !== undefined ? { stuckAfterMs: notifyConfig.stuckAfterMs } : {}),
  });
  const board = opts.ui !== false ? new RolloutBoard(() => clock.now()) : undefined;
  const gates = createAnalysisGateFactory(
    opts.minWindowSeconds !== undefined ? { minWindowSeconds: opts.minWindowSeconds } : {},
  );
  const fleet = new Fleet(fleetOptions, {
    api: countedLeaseApi(new KubeLeaseApi(kc, fleetNamespace, fleetOptions.name, undefined, agents), (verb) =>
      metrics.leaseRequests.inc({ verb }),
    ),
    clock,
    monotonic: () => performance.now(),
    log: log.child({ component: "fleet" }),
    // The controller and the health beat exist before the fleet's first round calls these.
    onChange: () => controller.ownershipChanged(),
    onRenewed: () => health.witness(),
  });
  const controller = new RolloutController({
    fence,
    objects: cache,
    routers,
    gates,
    events: new KubeEventRecorder(clients.core, clock, log),
    metrics,
    clock,
    log: log.child({ component: "controller" }),
    workers: opts.workers,
    namespaces,
    listeners: [notifyListener, ...(board ? [board] : [])],
  });
  cache.onChange((ref, obj) => controller.onObjectChange(ref, obj));
  cache.onResync((kind) => controller.onResync(kind));
  metrics.observeWatches(() =>
    cache.status().map((w) => ({
      kind: w.kind,
      ...(w.namespace ? { namespace: w.namespace } : {}),
      synced: w.synced,
      lists: w.lists,
    })),
  );
  const health = new ApiHealth(apiServerReadyz(kc, undefined, agents), () => clock.now(), {
    onRecovered: (downSince) => {
      log.info("the API server answers again; re-establishing failed and silent watches now");
      cache.retryFailed(downSince);
      fleet.nudge();
    },
  });
  const graceMs = opts.readinessGraceMs ?? 3_000;

  const store = new PolicyStore({ dir: opts.policiesDir, logger: log });
  let ready = false;
  const http = new HttpServer(
    metrics.registry,
    {
      // Ready means "an abort annotated now would be seen and written": false while blind.
      ready: () => {
        if (!ready) return { ok: false, detail: "starting: policies or watches not loaded yet" };
        const now = clock.now();
        const down = health.down;
        if (down && now - down.since >= graceMs)
          return {
            ok: false,
            detail: `API server not ready for ${Math.round((now - down.since) / 1000)} s: ${down.detail}`,
          };
        // Without Leases this replica holds no shard, so nothing it watches would be written.
        const leases = fleet.trouble();
        if (leases && leases.forMs >= graceMs)
          return {
            ok: false,
            detail: `cannot read or renew the fleet's Leases in ${fleetNamespace} for ${Math.round(leases.forMs / 1000)} s: ${leases.error}`,
          };
        const blind = cache.blind(now, graceMs);
        if (blind.length)
          return {
            ok: false,
            detail: `watches not synced: ${blind.map((w) => `${w.kind}${w.namespace ? `/${w.namespace}` : ""} (${w.lastError ?? "relisting"})`).join("; ")}`,
          };
        return {
          ok: true,
          detail: `ok: ${controller.policyCount()} policies managed here of ${controller.knownPolicyCount()} (shards ${[...fleet.ownedShards()].join(",") || "none"} of ${fleetOptions.shards}; ${fleet.liveReplicas()} live replicas)`,
        };
      },
    },
    log,
    board ? new UiRoutes(board) : undefined,
  );
  const port = await http.listen(opts.metricsPort, opts.metricsHost);
  log.info({ port }, `serving /healthz, /readyz and /metrics${board ? ", and the live page at /ui" : ""}`);

  // Every change set carries every current error; each is logged and counted once, when it appears.
  let reported = new Set<string>();
  const applyPolicies = (change: PolicyChangeSet) => {
    const now = new Set<string>();
    let added = 0;
    for (const e of change.errors) {
      const text = e.format();
      now.add(text);
      if (reported.has(text)) continue;
      added++;
      log.error({ file: e.file, line: e.line, column: e.column, field: e.path }, `invalid policy: ${text}`);
    }
    reported = now;
    metrics.policyErrors.set(change.errors.length);
    metrics.policyLoadErrors.inc(added);
    controller.setPolicies(change.upserted, change.removed);
  };

  try {
    await cache.start();
    health.start();
    log.info(
      {
        identity: fleetOptions.identity,
        namespace: fleetNamespace,
        shards: fleetOptions.shards,
        leaseDurationMs: fleetOptions.leaseDurationMs,
      },
      "joining the fleet",
    );
    await fleet.start();
    log.info(
      { watches: cache.status().map((s) => `${s.kind}:${s.synced ? "synced" : "unavailable"}`) },
      "watches started",
    );
    const initial = await store.start();
    applyPolicies(initial);
    store.subscribe((change) => {
      if (change.upserted.length || change.removed.length) {
        log.info(
          { upserted: change.upserted.map((p) => p.key), removed: change.removed },
          "policies reloaded",
        );
      }
      applyPolicies(change);
    });
    log.info(
      { dir: opts.policiesDir, policies: store.current().map((p) => p.key), errors: initial.errors.length },
      "policies loaded",
    );
    ready = true;
  } catch (err) {
    health.stop();
    await Promise.allSettled([
      store.close(),
      controller.stop(),
      fleet.stop(),
      cache.stop(),
      http.close(),
      notifier.close(),
    ]);
    agents.close();
    throw err;
  }

  return {
    port,
    stop: async () => {
      ready = false;
      await store.close();
      health.stop();
      await controller.stop();
      // Only after the last reconcile finished: the successor may take the shards at once.
      await fleet.stop();
      notifyListener.close();
      await notifier.close();
      await cache.stop();
      gates.close();
      await http.close();
      agents.close();
    },
  };
}
