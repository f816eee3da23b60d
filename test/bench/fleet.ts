/**
 * Phase G of `npm run bench`: a fleet of R replicas on this machine's one
 * control plane, with N rollouts all stepping at once, at increasing N, to
 * see whether "N replicas carry N × the rollouts" (PRODUCT §5) and where two
 * cores stop carrying it. With R = 1 it measures one daemon with every
 * rollout in flight at once (issue 11: RSS and CPU "with all of them rolling
 * out at once").
 *
 * For each size, on objects of its own (deleted afterwards, so the next size
 * does not cache them): N rollouts created with bounded concurrency; R
 * replicas started with the default lease timings (15 s / 10 s / 2 s) and
 * left to split the 8 shards; the policies written (50 steps of 2 % every
 * --fleet-interval, so no rollout finishes during the window); every canary
 * shipped; then a window of --fleet-window seconds in which are measured:
 * - per replica, from /proc: CPU seconds and RSS; from its /metrics (scraped
 *   only at the window's ends): policies managed and step-deadline lateness;
 * - the fleet's step-deadline lateness (the replicas' histograms summed);
 * - a sample of aborts at a steady pace, each timed from the annotation
 *   patch's response to the watch event showing the canary at 0 (100 %
 *   stable), through whichever replica holds the rollout's shard;
 * - kube-apiserver's, etcd's and this harness's own CPU (it plays the
 *   deployment controller and the gateway, and watches every route), so a
 *   saturated run says which process ran out of cores.
 * Waiting (adoption, rollouts started) reads the route watch, not /metrics:
 * a scrape of a replica with thousands of policies costs it CPU.
 */
import { cpus, loadavg } from "node:os";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { FLEET_LABEL } from "../../src/fleet/lease.ts";
import { createNamespace, type Cluster } from "../support/cluster.ts";
import { mapLimit, sleep } from "../support/chaos.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { stateOf } from "../support/routes.ts";
import {
  fractionAtMost,
  histogram,
  merge,
  percentile,
  scrape,
  scrapeApiServer,
  since,
  value,
  type Sample,
} from "./metrics.ts";
import {
  createRollouts,
  deleteRollouts,
  removePolicies,
  rolloutsFor,
  ship,
  writePolicies,
  type Rollout,
} from "./objects.ts";
import { controlPlanePids, machineBusy, procStats, until } from "./proc.ts";
import { abortSample, runAborts } from "./aborts.ts";
import { est, mb, ms, type Report, secs } from "./report.ts";
import { RouteWatch } from "./watch.ts";

export interface FleetBenchOptions {
  replicas: number;
  /** Rollout counts, run one after the other. */
  sizes: number[];
  intervalS: number;
  windowS: number;
  /** Aborts sampled per size (at most N / 2, so most rollouts keep stepping). */
  aborts: number;
  abortEveryMs: number;
  concurrency: number;
  /** How the daemon is started (see run.ts); undefined: sources through tsx. */
  entry: string[] | undefined;
  extraArgs: string[];
}

const LEASE_NS = "rolloutd-bench";
const SHARDS = 8;
const STEPS = Array.from({ length: 50 }, (_, i) => (i + 1) * 2);
/** A generous bound for adoption: adopting 10,000 rollouts takes minutes on two cores. */
const WAIT_MS = 10 * 60_000;
/** The bound for every rollout to start after the last ship. */
const STARTED_WAIT_MS = 3 * 60_000;

interface Replica {
  identity: string;
  d: DaemonProcess;
}

/** CPU seconds of the processes that share the cores, at one instant. */
interface CpuMark {
  at: number;
  apiserver: number;
  etcd: number;
  harness: number;
  replicas: number[];
  /** Every process on the machine, ours and other users'. */
  machine: number;
}

export async function phaseFleet(c: Cluster, dir: string, o: FleetBenchOptions, r: Report): Promise<void> {
  const say = (line = "") => r.say(line);
  say();
  say(
    `## G. ${o.replicas === 1 ? "one daemon" : `a fleet of ${o.replicas} replicas`} with every rollout stepping at once: ` +
      `${o.sizes.join(" → ")} rollouts, a step every ${o.intervalS} s, ${o.windowS} s measured per size`,
  );
  say(
    `(default lease timings 15 s / 10 s / 2 s, ${SHARDS} shards; ${cpus().length} cores shared by kube-apiserver, etcd, ` +
      `the replicas and this harness, which plays the deployment controller and the gateway and watches every route)`,
  );
  // Phase G may run twice in one bench (--rolling, then --fleet): the namespace may exist already.
  await createNamespace(c, LEASE_NS).catch((err: unknown) => {
    if ((err as { code?: number }).code !== 409) throw err;
  });
  const pids = controlPlanePids(c.cp.dir);
  if (!pids.apiserver || !pids.etcd) say(`warning: control plane pids not found (${JSON.stringify(pids)})`);
  const watch = new RouteWatch(c, "HTTPRoute");
  await watch.start();
  try {
    for (const [k, n] of o.sizes.entries())
      await oneSize(c, dir, o, r, watch, pids, `g${o.replicas}x${k}`, n);
  } finally {
    watch.close();
  }
}

async function oneSize(
  c: Cluster,
  dir: string,
  o: FleetBenchOptions,
  r: Report,
  watch: RouteWatch,
  pids: { etcd?: number; apiserver?: number },
  tag: string,
  n: number,
): Promise<void> {
  const say = (line = "") => r.say(line);
  const began = performance.now();
  const R = o.replicas;
  say();
  say(`### ${R} × rolloutd, ${n} rollouts (load average ${loadavg()[0]!.toFixed(2)} at start)`);
  const rs = rolloutsFor(`bench-${tag}`, n);
  const replicas: Replica[] = [];
  const cpuNow = (): CpuMark => ({
    at: performance.now(),
    apiserver: pids.apiserver ? procStats(pids.apiserver).cpu : NaN,
    etcd: pids.etcd ? procStats(pids.etcd).cpu : NaN,
    harness: procStats(process.pid).cpu,
    replicas: replicas.map((x) => procStats(x.d.pid).cpu),
    machine: machineBusy(),
  });
  /** "apiserver 1.23 cores, etcd …": CPU used between two marks, in cores (CPU-s per s). */
  const cores = (a: CpuMark, b: CpuMark): string => {
    const s = (b.at - a.at) / 1000;
    const f = (x: number, y: number) => ((y - x) / s).toFixed(2);
    const reps = b.replicas.map((y, i) => f(a.replicas[i] ?? y, y));
    const total =
      (b.apiserver - a.apiserver + b.etcd - a.etcd + b.harness - a.harness) / s +
      b.replicas.reduce((acc, y, i) => acc + (y - (a.replicas[i] ?? y)) / s, 0);
    return (
      `kube-apiserver ${f(a.apiserver, b.apiserver)}, etcd ${f(a.etcd, b.etcd)}, harness ${f(a.harness, b.harness)}` +
      (reps.length ? `, replicas ${reps.join(" + ")}` : "") +
      ` cores; all together ${total.toFixed(2)} of ${cpus().length}; ` +
      `other processes on the machine ${Math.max(0, (b.machine - a.machine) / s - total).toFixed(2)}`
    );
  };

  try {
    // Given: the objects, with bounded concurrency.
    let t = performance.now();
    let mark = cpuNow();
    const objects = await createRollouts(c, rs, o.concurrency);
    const createS = (performance.now() - t) / 1000;
    say(
      `setup: ${objects} objects (namespaces, 2 Deployments + status each, HTTPRoutes) in ${createS.toFixed(1)} s ` +
        `(${(objects / createS).toFixed(0)} objects/s, ${o.concurrency} requests in flight); CPU meanwhile: ${cores(mark, cpuNow())}`,
    );

    // The fleet: R replicas with the default lease timings, a fleet name of this size's own.
    t = performance.now();
    const fleet = `bench-${tag}`;
    for (let i = 0; i < R; i++) {
      const identity = `${fleet}-r${i}`;
      const d = await startDaemon({
        kubeconfig: c.cp.kubeconfigPath,
        policiesDir: dir,
        fleet,
        entry: o.entry,
        extraArgs: [...o.extraArgs, `--lease-namespace=${LEASE_NS}`, `--identity=${identity}`],
      });
      replicas.push({ identity, d });
    }
    const share = Math.ceil(SHARDS / R);
    await until(
      `the ${SHARDS} shards split over ${R} replicas`,
      async () => {
        const h = await holders(c, fleet);
        const counts = replicas.map((x) => [...h.values()].filter((id) => id === x.identity).length);
        return counts.every((k) => k >= 1 && k <= share) && counts.reduce((a, b) => a + b, 0) === SHARDS;
      },
      120_000,
      1_000,
    );
    say(
      `${R === 1 ? "the daemon started and took the" : `${R} replicas started and split the`} ${SHARDS} shards in ${secs(t)}`,
    );

    // The policies: every replica reads every file and manages the policies of its shards.
    t = performance.now();
    mark = cpuNow();
    writePolicies(dir, tag, rs, [`  steps: [${STEPS.join(", ")}]`, `  interval: ${o.intervalS}s`]);
    const phaseOf = (x: Rollout) => {
      const obj = watch.get(x.ns, x.name);
      return obj ? stateOf(obj)?.phase : undefined;
    };
    const adopted = await reached(() => rs.filter((x) => phaseOf(x) === "Steady").length, n, WAIT_MS);
    say(
      `${adopted === n ? "all " : ""}${adopted}${adopted === n ? "" : ` of ${n}`} adopted ${secs(t)} after the policy files were written; ` +
        `CPU meanwhile: ${cores(mark, cpuNow())}`,
    );
    await sleep(5_000); // past adoption's burst
    const atRest = replicas.map((x) => procStats(x.d.pid).rss);
    mark = cpuNow();
    await sleep(15_000);
    say(
      `at rest (${n} policies Steady, 15 s): RSS ${atRest.map((x) => mb(x)).join(" + ")}; CPU: ${cores(mark, cpuNow())}`,
    );

    // When: every canary ships; every rollout steps every interval from then on.
    t = performance.now();
    mark = cpuNow();
    await mapLimit(rs, o.concurrency, (x) => ship(c, x));
    const shipped = secs(t);
    // Started: a step written. A fleet that cannot keep up is measured as it is, after a bounded wait.
    const started = await reached(
      () => rs.filter((x) => phaseOf(x) === "Progressing").length,
      n,
      STARTED_WAIT_MS,
    );
    const accepted = rs.filter((x) => {
      const obj = watch.get(x.ns, x.name);
      return obj !== undefined && stateOf(obj)?.stepStartedAt !== undefined;
    }).length;
    say(
      `shipped ${n} canaries in ${shipped}; ${started === n ? "all" : `${started} of ${n}`} Progressing ${secs(t)} after the first ship ` +
        `(${accepted} with their step accepted by the gateway at that moment); CPU meanwhile: ${cores(mark, cpuNow())}`,
    );
    await sleep(o.intervalS * 1000); // into the rhythm of steps

    // The window: lateness and CPU of everything, and a sample of aborts at a steady pace.
    const before = await Promise.all(replicas.map((x) => scrape(x.d.port)));
    const API_LATENCY = "apiserver_request_duration_seconds";
    const apiLatency = () => scrapeApiServer(c.cp.server, c.cp.adminToken, c.cp.caData, API_LATENCY);
    const apiBefore = await apiLatency();
    mark = cpuNow();
    const windowStart = performance.now();
    const maxRss = replicas.map(() => 0);
    let maxApiRss = 0;
    let maxEtcdRss = 0;
    const sampling = (async () => {
      while (performance.now() - windowStart < o.windowS * 1000) {
        replicas.forEach((x, i) => (maxRss[i] = Math.max(maxRss[i]!, procStats(x.d.pid).rss)));
        if (pids.apiserver) maxApiRss = Math.max(maxApiRss, procStats(pids.apiserver).rss);
        if (pids.etcd) maxEtcdRss = Math.max(maxEtcdRss, procStats(pids.etcd).rss);
        await sleep(2_000);
      }
    })();
    const sample = abortSample(rs, Math.min(o.aborts, Math.floor(n / 2)));
    const aborts = runAborts(c, watch, sample, o.abortEveryMs);
    await sampling;
    const after = await Promise.all(replicas.map((x) => scrape(x.d.port)));
    const apiAfter = await apiLatency();
    const end = cpuNow();
    const windowS = (end.at - mark.at) / 1000;
    const abortResult = await aborts;

    // Then: the report.
    const lateness = (s: Sample[]) => histogram(s, "rolloutd_step_deadline_lateness_seconds");
    const late = replicas.map((_, i) => since(lateness(before[i]!), lateness(after[i]!)));
    const all = merge(late);
    const held = await holders(c, fleet);
    say(`window ${windowS.toFixed(0)} s:`);
    replicas.forEach((x, i) => {
      const policies = value(after[i]!, "rolloutd_policies") ?? NaN;
      const shards = [...held].filter(([, id]) => id === x.identity).map(([s]) => s);
      const cpuS = end.replicas[i]! - mark.replicas[i]!;
      const rec = since(
        histogram(before[i]!, "rolloutd_reconcile_duration_seconds"),
        histogram(after[i]!, "rolloutd_reconcile_duration_seconds"),
      );
      const depth = value(after[i]!, "rolloutd_workqueue_depth") ?? NaN;
      // Failed reconciles, 409s among them (a route changed while deciding): each is retried after a backoff.
      const failed = (m: Sample[]) => value(m, "rolloutd_reconcile_total", { result: "error" }) ?? 0;
      const errors = failed(after[i]!) - failed(before[i]!);
      say(
        `  ${x.identity}: ${policies} rollouts (shards ${shards.join(",")}), RSS ${mb(atRest[i])} at rest → max ${mb(maxRss[i])} stepping, ` +
          `CPU ${((cpuS / windowS) * 60).toFixed(1)} CPU-s per minute (${((cpuS / windowS) * 100).toFixed(0)} % of a core); ` +
          `${late[i]!.count} steps started, lateness p99 ${est(late[i]!, 0.99)}; ${rec.count} reconciles, ` +
          `mean ${ms((rec.sum / Math.max(1, rec.count)) * 1000)} (each awaits its API write), ${errors} failed and retried, ` +
          `queue depth ${depth} at the end`,
      );
    });
    const expected = Math.round((n - sample.length / 2) * (windowS / o.intervalS));
    const within1s = fractionAtMost(all, 1);
    say(
      `  fleet: ${all.count} steps started (≈ ${expected} if every deadline were met); step-deadline lateness p50 ${est(all, 0.5)}, ` +
        `p99 ${est(all, 0.99)}, ${within1s === undefined ? "?" : (within1s * 100).toFixed(1)} % ≤ 1 s  (target p99 < 1 s)`,
    );
    const lat = abortResult.latencies;
    say(
      `  aborts: ${lat.length}/${sample.length} seen at 100 % stable${abortResult.lost.length ? ` (${abortResult.lost.length} not within 60 s)` : ""}, one every ${o.abortEveryMs} ms; ` +
        `annotation patch answered → watch event with canary 0: p50 ${ms(percentile(lat, 50))}, p95 ${ms(percentile(lat, 95))}, ` +
        `p99 ${ms(percentile(lat, 99))}, max ${ms(lat.at(-1) ?? NaN)}`,
    );
    // The daemons' own part (rolloutd_abort_seconds: their watch event → their write answered), the rest being the
    // API server's and the watches' on both sides; bucketed, so an upper bound.
    const own = merge(
      replicas.map((_, i) =>
        since(
          histogram(before[i]!, "rolloutd_abort_seconds"),
          histogram(after[i]!, "rolloutd_abort_seconds"),
        ),
      ),
    );
    say(
      `  of which in the replicas (rolloutd_abort_seconds, ${own.count} aborts): p50 ${est(own, 0.5)}, ` +
        `p95 ${est(own, 0.95)}, p99 ${est(own, 0.99)}`,
    );
    // What a route write (a step's or an abort's) waited for at the API server in the window.
    const patches = since(
      histogram(apiBefore, "apiserver_request_duration_seconds", { verb: "PATCH", resource: "httproutes" }),
      histogram(apiAfter, "apiserver_request_duration_seconds", { verb: "PATCH", resource: "httproutes" }),
    );
    say(
      `  HTTPRoute PATCHes at the API server (${patches.count}): p50 ${est(patches, 0.5)}, p95 ${est(patches, 0.95)}, ` +
        `p99 ${est(patches, 0.99)}`,
    );
    say(`  CPU in the window: ${cores(mark, end)}`);
    say(
      `  RSS max: kube-apiserver ${mb(maxApiRss)}, etcd ${mb(maxEtcdRss)}; harness ${mb(procStats(process.pid).rss)}`,
    );
    say(`  size done in ${secs(began)} (setup included)`);
  } finally {
    await Promise.all(replicas.map((x) => x.d.stop().catch(() => null)));
    await Promise.all(replicas.map((x) => x.d.dispose()));
    removePolicies(dir, tag, rs);
    const t = performance.now();
    await deleteRollouts(c, rs, o.concurrency).catch((err: unknown) =>
      say(`warning: could not delete the ${n} rollouts' objects: ${String(err)}`),
    );
    say(`  (objects deleted in ${secs(t)})`);
  }
}

/** Polls `count` every 2 s until it reaches `want` or `timeoutMs` has passed; returns the last count. */
async function reached(count: () => number, want: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const k = count();
    if (k >= want || Date.now() > deadline) return k;
    await sleep(2_000);
  }
}

/** Shard → holder identity of one fleet, as its Lease objects say now. */
async function holders(c: Cluster, fleet: string): Promise<Map<number, string>> {
  const list = await c.kc
    .makeApiClient(CoordinationV1Api)
    .listNamespacedLease({ namespace: LEASE_NS, labelSelector: `${FLEET_LABEL}=${fleet}` });
  const out = new Map<number, string>();
  for (const l of list.items) {
    const m = /-shard-(\d+)$/.exec(l.metadata?.name ?? "");
    if (m) out.set(Number(m[1]), l.spec?.holderIdentity ?? "");
  }
  return out;
}
