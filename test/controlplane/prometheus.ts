/**
 * A real Prometheus for tests and the sandbox, on loopback, in a temp dir.
 *
 * Stray guard: Prometheus runs under a small bash reaper whose stdin is a pipe from this process. When this
 * process ends in any way (even SIGKILL) the pipe reaches EOF; the reaper then stops Prometheus (SIGTERM, SIGKILL
 * after 5 s) and removes the temp dir. `stop()` uses the same path: it tells the reaper whether to keep the data
 * dir, closes the pipe and waits for the reaper to exit.
 *
 * `stop({ keepData: true })` then `start()` restarts Prometheus on the same port, config and TSDB directory
 * ("Prometheus went away mid-rollout and came back").
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

import { stringify } from "yaml";

export const INSTALL_HINT = "install with `sudo apt-get install prometheus`";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findPrometheus(): string | undefined {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((d) => d.length > 0);
  for (const dir of dirs) {
    const candidate = join(dir, "prometheus");
    if (isExecutable(candidate)) return candidate;
  }
  return isExecutable("/usr/bin/prometheus") ? "/usr/bin/prometheus" : undefined;
}

function apt(args: string[]): boolean {
  console.log(`[prometheus] apt-get ${args.join(" ")}`);
  const r = spawnSync("apt-get", args, {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  return r.status === 0;
}

/**
 * The path of the `prometheus` binary. Installs Debian's package when running as root; otherwise throws with
 * the install command.
 */
export function ensurePrometheus(): string {
  const found = findPrometheus();
  if (found !== undefined) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(`prometheus binary not found on PATH or at /usr/bin/prometheus: ${INSTALL_HINT}`);
  }
  console.log("[prometheus] binary not found; installing the Debian package");
  if (!apt(["install", "-y", "prometheus"])) {
    if (!apt(["update"]) || !apt(["install", "-y", "prometheus"])) {
      throw new Error(`apt-get could not install prometheus: ${INSTALL_HINT}`);
    }
  }
  const installed = findPrometheus();
  if (installed === undefined)
    throw new Error(`prometheus still not found after apt-get install: ${INSTALL_HINT}`);
  console.log(`[prometheus] installed ${installed}`);
  return installed;
}

export interface ScrapeTarget {
  job: string;
  /** Full URL of the metrics endpoint, e.g. http://127.0.0.1:41234/metrics */
  url: string;
  /** Extra target labels (e.g. { namespace: "shop" }). */
  labels?: Record<string, string>;
}

export interface StartPrometheusOptions {
  /** Simple form: one scrape job per distinct `job`. */
  targets?: ScrapeTarget[];
  /** Raw `scrape_configs` entries, appended after those built from `targets`. */
  scrapeConfigs?: Record<string, unknown>[];
  /** Default 1. */
  scrapeIntervalSeconds?: number;
  extraArgs?: string[];
  /** How long to wait for `/-/ready`. Default 30 s. */
  readyTimeoutMs?: number;
}

export interface PrometheusHandle {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly running: boolean;
  /** Stops Prometheus; removes the temp dir unless keepData. Idempotent. */
  stop(options?: { keepData?: boolean }): Promise<void>;
  /** Starts Prometheus again on the same port, config and data dir after `stop({ keepData: true })`. */
  start(): Promise<void>;
  /** Rewrites the scrape targets and reloads the running Prometheus (`POST /-/reload`). */
  reload(targets: ScrapeTarget[]): Promise<void>;
}

function buildConfig(
  targets: ScrapeTarget[],
  raw: Record<string, unknown>[],
  intervalSeconds: number,
): Record<string, unknown> {
  const interval = `${intervalSeconds}s`;
  const jobs = new Map<string, Record<string, unknown>>();
  for (const t of targets) {
    const u = new URL(t.url);
    let job = jobs.get(t.job);
    if (job === undefined) {
      job = {
        job_name: t.job,
        scrape_interval: interval,
        scrape_timeout: interval,
        scheme: u.protocol.replace(":", ""),
        metrics_path: u.pathname,
        static_configs: [],
      };
      jobs.set(t.job, job);
    }
    (job.static_configs as unknown[]).push({ targets: [u.host], labels: t.labels ?? {} });
  }
  return {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    scrape_configs: [...jobs.values(), ...raw],
  };
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The reaper. $1 = prometheus binary, $2 = temp dir, $3 = log file, rest = prometheus args.
 * Prints Prometheus's pid, then blocks on stdin. A line "keep" keeps the dir; EOF alone removes it.
 */
const REAPER = String.raw`
bin="$1"; dir="$2"; log="$3"; shift 3
"$bin" "$@" </dev/null >>"$log" 2>&1 &
child=$!
echo "$child"
cmd=""
read -r cmd || true
kill -TERM "$child" 2>/dev/null
for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$child" 2>/dev/null
wait "$child" 2>/dev/null
if [ "$cmd" != "keep" ]; then rm -rf "$dir"; fi
`;

/** Temp dirs of handles stopped with keepData, removed on a normal exit if never stopped for good. */
const keptDirs = new Set<string>();
let exitHookInstalled = false;
function trackKeptDir(dir: string, keep: boolean): void {
  if (keep) keptDirs.add(dir);
  else keptDirs.delete(dir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const d of keptDirs) rmSync(d, { recursive: true, force: true });
    });
  }
}

function logTail(file: string, lines = 30): string {
  if (!existsSync(file)) return "(no log)";
  const text = readFileSync(file, "utf8").trimEnd();
  return text.split("\n").slice(-lines).join("\n") || "(empty log)";
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startPrometheus(options: StartPrometheusOptions = {}): Promise<PrometheusHandle> {
  const bin = ensurePrometheus();
  const dir = mkdtempSync(join(tmpdir(), "rolloutd-prometheus-"));
  const configFile = join(dir, "prometheus.yml");
  const dataDir = join(dir, "data");
  const logFile = join(dir, "prometheus.log");
  const interval = options.scrapeIntervalSeconds ?? 1;
  const raw = options.scrapeConfigs ?? [];
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const writeConfig = (targets: ScrapeTarget[]): void =>
    writeFileSync(configFile, stringify(buildConfig(targets, raw, interval)));
  writeConfig(options.targets ?? []);

  let port: number;
  try {
    port = await freeLoopbackPort();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  const args = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dataDir}`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--web.enable-lifecycle",
    "--log.level=warn",
    ...(options.extraArgs ?? []),
  ];

  let reaper: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let removed = false;

  async function waitReady(pid: number): Promise<void> {
    const deadline = Date.now() + readyTimeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      if (!isAlive(pid)) {
        throw new Error(`prometheus exited before it was ready; last log lines:\n${logTail(logFile)}`);
      }
      try {
        const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) });
        await res.body?.cancel();
        if (res.ok) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await delay(100);
    }
    throw new Error(
      `prometheus not ready at ${url} within ${readyTimeoutMs} ms (last: ${last}); last log lines:\n${logTail(logFile)}`,
    );
  }

  async function launch(): Promise<void> {
    if (removed) throw new Error("this Prometheus was stopped without keepData; its data dir is gone");
    if (reaper !== undefined) return;
    trackKeptDir(dir, false);
    const child = spawn("bash", ["-c", REAPER, "rolloutd-prometheus-reaper", bin, dir, logFile, ...args], {
      stdio: ["pipe", "pipe", "ignore"],
    });
    reaper = child;
    exited = new Promise((resolve) => child.once("exit", () => resolve()));
    const pid = await new Promise<number>((resolve, reject) => {
      let buf = "";
      const onData = (chunk: Buffer): void => {
        buf += chunk.toString("utf8");
        const nl = buf.indexOf("\n");
        if (nl >= 0) {
          child.stdout?.off("data", onData);
          resolve(Number(buf.slice(0, nl).trim()));
        }
      };
      child.stdout?.on("data", onData);
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`prometheus reaper exited early (code ${code})`)));
    });
    // Do not keep the test process alive just for Prometheus: a forgotten stop() is cleaned by the reaper.
    child.unref();
    (child.stdin as net.Socket | null)?.unref();
    (child.stdout as net.Socket | null)?.unref();
    try {
      await waitReady(pid);
    } catch (err) {
      await stop();
      throw err;
    }
  }

  async function stop(opts: { keepData?: boolean } = {}): Promise<void> {
    const child = reaper;
    if (child === undefined) {
      if (opts.keepData !== true && !removed) {
        rmSync(dir, { recursive: true, force: true });
        removed = true;
        trackKeptDir(dir, false);
      }
      return;
    }
    child.ref();
    (child.stdin as net.Socket | null)?.ref();
    child.stdin?.end(opts.keepData === true ? "keep\n" : "");
    await exited;
    reaper = undefined;
    child.stdout?.destroy();
    if (opts.keepData === true) trackKeptDir(dir, true);
    else removed = true;
  }

  await launch();

  return {
    url,
    port,
    dataDir,
    get running() {
      return reaper !== undefined;
    },
    stop,
    start: launch,
    async reload(targets) {
      writeConfig(targets);
      if (reaper === undefined) return;
      const res = await fetch(`${url}/-/reload`, { method: "POST", signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      if (!res.ok)
        throw new Error(`prometheus reload failed: HTTP ${res.status} ${text}\n${logTail(logFile)}`);
    },
  };
}
