/**
 * What the two owner floor programs share: the owner-named dependencies set up the way a controller sets them up
 * (prom-client with default metrics, an xstate actor, a pino logger, a node-cron task) and one watch open on
 * Leases, where a fleet's traffic is. The programs differ only in where they take client-node's classes from.
 */
import type { KubeConfig, Watch } from "@kubernetes/client-node";
import cron from "node-cron";
import { pino } from "pino";
import { Registry, collectDefaultMetrics, Counter } from "prom-client";
import { createActor, createMachine } from "xstate";

export async function holdStack(Config: typeof KubeConfig, Watcher: typeof Watch): Promise<void> {
  const kc = new Config();
  kc.loadFromString(process.env["FLOOR_KUBECONFIG"] ?? "");
  const registry = new Registry();
  // Sampled once a second, as rolloutd does: prom-client's default of 10 ms would wake the loop 100 times a second.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
  const events = new Counter({ name: "floor_events_total", help: "Watch events.", registers: [registry] });
  createActor(createMachine({ initial: "idle", states: { idle: { on: { GO: "busy" } }, busy: {} } })).start();
  const log = pino({ level: "info" });
  cron.schedule("0 0 1 1 *", () => events.inc());
  await new Watcher(kc).watch(
    "/apis/coordination.k8s.io/v1/namespaces/default/leases",
    { allowWatchBookmarks: true },
    () => events.inc(),
    (err: unknown) => {
      if (err) log.error({ err }, "floor: the watch ended");
    },
  );
  log.info("floor: the owner's dependencies loaded, one watch open");
  setInterval(() => {}, 2000);
}
