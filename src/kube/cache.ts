/**
 * One watch per kind rolloutd reads, behind the ObjectReader seam the
 * routers use: across all namespaces by default, or one watch per kind and
 * namespace when the daemon is limited to listed namespaces (RBAC with Roles
 * instead of a ClusterRole), so it never lists what it may not read. Every
 * change is passed on as an object reference; the controller maps it to the
 * policies that depend on it.
 */
import type { Logger } from "pino";
import type { KubeClients } from "./client.ts";
import { Watcher, type WatcherStatus } from "./informer.ts";
import { KINDS, type KindName, type KObject, type ObjectRef } from "./kinds.ts";

export type ChangeHandler = (ref: ObjectRef, obj: KObject) => void;

export interface ClusterCacheOptions {
  kinds?: KindName[];
  /** Watch only these namespaces (one watch per kind and namespace); all namespaces when absent. */
  namespaces?: readonly string[];
}

/** Key of the watch that holds a namespace's objects; "" is the cluster-wide watch. */
const ALL = "";

export class ClusterCache {
  /** kind → namespace (or ALL) → watch. */
  private readonly watchers = new Map<KindName, Map<string, Watcher>>();
  private readonly handlers: ChangeHandler[] = [];
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
            ns === undefined ? {} : { namespace: ns },
          ),
        );
      }
      this.watchers.set(kind, byNs);
    }
  }

  /** Whether objects of this namespace are watched (and so may be read and written). */
  watches(namespace: string): boolean {
    return this.namespaces === undefined || this.namespaces.includes(namespace);
  }

  onChange(handler: ChangeHandler): void {
    this.handlers.push(handler);
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

  list(kind: KindName, namespace?: string): readonly KObject[] {
    if (namespace !== undefined) return this.watcherFor(kind, namespace)?.list(namespace) ?? [];
    return [...(this.watchers.get(kind)?.values() ?? [])].flatMap((w) => w.list());
  }

  status(): WatcherStatus[] {
    return this.all().map((w) => ({ ...w.status }));
  }

  /** Ready when every kind the cluster serves is synced; kinds whose CRD is missing do not block. */
  synced(): boolean {
    return this.all().every((w) => w.status.synced || w.status.unavailable !== undefined);
  }

  /** The kind is synced: in that namespace when one is given, else in every watched namespace. */
  isAvailable(kind: KindName, namespace?: string): boolean {
    if (namespace !== undefined) return this.watcherFor(kind, namespace)?.status.synced ?? false;
    const byNs = this.watchers.get(kind);
    return byNs !== undefined && [...byNs.values()].every((w) => w.status.synced);
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((w) => w.stop()));
  }
}
