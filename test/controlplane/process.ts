/**
 * Child processes that cannot outlive the test run. Each one is started by a
 * small bash supervisor holding a pipe to us: when we close it — on purpose in
 * stop(), or because our process died, even by SIGKILL — the supervisor sends
 * SIGTERM, then SIGKILL after a grace period, and optionally removes a
 * directory. No stray etcd, apiserver or Prometheus survives a crashed test.
 *
 * Fault-injection tests also need the real child's pid (to SIGKILL an apiserver or SIGSTOP etcd): the
 * supervisor writes it as the one line of its stdout and then closes that pipe. Its watcher sends SIGCONT
 * after SIGTERM, so a child stopped by a test still ends within the grace period instead of waiting for SIGKILL.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, openSync, readFileSync } from "node:fs";
import net from "node:net";

const SUPERVISOR = String.raw`
log="$1"; grace="$2"; cleanup="$3"; shift 3
exec 3<&0
"$@" >>"$log" 2>&1 </dev/null 3<&- &
child=$!
echo "$child"
exec 1>/dev/null
(
  while read -r -u 3 _; do :; done
  kill -TERM "$child" 2>/dev/null
  kill -CONT "$child" 2>/dev/null
  for _ in $(seq $((grace * 10))); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$child" 2>/dev/null
) &
watcher=$!
wait "$child"; code=$?
kill "$watcher" 2>/dev/null
[ -n "$cleanup" ] && rm -rf "$cleanup"
exit $code
`;

export interface SupervisedProcess {
  readonly name: string;
  readonly logFile: string;
  /** Resolves with the exit code when the process has ended, for any reason. */
  readonly exited: Promise<number | null>;
  /** Asks it to stop (SIGTERM, SIGKILL after the grace period) and waits. */
  stop(): Promise<number | null>;
  /** True until the process has exited. */
  running(): boolean;
  /** Keeps our event loop alive until it exits (it does not by default). */
  hold(): void;
  /** The last lines of its log, for error messages. */
  logTail(lines?: number): string;
  /** The pid of the command itself (not of its supervisor), once the supervisor reported it. */
  pid(): Promise<number>;
  /**
   * Sends `signal` to the command itself. Returns false when it had already exited (nothing was sent).
   * SIGKILL goes around the supervisor's grace period; the supervisor still notices the exit.
   */
  signal(signal: NodeJS.Signals): Promise<boolean>;
}

export interface SpawnOptions {
  name: string;
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  graceSeconds?: number;
  /** Removed by the supervisor after the process exited. */
  cleanupDir?: string;
}

export function spawnSupervised(command: string, args: string[], opts: SpawnOptions): SupervisedProcess {
  // Create the log file up front so logTail works even if the command never starts.
  createWriteStream(opts.logFile, { flags: "a" }).end();
  const child: ChildProcess = spawn(
    "bash",
    [
      "-c",
      SUPERVISOR,
      "supervisor",
      opts.logFile,
      String(opts.graceSeconds ?? 5),
      opts.cleanupDir ?? "",
      command,
      ...args,
    ],
    { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "ignore"] },
  );
  let alive = true;
  // The supervisor's stdout carries one line, the child's pid, and is closed right after.
  const pid = new Promise<number>((resolve, reject) => {
    let text = "";
    const out = child.stdout;
    if (!out) return reject(new Error(`${opts.name}: supervisor has no stdout`));
    out.setEncoding("utf8");
    out.on("data", (chunk: string) => (text += chunk));
    out.on("error", () => {});
    out.on("close", () => {
      const n = Number.parseInt(text.trim(), 10);
      if (Number.isInteger(n) && n > 0) resolve(n);
      else reject(new Error(`${opts.name}: supervisor reported no pid (${JSON.stringify(text)})`));
    });
  });
  // Nobody may be waiting for it; a rejection must not become an unhandled one.
  pid.catch(() => {});
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => {
      alive = false;
      resolve(code);
    });
    child.on("error", () => {
      alive = false;
      resolve(null);
    });
  });
  // The pipe must not keep our event loop alive, nor crash us if it breaks.
  child.stdin?.on("error", () => {});
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();

  return {
    name: opts.name,
    logFile: opts.logFile,
    exited,
    running: () => alive,
    hold: () => {
      child.ref();
    },
    stop: async () => {
      // Hold the event loop open until it is really gone.
      child.ref();
      child.stdin?.end();
      return exited;
    },
    pid: () => pid,
    signal: async (sig) => {
      const target = await pid;
      if (!alive) return false;
      try {
        process.kill(target, sig);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
        throw err;
      }
    },
    logTail: (lines = 20) => {
      try {
        return readFileSync(opts.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
      } catch {
        return "(no log)";
      }
    },
  };
}

/**
 * A directory removed when our process dies, however it dies. Normal shutdown
 * removes it itself and then calls release().
 */
export function guardDirectory(dir: string): { release(): Promise<void> } {
  const guard = spawnSupervised("sleep", ["infinity"], {
    name: "dir-guard",
    logFile: "/dev/null",
    cleanupDir: dir,
    graceSeconds: 1,
  });
  return { release: async () => void (await guard.stop()) };
}

/** A free TCP port on loopback. The tiny window before the caller binds it is covered by retries there. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Polls `probe` until it returns true; throws with `describe()` after the timeout. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: {
    timeoutMs: number;
    intervalMs?: number;
    describe?: () => string;
    abortIf?: () => string | undefined;
  },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const abort = opts.abortIf?.();
    if (abort) throw new Error(`${what}: ${abort}${opts.describe ? `\n${opts.describe()}` : ""}`);
    try {
      if (await probe()) return;
    } catch {
      // not ready yet
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not ready after ${opts.timeoutMs} ms${opts.describe ? `\n${opts.describe()}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/**
 * The scheduler state letter of a process from /proc/<pid>/stat (R running, S sleeping, T stopped, Z zombie
 * …), or undefined when there is no such process. Linux only, like the rest of this harness.
 */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) S ...": comm may contain spaces and parentheses, so split after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

/** Opens a file for appending, creating it; used for logs. */
export function touch(file: string): void {
  openSync(file, "a");
}
