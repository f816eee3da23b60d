/**
 * Running as a fleet: replicas share the policies through Leases, and every
 * Lease is a leader election with client-go's semantics.
 *
 * - `<name>-shard-0 … <name>-shard-(N-1)`: a policy is managed by whoever
 *   holds its shard (shards.ts). A replica takes at most
 *   ceil(N / live replicas) of them and gives back what is over that.
 * - `<name>-member-0 … <name>-member-(N-1)`: one slot per live replica, so a
 *   replica that holds no shard yet is still counted. Slots are reused, so
 *   the number of Lease objects stays bounded however often Pods come and go.
 *
 * Expiry is judged as client-go does: a record is expired when this replica
 * has seen it unchanged for its leaseDurationSeconds, measured on our own
 * monotonic clock from when we saw it change; the times written in the Lease
 * are never compared with our clock. Every write carries the resourceVersion
 * it was based on, so of two replicas racing for one Lease exactly one wins.
 *
 * Only the member Lease is renewed every retry period, with client-go's
 * timings; a shard Lease is written when it is taken or given back, and is
 * alive as long as its holder's member Lease is. (Renewing every shard too
 * would cost a replica shards + 1 writes every 2 s, forever: at rest that was
 * most of its CPU, for no more safety.) So:
 *
 * - A replica holds its member Lease only while its last successful renewal
 *   was *sent* less than renewDeadline ago, and its shards only while it
 *   holds its member Lease without a gap since it took them (a lapse drops
 *   them all; they are taken back by resourceVersion-guarded writes, which
 *   fail if anyone took them meanwhile). Checked on every call of holds(), so
 *   a process that was frozen sees it at once on waking, before any timer.
 * - Another replica takes a shard only when it has seen the holder's member
 *   Lease *and* the shard Lease unchanged for a full leaseDuration (the shard
 *   Lease alone when no member Lease names the holder). The holder's last
 *   successful renewal was sent before that member record was seen, so the
 *   holder stopped writing at least leaseDuration - renewDeadline before
 *   anyone may start: client-go's argument, made once per replica instead of
 *   once per Lease. A renewal answered later than the per-call bound (at most
 *   half the renew deadline, below leaseDuration - renewDeadline by default)
 *   does not count, so one landing unseen just before a takeover cannot
 *   extend the hold either.
 */
import type { Logger } from "pino";
import type { Clock } from "../clock.ts";
import { KubeApiError } from "../kube/errors.ts";
import type { LeaseApi, LeaseRecord, ObservedLease } from "./lease.ts";
import { microTime } from "./lease.ts";
import { fairShare } from "./shards.ts";

export interface FleetOptions {
  /** Lease name prefix, and the value of the fleet label. */
  name: string;
  /** This replica's identity, written as holderIdentity. Unique per live process. */
  identity: string;
  shards: number;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const FLEET_DEFAULTS = {
  name: "rolloutd",
  shards: 8,
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
} as const;

export interface FleetDeps {
  api: LeaseApi;
  /** Wall clock, only for the MicroTimes written into Leases. */
  clock: Clock;
  /** Monotonic milliseconds (performance.now): every expiry is judged on it. */
  monotonic: () => number;
  log: Logger;
  /** The set of shards this replica holds changed. Called before any Lease is given back. */
  onChange: (owned: ReadonlySet<number>) => void;
}

interface Seen {
  resourceVersion: string;
  record: LeaseRecord;
  /** Monotonic ms when we saw this record change last. */
  observedAt: number;
}

export class FleetError extends Error {
  override name = "FleetError";
}

/** Checks the timing options as client-go does (leaseDuration > renewDeadline > retryPeriod × 1.2). */
export function checkFleetOptions(o: FleetOptions): void {
  if (!Number.isInteger(o.shards) || o.shards < 1 || o.shards > 256)
    throw new FleetError(`shards must be a whole number in 1..256, not ${o.shards}`);
  if (o.leaseDurationMs <= o.renewDeadlineMs)
    throw new FleetError("the lease duration must be longer than the renew deadline");
  if (o.renewDeadlineMs <= 1.2 * o.retryPeriodMs)
    throw new FleetError("the renew deadline must be longer than 1.2 × the retry period");
  if (o.retryPeriodMs < 100) throw new FleetError("the retry period must be at least 100 ms");
  if (!o.identity) throw new FleetError("the fleet identity must not be empty");
}

export class Fleet {
  private readonly seen = new Map<string, Seen>();
  /** Leases we hold → monotonic ms when the last successful acquire/renew request was sent. */
  private readonly held = new Map<string, number>();
  private owned: ReadonlySet<number> = new Set();
  private timer: NodeJS.Timeout | undefined;
  /** Fires when the earliest held Lease reaches its renew deadline, so the controller lets go on time. */
  private expiry: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Since when (monotonic ms) the Leases cannot be read, and why; undefined while they can. */
  private failing: { since: number; error: string } | undefined;
  private readonly shardNames: string[];
  private readonly shardIndex: Set<string>;
  private readonly memberNames: string[];

  constructor(
    private readonly o: FleetOptions,
    private readonly d: FleetDeps,
  ) {
    checkFleetOptions(o);
    this.shardNames = Array.from({ length: o.shards }, (_, i) => `${o.name}-shard-${i}`);
    this.memberNames = Array.from({ length: o.shards }, (_, i) => `${o.name}-member-${i}`);
    this.shardIndex = new Set(this.shardNames);
  }

  get identity(): string {
    return this.o.identity;
  }

  get shards(): number {
    return this.o.shards;
  }

  /** Does this replica hold the shard at this instant? Judged now, not at the last tick. */
  holds(shard: number): boolean {
    return this.valid(this.shardNames[shard]!, this.d.monotonic());
  }

  /** The shards held at the last tick (what onChange last said). */
  ownedShards(): ReadonlySet<number> {
    return this.owned;
  }

  /** Why the Leases cannot be read, and for how long (ms), while they cannot. */
  trouble(): { forMs: number; error: string } | undefined {
    return this.failing
      ? { forMs: this.d.monotonic() - this.failing.since, error: this.failing.error }
      : undefined;
  }

  /** Live replicas as last counted (members whose slot is held and fresh). */
  liveReplicas(): number {
    return this.countLive(this.d.monotonic());
  }

  /** Runs the first round (so a fleet of one holds its shards before it starts work), then every retryPeriod. */
  async start(): Promise<void> {
    this.running = this.tick();
    await this.running;
    this.running = undefined;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.o.retryPeriodMs);
    this.timer.unref?.();
  }

  /**
   * Runs a round now instead of at the end of the retry period (the API
   * server answers again after an outage: shards lost meanwhile are taken
   * back at once). A round already running is left to finish.
   */
  nudge(): void {
    if (this.stopped || this.running) return;
    clearTimeout(this.timer);
    this.running = this.tick().finally(() => {
      this.running = undefined;
      this.schedule();
    });
  }

  /** Stops renewing and gives every Lease back, so a successor need not wait for expiry. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiry);
    await this.running;
    const names = [...this.held.keys()];
    this.held.clear();
    this.emit();
    await Promise.allSettled(names.map((n) => this.release(n)));
    this.d.api.close?.();
  }

  /** One round: observe, count, renew, give back, take. Never throws. */
  async tick(): Promise<void> {
    try {
      await this.round();
    } catch (err) {
      this.d.log.error({ err: err instanceof Error ? err.message : String(err) }, "fleet round failed");
    }
  }

  private async round(): Promise<void> {
    let leases: ObservedLease[];
    try {
      leases = await this.bounded(this.d.api.list());
      if (this.failing) this.d.log.info("fleet: Leases can be read again");
      this.failing = undefined;
    } catch (err) {
      if (!this.failing) {
        const forbidden = err instanceof KubeApiError && err.status === 403;
        this.d.log[forbidden ? "error" : "warn"](
          { err: message(err) },
          forbidden
            ? "fleet: not allowed to list Leases; this replica manages nothing until it may (RBAC: get, list, watch, create, update on leases in its own namespace)"
            : "fleet: cannot read Leases; shards are held only until their renew deadline",
        );
        this.failing = { since: this.d.monotonic(), error: message(err) };
      }
      this.dropExpired(this.d.monotonic());
      this.emit();
      return;
    }
    const now = this.d.monotonic();
    this.observe(leases, now);
    this.dropExpired(now);
    this.emit();

    await this.keepMemberSlot(now);

    const target = fairShare(this.o.shards, this.countLive(this.d.monotonic()));
    const mine = this.shardNames.filter((n) => this.held.has(n));
    // Give back what is over our share: stop writing for it first, then release it.
    const excess = mine.length > target ? mine.slice(target) : [];
    if (excess.length) {
      for (const n of excess) this.held.delete(n);
      this.emit();
      this.d.log.info({ shards: excess, target }, "fleet: giving shards back to balance the fleet");
    }
    const keep = mine.slice(0, target);
    // Without a member Lease held now, take nothing: a shard lives by it.
    if (this.memberDeadline() <= this.d.monotonic()) {
      await Promise.allSettled(excess.map((n) => this.release(n)));
      this.emit();
      return;
    }
    // A shard whose holder went silent is taken by whoever saw it expire, even past its share: a
    // replica that has just joined (and keeps the live count up) cannot judge expiry for another
    // lease duration, and the shard's rollouts would wait for it. The excess is handed over, released,
    // in a later round. Released or new shards are taken only up to the share.
    const takeable = this.takeable(this.shardNames, now);
    const orphans = takeable.filter((n) => this.orphaned(n));
    const free = takeable.filter((n) => !this.orphaned(n));
    const want = Math.max(0, target - keep.length - orphans.length);
    // Shards kept are not written: they live by the member Lease renewed above.
    await Promise.allSettled([
      ...excess.map((n) => this.release(n)),
      ...orphans.map((n) => this.acquireOrRenew(n)),
      ...this.rotate(free)
        .slice(0, want)
        .map((n) => this.acquireOrRenew(n)),
    ]);
    this.emit();
  }

  /** Holds one member slot: ours if a record still names us, else a free or expired one. */
  private async keepMemberSlot(now: number): Promise<void> {
    const mine = this.memberNames.find(
      (n) => this.held.has(n) || this.seen.get(n)?.record.holderIdentity === this.o.identity,
    );
    if (mine) {
      // A renewal sent after the deadline starts a new hold: the shards held before it are not carried over.
      if (this.memberDeadline() <= this.d.monotonic()) this.loseShards("our member Lease lapsed");
      await this.acquireOrRenew(mine).catch(() => {});
      return;
    }
    for (const n of this.takeable(this.memberNames, now)) {
      if (await this.acquireOrRenew(n).catch(() => false)) return;
    }
  }

  /** Leases nobody holds: absent, released, or unchanged for their duration as we saw them. */
  private takeable(names: readonly string[], now: number): string[] {
    return names.filter((n) => {
      if (this.held.has(n)) return false;
      const s = this.seen.get(n);
      if (!s || s.record.holderIdentity === "" || s.record.holderIdentity === this.o.identity) return true;
      if (now - s.observedAt < s.record.leaseDurationSeconds * 1000) return false;
      if (!this.isShard(n)) return true;
      // A shard lives by its holder's member Lease, when one names the holder.
      const member = this.memberOf(s.record.holderIdentity);
      return !member || now - member.observedAt >= member.record.leaseDurationSeconds * 1000;
    });
  }

  /** The member Lease that names `identity`, as last seen. */
  private memberOf(identity: string): Seen | undefined {
    for (const n of this.memberNames) {
      const s = this.seen.get(n);
      if (s?.record.holderIdentity === identity) return s;
    }
    return undefined;
  }

  /** Held by someone else, who let it expire (as opposed to released, absent, or ours). */
  private orphaned(name: string): boolean {
    const h = this.seen.get(name)?.record.holderIdentity;
    return h !== undefined && h !== "" && h !== this.o.identity;
  }

  /** Starts at a place that depends on who we are, so replicas taking at once mostly pick different shards. */
  private rotate(names: string[]): string[] {
    if (names.length < 2) return names;
    const slot = this.memberNames.findIndex((n) => this.held.has(n));
    const at =
      (slot < 0 ? 0 : slot * Math.ceil(this.o.shards / Math.max(1, this.countLive(this.d.monotonic())))) %
      names.length;
    return [...names.slice(at), ...names.slice(0, at)];
  }

  private countLive(now: number): number {
    let live = 0;
    for (const n of this.memberNames) {
      if (this.valid(n, now)) {
        live++;
        continue;
      }
      const s = this.seen.get(n);
      if (!s || s.record.holderIdentity === "" || s.record.holderIdentity === this.o.identity) continue;
      if (now - s.observedAt < s.record.leaseDurationSeconds * 1000) live++;
    }
    return Math.max(1, live);
  }

  /** A member Lease: renewed in time. A shard Lease: taken, and our member Lease is valid. */
  private valid(name: string, now: number): boolean {
    const sentAt = this.held.get(name);
    if (sentAt === undefined) return false;
    if (this.isShard(name)) return this.memberDeadline() > now;
    return now - sentAt < this.o.renewDeadlineMs;
  }

  private isShard(name: string): boolean {
    return this.shardIndex.has(name);
  }

  /** Monotonic ms at which our member Lease (and with it every shard) stops being held; -Infinity without one. */
  private memberDeadline(): number {
    let deadline = -Infinity;
    for (const n of this.memberNames) {
      const sentAt = this.held.get(n);
      if (sentAt !== undefined) deadline = Math.max(deadline, sentAt + this.o.renewDeadlineMs);
    }
    return deadline;
  }

  /** Gives up every shard at once (our member Lease lapsed or was lost). */
  private loseShards(why: string): void {
    for (const n of this.shardNames) if (this.held.has(n)) this.lose(n, why);
  }

  private observe(leases: readonly ObservedLease[], now: number): void {
    const present = new Set<string>();
    for (const l of leases) {
      present.add(l.name);
      this.see(l, now);
      // Someone else's name on a Lease we thought ours: it is not ours any more.
      if (this.held.has(l.name) && l.record.holderIdentity !== this.o.identity)
        this.lose(l.name, "taken over");
    }
    for (const n of this.seen.keys()) {
      if (present.has(n)) continue;
      this.seen.delete(n);
      if (this.held.has(n)) this.lose(n, "deleted");
    }
  }

  private see(l: ObservedLease, now: number): void {
    const prev = this.seen.get(l.name);
    const changed = !prev || !sameRecord(prev.record, l.record);
    this.seen.set(l.name, {
      resourceVersion: l.resourceVersion,
      record: l.record,
      observedAt: changed ? now : prev.observedAt,
    });
  }

  private dropExpired(now: number): void {
    for (const n of this.memberNames)
      if (this.held.has(n) && !this.valid(n, now)) this.lose(n, "not renewed within the renew deadline");
    if (this.memberDeadline() <= now)
      this.loseShards("our member Lease was not renewed within the renew deadline");
  }

  private lose(name: string, why: string): void {
    this.held.delete(name);
    this.d.log.warn({ lease: name, why }, "fleet: lost a Lease");
    // Our shards live by our member Lease: without it they are not ours.
    if (!this.isShard(name) && this.memberDeadline() === -Infinity) this.loseShards(`lost ${name}`);
  }

  /**
   * client-go's tryAcquireOrRenew: create the Lease if absent; renew it if
   * ours; take it if released or expired; in every case guarded by the
   * resourceVersion we saw. Returns whether we hold it now.
   */
  private async acquireOrRenew(name: string): Promise<boolean> {
    const sentAt = this.d.monotonic();
    const prev = this.seen.get(name);
    const ours = prev?.record.holderIdentity === this.o.identity;
    const wallNow = microTime(this.d.clock.now());
    const record: LeaseRecord = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: ours && prev.record.acquireTime ? prev.record.acquireTime : wallNow,
      renewTime: wallNow,
      leaseTransitions: !prev ? 0 : ours ? prev.record.leaseTransitions : prev.record.leaseTransitions + 1,
    };
    try {
      const res = await this.bounded(
        prev ? this.d.api.update(name, prev.resourceVersion, record) : this.d.api.create(name, record),
      );
      if (this.stopped) return false;
      this.see(res, this.d.monotonic());
      const had = this.held.has(name);
      this.held.set(name, sentAt);
      if (!had && !ours) this.d.log.info({ lease: name }, "fleet: took a Lease");
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.isConflict) {
        // Someone wrote it after we looked: the next round reads it again.
        this.seen.delete(name);
        if (this.held.has(name)) this.lose(name, "changed by another writer (409)");
      } else {
        this.d.log.debug({ lease: name, err: message(err) }, "fleet: could not write a Lease");
      }
      return false;
    }
  }

  /** Gives a Lease back (client-go's ReleaseOnCancel): no holder, so another may take it at once. */
  private async release(name: string): Promise<void> {
    const prev = this.seen.get(name);
    if (!prev || prev.record.holderIdentity !== this.o.identity) return;
    const record: LeaseRecord = {
      ...prev.record,
      holderIdentity: "",
      leaseDurationSeconds: 1,
      renewTime: microTime(this.d.clock.now()),
    };
    try {
      const res = await this.bounded(this.d.api.update(name, prev.resourceVersion, record));
      this.see(res, this.d.monotonic());
    } catch (err) {
      this.d.log.debug(
        { lease: name, err: message(err) },
        "fleet: could not release a Lease; it will expire",
      );
    }
  }

  private emit(): void {
    const now = this.d.monotonic();
    const owned = new Set<number>();
    this.shardNames.forEach((n, i) => {
      if (this.valid(n, now)) owned.add(i);
    });
    this.armExpiry(now);
    if (sameSet(owned, this.owned)) return;
    this.owned = owned;
    this.d.log.info(
      { shards: [...owned], of: this.o.shards, identity: this.o.identity },
      "fleet: shards held",
    );
    this.d.onChange(owned);
  }

  /**
   * Writes are refused at the renew deadline whatever happens (holds() is
   * judged at the call); this also tells the controller then, so it cancels
   * the shard's analyses and drops its keys on time even while a round is
   * stuck waiting for the API server.
   */
  private armExpiry(now: number): void {
    clearTimeout(this.expiry);
    this.expiry = undefined;
    if (this.stopped) return;
    // Everything held ends with our member Lease's deadline.
    const first = this.memberDeadline();
    // Already past: holds() says so at every call and emit() has told the controller; no timer to spin on.
    if (!Number.isFinite(first) || first <= now) return;
    this.expiry = setTimeout(() => this.emit(), Math.max(0, first - now) + 1);
    this.expiry.unref?.();
  }

  /**
   * One API call may take a retry period (at least 1 s, at most half the
   * renew deadline): a hung request must not stall the renewals.
   */
  private bounded<T>(p: Promise<T>): Promise<T> {
    const ms = Math.min(this.o.renewDeadlineMs / 2, Math.max(this.o.retryPeriodMs, 1_000));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.acquireTime === b.acquireTime &&
    a.renewTime === b.renewTime &&
    a.leaseTransitions === b.leaseTransitions
  );
}

function sameSet(a: ReadonlySet<number>, b: ReadonlySet<number>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
