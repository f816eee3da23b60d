/**
 * One cluster-wide watch of a route kind for the benchmark: keeps the latest
 * version of every object and resolves waiters with the performance.now() at
 * which the first matching event arrived. It resumes from the last
 * resourceVersion when the client ends the watch (30 s without events).
 */
import { Watch } from "@kubernetes/client-node";
import { KINDS, type KindName, type KObject } from "../../src/kube/kinds.ts";
import type { Cluster } from "../support/cluster.ts";

interface Waiter {
  pred: (obj: KObject) => boolean;
  resolve: (at: number) => void;
}

export class RouteWatch {
  private readonly latest = new Map<string, KObject>();
  private readonly waiters = new Map<string, Waiter[]>();
  private lastRv = "";
  private req: { abort(): void } | undefined;
  private closed = false;
  events = 0;

  constructor(
    private readonly c: Cluster,
    private readonly kind: KindName,
  ) {}

  async start(): Promise<void> {
    const k = KINDS[this.kind];
    const watch = new Watch(this.c.kc);
    this.req = await watch.watch(
      `/apis/${k.group}/${k.version}/${k.plural}`,
      { allowWatchBookmarks: true, ...(this.lastRv ? { resourceVersion: this.lastRv } : {}) },
      (type: string, obj: KObject & { code?: number }) => this.onEvent(type, obj),
      () => {
        if (!this.closed) setTimeout(() => void this.start().catch(() => {}), 100).unref();
      },
    );
  }

  private onEvent(type: string, obj: KObject & { code?: number }): void {
    const at = performance.now();
    if (type === "ERROR") {
      if (obj.code === 410) this.lastRv = "";
      return;
    }
    if (obj.metadata?.resourceVersion) this.lastRv = obj.metadata.resourceVersion;
    if (type === "BOOKMARK") return;
    this.events++;
    const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
    if (type === "DELETED") this.latest.delete(key);
    else this.latest.set(key, obj);
    const ws = this.waiters.get(key);
    if (!ws) return;
    const left = ws.filter((w) => {
      if (!w.pred(obj)) return true;
      w.resolve(at);
      return false;
    });
    if (left.length) this.waiters.set(key, left);
    else this.waiters.delete(key);
  }

  get(ns: string, name: string): KObject | undefined {
    return this.latest.get(`${ns}/${name}`);
  }

  /** Resolves with the arrival time of the first event from now on whose object satisfies `pred`. */
  next(ns: string, name: string, pred: (obj: KObject) => boolean): Promise<number> {
    return new Promise((resolve) => {
      const key = `${ns}/${name}`;
      const list = this.waiters.get(key) ?? [];
      list.push({ pred, resolve });
      this.waiters.set(key, list);
    });
  }

  close(): void {
    this.closed = true;
    this.req?.abort();
  }
}
