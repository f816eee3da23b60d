/**
 * `npx tsx test/bench/floor.ts`: how low a Node daemon on the decided stack can go at rest, beside rolloutd.
 * Builds each program in test/bench/floor/ the way `npm run bundle` builds rolloutd (one minified ESM file,
 * the chart's V8 flags), starts them side by side with rolloutd and no policy against the real control plane,
 * and reads their CPU and RSS from /proc over the same window:
 *
 *   idle      Node alone, a timer every 2 s
 *   owner     Node with the owner-named dependencies loaded and set up, nothing of rolloutd's
 *   owner-min the same with client-node's KubeConfig and Watch taken from its internal modules
 *   renew     Node renewing one Lease every 2 s over node:https, no library at all
 *   rolloutd  the daemon as shipped, no policy, a fleet of one
 *
 * Side by side rather than one after another: five 180 s windows at once, and each process counts only its
 * own CPU. Not a test: the figures are for the README and the closing note.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sleep } from "../support/chaos.ts";
import { startCluster } from "../support/cluster.ts";
import { startDaemon } from "../support/daemon.ts";
import { buildBundle, chartNodeOptions } from "./build.ts";
import { procStats } from "./proc.ts";

const { values: opt } = parseArgs({
  options: {
    seconds: { type: "string", default: "180" },
    warmup: { type: "string", default: "20" },
  },
});
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PROGRAMS = ["idle", "owner", "owner-min", "renew"] as const;

/** Bundled as rolloutd is (package.json "bundle"), into dist/ so pino resolves from node_modules. */
function bundle(out: string, name: string): string {
  const file = path.join(out, `${name}.mjs`);
  const esbuild = path.join(ROOT, "node_modules", ".bin", "esbuild");
  const r = spawnSync(
    esbuild,
    [
      path.join(ROOT, "test", "bench", "floor", `${name}.ts`),
      "--bundle",
      "--platform=node",
      "--format=esm",
      "--target=node24",
      "--minify",
      "--external:pino",
      "--legal-comments=none",
      `--outfile=${file}`,
      "--banner:js=import{createRequire as __r}from'node:module';const require=__r(import.meta.url);",
    ],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`esbuild ${name}: ${r.stderr}`);
  return file;
}

async function main(): Promise<void> {
  const seconds = Number(opt.seconds);
  const warmup = Number(opt.warmup);
  if (!(seconds > 0 && warmup >= 0)) throw new Error("--seconds must be > 0 and --warmup >= 0");
  const out = path.join(ROOT, "dist", `floor-${process.pid}`);
  mkdirSync(out, { recursive: true });
  process.on("exit", () => rmSync(out, { recursive: true, force: true }));
  const daemonMain = buildBundle(ROOT, "floor-rolloutd");
  const files = Object.fromEntries(PROGRAMS.map((p) => [p, bundle(out, p)]));
  const flags = chartNodeOptions(ROOT).split(" ").filter(Boolean);
  const policies = mkdtempSync(path.join(tmpdir(), "rolloutd-floor-"));
  const c = await startCluster({ crds: false });
  const children: ChildProcess[] = [];
  try {
    const env = {
      ...process.env,
      FLOOR_KUBECONFIG: c.cp.kubeconfigYaml,
      FLOOR_SERVER: c.cp.server,
      FLOOR_TOKEN: c.cp.adminToken,
      FLOOR_CA: c.cp.caData,
    };
    const pids: Record<string, number> = {};
    for (const p of PROGRAMS) {
      const child = spawn(process.execPath, [...flags, files[p]!], {
        env,
        stdio: ["ignore", "ignore", "inherit"],
      });
      children.push(child);
      child.on("exit", (code) => {
        if (code !== null && code !== 0) process.stderr.write(`# floor program ${p} exited with ${code}\n`);
      });
      pids[p] = child.pid!;
    }
    const d = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir: policies,
      extraArgs: ["--log-level=info"],
      entry: [...flags, daemonMain],
    });
    pids["rolloutd"] = d.pid;
    await sleep(warmup * 1000);
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, procStats(pid)]));
    await sleep(seconds * 1000);
    const rows = Object.entries(pids).map(([k, pid]) => {
      const now = procStats(pid);
      const cpuPerMin = ((now.cpu - before[k]!.cpu) / seconds) * 60;
      // Anonymous memory is the process's own; file-backed is mostly the node binary's pages, which move by a few MB
      // between two runs of the same program.
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
      return `| ${k} | ${(now.rss / 2 ** 20).toFixed(1)} MB | ${kb("RssAnon").toFixed(1)} MB | ${kb("RssFile").toFixed(1)} MB | ${cpuPerMin.toFixed(3)} CPU-s/min |`;
    });
    process.stdout.write(
      [
        `at rest, ${seconds} s window after ${warmup} s, V8 flags: ${flags.join(" ") || "(none)"}`,
        "| program | RSS | anonymous | file-backed | CPU |",
        "|---|---:|---:|---:|---:|",
        ...rows,
        "",
      ].join("\n"),
    );
    await d.stop();
    await d.dispose();
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await c.stop();
    rmSync(policies, { recursive: true, force: true });
  }
}

await main();
