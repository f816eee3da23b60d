/**
 * A watch-backed cache of one kind, across all namespaces or in one
 * namespace (when RBAC grants no more than that). client-node's
 * informer gives the cache and events but stops for good on any error other
 * than 410 Gone; this wrapper restarts it with exponential backoff, exposes a
 * "synced" flag for readiness, and makes sure a throwing handler can never
 * take the process down.
 */
import {
  ListWatch,
  Watch,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { KubeClients } from "./client.ts";
import { toKubeError } from "./errors.ts";
import { clusterPath, type KindInfo } from "./kinds.ts";
import { withoutManagedFields, type CacheSlim } from "./slim.ts";

/** The collection a watch lists: all namespaces, or one. */
function collectionPath(k: KindInfo, namespace?: string): string {
  if (namespace === undefined) return clusterPath(k);
  const root = k.group ? `/apis/${k.group}/${k.version}` : `/api/${k.version}`;
  return `${root}/namespaces/${namespace}/${k.plural}`;
}

/**
 * A watch that has sent nothing for this long is taken as dead and re-opened
 * (from its last resourceVersion). client-node's default is 30 s, and the API
 * server sends nothing on a quiet kind, so every kind's watch was re-opened
 * twice a minute forever, most of an idle daemon's allocation and CPU. With
 * bookmarks asked for, the server sends one about every minute on every
 * watch (which also keeps the resourceVersion to resume from recent), so a
 * live watch is never idle this long. A silently dead connection is noticed
 * later than before (90 s instead of 30); after an API server outage seen by
 * the /readyz beat, every watch that has not spoken since it began is
 * re-opened at once (ClusterCache.retryFailed) without waiting for this.
 */
export const WATCH_IDLE_MS = 90_000;

/** client-node's Watch, re-opened after WATCH_IDLE_MS of silence instead of its default 30 s. */
export function idleWatch(kc: KubeConfig): Watch {
  const watch = new Watch(kc);
  // A private field in the typings; the one knob client-node has for the idle timeout.
  (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = WATCH_IDLE_MS;
  return watch;
}

/** Watch events that carry an object of the kind (not a BOOKMARK's bare resourceVersion, not an ERROR's Status). */
const OBJECT_EVENTS = new Set(["ADDED", "MODIFIED", "DELETED"]);

/**
 * What a watch event hands on: its object as the cache keeps it, or, for a
 * BOOKMARK or an ERROR, what came (client-node reads an ERROR Status's code
 * to relist after a 410; slimmed as a Deployment, it would have none).
 */
export function watchedObject(
  phase: string,
  obj: unknown,
  keep: (obj: KubernetesObject) => KubernetesObject,
): unknown {
  return OBJECT_EVENTS.has(phase) ? keep(obj as KubernetesObject) : obj;
}

/**
 * client-node's informer (a list, then a watch), asking for bookmarks, with
 * WATCH_IDLE_MS, and every object passed through `keep` before the cache or a
 * handler sees it: the listed items and each watched object alike (client-go's
 * informer transform; client-node has none).
 */
function makeBookmarkedInformer(
  kc: KubeConfig,
  path: string,
  list: () => Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }>,
  heard: () => void,
  keep: (obj: KubernetesObject) => KubernetesObject,
): Informer<KubernetesObject> & ObjectCache<KubernetesObject> {
  const watch = idleWatch(kc);
  const bookmarked = {
    watch: (
      p: string,
      query: Record<string, string | number | boolean | undefined>,
      callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
      done: (err: unknown) => void,
    ) =>
      watch.watch(
        p,
        { ...query, allowWatchBookmarks: true },
        (phase, apiObj, watchObj) => {
          heard();
          callback(phase, watchedObject(phase, apiObj, keep), watchObj);
        },
        done,
      ),
  } as unknown as Watch;
  const kept = async () => {
    const listed = await list();
    return { ...listed, items: listed.items.map(keep) };
  };
  return new ListWatch<KubernetesObject>(path, bookmarked, kept, false);
}

export type WatchEventType = "add" | "update" | "delete";
export type WatchHandler = (type: WatchEventType, obj: KubernetesObject) => void;

export interface WatcherStatus {
  kind: string;
  /** Set when the watch is limited to one namespace. */
  namespace?: string;
  /** Listed and watching. Cleared on any failure: the cache is then the last known state, not the current one. */
  synced: boolean;
  /** When the watch last stopped being synced (or was created), for readiness' grace period. */
  blindSince?: number;
  /** The CRD (or the permission to list it) is missing; retried slowly. */
  unavailable?: string;
  lastError?: string;
  lastErrorAt?: number;
  restarts: number;
  /**
   * Full lists made, the first included. Besides our restarts, client-node relists on its own when a watch
   * resumes from a resourceVersion etcd has compacted away (410 Gone), so this is how a watch expiry shows.
   */
  lists: number;
}

export class Watcher {
  private informer: (Informer<KubernetesObject> & ObjectCache<KubernetesObject>) | undefined;
  /** The last informer that completed a list: reads keep using it while a restart relists. */
  private cache: ObjectCache<KubernetesObject> | undefined;
  private stopped = false;
  private backoffMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private firstAttempt: { promise: Promise<void>; resolve: () => void };
  readonly status: WatcherStatus;
  /** The kind as the cluster serves it (discovery's version), as last listed. */
  served: KindInfo;

  constructor(
    private readonly kc: KubeConfig,
    private readonly clients: KubeClients,
    private readonly kind: KindInfo,
    private readonly handler: WatchHandler,
    private readonly log: Logger,
    private readonly opts: {
      maxBackoffMs?: number;
      unavailableRetryMs?: number;
      namespace?: string;
      /** Called when the watch has listed again after a failure (not on the first sync). */
      onResync?: () => void;
      /** The version the cluster serves, asked before every (re)list: a CRD may be installed or changed meanwhile. */
      resolve?: (k: KindInfo) => Promise<KindInfo>;
      /** Keeps less of each object of this kind, after managedFields are dropped (kube/slim.ts). */
      slim?: CacheSlim;
    } = {},
  ) {
    this.served = kind;
    this.status = { kind: kind.kind, synced: false, blindSince: Date.now(), restarts: 0, lists: 0 };
    if (opts.namespace !== undefined) this.status.namespace = opts.namespace;
    let resolve!: () => void;
    this.firstAttempt = { promise: new Promise<void>((r) => (resolve = r)), resolve };
  }

  /** Resolves once the first list either succeeded or definitively failed; never rejects. */
  async start(): Promise<void> {
    this.connect();
    await this.firstAttempt.promise;
  }

  /**
   * Every kind is listed as JSON, as served, through the custom-objects API
   * (which takes any group, apps/v1 Deployments included): the same shape a
   * watch event has. client-node's typed list returns its model instead,
   * with date-time strings turned into Date objects and fields its model
   * lacks dropped, so an unchanged Deployment hashed to another revision
   * after a relist than after a watch event (a rollout nobody shipped).
   */
  private listAll(): Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }> {
    const k = this.served;
    const namespace = this.opts.namespace;
    this.status.lists++;
    const what = { group: k.group, version: k.version, plural: k.plural };
    return (
      namespace === undefined
        ? this.clients.custom.listClusterCustomObject(what)
        : this.clients.custom.listNamespacedCustomObject({ ...what, namespace })
    ) as Promise<{
      items: KubernetesObject[];
      metadata?: { resourceVersion?: string };
    }>;
  }

  private connect(): void {
    if (this.stopped) return;
    if (!this.opts.resolve) return this.watch();
    const attempt = ++this.attempts;
    this.opts.resolve(this.kind).then(
      (served) => {
        if (attempt !== this.attempts || this.stopped) return;
        this.served = served;
        this.watch();
      },
      // Discovery failed: watch the version last known; an error there takes the usual retry path.
      () => {
        if (attempt === this.attempts && !this.stopped) this.watch();
      },
    );
  }

  private attempts = 0;

  private watch(): void {
    if (this.stopped) return;
    const informer = makeBookmarkedInformer(
      this.kc,
      collectionPath(this.served, this.opts.namespace),
      () => this.listAll(),
      () => (this.heardAt = Date.now()),
      (obj) => this.keep(obj),
    );
    this.informer = informer;
    const safe = (type: WatchEventType) => (obj: KubernetesObject) => {
      try {
        this.handler(type, obj);
      } catch (err) {
        this.log.error({ err, kind: this.kind.kind }, "watch handler threw; event dropped");
      }
    };
    informer.on("add", safe("add"));
    informer.on("update", safe("update"));
    informer.on("delete", safe("delete"));
    informer.on("error", (err: unknown) => this.onError(informer, err));
    this.connectedAt = Date.now();
    informer.start().then(
      () => {
        if (this.informer !== informer || this.stopped) return;
        if (!this.status.lastErrorAt || this.status.lastErrorAt < this.connectedAt) {
          this.heardAt = Date.now();
          this.cache = informer;
          this.markSynced();
        }
      },
      (err: unknown) => this.onError(informer, err),
    );
  }

  /**
   * What the cache holds of an object (kube/slim.ts). A slimming that throws
   * keeps the object whole: a cache that holds too much is better than an
   * event lost, or a watch torn down by a throw in client-node's stream.
   */
  private keep(obj: KubernetesObject): KubernetesObject {
    try {
      const lean = withoutManagedFields(obj);
      return this.opts.slim ? this.opts.slim(lean) : lean;
    } catch (err) {
      this.log.error({ err, kind: this.kind.kind }, "slimming an object for the cache threw; kept it whole");
      return obj;
    }
  }

  private connectedAt = 0;
  /** When the watch last delivered anything (an event or a bookmark), or listed. */
  private heardAt = 0;

  private markSynced(): void {
    const wasBlind = !this.status.synced;
    if (wasBlind) this.log.debug({ kind: this.kind.kind }, "watch synced");
    this.status.synced = true;
    this.status.blindSince = undefined;
    this.status.unavailable = undefined;
    this.backoffMs = 0;
    this.firstAttempt.resolve();
    if (wasBlind && this.status.restarts > 0) {
      try {
        this.opts.onResync?.();
      } catch (err) {
        this.log.error({ err, kind: this.kind.kind }, "resync handler threw");
      }
    }
  }

  /** Waiting to reconnect after a failure (not merely unavailable). */
  get failing(): boolean {
    return (
      !this.stopped &&
      !this.status.synced &&
      this.status.unavailable === undefined &&
      this.retryTimer !== undefined
    );
  }

  /**
   * The API server answers again: reconnect now instead of at the end of a
   * backoff that grew while it was away, so the daemon is not blind for up
   * to maxBackoffMs after an outage.
   */
  retryNow(quietSince?: number): void {
    // Open, but silent since the outage began: its connection may be dead without either side knowing.
    if (
      quietSince !== undefined &&
      !this.failing &&
      this.status.synced &&
      this.informer &&
      this.heardAt < quietSince
    ) {
      this.onError(this.informer, new Error("nothing heard since the API server went away; re-opening"));
      return;
    }
    if (!this.failing) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.backoffMs = 0;
    this.connect();
  }

  private onError(informer: Informer<KubernetesObject>, raw: unknown): void {
    if (this.stopped || this.informer !== informer) return;
    const where = this.opts.namespace === undefined ? "" : ` in namespace ${this.opts.namespace}`;
    const err = toKubeError(raw, `watch ${this.kind.plural}.${this.kind.group || "core"}${where}`);
    const status = (err as { status?: number }).status;
    this.status.lastErrorAt = Date.now();
    this.status.lastError = err.message;
    this.status.restarts++;
    if (this.status.synced) this.status.blindSince = Date.now();
    this.status.synced = false;
    let delay: number;
    if (status === 404 || status === 403) {
      // The kind is not installed, or we may not list it: not fatal for other policies.
      if (!this.status.unavailable) {
        this.log.warn(
          { kind: this.kind.kind, err: err.message },
          status === 404
            ? `${this.kind.kind} (${this.kind.plural}.${this.kind.group}) is not served by this cluster; policies targeting it wait until its CRD is installed`
            : `not allowed to list ${this.kind.plural}.${this.kind.group}${where}; check RBAC`,
        );
      }
      this.status.unavailable = err.message;
      delay = this.opts.unavailableRetryMs ?? 30_000;
      this.firstAttempt.resolve();
    } else {
      // A dropped watch or an API hiccup: relist and rewatch with backoff; the cache stays as it was meanwhile.
      this.backoffMs = Math.min(this.backoffMs ? this.backoffMs * 2 : 500, this.opts.maxBackoffMs ?? 30_000);
      delay = this.backoffMs;
      this.log.warn({ kind: this.kind.kind, err: err.message, retryInMs: delay }, "watch failed; restarting");
    }
    void informer.stop().catch(() => {});
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  get(namespace: string, name: string): KubernetesObject | undefined {
    return this.cache?.get(name, namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.firstAttempt.resolve();
    await this.informer?.stop().catch(() => {});
  }
}
