/**
 * A real Prometheus for tests and the sandbox, on loopback, in a temp dir.
 *
 * Stray guard: Prometheus runs under the supervisor of process.ts, like etcd and the apiserver, and its temp
 * dir under a directory guard: if this process ends in any way (even SIGKILL), Prometheus is stopped and the
 * dir removed.
 *
 * `stop({ keepData: true })` then `start()` restarts Prometheus on the same port, config and TSDB directory
 * ("Prometheus went away mid-rollout and came back").
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

import { stringify } from "yaml";
import { freePort, guardDirectory, spawnSupervised, type SupervisedProcess } from "./process.ts";

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

/** A free loopback port (see process.ts). */
export const freeLoopbackPort = freePort;

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

  // The same supervisor as every other child: if this process dies, Prometheus dies and the dir goes.
  const guard = guardDirectory(dir);
  let proc: SupervisedProcess | undefined;
  let removed = false;

  async function waitReady(p: SupervisedProcess): Promise<void> {
    const deadline = Date.now() + readyTimeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      if (!p.running()) {
        throw new Error(`prometheus exited before it was ready; last log lines:\n${p.logTail(30)}`);
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
      `prometheus not ready at ${url} within ${readyTimeoutMs} ms (last: ${last}); last log lines:\n${p.logTail(30)}`,
    );
  }

  async function launch(): Promise<void> {
    if (removed) throw new Error("this Prometheus was stopped without keepData; its data dir is gone");
    if (proc !== undefined) return;
    const p = spawnSupervised(bin, args, { name: "prometheus", logFile });
    proc = p;
    try {
      await waitReady(p);
    } catch (err) {
      await stop();
      throw err;
    }
  }

  /** Stops Prometheus; with keepData the dir stays for a restart on the same port (removed when we exit). */
  async function stop(opts: { keepData?: boolean } = {}): Promise<void> {
    if (proc !== undefined) {
      const p = proc;
      proc = undefined;
      await p.stop();
    }
    if (opts.keepData !== true && !removed) {
      removed = true;
      rmSync(dir, { recursive: true, force: true });
      await guard.release();
    }
  }

  await launch();

  return {
    url,
    port,
    dataDir,
    get running() {
      return proc !== undefined;
    },
    stop,
    start: launch,
    async reload(targets) {
      writeConfig(targets);
      if (proc === undefined) return;
      const res = await fetch(`${url}/-/reload`, { method: "POST", signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      if (!res.ok)
        throw new Error(`prometheus reload failed: HTTP ${res.status} ${text}\n${proc.logTail(30)}`);
    },
  };
}
