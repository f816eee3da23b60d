/**
 * `npx tsx test/bench/profile.ts`: where an idle daemon's CPU and memory go.
 * Starts the real control plane, K Steady policies, and the compiled daemon
 * (as `npm run build` makes it) under `--cpu-prof`, leaves it at rest, stops
 * it, and prints its CPU time by package and by function (self time), plus
 * RSS and V8 heap figures. With --heap-snapshot it also writes a heap
 * snapshot of the idle daemon (SIGUSR2 → v8.writeHeapSnapshot is not wired;
 * Node's --heapsnapshot-signal is) to open in Chrome DevTools.
 *
 * With --bundle it runs the bundle the image runs instead (minified: its
 * profile names no function, but its memory is what ships).
 *
 * Not a benchmark (profiling itself costs CPU): it says *where*, `npm run
 * bench` says *how much*.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { mapLimit, sleep } from "../support/chaos.ts";
import { createNamespace, startCluster } from "../support/cluster.ts";
import { startDaemon } from "../support/daemon.ts";
import { httpRoute } from "../support/routes.ts";
import { buildBundle } from "./build.ts";
import { scrape } from "./metrics.ts";

const { values: opt } = parseArgs({
  options: {
    policies: { type: "string", default: "0" },
    seconds: { type: "string", default: "60" },
    "heap-snapshot": { type: "boolean", default: false },
    "node-options": { type: "string", default: "" },
    out: { type: "string", default: "" },
    top: { type: "string", default: "25" },
    "prof-interval-us": { type: "string", default: "1000" },
    // Measure only (CPU by thread, RSS): the profiler's sampling costs the main thread CPU itself.
    "no-prof": { type: "boolean", default: false },
    // The bundle `npm run bundle` makes, as the image runs it, instead of tsc's output.
    bundle: { type: "boolean", default: false },
    // A file already built (e.g. one bundle for every run of an A/B comparison) instead of building one.
    entry: { type: "string", default: "" },
    // Environment for the daemon, e.g. MALLOC_ARENA_MAX=2 (comma-separated KEY=VALUE).
    env: { type: "string", default: "" },
    // More arguments for `rolloutd run` (space-separated), e.g. "--retry-period=6".
    "daemon-args": { type: "string", default: "" },
  },
});
const K = Number(opt.policies);
const SECONDS = Number(opt.seconds);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function build(): string {
  // Compiled by tsc, not bundled as shipped: a profile of minified code names no function. Into a folder of this
  // run's own: worktrees may share one node_modules.
  const out = path.join(ROOT, "node_modules", ".cache", `rolloutd-profile-${process.pid}`);
  rmSync(out, { recursive: true, force: true });
  process.on("exit", () => rmSync(out, { recursive: true, force: true }));
  const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
  spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json", "--outDir", out], { cwd: ROOT });
  const main = path.join(out, "src", "main.js");
  if (!existsSync(main)) throw new Error(`tsc produced no ${main}`);
  return main;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self time by package (or node internals, GC, idle) and by function, from a .cpuprofile. */
function summarize(file: string, top: number, lastSeconds: number): string[] {
  const p = JSON.parse(readFileSync(file, "utf8")) as {
    nodes: ProfileNode[];
    startTime: number;
    endTime: number;
    samples: number[];
    timeDeltas: number[];
  };
  // Only the samples of the window at rest (the last `lastSeconds` before the stop), not start-up.
  const from = p.endTime - lastSeconds * 1e6;
  const hits = new Map<number, number>();
  let t = p.startTime;
  let counted = 0;
  p.samples.forEach((id, i) => {
    t += p.timeDeltas[i] ?? 0;
    if (t < from) return;
    counted++;
    hits.set(id, (hits.get(id) ?? 0) + 1);
  });
  for (const n of p.nodes) n.hitCount = hits.get(n.id) ?? 0;
  const perSampleMs = Math.min(lastSeconds * 1e3, (p.endTime - p.startTime) / 1e3) / Math.max(1, counted);
  const where = (url: string, fn: string): string => {
    if (!url) return fn || "(anonymous)";
    const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (nm) return nm[1]!;
    if (url.startsWith("node:")) return url.split("/").slice(0, 2).join("/");
    const src = /\/(src\/.*)$/.exec(url);
    return src ? src[1]! : url;
  };
  const byWhere = new Map<string, number>();
  const byFn = new Map<string, number>();
  for (const n of p.nodes) {
    const ms = (n.hitCount ?? 0) * perSampleMs;
    if (!ms) continue;
    const w = where(n.callFrame.url, n.callFrame.functionName);
    byWhere.set(w, (byWhere.get(w) ?? 0) + ms);
    const f = `${n.callFrame.functionName || "(anonymous)"} ${w}:${n.callFrame.lineNumber + 1}`;
    byFn.set(f, (byFn.get(f) ?? 0) + ms);
  }
  const busy = [...byWhere].filter(([w]) => w !== "(idle)").reduce((s, [, v]) => s + v, 0);
  const lines = [`main thread in the last ${lastSeconds} s: busy ${busy.toFixed(0)} ms`];
  const table = (m: Map<string, number>) =>
    [...m]
      .filter(([w]) => w !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([w, v]) => `${v.toFixed(0).padStart(7)} ms ${((v / busy) * 100).toFixed(1).padStart(5)} %  ${w}`);
  lines.push("by place:", ...table(byWhere), "by function (self):", ...table(byFn));
  return lines;
}

/** CPU ms per thread name (summed over threads of one name), from /proc. */
function threadTimes(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(name, (out.get(name) ?? 0) + ((Number(f[11]) + Number(f[12])) / 100) * 1000);
    } catch {
      // the thread ended
    }
  }
  return out;
}

async function main(): Promise<void> {
  const main = opt.entry || (opt.bundle ? buildBundle(ROOT, "profile") : build());
  const profDir = mkdtempSync(path.join(tmpdir(), "rolloutd-prof-"));
  const policies = mkdtempSync(path.join(tmpdir(), "rolloutd-prof-policies-"));
  const c = await startCluster();
  try {
    const ns = Array.from({ length: Math.ceil(K / 100) }, (_, i) => `prof-${i}`);
    await mapLimit(ns, 10, (n) => createNamespace(c, n));
    await mapLimit(
      Array.from({ length: K }, (_, i) => i),
      20,
      (i) => httpRoute.create(c, `prof-${Math.floor(i / 100)}`, `app-${i}`, `app-${i}-v1`, `app-${i}-v2`),
    );
    for (let i = 0; i < K; i++)
      writeFileSync(
        path.join(policies, `p-${i}.yaml`),
        [
          "apiVersion: rolloutd.dev/v1alpha1",
          "kind: RolloutPolicy",
          `metadata: { name: app-${i}, namespace: prof-${Math.floor(i / 100)} }`,
          "spec:",
          `  target: { kind: HTTPRoute, name: app-${i} }`,
          `  stable: app-${i}-v1`,
          `  canary: app-${i}-v2`,
          "  steps: [10, 50, 100]",
          "  interval: 5m",
          "",
        ].join("\n"),
      );
    const flags = opt["node-options"].split(" ").filter(Boolean);
    const d = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir: policies,
      extraArgs: ["--log-level=info", ...opt["daemon-args"].split(" ").filter(Boolean)],
      env: Object.fromEntries(
        opt.env
          .split(",")
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
      ),
      entry: [
        ...flags,
        ...(opt["no-prof"]
          ? []
          : ["--cpu-prof", `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${opt["prof-interval-us"]}`]),
        ...(opt["heap-snapshot"] ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${profDir}`] : []),
        main,
      ],
    });
    await sleep(15_000); // past adoption
    if (opt["heap-snapshot"]) {
      // Before the window measured, so writing it is not counted.
      process.kill(d.pid, "SIGUSR2");
      await sleep(10_000);
    }
    const status = () => readFileSync(`/proc/${d.pid}/status`, "utf8");
    const rss = () => /VmRSS:\s+(\d+)/.exec(status())?.[1];
    const cpu = () => {
      const f = readFileSync(`/proc/${d.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return (Number(f[11]) + Number(f[12])) / 100;
    };
    const reconciles = async () =>
      (await scrape(d.port))
        .filter((x) => x.name === "rolloutd_reconcile_total")
        .reduce((a, x) => a + x.value, 0);
    const r0 = await reconciles();
    const c0 = cpu();
    const threads0 = threadTimes(d.pid);
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const perMin = ((cpu() - c0) / ((performance.now() - t0) / 1000)) * 60;
    const threads1 = threadTimes(d.pid);
    // Where the resident memory is: V8's spaces (committed and used), external memory, the rest (malloc, code, stacks).
    const m = await scrape(d.port);
    const r1 = m.filter((x) => x.name === "rolloutd_reconcile_total").reduce((a, x) => a + x.value, 0);
    const mbOf = (name: string, space?: string) =>
      (
        m
          .filter((x) => x.name === name && (space === undefined || x.labels.space === space))
          .reduce((a, x) => a + x.value, 0) /
        2 ** 20
      ).toFixed(1);
    const spaces = [...new Set(m.filter((x) => x.labels.space).map((x) => x.labels.space!))];
    const lines = [
      `${K} policies, ${SECONDS} s at rest${opt["no-prof"] ? "" : " (under --cpu-prof, whose sampling costs CPU itself)"}: ${perMin.toFixed(3)} CPU-s per minute, RSS ${(Number(rss()) / 1024).toFixed(0)} MB`,
      `V8 heap committed ${mbOf("rolloutd_nodejs_heap_size_total_bytes")} MB, used ${mbOf("rolloutd_nodejs_heap_size_used_bytes")} MB, external ${mbOf("rolloutd_nodejs_external_memory_bytes")} MB; by space (committed/used MB): ` +
        spaces
          .map(
            (sp) =>
              `${sp} ${mbOf("rolloutd_nodejs_heap_space_size_total_bytes", sp)}/${mbOf("rolloutd_nodejs_heap_space_size_used_bytes", sp)}`,
          )
          .join(", "),
      `reconciles in the window: ${r1 - r0}`,
      "CPU by thread in the window (ms):",
      ...[...threads1]
        .map(([name, v]) => [name, v - (threads0.get(name) ?? 0)] as const)
        .filter(([, v]) => v > 0)
        .sort((a, b) => b[1] - a[1])
        .map(([name, v]) => `${v.toFixed(0).padStart(7)}  ${name}`),
    ];
    await d.stop();
    await d.dispose();
    const prof = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
    if (prof) lines.push(...summarize(path.join(profDir, prof), Number(opt.top), SECONDS));
    const snap = readdirSync(profDir).find((f) => f.endsWith(".heapsnapshot"));
    if (snap) lines.push(`heap snapshot: ${path.join(profDir, snap)}`);
    lines.push(`profiles kept in ${profDir}`);
    console.log(lines.join("\n"));
    if (opt.out) writeFileSync(opt.out, `${lines.join("\n")}\n`);
  } finally {
    await c.stop();
    rmSync(policies, { recursive: true, force: true });
  }
}

void main();
