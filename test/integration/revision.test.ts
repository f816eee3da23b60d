/**
 * A Deployment's revision (the hash of its pod template that starts a
 * rollout, controller/observe.ts) must not depend on how the object reached
 * the watch cache: listed (at start, after a 410 Gone, after a watch
 * failure) or delivered by a watch event. Watch events are the JSON as
 * served; a list through client-node's typed API is its model instead
 * (strings of date-time fields become Date objects, fields the model lacks
 * are dropped), and the same unchanged Deployment then hashes differently:
 * a rollout nobody shipped, or one missed.
 *
 * On realistic Deployments (test/support/deployments.ts) with the newest pod
 * fields this API server (v1.34) keeps, on the real API server: the cache's
 * revision against the raw object's, listed and watched; then the daemon
 * restarted under an adopted policy, and a scale, start no rollout.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { templateRevision, slimDeployment } from "../../src/controller/observe.ts";
import { ClusterCache } from "../../src/kube/cache.ts";
import { makeClients } from "../../src/kube/client.ts";
import {
  createNamespace,
  createObject,
  eventually,
  getObject,
  markRolledOut,
  mergePatch,
} from "../support/cluster.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import {
  NEWEST_POD_FIELD_GATES,
  TEMPLATE_TIMESTAMPS,
  realisticDeployment,
  type RealisticOptions,
} from "../support/deployments.ts";
import { httpRoute } from "../support/routes.ts";
import { startWorld, type World } from "../support/world.ts";

const silent = pino({ level: "silent" });

/** Each variant of the realistic Deployment: as it is, and with each date-time field a pod template can carry. */
const VARIANTS: Record<string, RealisticOptions> = {
  realistic: { alphaFields: true },
  ...Object.fromEntries(
    Object.entries(TEMPLATE_TIMESTAMPS).map(([field, meta]) => [
      `template-${field.toLowerCase()}`,
      { alphaFields: true, templateMetadata: meta },
    ]),
  ),
};

/** Pod fields the variants rely on the server to keep, so a server dropping one fails here, not silently. */
const KEPT = [
  '"hostUsers":false',
  '"resizePolicy"',
  '"restartPolicy":"Always"',
  '"fileKeyRef"',
  '"restartPolicyRules"',
  '"hostnameOverride"',
  '"stopSignal"',
  '"sizeLimit":"500Mi"',
  '"resources":{"limits":{"cpu":"3"',
];

void describe("a Deployment's revision, listed or watched", () => {
  let w: World;
  let restarted: DaemonProcess | undefined;

  before(async () => {
    w = await startWorld({ apiServerArgs: [NEWEST_POD_FIELD_GATES] });
  });

  after(async () => {
    await restarted?.stop();
    await restarted?.dispose();
    await w?.stop();
  });

  void it("the watch cache keeps the revision of the JSON served, from the list and from watch events", async (t) => {
    const ns = "rev-cache";
    await createNamespace(w.c, ns);
    for (const [name, opts] of Object.entries(VARIANTS))
      await createObject(w.c, "Deployment", realisticDeployment(ns, name, "1", opts));
    const raw = (name: string) => getObject(w.c, "Deployment", ns, name);
    for (const name of Object.keys(VARIANTS)) {
      const text = JSON.stringify(await raw(name));
      for (const field of KEPT) assert.ok(text.includes(field), `${name}: the server kept ${field}`);
    }
    const typed = await w.c.apps.listNamespacedDeployment({ namespace: ns });

    // The daemon's cache (all namespaces) and one limited to the namespace: both list, then watch.
    const caches = [undefined, [ns]].map(
      (namespaces) =>
        new ClusterCache(makeClients(w.c.kc), silent, {
          kinds: ["Deployment"],
          ...(namespaces ? { namespaces } : {}),
          slim: { Deployment: slimDeployment },
        }),
    );
    try {
      await Promise.all(caches.map((c) => c.start()));
      const agree = async (how: string, version: (name: string) => string | undefined) => {
        for (const name of Object.keys(VARIANTS)) {
          const served = await raw(name);
          for (const [i, cache] of caches.entries()) {
            const kept = await eventually(`${name} ${how} in cache ${i}`, () => {
              const o = cache.get("Deployment", ns, name);
              return o && o.metadata?.resourceVersion === version(name) ? o : undefined;
            });
            assert.equal(
              templateRevision(kept),
              templateRevision(served),
              `${name} ${how} (cache ${i}): the revision of the JSON served`,
            );
          }
        }
      };
      const listedVersion = new Map(typed.items.map((d) => [d.metadata!.name!, d.metadata!.resourceVersion]));
      // What the typed list says of the same objects: shown, not asserted (it is client-node's model).
      for (const d of typed.items) {
        const served = await raw(d.metadata!.name!);
        t.diagnostic(
          `${d.metadata!.name}: typed list ${templateRevision(d)}, JSON ${templateRevision(served)}`,
        );
      }

      await agree("listed", (name) => listedVersion.get(name));
      const scaledVersion = new Map<string, string | undefined>();
      for (const name of Object.keys(VARIANTS)) {
        const scaled = await mergePatch(w.c, "Deployment", ns, name, { spec: { replicas: 5 } });
        scaledVersion.set(name, scaled.metadata?.resourceVersion);
      }
      await agree("watched after a scale", (name) => scaledVersion.get(name));
    } finally {
      await Promise.all(caches.map((c) => c.stop()));
    }
  });

  // Last: it replaces the world's daemon.
  void it("a restart (a relist) and a scale start no rollout of a realistic Deployment; a new template does", async () => {
    const s = await w.scenario(httpRoute, "rev-restart", {
      deployment: (ns, name, version) =>
        realisticDeployment(ns, name, version, {
          alphaFields: true,
          templateMetadata: {
            ...TEMPLATE_TIMESTAMPS.creationTimestamp,
            ...TEMPLATE_TIMESTAMPS.managedFields,
          },
        }),
    });
    const rawCanary = () => getObject(w.c, "Deployment", s.ns, s.canary);
    s.writePolicy({ steps: [10, 50, 100], interval: "1h" });
    // Adopted from objects the running daemon got as watch events (created after it started).
    const adopted = await s.until("adopted", (st) => st.phase === "Steady");
    assert.equal(adopted.baseline[s.canary], templateRevision(await rawCanary()));
    const weights = await s.weights();

    // When: the daemon restarts (its watches list every Deployment again), then the canary is scaled.
    assert.equal(await w.daemon.stop(), 0);
    restarted = await startDaemon({ kubeconfig: w.c.cp.kubeconfigPath, policiesDir: w.policiesDir });
    await mergePatch(w.c, "Deployment", s.ns, s.canary, { spec: { replicas: 4 } });
    await markRolledOut(w.c, s.ns, s.canary);
    // A new template, not yet rolled out: the daemon names it and waits. Events of one Deployment arrive
    // in order, after the list, so by this line it had decided on the relisted and the scaled object too.
    await s.shipCanary("2", s.canary, false);
    const shipped = await rawCanary();
    const next = templateRevision(shipped)!;
    assert.notEqual(next, adopted.baseline[s.canary]);
    await restarted.waitForLine(
      "the new revision seen, waiting to roll out",
      (l) =>
        l.policy === `${s.ns}/${s.route}` &&
        l.msg.includes(`new revision ${next} of ${s.canary} is rolling out`) &&
        l.msg.includes(`generation ${shipped.metadata?.generation} not yet observed`),
    );

    // Then: still Steady on the adopted revisions, traffic untouched.
    const st = await s.state();
    assert.equal(st?.phase, "Steady", "neither the relist nor the scale started a rollout");
    assert.deepEqual(st?.baseline, adopted.baseline);
    assert.equal(st?.revision, adopted.revision);
    assert.deepEqual(await s.weights(), weights);

    // And the new template, once rolled out, is one rollout of its raw revision.
    await markRolledOut(w.c, s.ns, s.canary);
    const started = await s.until("the new revision rolling out", (x) => x.phase === "Progressing");
    assert.equal(started.revision, next);
    assert.equal(started.canaryWeight, 10);
  });
});
