/**
 * Floor program: Node 24 with only the dependencies the project's owner named loaded and set up the way a
 * controller sets them up (client-node's KubeConfig and Watch, prom-client with default metrics, an xstate
 * actor, a pino logger, a node-cron task) and one watch open (on Leases, where a fleet's traffic is), and nothing
 * of rolloutd's. As owner.ts, but client-node's two classes taken from its internal modules, so the bundle holds
 * none of the typed API and models: the least the stack can hold, by a route rolloutd does not take (the paths
 * are not a public interface of the package).
 */
// Deep imports: only the modules these two classes need, which the package entry point cannot give a bundler.
import { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import { Watch } from "@kubernetes/client-node/dist/watch.js";
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
