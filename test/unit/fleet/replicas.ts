/**
 * One fleet replica over a MemoryLeases store, as the fleet's unit suites
 * drive it: FLEET_OPTS unless told otherwise, the test's monotonic clock
 * (the wall clock only dates the MicroTimes written), its own link to the
 * store so one replica's connection can break and not another's, and a
 * record of what it sent and of what it held, each at the clock's time.
 */
import pino from "pino";
import { Fleet, type FleetOptions } from "../../../src/fleet/fleet.ts";
import type { LeaseApi } from "../../../src/fleet/lease.ts";
import { FLEET_OPTS, healthyLink, type Link, type MemoryLeases } from "./memory-leases.ts";

const silent = pino({ level: "silent" });

/** Milliseconds on the monotonic clock; the test moves it. */
export interface TestClock {
  t: number;
}

export interface ReplicaOptions extends Partial<FleetOptions> {
  /** With the Lease watch the daemon uses (the default), or listing every round as client-go does. */
  watch?: boolean;
}

export interface TestReplica {
  fleet: Fleet;
  link: Link;
  /**
   * When set, its writes are refused at once and not applied, while its reads
   * still work (as when RBAC lets it read Leases but not write them).
   */
  refuseWrites: boolean;
  /** Every call it sent, at the clock's time; a write names its Lease. */
  sent: Array<{ at: number; method: "list" | "create" | "update" | "watch"; lease?: string }>;
  /** Every onChange, at the clock's time, with the shards held then (sorted). */
  changes: Array<{ at: number; owned: number[] }>;
  /** The shards it holds now. */
  held(): number[];
  /** The Leases it wrote (created or updated, refused or not), in the order sent. */
  writes(): string[];
}

export function replica(
  store: MemoryLeases,
  identity: string,
  clock: TestClock,
  opts: ReplicaOptions = {},
): TestReplica {
  const { watch = true, ...options } = opts;
  const link = healthyLink();
  const inner = store.api(link, { watch });
  const sent: TestReplica["sent"] = [];
  const send = (method: TestReplica["sent"][number]["method"], lease?: string) =>
    sent.push({ at: clock.t, method, ...(lease !== undefined ? { lease } : {}) });
  const changes: TestReplica["changes"] = [];
  // Read when a write is sent: the test sets it on the replica returned below.
  const refusing = () => r.refuseWrites;
  const api: LeaseApi = {
    list: () => (send("list"), inner.list()),
    create: (n, rec) => (send("create", n), refusing() ? refused() : inner.create(n, rec)),
    update: (n, rv, rec) => (send("update", n), refusing() ? refused() : inner.update(n, rv, rec)),
  };
  if (inner.watch) {
    const opened = inner.watch.bind(inner);
    api.watch = (onEvent, done, exclude) => (send("watch"), opened(onEvent, done, exclude));
  }
  const fleet = new Fleet(
    { ...FLEET_OPTS, ...options, identity },
    {
      api,
      clock: { now: () => 1_800_000_000_000 + clock.t },
      monotonic: () => clock.t,
      log: silent,
      onChange: (owned) => changes.push({ at: clock.t, owned: [...owned].sort((a, b) => a - b) }),
    },
  );
  const r: TestReplica = {
    fleet,
    link,
    refuseWrites: false,
    sent,
    changes,
    held: () => Array.from({ length: fleet.shards }, (_, i) => i).filter((i) => fleet.holds(i)),
    writes: () => sent.flatMap((x) => (x.lease !== undefined ? [x.lease] : [])),
  };
  return r;
}

const refused = () => Promise.reject(new Error("refused"));
