/**
 * One watch per kind rolloutd reads, across all namespaces, behind the
 * ObjectReader seam the routers use. Every change is passed on as an object
 * reference; the controller maps it to the policies that depend on it.
 */
import type { Logger } from "pino";
import type { KubeClients } from "./client.ts";
import { Watcher, type WatcherStatus } from "./informer.ts";
import { KINDS, type KindName, type KObject, type ObjectRef } from "./kinds.ts";

export type ChangeHandler = (ref: ObjectRef, obj: KObject) => void;

export class ClusterCache {
  private readonly watchers = new Map<KindName, Watcher>();
  private readonly handlers: ChangeHandler[] = [];

  constructor(
    private readonly clients: KubeClients,
    private readonly log: Logger,
    private readonly kinds: KindName[] = Object.keys(KINDS) as KindName[],
  ) {
    for (const kind of this.kinds) {
      this.watchers.set(
        kind,
        new Watcher(
          clients.kc,
          clients,
          KINDS[kind],
          (_type, obj) => this.emit(kind, obj),
          log.child({ component: "watch" }),
        ),
      );
    }
  }

  onChange(handler: ChangeHandler): void {
    this.handlers.push(handler);
  }

  private emit(kind: KindName, obj: KObject): void {
    const ref: ObjectRef = { kind, namespace: obj.metadata?.namespace ?? "", name: obj.metadata?.name ?? "" };
    for (const h of this.handlers) h(ref, obj);
  }

  /** Resolves when every watch has listed once (or found its kind missing). */
  async start(): Promise<void> {
    await Promise.all([...this.watchers.values()].map((w) => w.start()));
  }

  get(kind: KindName, namespace: string, name: string): KObject | undefined {
    return this.watchers.get(kind)?.get(namespace, name);
  }

  list(kind: KindName, namespace?: string): readonly KObject[] {
    return this.watchers.get(kind)?.list(namespace) ?? [];
  }

  status(): WatcherStatus[] {
    return [...this.watchers.values()].map((w) => ({ ...w.status }));
  }

  /** Ready when every kind the cluster serves is synced; kinds whose CRD is missing do not block. */
  synced(): boolean {
    return [...this.watchers.values()].every((w) => w.status.synced || w.status.unavailable !== undefined);
  }

  isAvailable(kind: KindName): boolean {
    return this.watchers.get(kind)?.status.synced ?? false;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.watchers.values()].map((w) => w.stop()));
  }
}
