/**
 * What a process costs, read from /proc (costs the process nothing, unlike a
 * /metrics scrape), and polling for a condition at a pace that does not load
 * the shared cores.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { sleep } from "../support/chaos.ts";

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
const PAGE_SIZE = Number(spawnSync("getconf", ["PAGESIZE"], { encoding: "utf8" }).stdout.trim()) || 4096;

/** CPU seconds (user + system) and RSS (bytes) of a process. */
export function procStats(pid: number): { cpu: number; rss: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at ") ".
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  const rssPages = Number(f[21]); // field 24
  return { cpu: ticks / CLK_TCK, rss: rssPages * PAGE_SIZE };
}

/**
 * The pids of the control plane's etcd and kube-apiserver: the processes
 * whose executable is one of them and whose arguments name the control
 * plane's own directory (not another test's control plane on this machine).
 */
export function controlPlanePids(dir: string): { etcd?: number; apiserver?: number } {
  const out: { etcd?: number; apiserver?: number } = {};
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone meanwhile
    }
    if (!argv.some((a) => a.includes(dir))) continue;
    const exe = path.basename(argv[0] ?? "");
    if (exe === "etcd") out.etcd = Number(entry);
    else if (exe === "kube-apiserver") out.apiserver = Number(entry);
  }
  return out;
}

export async function until(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs: number,
  pollMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** CPU seconds every core of the machine has been busy (not idle, not waiting on I/O) since boot. */
export function machineBusy(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!; // "cpu  user nice system idle iowait irq softirq steal …"
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = f[0]! + f[1]! + f[2]! + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / CLK_TCK;
}
