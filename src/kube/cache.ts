/**
 * One watch per kind rolloutd reads, behind the ObjectReader seam the
 * routers use: across all namespaces by default, or one watch per kind and
 * namespace when the daemon is limited to listed namespaces (RBAC with Roles
 * instead of a ClusterRole), so it never lists what it may not read. Every
 * change is passed on as an object reference; the controller maps it to the
 * policies that depend on it.
 *
 * The cache also says how far it can be trusted: a watch that failed keeps
 * its last known objects for reading, but is reported stale until it has
 * listed again, so nothing is written on the strength of it and readiness
 * turns false while the daemon is blind.
 *
 * It holds every object of every kind it watches, on every replica, so it
 * keeps of each only what rolloutd reads (kube/slim.ts).
 */
import type { Logger } from "pino";
import type { KubeClients } from "./client.ts";
import { Watcher, type WatcherStatus } from "./informer.ts";
import { KINDS, type KindInfo, type KindName, type KObject, type ObjectRef } from "./kinds.ts";
import { servedKind, type DiscoveryGet } from "./discovery.ts";
import type { CacheSlim } from "./slim.ts";

export type ChangeHandler = (ref: ObjectRef, obj: KObject) => void;

/**
 * synced: the watch is live and listed; stale: it failed and is being
 * re-established (reads are last known values); unavailable: the kind is not
 * served, or not allowed.
 */
export type CacheFreshness = "synced" | "stale" | "unavailable";

export interface ClusterCacheOptions {
  kinds?: KindName[];
  /** Watch only these namespaces (one watch per kind and namespace); all namespaces when absent. */
  namespaces?: readonly string[];
  /** Discovery documents, to address kinds of several versions (App Mesh) by the one the cluster serves. */
  discovery?: DiscoveryGet;
  /**
   * Per kind, what of an object the cache keeps beyond dropping managedFields (which every kind gets):
   * the composition root gives each reader's projection (controller/observe.ts, slimDeployment).
   */
  slim?: Partial<Record<KindName, CacheSlim>>;
}

/** Key of the watch that holds a namespace's objects; "" is the cluster-wide watch. */
const ALL = "";

export class ClusterCache {
  /** kind → namespace (or ALL) → watch. */
  private readonly watchers = new Map<KindName, Map<string, Watcher>>();
  private readonly handlers: ChangeHandler[] = [];
  private readonly resyncHandlers: Array<(kind: KindName) => void> = [];
  readonly namespaces: readonly string[] | undefined;

  constructor(clients: KubeClients, log: Logger, opts: ClusterCacheOptions = {}) {
    this.namespaces = opts.namespaces ? [...new Set(opts.namespaces)] : undefined;
    for (const kind of opts.kinds ?? (Object.keys(KINDS) as KindName[])) {
      const byNs = new Map<string, Watcher>();
      for (const ns of this.namespaces ?? [undefined]) {
        byNs.set(
          ns ?? ALL,
          new Watcher(
            clients.kc,
            clients,
            KINDS[kind],
            (_type, obj) => this.emit(kind, obj),
            log.child(ns === undefined ? { component: "watch" } : { component: "watch", namespace: ns }),
            {
              ...(ns === undefined ? {} : { namespace: ns }),
              ...(opts.slim?.[kind] ? { slim: opts.slim[kind] } : {}),
              onResync: () => {
                for (const h of this.resyncHandlers) h(kind);
              },
              ...(opts.discovery && (KINDS[kind] as KindInfo).versions
                ? { resolve: (k: KindInfo) => servedKind(opts.discovery!, k) }
                : {}),
            },
          ),
        );
      }
      this.watchers.set(kind, byNs);
    }
  }

  onChange(handler: ChangeHandler): void {
    this.handlers.push(handler);
  }

  /** Called when a watch has listed again after failing: objects may have changed unseen meanwhile. */
  onResync(handler: (kind: KindName) => void): void {
    this.resyncHandlers.push(handler);
  }

  private emit(kind: KindName, obj: KObject): void {
    const ref: ObjectRef = { kind, namespace: obj.metadata?.namespace ?? "", name: obj.metadata?.name ?? "" };
    for (const h of this.handlers) h(ref, obj);
  }

  private all(): Watcher[] {
    return [...this.watchers.values()].flatMap((byNs) => [...byNs.values()]);
  }

  private watcherFor(kind: KindName, namespace: string): Watcher | undefined {
    return this.watchers.get(kind)?.get(this.namespaces === undefined ? ALL : namespace);
  }

  /** Resolves when every watch has listed once (or found its kind missing). */
  async start(): Promise<void> {
    await Promise.all(this.all().map((w) => w.start()));
  }

  get(kind: KindName, namespace: string, name: string): KObject | undefined {
    return this.watcherFor(kind, namespace)?.get(namespace, name);
  }

  /** The kind as the cluster serves it, as its watch last listed it: writes address the same version. */
  served(kind: KindName): KindInfo {
    const w = this.watchers.get(kind)?.values().next().value;
    return w?.served ?? KINDS[kind];
  }

  status(): WatcherStatus[] {
    return this.all().map((w) => ({ ...w.status }));
  }

  freshness(kind: KindName, namespace: string): CacheFreshness {
    const w = this.watcherFor(kind, namespace);
    if (!w || w.status.unavailable !== undefined) return "unavailable";
    return w.status.synced ? "synced" : "stale";
  }

  /**
   * Watches that have been blind (failed and not listed again) for longer
   * than `graceMs`. A missing CRD is not blindness: policies on it wait, the
   * rest work.
   */
  blind(now: number, graceMs: number): WatcherStatus[] {
    return this.status().filter(
      (s) => !s.synced && s.unavailable === undefined && now - (s.blindSince ?? now) >= graceMs,
    );
  }

  /**
   * The API server answers again: reconnect failed watches now, without waiting out their backoff, and
   * re-open those that have said nothing since `quietSince` (the outage's start), whose connection may be dead.
   */
  retryFailed(quietSince?: number): void {
    for (const w of this.all()) w.retryNow(quietSince);
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((w) => w.stop()));
  }
}
