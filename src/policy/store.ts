/**
 * PolicyStore: the live set of valid policies of one folder. It loads the
 * folder, watches it (fs.watch on the directory, coalesced, plus a slow
 * periodic rescan for the cases inotify misses: network file systems, a
 * ConfigMap volume's symlink swap, a directory re-created under us) and tells
 * subscribers what changed.
 *
 * A broken edit never stops a running rollout. When a policy that was valid
 * becomes invalid, the store keeps its last valid version active and reports
 * the error: a platform engineer's typo in `steps` must not remove the policy
 * (which would leave the route half-shifted with nobody driving it) nor start
 * anything new. The policy is only removed when it is really gone: its file
 * is deleted, or its document is removed from a file that otherwise parses.
 * Precisely, a key missing from the new valid set is kept when
 *  - a document that failed validation still claims it (metadata readable), or
 *  - its last file still exists and has an error that cannot be pinned to a
 *    key (YAML syntax error, unreadable metadata, unreadable file), or
 *  - the folder itself cannot be read (nothing is known, nothing is dropped).
 * The errors stay in `errors()` and in every change set until fixed.
 */
import { watch, type FSWatcher } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import type { Logger } from "pino";
import { loadPolicyDir, type PolicyError, type PolicyFileCache } from "./load.ts";
import type { PolicySchemaOptions } from "./schema.ts";
import type { RolloutPolicy } from "./types.ts";

export interface PolicyChangeSet {
  /** Policies that are new or whose content changed (a changed `source` alone does not count). */
  upserted: RolloutPolicy[];
  /** Keys ("namespace/name") no longer defined. */
  removed: string[];
  /** Every current error (not only new ones); empty when the folder is clean. */
  errors: PolicyError[];
}

export type PolicyListener = (change: PolicyChangeSet) => void;

export interface PolicyStoreOptions extends PolicySchemaOptions {
  dir: string;
  logger: Logger;
  /** Events within this many ms after the first one are folded into one reload. Default 200. */
  debounceMs?: number;
  /** Full rescan period, the safety net under fs.watch. Default 30 s; 0 disables. */
  rescanIntervalMs?: number;
  /** Use fs.watch. Default true; false leaves only the periodic rescan. */
  watch?: boolean;
  maxFileBytes?: number;
}

export class PolicyStore {
  readonly #opts: PolicyStoreOptions;
  readonly #log: Logger;
  readonly #listeners = new Set<PolicyListener>();
  #active = new Map<string, RolloutPolicy>();
  #errors: PolicyError[] = [];
  #errorsSignature = "";
  #watcher: FSWatcher | undefined;
  #watchFailed = false;
  #debounce: NodeJS.Timeout | undefined;
  #rescan: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> | undefined;
  /** What each file parsed to, by name, with its stat signature: an unchanged file is not parsed again. */
  readonly #cache: PolicyFileCache = new Map();
  /** File names the watch reported since the last load, or "all" when anything else may have changed. */
  #pending: Set<string> | "all" = "all";
  #again = false;
  #started = false;
  #closed = false;

  constructor(opts: PolicyStoreOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ component: "policy-store", dir: opts.dir });
  }

  /** Loads the folder, starts watching, and returns the initial change set (also sent to subscribers). */
  async start(): Promise<PolicyChangeSet> {
    if (this.#started) throw new Error("PolicyStore already started");
    this.#started = true;
    let initial: PolicyChangeSet = { upserted: [], removed: [], errors: [] };
    await this.#run((change) => {
      initial = change;
    });
    this.#ensureWatcher();
    const every = this.#opts.rescanIntervalMs ?? 30_000;
    if (every > 0 && !this.#closed) {
      // The safety net: a stat of every file (a parse only of those whose stat changed).
      this.#rescan = setInterval(() => {
        this.#ensureWatcher();
        void this.reload();
      }, every);
      this.#rescan.unref();
    }
    return initial;
  }

  /** Calls `listener` with every later change set. Returns the unsubscribe function. */
  subscribe(listener: PolicyListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Reloads now, looking at every file. Resolves once a load that started after this call has been applied. */
  reload(): Promise<void> {
    this.#pending = "all";
    return this.#run();
  }

  /** The active policies (last valid versions included), sorted by key. */
  current(): RolloutPolicy[] {
    return [...this.#active.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  get(key: string): RolloutPolicy | undefined {
    return this.#active.get(key);
  }

  errors(): PolicyError[] {
    return [...this.#errors];
  }

  /** Stops watching and rescanning; waits for a load in progress. No change set is emitted afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#debounce);
    clearInterval(this.#rescan);
    this.#closeWatcher();
    this.#listeners.clear();
    await this.#inFlight;
  }

  /** Serializes loads: a request during a load makes exactly one more load afterwards. */
  #run(onInitial?: (change: PolicyChangeSet) => void): Promise<void> {
    if (this.#inFlight !== undefined) {
      this.#again = true;
      return this.#inFlight;
    }
    this.#inFlight = (async () => {
      try {
        do {
          this.#again = false;
          await this.#loadOnce(onInitial);
          onInitial = undefined;
        } while (this.#again && !this.#closed);
      } catch (err) {
        this.#log.error({ err }, "policy reload failed");
      } finally {
        this.#inFlight = undefined;
      }
    })();
    return this.#inFlight;
  }

  async #loadOnce(onInitial?: (change: PolicyChangeSet) => void): Promise<void> {
    const preferredSources = new Map([...this.#active].map(([key, p]) => [key, p.source.file]));
    const only = this.#pending === "all" ? undefined : this.#pending;
    this.#pending = new Set();
    const result = await loadPolicyDir(this.#opts.dir, {
      preferredSources,
      maxFileBytes: this.#opts.maxFileBytes,
      templateNames: this.#opts.templateNames,
      cache: this.#cache,
      ...(only ? { only } : {}),
    });
    if (this.#closed) return;

    const next = new Map<string, RolloutPolicy>();
    for (const p of result.policies) next.set(p.key, p);
    const kept: RolloutPolicy[] = [];
    const broken = new Set(result.brokenKeys);
    const files = new Set(result.files);
    const opaque = new Set(result.opaqueFiles);
    for (const [key, old] of this.#active) {
      if (next.has(key)) continue;
      const file = old.source.file;
      if (!result.dirReadable || broken.has(key) || (files.has(file) && opaque.has(file))) {
        next.set(key, old);
        kept.push(old);
      }
    }
    if (!result.dirReadable) this.#closeWatcher(); // re-created by the next rescan

    const upserted: RolloutPolicy[] = [];
    for (const p of next.values()) {
      const before = this.#active.get(p.key);
      if (before === undefined || (before !== p && !samePolicy(before, p))) upserted.push(p);
    }
    const removed = [...this.#active.keys()].filter((key) => !next.has(key));
    const formatted = result.errors.map((e) => e.format());
    const signature = formatted.join("\n");
    const errorsChanged = signature !== this.#errorsSignature;
    const before = new Set(this.#errors.map((e) => e.format()));
    const added = formatted.filter((f) => !before.has(f)).length;
    const resolved = before.size - formatted.filter((f) => before.has(f)).length;

    this.#active = next;
    this.#errors = result.errors;
    this.#errorsSignature = signature;

    if (errorsChanged) {
      // Each problem is logged once, by whoever subscribes (the daemon logs the new ones); here only the tally.
      if (result.errors.length > 0) {
        this.#log.warn({ errors: result.errors.length, added, resolved }, "policy errors changed");
      } else {
        this.#log.info("policy errors resolved");
      }
      for (const p of kept) {
        this.#log.warn(
          { policy: p.key, file: p.source.file },
          "policy is invalid; keeping its last valid version",
        );
      }
    }
    const change: PolicyChangeSet = { upserted, removed, errors: [...result.errors] };
    onInitial?.(change);
    if (upserted.length === 0 && removed.length === 0 && !errorsChanged) return;
    if (upserted.length > 0 || removed.length > 0) {
      this.#log.info(
        { upserted: upserted.map((p) => p.key), removed, active: next.size, errors: result.errors.length },
        "policies changed",
      );
    }
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.#log.error({ err }, "policy change listener threw");
      }
    }
  }

  /** A watch event: the named file may have changed; anything else (no name, a hidden entry) means all. */
  #mark(filename: string | Buffer | null): void {
    const name = typeof filename === "string" ? filename : undefined;
    if (name === undefined || name.startsWith(".") || name.includes("/")) this.#pending = "all";
    else if (this.#pending !== "all") this.#pending.add(name);
  }

  #schedule(): void {
    if (this.#closed || this.#debounce !== undefined) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      void this.reload();
    }, this.#opts.debounceMs ?? 200);
  }

  #ensureWatcher(): void {
    if (this.#closed || this.#watcher !== undefined || this.#opts.watch === false) return;
    try {
      const watcher = watch(this.#opts.dir, (_event, filename) => {
        this.#mark(filename);
        this.#schedule();
      });
      watcher.on("error", (err) => {
        this.#log.warn({ err }, "policy directory watch failed; relying on rescans until it is back");
        if (this.#watcher === watcher) this.#closeWatcher();
        this.#pending = "all";
        this.#schedule();
      });
      this.#watcher = watcher;
      if (this.#watchFailed) this.#log.info("watching policy directory again");
      this.#watchFailed = false;
    } catch (err) {
      if (!this.#watchFailed) {
        this.#log.warn({ err }, "cannot watch policy directory; relying on periodic rescans");
      }
      this.#watchFailed = true;
    }
  }

  #closeWatcher(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}

function samePolicy(a: RolloutPolicy, b: RolloutPolicy): boolean {
  return isDeepStrictEqual({ ...a, source: undefined }, { ...b, source: undefined });
}
