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
import type { LeaseApi, LeaseRecord, ObservedLease } from "../../../src/fleet/lease.ts";
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
}

/** The fleet the unit tests run: 8 shards and client-go's default timings (15 s / 10 s / 2 s). */
export const FLEET_OPTS: Omit<FleetOptions, "identity"> = {
  name: "rd",
  shards: 8,
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

export const healthyLink = (): Link => ({ down: false, hang: false, delayMs: 0, writeDelayMs: 0 });

export class MemoryLeases {
  private rv = 1;
  readonly leases = new Map<string, ObservedLease>();
  /** When set, every call on every link fails as if the API server were down. */
  down = false;
  writes = 0;

  api(link: Link = healthyLink()): LeaseApi {
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
    return {
      list: () => answer(() => [...this.leases.values()].map((l) => structuredClone(l))),
      create: (name, record) =>
        answer(() => {
          if (this.leases.has(name)) throw new KubeApiError(409, "AlreadyExists", "exists");
          return this.put(name, record);
        }, true),
      update: (name, resourceVersion, record) =>
        answer(() => {
          const cur = this.leases.get(name);
          if (!cur) throw new KubeApiError(404, "NotFound", "gone");
          if (cur.resourceVersion !== resourceVersion) throw new KubeApiError(409, "Conflict", "changed");
          return this.put(name, record);
        }, true),
    };
  }

  put(name: string, record: LeaseRecord): ObservedLease {
    this.writes++;
    const l = { name, resourceVersion: String(++this.rv), record: structuredClone(record) };
    this.leases.set(name, l);
    return structuredClone(l);
  }

  holder(name: string): string | undefined {
    return this.leases.get(name)?.record.holderIdentity;
  }
}
