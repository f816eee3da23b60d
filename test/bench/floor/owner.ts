/**
 * Floor program: Node 24 with only the dependencies the project's owner named loaded and set up the way a
 * controller sets them up (client-node's KubeConfig and Watch, prom-client with default metrics, an xstate
 * actor, a pino logger, a node-cron task) and one watch open (on Leases, where a fleet's traffic is), and nothing
 * of rolloutd's. Imported from the packages' entry points, as rolloutd imports them. What any daemon built on
 * that stack holds at rest before it caches one object of its own.
 */
import { KubeConfig, Watch } from "@kubernetes/client-node";
import cron from "node-cron";
import { pino } from "pino";
import { Registry, collectDefaultMetrics, Counter } from "prom-client";
import { createActor, createMachine } from "xstate";

const kc = new KubeConfig();
kc.loadFromString(process.env["FLOOR_KUBECONFIG"] ?? "");
const watch = new Watch(kc);
const registry = new Registry();
// Sampled once a second, as rolloutd does: prom-client's default of 10 ms would wake the loop 100 times a second.
collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
const steps = new Counter({ name: "floor_steps_total", help: "none", registers: [registry] });
const actor = createActor(
  createMachine({ initial: "idle", states: { idle: { on: { GO: "busy" } }, busy: {} } }),
);
actor.start();
const log = pino({ level: "info" });
const task = cron.schedule("0 0 1 1 *", () => steps.inc());
await watch.watch(
  "/apis/coordination.k8s.io/v1/namespaces/default/leases",
  { allowWatchBookmarks: true },
  () => steps.inc(),
  (err: unknown) => {
    if (err) log.error({ err }, "floor: the watch ended");
  },
);
log.info({ task: typeof task }, "floor: owner's dependencies loaded, one watch open");
setInterval(() => {}, 2000);
