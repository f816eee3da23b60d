/**
 * `npm run bench`: measures rolloutd against the targets of PRODUCT §5 with a
 * real control plane (etcd + kube-apiserver on loopback) and the daemon as a
 * child process, the way users run it. Not a test: it prints a report and
 * writes it to bench-results.txt in the current directory.
 *
 * Route family: Gateway API HTTPRoute, with FakeGatewayStatus playing the
 * gateway. It is where App Mesh users are moving; the abort annotation, the
 * weights and the state live on one object, so "annotation → weights" is one
 * watch hop and one write; and every step pays the real acceptance round trip
 * (status written by the gateway, then the daemon's ACCEPTED write).
 *
 * Phases (each measured on its own, from differences of the daemon's /metrics):
 *   A  N rollouts Progressing with a 10m interval (so they stay put): RSS, then
 *      a sample of aborts at a steady pace, timed from the annotation patch's
 *      response to the watch event showing canary weight 0.
 *   B  N other rollouts stepping every --interval for --lateness-seconds:
 *      step-deadline lateness and analysis result → write (advance), RSS.
 *   C  --rollbacks rollouts whose analysis always fails (a real Prometheus,
 *      check `vector(1)` with max 0): analysis result → rollback written.
 *   D  --idle K policies whose routes are Steady, in a freshly started daemon: RSS.
 *   E  --breach-runs K: breach onset → 100 % stable at a 10 s interval (steps 20/40/60, failureLimit 2, real
 *      Prometheus scraping prom-client backends every second, load split by the route's weights), K runs with
 *      in-step checks (the default cadence) and K runs with `cadence: 0` (checks only at step deadlines, how
 *      rolloutd decided before in-step detection). The breach (canary latency 20 → 600 ms, bound p99 300 ms)
 *      starts at a random moment of step 2.
 *   F  --rest 0,50,200,1000: for each size a fresh daemon with that many Steady
 *      policies, CPU seconds per minute at rest and RSS, read from /proc (not
 *      from /metrics, whose scrape would cost CPU itself); --churn K: CPU to add
 *      K policy files one at a time to a running daemon, until all are adopted.
 *   G  --fleet R --fleet-rollouts 1000,3000,10000: R replicas (default lease timings) with every rollout
 *      stepping at once, at each size in turn: per replica rollouts, RSS and CPU; the fleet's step-deadline
 *      lateness; abort p99; the CPU of kube-apiserver, etcd and this harness (fleet.ts). --rolling 50,200,1000
 *      runs the same with one daemon: RSS and CPU with all of them rolling out at once.
 */
import { cpus, loadavg, tmpdir } from "node:os";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { KObject } from "../../src/kube/kinds.ts";
import { startPrometheus, type PrometheusHandle } from "../controlplane/prometheus.ts";
import { mapLimit, sleep } from "../support/chaos.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { FakeGatewayStatus, httpRoute, stateOf } from "../support/routes.ts";
import { fractionAtMost, histogram, percentile, scrape, since, value, type Sample } from "./metrics.ts";
import { createRollouts, removePolicies, rolloutsFor, ship, writePolicies, type Rollout } from "./objects.ts";
import { procStats, until } from "./proc.ts";
import { abortSample, runAborts } from "./aborts.ts";
import { phaseFleet } from "./fleet.ts";
import { est, mb, ms, Report, secs } from "./report.ts";
import { RouteWatch } from "./watch.ts";
import { buildBundle, chartNodeOptions } from "./build.ts";
import { Rig } from "../support/rig.ts";
import { startFaultyPrometheus, type FaultyPrometheus } from "../support/faults.ts";

const HELP = `usage: npm run bench -- [options]

  --rollouts N          active rollouts for phases A and B (default 100; 0 skips A, B and C)
  --aborts M            aborts sampled in phase A (default 100, at most N)
  --abort-every MS      one abort (or burst) every MS milliseconds (default 100)
  --abort-burst B       aborts sent together at each tick (default 1)
  --interval D          step interval in phase B (default 2s)
  --lateness-seconds S  phase B measurement window (default 30)
  --rollbacks R         rollouts rolled back in phase C (default 100; 0 skips C)
  --hang                phase A with every rollout's analysis query hanging (a Prometheus that accepts and
                        never answers, query timeout 5m): the abort must not wait for any of them
  --idle K              idle (Steady) policies for phase D (default 0: skipped)
  --breach-runs K       phase E runs per mode (default 0: skipped); with --rollouts 0 only E runs
  --idle-deployments    also create both Deployments of each idle policy (default: routes only)
  --rest LIST           phase F: comma-separated policy counts measured at rest, e.g. 0,50,200,1000 (default: skipped)
  --rest-seconds S      phase F: CPU measurement window at rest per size (default 60)
  --churn K             phase F: policy files added one at a time to a running daemon (default 0: skipped)
  --churn-every MS      phase F: pause between two added files (default 20)
  --fleet R             phase G: replicas of the fleet (default 0: skipped)
  --fleet-rollouts LIST phase G: comma-separated rollout counts, run one after the other (default 1000)
  --rolling LIST        phase G with one daemon: comma-separated rollout counts, all rolling out at once
  --fleet-interval S    phase G: seconds between two steps of a rollout (default 30)
  --fleet-window S      phase G: measurement window per size (default 60)
  --fleet-aborts K      phase G: aborts sampled per size, one every --fleet-abort-every ms (default 200)
  --fleet-abort-every MS  (default 250)
  --workers W           passed to rolloutd run --workers (default: the daemon's default)
  --concurrency C       API requests in flight while creating objects (default 20)
  --node-options "F"    V8/Node flags for the compiled daemon (default: the chart's nodeOptions in
                        charts/rolloutd/values.yaml, as production runs it; "" for V8's own defaults)
  --heap-mb H           the daemon's --max-old-space-size (default: V8's choice for this machine's memory)
  --semi-space-mb S     the daemon's --max-semi-space-size (default: V8's)
  --tsx                 run the daemon from its sources through tsx (default: the bundle npm run bundle makes, as shipped;
                        tsx adds about 50 MB of RSS)
  --out FILE            report file (default bench-results.txt)
`;

const { values: opt } = parseArgs({
  options: {
    rollouts: { type: "string", default: "100" },
    aborts: { type: "string", default: "100" },
    "abort-every": { type: "string", default: "100" },
    "abort-burst": { type: "string", default: "1" },
    interval: { type: "string", default: "2s" },
    "lateness-seconds": { type: "string", default: "30" },
    rollbacks: { type: "string", default: "100" },
    hang: { type: "boolean", default: false },
    idle: { type: "string", default: "0" },
    "breach-runs": { type: "string", default: "0" },
    "idle-deployments": { type: "boolean", default: false },
    rest: { type: "string", default: "" },
    "rest-seconds": { type: "string", default: "60" },
    churn: { type: "string", default: "0" },
    "churn-every": { type: "string", default: "20" },
    fleet: { type: "string", default: "0" },
    "fleet-rollouts": { type: "string", default: "1000" },
    rolling: { type: "string", default: "" },
    "fleet-interval": { type: "string", default: "30" },
    "fleet-window": { type: "string", default: "60" },
    "fleet-aborts": { type: "string", default: "200" },
    "fleet-abort-every": { type: "string", default: "250" },
    workers: { type: "string" },
    // Caps the daemon's V8 old space, as a container memory limit does (Node sizes its heap from the cgroup limit).
    "heap-mb": { type: "string" },
    // V8 young-generation semi-space size for the daemon (the chart sets it; see values.yaml nodeOptions).
    "semi-space-mb": { type: "string" },
    "node-options": { type: "string" },
    concurrency: { type: "string", default: "20" },
    tsx: { type: "boolean", default: false },
    out: { type: "string", default: "bench-results.txt" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});
if (opt.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function int(name: keyof typeof opt, min: number): number {
  const raw = opt[name];
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min}, got ${String(raw)}\n${HELP}`);
    process.exit(2);
  }
  return n;
}

const N = int("rollouts", 0);
const ABORTS = Math.min(int("aborts", 0), N);
const ABORT_EVERY = int("abort-every", 1);
const ABORT_BURST = int("abort-burst", 1);
const WINDOW_S = int("lateness-seconds", 1);
const ROLLBACKS = N > 0 ? int("rollbacks", 0) : 0;
const IDLE = int("idle", 0);
const BREACH_RUNS = int("breach-runs", 0);
const CONCURRENCY = int("concurrency", 1);
function list(name: "rest" | "fleet-rollouts" | "rolling"): number[] {
  const raw = opt[name];
  return raw
    ? raw.split(",").map((x) => {
        const n = Number(x);
        if (!Number.isInteger(n) || n < 0) {
          process.stderr.write(`--${name} must be comma-separated whole numbers, got ${raw}\n`);
          process.exit(2);
        }
        return n;
      })
    : [];
}
const REST = list("rest");
const FLEET = int("fleet", 0);
const FLEET_SIZES = FLEET > 0 ? list("fleet-rollouts") : [];
const ROLLING = list("rolling");
const REST_S = int("rest-seconds", 1);
const CHURN = int("churn", 0);
const CHURN_EVERY = int("churn-every", 0);
const INTERVAL = opt.interval;
const intervalMs = /^(\d+)s$/.exec(INTERVAL) ? Number(INTERVAL.slice(0, -1)) * 1000 : NaN;
if (!Number.isFinite(intervalMs) || intervalMs < 1000) {
  process.stderr.write(`--interval must be whole seconds like 2s, got ${INTERVAL}\n`);
  process.exit(2);
}
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** How the daemon is started: compiled JS, or the sources through tsx (undefined). */
let entry: string[] | undefined;

/** Builds the daemon as the image runs it (`npm run bundle`: one minified file), unless --tsx. */
function compiledEntry(): string[] | undefined {
  if (opt.tsx) return undefined;
  return [buildBundle(ROOT, "bench")];
}

// ---------------------------------------------------------------- report

const report = new Report();
const say = (line = "") => report.say(line);

// ---------------------------------------------------------------- objects

const weights = (obj: KObject) => httpRoute.weights(obj);

// ---------------------------------------------------------------- waiting on the daemon

async function phaseCount(d: DaemonProcess, phase: string): Promise<number> {
  return value(await scrape(d.port), "rolloutd_rollouts", { phase }) ?? 0;
}

async function memory(d: DaemonProcess): Promise<{ rss?: number; heap?: number; samples: Sample[] }> {
  const samples = await scrape(d.port);
  return {
    rss: value(samples, "rolloutd_process_resident_memory_bytes"),
    heap: value(samples, "rolloutd_nodejs_heap_size_used_bytes"),
    samples,
  };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = performance.now();
  say(`# rolloutd benchmark, ${new Date().toISOString()}`);
  say(`command: npm run bench -- ${process.argv.slice(2).join(" ")}`.trimEnd());
  say(
    `machine: ${cpus().length} cores, Node ${process.version}, load average at start ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}` + " (the control plane, the daemon and this harness share these cores; numbers are noisy)",
  );
  entry = compiledEntry();
  if (opt["heap-mb"] && entry) entry = [`--max-old-space-size=${opt["heap-mb"]}`, ...entry];
  if (opt["semi-space-mb"] && entry) entry = [`--max-semi-space-size=${opt["semi-space-mb"]}`, ...entry];
  // The chart's flags first: an explicit --heap-mb / --semi-space-mb comes later on the line and wins.
  const nodeOptions = (opt["node-options"] ?? chartNodeOptions(ROOT)).split(" ").filter(Boolean);
  if (entry) entry = [...nodeOptions, ...entry];
  say(
    `daemon: rolloutd run as a child process (${entry ? `the bundle, as shipped, node flags: ${entry.slice(0, -1).join(" ") || "none (V8's defaults)"}` : "sources through tsx"}), --log-level=info, ` +
      `${opt.workers ? `--workers=${opt.workers}` : "default --workers"}; route family: Gateway API HTTPRoute + a fake gateway writing status`,
  );

  const c = await startCluster();
  const gateway = new FakeGatewayStatus(c);
  await gateway.start();
  const policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-bench-"));
  const extraArgs = ["--log-level=info", ...(opt.workers ? [`--workers=${opt.workers}`] : [])];
  let daemon: DaemonProcess | undefined;
  let prom: PrometheusHandle | undefined;
  const routeWatch = new RouteWatch(c, "HTTPRoute");
  try {
    if (N > 0) {
      await routeWatch.start();
      daemon = await phaseA(c, policiesDir, extraArgs, routeWatch);
      routeWatch.close(); // B and C read the daemon's metrics only: less work for the shared cores.
      await phaseB(c, policiesDir, daemon);
      if (ROLLBACKS > 0) {
        prom = await startPrometheus();
        await phaseC(c, policiesDir, daemon, prom);
      }
    }
    if (REST.length > 0 || CHURN > 0) {
      if (daemon) {
        await daemon.stop();
        await daemon.dispose();
        daemon = undefined;
      }
      await phaseF(c, policiesDir, extraArgs);
    }
    if (BREACH_RUNS > 0) {
      if (daemon) {
        await daemon.stop();
        await daemon.dispose();
        daemon = undefined;
      }
      await phaseE(c, policiesDir, extraArgs);
    }
    if (ROLLING.length > 0 || FLEET_SIZES.length > 0) {
      if (daemon) {
        await daemon.stop();
        await daemon.dispose();
        daemon = undefined;
      }
      const g = {
        intervalS: int("fleet-interval", 1),
        windowS: int("fleet-window", 1),
        aborts: int("fleet-aborts", 0),
        abortEveryMs: int("fleet-abort-every", 1),
        concurrency: CONCURRENCY,
        entry,
        extraArgs,
      };
      if (ROLLING.length > 0) await phaseFleet(c, policiesDir, { ...g, replicas: 1, sizes: ROLLING }, report);
      if (FLEET_SIZES.length > 0)
        await phaseFleet(c, policiesDir, { ...g, replicas: FLEET, sizes: FLEET_SIZES }, report);
    }
    if (IDLE > 0) {
      if (daemon) {
        await daemon.stop();
        await daemon.dispose();
        daemon = undefined;
      }
      daemon = await phaseD(c, policiesDir, extraArgs);
    }
    say();
    say(
      `total ${secs(started)}; load average at end ${loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")}`,
    );
  } finally {
    routeWatch.close();
    gateway.stop();
    await daemon?.stop().catch(() => null);
    await daemon?.dispose();
    await prom?.stop();
    await c.stop();
    rmSync(policiesDir, { recursive: true, force: true });
    writeFileSync(opt.out, `${report.lines.join("\n")}\n`);
  }
}

async function phaseA(
  c: Cluster,
  dir: string,
  extraArgs: string[],
  watch: RouteWatch,
): Promise<DaemonProcess> {
  say();
  say(
    `## A. abort annotation → weights at 100 % stable, with ${N} active rollouts` +
      (opt.hang ? ", every one of them with its analysis query hanging" : ""),
  );
  const rs = rolloutsFor("bench-a", N);
  let hanging: FaultyPrometheus | undefined;
  if (opt.hang) {
    hanging = await startFaultyPrometheus();
    hanging.hang();
  }
  let t = performance.now();
  const objects = await createRollouts(c, rs, CONCURRENCY);
  const createdIn = (performance.now() - t) / 1000;
  say(
    `setup: ${objects} objects (namespaces, 2 Deployments + status each, HTTPRoutes) in ${createdIn.toFixed(1)} s, ${CONCURRENCY} requests in flight`,
  );
  writePolicies(
    dir,
    "a",
    rs,
    hanging
      ? [
          "  steps: [10, 20, 50, 100]",
          "  interval: 1s",
          "  analysis:",
          `    prometheus: { url: "${hanging.url}", timeout: 5m }`,
          "    checks:",
          "      - { name: errors, query: 'vector(0)', max: 1 }",
        ]
      : ["  steps: [10, 20, 50, 100]", "  interval: 10m"],
  );
  t = performance.now();
  const daemon = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: dir, extraArgs, entry });
  const ready = secs(t);
  await until(`${N} policies adopted`, async () => (await phaseCount(daemon, "Steady")) >= N, 300_000);
  say(`daemon ready in ${ready}; all ${N} routes adopted ${secs(t)} after start`);
  t = performance.now();
  await mapLimit(rs, CONCURRENCY, (r) => ship(c, r));
  const shipped = secs(t);
  const atStep1 = (r: Rollout) => {
    const obj = watch.get(r.ns, r.name);
    if (!obj) return false;
    const st = stateOf(obj);
    return st?.phase === "Progressing" && st.stepStartedAt !== undefined && weights(obj)[r.canary] === 10;
  };
  await until(`${N} rollouts at step 1, accepted`, () => rs.every(atStep1), 300_000);
  say(
    `shipped ${N} canaries in ${shipped}; all at step 1 (10 %, accepted by the gateway) ${secs(t)} after the first ship`,
  );
  await sleep(3000);
  if (hanging) {
    const h = hanging;
    await until(`${N} analyses in flight`, () => h.open >= N, 120_000);
    const inFlight = value(await scrape(daemon.port), "rolloutd_analysis_in_flight");
    say(
      `analysis queries hanging at the fake Prometheus: ${h.open}; the daemon's rolloutd_analysis_in_flight: ${inFlight ?? "?"}`,
    );
  }
  const mem = await memory(daemon);
  say(
    `RSS with ${N} active rollouts (Progressing, ${hanging ? "each with its analysis query open" : "idle until their 10m deadline"}): ${mb(mem.rss)} (heap used ${mb(mem.heap)}); ` +
      `open file descriptors ${value(mem.samples, "rolloutd_process_open_fds") ?? "?"}`,
  );

  // The sample: evenly spread over the rollouts, at a steady pace, each timed on its own.
  const sample = abortSample(rs, ABORTS);
  const { latencies, lost, early } = await runAborts(c, watch, sample, ABORT_EVERY, ABORT_BURST);
  if (lost.length)
    throw new Error(
      `${lost.map((r) => `${r.ns}/${r.name}`).join(", ")}: canary weight not 0 within 60 s of the abort`,
    );
  const aborted = sample.filter((r) => stateOf(watch.get(r.ns, r.name)!)?.phase === "Aborted").length;
  const rate = (1000 / ABORT_EVERY) * ABORT_BURST;
  say(
    `sample: ${ABORTS} aborts, ${ABORT_BURST === 1 ? "one" : `bursts of ${ABORT_BURST}`} every ${ABORT_EVERY} ms (${rate.toFixed(0)}/s), spread evenly over the ${N} rollouts; ` +
      `timed from the annotation patch's response to the watch event with canary weight 0`,
  );
  say(
    `abort → 100 % stable: p50 ${ms(percentile(latencies, 50))}, p95 ${ms(percentile(latencies, 95))}, ` +
      `p99 ${ms(percentile(latencies, 99))}, max ${ms(latencies.at(-1) ?? NaN)}  (target p99 < 250 ms at 1,000)`,
  );
  say(
    `${aborted}/${ABORTS} recorded Aborted in their state${early ? `; ${early} weight events arrived before the patch response (counted as 0 ms)` : ""}`,
  );
  if (hanging) {
    const discarded = value(await scrape(daemon.port), "rolloutd_analysis_discarded_total", {
      reason: "cancelled",
    });
    say(`analyses cancelled by the aborts: ${discarded ?? 0}; queries still hanging: ${hanging.open}`);
  }
  removePolicies(dir, "a", rs);
  await hanging?.close();
  await until(
    "phase A policies removed",
    async () => {
      const s = await scrape(daemon.port);
      return (value(s, "rolloutd_policies") ?? -1) === 0;
    },
    60_000,
  );
  return daemon;
}

async function phaseB(c: Cluster, dir: string, daemon: DaemonProcess): Promise<void> {
  say();
  const steps = Array.from({ length: 20 }, (_, i) => (i + 1) * 5);
  say(`## B. step deadlines with ${N} rollouts stepping every ${INTERVAL} (${steps.length} steps of 5 %)`);
  const rs = rolloutsFor("bench-b", N);
  let t = performance.now();
  const objects = await createRollouts(c, rs, CONCURRENCY);
  say(`setup: ${objects} objects in ${secs(t)}`);
  writePolicies(dir, "b", rs, [`  steps: [${steps.join(", ")}]`, `  interval: ${INTERVAL}`]);
  t = performance.now();
  await until(`${N} policies adopted`, async () => (await phaseCount(daemon, "Steady")) >= N, 300_000);
  say(`all ${N} adopted ${secs(t)} after the policy files were written`);
  t = performance.now();
  await mapLimit(rs, CONCURRENCY, (r) => ship(c, r));
  say(`shipped ${N} canaries in ${secs(t)} (their deadlines are spread over that time)`);
  await sleep(2 * intervalMs);
  const before = await scrape(daemon.port);
  const windowStart = performance.now();
  let maxRss = 0;
  let maxHeap = 0;
  let maxFds = 0;
  let maxDepth = 0;
  let progressing = 0;
  while (performance.now() - windowStart < WINDOW_S * 1000) {
    await sleep(1000);
    const s = await scrape(daemon.port);
    maxRss = Math.max(maxRss, value(s, "rolloutd_process_resident_memory_bytes") ?? 0);
    maxHeap = Math.max(maxHeap, value(s, "rolloutd_nodejs_heap_size_used_bytes") ?? 0);
    maxFds = Math.max(maxFds, value(s, "rolloutd_process_open_fds") ?? 0);
    maxDepth = Math.max(maxDepth, value(s, "rolloutd_workqueue_depth") ?? 0);
    progressing = value(s, "rolloutd_rollouts", { phase: "Progressing" }) ?? 0;
  }
  const after = await scrape(daemon.port);
  const windowS = (performance.now() - windowStart) / 1000;
  const late = since(
    histogram(before, "rolloutd_step_deadline_lateness_seconds"),
    histogram(after, "rolloutd_step_deadline_lateness_seconds"),
  );
  const expected = Math.round((N * windowS * 1000) / intervalMs);
  say(
    `window ${windowS.toFixed(0)} s: ${late.count} analyses started (≈ ${expected} if every deadline were met on time), ` +
      `${progressing} still Progressing at the end; work queue depth max ${maxDepth}`,
  );
  const within1s = fractionAtMost(late, 1);
  say(
    `step-deadline lateness (from rolloutd_step_deadline_lateness_seconds buckets): p50 ${est(late, 0.5)}, ` +
      `p99 ${est(late, 0.99)}, mean ${ms((late.sum / Math.max(1, late.count)) * 1000)}; ` +
      `${within1s === undefined ? "?" : (within1s * 100).toFixed(1)} % ≤ 1 s  (target p99 < 1 s at 1,000)`,
  );
  const rtw = since(
    histogram(before, "rolloutd_analysis_result_to_write_seconds"),
    histogram(after, "rolloutd_analysis_result_to_write_seconds"),
  );
  say(
    `analysis result → write, advancing steps (no checks: the gate passes at once): ${rtw.count} writes, ` +
      `p50 ${est(rtw, 0.5)}, p99 ${est(rtw, 0.99)}, mean ${ms((rtw.sum / Math.max(1, rtw.count)) * 1000)}`,
  );
  const rec = since(
    histogram(before, "rolloutd_reconcile_duration_seconds"),
    histogram(after, "rolloutd_reconcile_duration_seconds"),
  );
  say(
    `reconciles in the window: ${rec.count} (${(rec.count / windowS).toFixed(0)}/s), p99 duration ${est(rec, 0.99)}`,
  );
  say(
    `RSS max during the window: ${mb(maxRss)} (heap used max ${mb(maxHeap)}); open file descriptors max ${maxFds}`,
  );
  removePolicies(dir, "b", rs);
  await until(
    "phase B policies removed",
    async () => (value(await scrape(daemon.port), "rolloutd_policies") ?? -1) === 0,
    60_000,
  );
}

async function phaseC(c: Cluster, dir: string, daemon: DaemonProcess, prom: PrometheusHandle): Promise<void> {
  say();
  say(`## C. analysis result → rollback written, ${ROLLBACKS} rollouts whose analysis fails`);
  const rs = rolloutsFor("bench-c", ROLLBACKS);
  await createRollouts(c, rs, CONCURRENCY);
  writePolicies(dir, "c", rs, [
    "  steps: [10, 50, 100]",
    "  interval: 2s",
    "  analysis:",
    `    prometheus: { url: "${prom.url}", timeout: 5s }`,
    "    checks:",
    '      - { name: always-fails, query: "vector(1)", max: 0 }',
    "    failureLimit: 1",
  ]);
  await until(
    `${ROLLBACKS} policies adopted`,
    async () => (await phaseCount(daemon, "Steady")) >= ROLLBACKS,
    120_000,
  );
  const before = await scrape(daemon.port);
  const t = performance.now();
  // A steady pace (20/s), so the analyses are spread as in real life rather than all at one instant.
  await mapLimit(rs, 1, async (r) => {
    await ship(c, r);
    await sleep(50);
  });
  await until(
    `${ROLLBACKS} rolled back`,
    async () => (await phaseCount(daemon, "RolledBack")) >= ROLLBACKS,
    120_000,
  );
  const after = await scrape(daemon.port);
  const h = since(
    histogram(before, "rolloutd_analysis_result_to_write_seconds", { phase: "RolledBack" }),
    histogram(after, "rolloutd_analysis_result_to_write_seconds", { phase: "RolledBack" }),
  );
  say(
    `all ${ROLLBACKS} rolled back ${secs(t)} after the first ship (Prometheus query vector(1) > max 0, failureLimit 1)`,
  );
  say(
    `analysis result → rollback written (rolloutd_analysis_result_to_write_seconds{phase="RolledBack"}): ${h.count} writes, ` +
      `p50 ${est(h, 0.5)}, p99 ${est(h, 0.99)}, mean ${ms((h.sum / Math.max(1, h.count)) * 1000)}; ` +
      `${((fractionAtMost(h, 0.1) ?? NaN) * 100).toFixed(1)} % ≤ 100 ms  (target < 100 ms)`,
  );
  removePolicies(dir, "c", rs);
}

async function phaseD(c: Cluster, dir: string, extraArgs: string[]): Promise<DaemonProcess> {
  say();
  say(`## D. ${IDLE} idle policies (routes Steady), in a freshly started daemon`);
  const rs = rolloutsFor("bench-i", IDLE);
  let t = performance.now();
  const objects = await createRollouts(c, rs, CONCURRENCY, opt["idle-deployments"]);
  const s = (performance.now() - t) / 1000;
  say(
    `setup: ${objects} objects (${opt["idle-deployments"] ? "namespaces, 2 Deployments + status, HTTPRoute each" : "namespaces and HTTPRoutes; no Deployments"}) ` +
      `in ${s.toFixed(1)} s (${(objects / s).toFixed(0)} objects/s)`,
  );
  writePolicies(dir, "i", rs, ["  steps: [10, 50, 100]", "  interval: 5m"]);
  t = performance.now();
  const daemon = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: dir, extraArgs, entry });
  const ready = secs(t);
  await until(`${IDLE} policies adopted`, async () => (await phaseCount(daemon, "Steady")) >= IDLE, 900_000);
  say(`daemon ready in ${ready}; all ${IDLE} adopted ${secs(t)} after start`);
  const settle = async (d: DaemonProcess) => {
    let rss = 0;
    let heap = 0;
    for (let i = 0; i < 5; i++) {
      await sleep(2000);
      const m = await memory(d);
      rss = Math.max(rss, m.rss ?? 0);
      heap = Math.max(heap, m.heap ?? 0);
    }
    return `${mb(rss)} (heap used ${mb(heap)})`;
  };
  const others = N > 0 ? `; the cache also holds the ${2 * N + ROLLBACKS} routes of phases A–C` : "";
  say(
    `RSS with ${IDLE} idle policies, max over 10 s right after adopting them all: ${await settle(daemon)}${others}`,
  );
  // Adoption is a burst of writes that leaves a high-water mark; a restarted daemon has nothing to write.
  await daemon.stop();
  await daemon.dispose();
  t = performance.now();
  const again = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: dir, extraArgs, entry });
  await until(
    `${IDLE} policies seen Steady`,
    async () => (await phaseCount(again, "Steady")) >= IDLE,
    900_000,
  );
  say(`restarted: ready and all ${IDLE} seen Steady ${secs(t)} after start`);
  say(
    `RSS with ${IDLE} idle policies after a restart (nothing to write), max over 10 s: ${await settle(again)}  (target < 512 MB at 10,000)`,
  );
  return again;
}

// ---------------------------------------------------------------- phase F: at rest, and churn

/** One file per policy, as a platform team adding services one by one would. */
function writePolicyFile(dir: string, r: Rollout): void {
  writeFileSync(
    path.join(dir, `e-${r.ns}-${r.name}.yaml`),
    [
      "apiVersion: rolloutd.dev/v1alpha1",
      "kind: RolloutPolicy",
      `metadata: { name: ${r.name}, namespace: ${r.ns} }`,
      "spec:",
      `  target: { kind: HTTPRoute, name: ${r.name} }`,
      `  stable: ${r.stable}`,
      `  canary: ${r.canary}`,
      "  steps: [10, 50, 100]",
      "  interval: 5m",
      "",
    ].join("\n"),
  );
}

async function phaseF(c: Cluster, dir: string, extraArgs: string[]): Promise<void> {
  say();
  say(`## F. At rest: CPU and RSS by number of policies (each a fresh daemon; routes Steady)`);
  const largest = Math.max(0, CHURN, ...REST);
  const rs = rolloutsFor("bench-e", largest);
  let t = performance.now();
  const objects = await createRollouts(c, rs, CONCURRENCY, false);
  say(`setup: ${objects} objects (namespaces and HTTPRoutes, no Deployments) in ${secs(t)}`);
  for (const k of REST) {
    const some = rs.slice(0, k);
    for (const r of some) writePolicyFile(dir, r);
    t = performance.now();
    const d = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: dir, extraArgs, entry });
    if (k > 0)
      await until(`${k} policies adopted`, async () => (await phaseCount(d, "Steady")) >= k, 900_000);
    const adopted = secs(t);
    await sleep(10_000); // past adoption's burst
    const a = procStats(d.pid);
    const t0 = performance.now();
    await sleep(REST_S * 1000);
    const b = procStats(d.pid);
    const perMin = ((b.cpu - a.cpu) / ((performance.now() - t0) / 1000)) * 60;
    say(
      `${String(k).padStart(5)} policies: ${perMin.toFixed(3)} CPU-s per minute at rest (over ${REST_S} s), ` +
        `RSS ${mb(b.rss)}; all adopted ${adopted} after start`,
    );
    await d.stop();
    await d.dispose();
    for (const r of some) rmSync(path.join(dir, `e-${r.ns}-${r.name}.yaml`), { force: true });
  }
  if (CHURN > 0) {
    const d = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: dir, extraArgs, entry });
    await sleep(5_000);
    const a = procStats(d.pid);
    t = performance.now();
    for (const r of rs.slice(0, CHURN)) {
      writePolicyFile(dir, r);
      if (CHURN_EVERY > 0) await sleep(CHURN_EVERY);
    }
    const written = secs(t);
    await until(`${CHURN} policies adopted`, async () => (await phaseCount(d, "Steady")) >= CHURN, 900_000);
    const b = procStats(d.pid);
    say(
      `churn: ${CHURN} policy files added one at a time (every ${CHURN_EVERY} ms, written in ${written}), all adopted ` +
        `${secs(t)} after the first: ${(b.cpu - a.cpu).toFixed(1)} CPU-s in the daemon, RSS ${mb(b.rss)}`,
    );
    await d.stop();
    await d.dispose();
    for (const r of rs.slice(0, CHURN)) rmSync(path.join(dir, `e-${r.ns}-${r.name}.yaml`), { force: true });
  }
}

async function phaseE(c: Cluster, dir: string, extraArgs: string[]): Promise<void> {
  say();
  say(
    `## E. breach onset → 100 % stable at a 10 s interval, ${BREACH_RUNS} runs each with and without in-step checks`,
  );
  const modes = [
    { name: "in-step checks (the default cadence: interval/5 = 2 s)", cadence: [] as string[] },
    { name: "step deadlines only (cadence 0)", cadence: ["    cadence: 0"] },
  ];
  const defaults = {
    steps: [20, 40, 60],
    interval: "10s",
    rps: 25,
    minRequests: 10,
    p99MaxMs: 300,
    errorRateMax: 0.05,
  };
  const rigs = modes.map((_, m) =>
    Array.from({ length: BREACH_RUNS }, (_, i) => new Rig(httpRoute, `bench-e-${m}-${i}`, defaults)),
  );
  await Promise.all(rigs.flat().map((r) => r.startBackends()));
  const prom = await startPrometheus({
    targets: rigs.flat().flatMap((r) => r.targets()),
    scrapeIntervalSeconds: 1,
  });
  const daemon = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: dir, extraArgs, entry });
  const random = seeded(20261130);
  try {
    for (const [m, mode] of modes.entries()) {
      const times: number[] = [];
      for (const r of rigs[m]!) {
        const s = await r.given(c, dir, { maxDurationMs: 300_000, maxRequests: 20_000 });
        r.writePolicy(prom.url, { failureLimit: 2, analysis: mode.cadence });
        await s.until("adopted", (st) => st.phase === "Steady", 60_000);
        await s.shipCanary("2");
        const step2 = await s.until(
          "step 2 analysing",
          (st) => st.phase === "Progressing" && st.stepIndex === 1 && st.stepStartedAt !== undefined,
          120_000,
        );
        // Onset at a random moment of the 10 s step (not before its window has a scrape or two).
        const at = step2.stepStartedAt! + 2_000 + random() * 7_000;
        await sleep(Math.max(0, at - Date.now()));
        const onset = performance.now();
        r.canary.setBehaviour({ latencyMs: 600 });
        await s.until(
          "back at 100 % stable",
          (st, w) => st.phase === "RolledBack" && w[s.canary] === 0,
          120_000,
        );
        times.push(performance.now() - onset);
        r.close();
        removePolicyFile(dir, r.ns);
      }
      times.sort((a, b) => a - b);
      say(
        `${mode.name}: onset → 100 % stable median ${(percentile(times, 50) / 1000).toFixed(1)} s, ` +
          `max ${((times.at(-1) ?? NaN) / 1000).toFixed(1)} s, min ${((times[0] ?? NaN) / 1000).toFixed(1)} s ` +
          `(n=${times.length}: ${times.map((t) => (t / 1000).toFixed(1)).join(", ")} s)`,
      );
    }
    say("(Flagger v1.44, measured on the same breach before: median 25 s; the target is ≥ 5× faster, ≤ 5 s)");
  } finally {
    await Promise.all(rigs.flat().map((r) => r.stop()));
    await daemon.stop().catch(() => null);
    await daemon.dispose();
    await prom.stop();
  }
}

function removePolicyFile(dir: string, ns: string): void {
  rmSync(path.join(dir, `${ns}.yaml`), { force: true });
}

/** A small seeded generator, so a run's onsets can be repeated. */
function seeded(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x * 1664525 + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

main().catch((err: unknown) => {
  say(`benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
  writeFileSync(opt.out, `${report.lines.join("\n")}\n`);
  process.exitCode = 1;
});
