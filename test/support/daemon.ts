/**
 * Runs the real daemon (`rolloutd run`) as a child process, the way users
 * run it, under the same supervisor as the control plane so it cannot
 * outlive the test. Its JSON log lines are readable for assertions.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { guardDirectory, spawnSupervised, type SupervisedProcess } from "../controlplane/process.ts";
import { eventually } from "./cluster.ts";

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  pid?: number;
  policy?: string;
  reason?: string;
  [k: string]: unknown;
}

export interface DaemonProcess {
  port: number;
  pid: number;
  proc: SupervisedProcess;
  lines(): LogLine[];
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no chance to clean up, as in a node failure. */
  kill(): Promise<void>;
  /** Removes the log directory (after the last look at lines()). */
  dispose(): Promise<void>;
  waitForLine(what: string, pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export async function startDaemon(opts: {
  kubeconfig: string;
  policiesDir: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  waitReady?: boolean;
  /** Node arguments that run the CLI; default: the sources through tsx. */
  entry?: string[];
  /**
   * The fleet (Lease prefix) to join. By default each daemon is a fleet of one
   * of its own, so a daemon started after a killed one need not wait for the
   * dead one's Leases to expire; the fleet tests name a shared fleet.
   */
  fleet?: string;
}): Promise<DaemonProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), "rolloutd-daemon-"));
  const logFile = path.join(dir, "daemon.log");
  // The log outlives the process (tests read it after a stop); the guard removes it if we die.
  const guard = guardDirectory(dir);
  const proc = spawnSupervised(
    process.execPath,
    [
      ...(opts.entry ?? ["--import", "tsx", MAIN]),
      "run",
      `--kubeconfig=${opts.kubeconfig}`,
      `--policies=${opts.policiesDir}`,
      "--metrics-port=0",
      "--metrics-host=127.0.0.1",
      "--log-level=debug",
      "--log-format=json",
      `--fleet=${opts.fleet ?? `t${randomBytes(4).toString("hex")}`}`,
      ...(opts.extraArgs ?? []),
    ],
    {
      name: "rolloutd",
      logFile,
      env: { ...process.env, ...opts.env },
      cwd: fileURLToPath(new URL("../../", import.meta.url)),
    },
  );
  const lines = (): LogLine[] => {
    let text: string;
    try {
      text = readFileSync(logFile, "utf8");
    } catch {
      return [];
    }
    const out: LogLine[] = [];
    for (const raw of text.split("\n")) {
      if (!raw.startsWith("{")) continue;
      try {
        out.push(JSON.parse(raw) as LogLine);
      } catch {
        // a partial last line
      }
    }
    return out;
  };
  const waitForLine = (what: string, pred: (l: LogLine) => boolean, timeoutMs = 30_000) =>
    eventually(
      what,
      () => {
        if (!proc.running()) throw new Error(`daemon exited; log tail:\n${proc.logTail(30)}`);
        return lines().find(pred);
      },
      timeoutMs,
    );
  const serving = await waitForLine(
    "daemon serving",
    (l) => l.msg.startsWith("serving /healthz"),
    60_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${proc.logTail(30)}`);
  });
  const port = serving.port as number;
  const pid = serving.pid!;
  if (opts.waitReady !== false) {
    await eventually(
      "daemon ready",
      async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
      60_000,
    );
  }
  return {
    port,
    pid,
    proc,
    lines,
    waitForLine,
    stop: async () => {
      proc.hold();
      if (proc.running()) process.kill(pid, "SIGTERM");
      return proc.exited;
    },
    kill: async () => {
      proc.hold();
      if (proc.running()) process.kill(pid, "SIGKILL");
      await proc.exited;
    },
    dispose: async () => {
      if (proc.running()) {
        proc.hold();
        process.kill(pid, "SIGKILL");
        await proc.exited;
      }
      rmSync(dir, { recursive: true, force: true });
      await guard.release();
    },
  };
}

/** The daemon's /readyz status code; 0 when it does not answer within 2 s. */
export async function readyz(port: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
    return res.status;
  } catch {
    return 0;
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr as they interleaved. */
  out: string;
  ms: number;
}

/**
 * Runs `rolloutd <args>` from the sources to completion, as an operator would; SIGKILLed after `timeoutMs`
 * so a hanging command fails its test instead of stalling the suite.
 */
export function runCli(
  args: string[],
  opts: { kubeconfig?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(
      process.execPath,
      ["--import", "tsx", MAIN, ...args, ...(opts.kubeconfig ? [`--kubeconfig=${opts.kubeconfig}`] : [])],
      { env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const r = { stdout: "", stderr: "", out: "" };
    child.stdout.on("data", (d: Buffer) => ((r.stdout += d.toString()), (r.out += d.toString())));
    child.stderr.on("data", (d: Buffer) => ((r.stderr += d.toString()), (r.out += d.toString())));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, ...r, ms: Date.now() - started });
    });
  });
}
