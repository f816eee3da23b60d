/**
 * An in-memory Lease store for the fleet's unit tests. It keeps the API
 * server's one rule that matters here: an update based on an old
 * resourceVersion is refused (409). That the real API server accepts what we
 * write is tested in test/integration/fleet.test.ts.
 *
 * Each replica may get its own link to the store, to break one replica's
 * connection and not another's: a write is applied when it is sent (the
 * server got it), its answer may be held back on the timers or never come.
 */
import type { FleetOptions } from "../../../src/fleet/fleet.ts";
import type { LeaseApi, LeaseEvent, LeaseRecord, ObservedLease } from "../../../src/fleet/lease.ts";
import { KubeApiError } from "../../../src/kube/errors.ts";

export interface Link {
  /** Every call is refused at once, as by a server that is down. */
  down: boolean;
  /** Calls are applied but never answered, as over a connection that went silent. */
  hang: boolean;
  /** Answers arrive this many ms after the call (setTimeout, so mocked timers drive them). */
  delayMs: number;
  /** Answers to writes (create, update) arrive this much later still. */
  writeDelayMs: number;
  /** Open watches stay open but deliver nothing more, as over a connection that died without a word. */
  watchSilent: boolean;
}

type Subscriber = {
  link: Link;
  /** This stream's connection died without a word: it sends nothing more (a new watch works). */
  silent?: boolean;
  exclude: string | undefined;
  onEvent: (type: LeaseEvent, l: ObservedLease) => void;
  end: () => void;
};

/** The fleet the unit tests run: 8 shards and client-go's default timings (15 s / 10 s / 2 s). */
export const FLEET_OPTS: Omit<FleetOptions, "identity"> = {
  name: "rd",
  shards: 8,
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

export const healthyLink = (): Link => ({
  down: false,
  hang: false,
  delayMs: 0,
  writeDelayMs: 0,
  watchSilent: false,
});

export class MemoryLeases {
  private rv = 1;
  readonly leases = new Map<string, ObservedLease>();
  /** When set, every call on every link fails as if the API server were down. */
  down = false;
  writes = 0;
  /** Calls by method, over every link. */
  readonly calls = { list: 0, create: 0, update: 0, watch: 0 };
  private readonly subscribers = new Set<Subscriber>();

  /**
   * A link to the store. With `watch: false` the API has no watch, and the
   * fleet lists every round (client-go's way); with it, events are delivered
   * after the write, in order, as the API server's watch does.
   */
  api(link: Link = healthyLink(), opts: { watch?: boolean } = {}): LeaseApi {
    const answer = <T>(apply: () => T, write = false): Promise<T> => {
      if (this.down || link.down) return Promise.reject(new KubeApiError(0, "ECONNREFUSED", "down"));
      let result: { ok: true; value: T } | { ok: false; err: unknown };
      try {
        result = { ok: true, value: apply() };
      } catch (err) {
        result = { ok: false, err };
      }
      if (link.hang) return new Promise<T>(() => {});
      const settle = (resolve: (v: T) => void, reject: (e: unknown) => void) =>
        result.ok ? resolve(result.value) : reject(result.err);
      const delay = link.delayMs + (write ? link.writeDelayMs : 0);
      if (delay <= 0) return new Promise<T>(settle);
      return new Promise<T>((resolve, reject) => setTimeout(() => settle(resolve, reject), delay));
    };
    const api: LeaseApi = {
      list: () => {
        this.calls.list++;
        return answer(() => [...this.leases.values()].map((l) => structuredClone(l)));
      },
      create: (name, record) =>
        answer(() => {
          this.calls.create++;
          if (this.leases.has(name)) throw new KubeApiError(409, "AlreadyExists", "exists");
          return this.put(name, record);
        }, true),
      update: (name, resourceVersion, record) =>
        answer(() => {
          this.calls.update++;
          const cur = this.leases.get(name);
          if (!cur) throw new KubeApiError(404, "NotFound", "gone");
          if (cur.resourceVersion !== resourceVersion) throw new KubeApiError(409, "Conflict", "changed");
          return this.put(name, record);
        }, true),
    };
    if (opts.watch === false) return api;
    api.watch = (onEvent, done, exclude) => {
      this.calls.watch++;
      if (this.down || link.down) return Promise.reject(new KubeApiError(0, "ECONNREFUSED", "down"));
      let open = true;
      const sub: Subscriber = {
        link,
        exclude,
        onEvent: (type, l) => {
          if (open) onEvent(type, l);
        },
        end: () => {
          if (!open) return;
          open = false;
          this.subscribers.delete(sub);
          done();
        },
      };
      this.subscribers.add(sub);
      for (const l of this.leases.values()) this.deliver(sub, "ADDED", l);
      return Promise.resolve({
        stop: () => {
          open = false;
          this.subscribers.delete(sub);
        },
      });
    };
    return api;
  }

  put(name: string, record: LeaseRecord): ObservedLease {
    this.writes++;
    const l = { name, resourceVersion: String(++this.rv), record: structuredClone(record) };
    const type = this.leases.has(name) ? "MODIFIED" : "ADDED";
    this.leases.set(name, l);
    for (const sub of this.subscribers) this.deliver(sub, type, l);
    return structuredClone(l);
  }

  /** Deletes a Lease, as `kubectl delete lease` would. */
  delete(name: string): void {
    const l = this.leases.get(name);
    if (!l) return;
    this.leases.delete(name);
    for (const sub of this.subscribers) this.deliver(sub, "DELETED", l);
  }

  /** Every open watch goes silent, as when its connection dies unnoticed; watches opened later work. */
  silenceWatches(): void {
    for (const sub of this.subscribers) sub.silent = true;
  }

  /** The server ends every open watch (it does so every so often, and on restart). */
  endWatches(): void {
    for (const sub of [...this.subscribers]) sub.end();
  }

  /** After the write, in order; nothing over a link that is down, hung or silent. */
  private deliver(sub: Subscriber, type: LeaseEvent, l: ObservedLease): void {
    if (l.name === sub.exclude) return;
    const copy = structuredClone(l);
    queueMicrotask(() => {
      const { link } = sub;
      // A server that is down ends the stream; one that hangs or went silent just sends nothing more.
      if (this.down || link.down) return sub.end();
      if (link.hang || link.watchSilent || sub.silent) return;
      sub.onEvent(type, copy);
    });
  }

  holder(name: string): string | undefined {
    return this.leases.get(name)?.record.holderIdentity;
  }
}
