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
 * We see the Leases through a watch rather than client-go's read before
 * every write: a renewal is seen as it happens (so a dead holder's shards
 * move one lease duration after its last renewal, not up to a retry period
 * later), and at rest a round is one write. A takeover from a silent holder
 * still reads first (see round()), so a watch that died without a word can
 * delay what we see but never make a live holder look dead.
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
import type { LeaseApi, LeaseEvent, LeaseRecord, LeaseWatch, ObservedLease } from "./lease.ts";
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
  /** Our member Lease was just renewed: the API server and its storage answered a write. */
  onRenewed?: () => void;
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
  /** A nudge came while a round was running: run another as soon as it ends. */
  private again = false;
  private started = false;
  private stopped = false;
  /** The watch on the fleet's Leases, while open: rounds then need no list. */
  private watch: LeaseWatch | undefined;
  /** The Lease the open watch leaves out: our member Lease, whose renewals we make and need not hear back. */
  private watchExcludes: string | undefined;
  private watchOpening = false;
  private watchRefused = false;
  /** What we saw may be out of date (a write was refused with 409): list in the next round. */
  private needList = false;
  /** Monotonic ms of the last successful list. */
  private listedAt = -Infinity;
  /** Fires when a Lease someone else holds would expire as we saw it, so it is taken over on time. */
  private takeover: NodeJS.Timeout | undefined;
  /** Why the last write of a Lease failed, other than a conflict. */
  private lastWriteError: string | undefined;
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
    this.started = true;
    this.running = this.tick();
    await this.running;
    this.running = undefined;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const ms = this.again ? 0 : this.o.retryPeriodMs;
    this.again = false;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, ms);
    this.timer.unref?.();
  }

  /**
   * Runs a round now instead of at the end of the retry period (the API
   * server answers again after an outage: shards lost meanwhile are taken
   * back at once). A round already running is left to finish.
   */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
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
    clearTimeout(this.takeover);
    this.watch?.stop();
    this.watch = undefined;
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

  /**
   * With the watch open, what we saw is current and a round only renews and
   * decides: one write per retry period at rest. It still lists first when
   * the watch is closed, when a write was refused as out of date, and before
   * taking over a Lease from a holder that went silent: a watch that died
   * without a word would show every holder silent, and a takeover must rest
   * on a fresh read that shows its renewals stopped (client-go reads before
   * every write). And once per lease duration anyway, as a safety net under
   * the watch (like the policy folder's rescan): a stream that stays open
   * but stops delivering would otherwise hide a joining replica, and the
   * fleet would not rebalance, for as long as the stream looks alive.
   */
  private async round(): Promise<void> {
    if (this.watch && this.watchExcludes !== this.ownMember()) {
      // Our member slot changed: watch again, leaving out the new one.
      this.watch.stop();
      this.watch = undefined;
    }
    const fresh = this.d.monotonic() - this.listedAt < this.o.leaseDurationMs;
    if (this.watch && fresh && !this.needList && !this.wouldTakeOver(this.d.monotonic())) {
      const now = this.d.monotonic();
      this.dropExpired(now);
      this.emit();
      return this.decide(now, true);
    }
    let leases: ObservedLease[];
    try {
      this.needList = false;
      const sent = this.d.monotonic();
      leases = await this.bounded(this.d.api.list());
      this.listedAt = sent;
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
    if (!this.watch) this.openWatch();
    return this.decide(now, false);
  }

  /** Renews the member Lease, then gives back what is over our share and takes what is free or orphaned. */
  private async decide(now: number, watched: boolean): Promise<void> {
    const renewed = await this.keepMemberSlot(now);
    // Without a list this round, the renewal is what tells whether the Leases can be reached.
    if (watched) {
      if (renewed && this.failing) {
        this.d.log.info("fleet: Leases can be written again");
        this.failing = undefined;
      } else if (!renewed && this.lastWriteError) {
        if (!this.failing) {
          this.d.log.warn(
            { err: this.lastWriteError },
            "fleet: cannot renew our member Lease; shards are held only until their renew deadline",
          );
          this.failing = { since: this.d.monotonic(), error: this.lastWriteError };
        }
        // The watch may have died with the connection, silently: list and watch afresh once the server answers.
        this.watch?.stop();
        this.watch = undefined;
      }
    }

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
    const taking = this.rotate(free).slice(0, want);
    // Records that still name us though a lapse dropped them, and that we do not take again: the others see
    // them held by a live replica and would never take them. Given back like the excess.
    const stale = free.filter(
      (n) => !taking.includes(n) && this.seen.get(n)?.record.holderIdentity === this.o.identity,
    );
    // Shards kept are not written: they live by the member Lease renewed above.
    await Promise.allSettled([
      ...excess.map((n) => this.release(n)),
      ...stale.map((n) => this.release(n)),
      ...orphans.map((n) => this.acquireOrRenew(n)),
      ...taking.map((n) => this.acquireOrRenew(n)),
    ]);
    this.emit();
  }

  /** Holds one member slot: ours if a record still names us, else a free or expired one. Says whether it did. */
  private async keepMemberSlot(now: number): Promise<boolean> {
    this.lastWriteError = undefined;
    const mine = this.memberSlot();
    if (mine) {
      // A renewal sent after the deadline starts a new hold: the shards held before it are not carried over.
      if (this.memberDeadline() <= this.d.monotonic()) this.loseShards("our member Lease lapsed");
      const ok = await this.acquireOrRenew(mine).catch(() => false);
      if (ok) this.d.onRenewed?.();
      return ok;
    }
    for (const n of this.takeable(this.memberNames, now)) {
      if (await this.acquireOrRenew(n).catch(() => false)) {
        this.d.onRenewed?.();
        return true;
      }
    }
    return false;
  }

  /**
   * Would this round take a Lease over from a holder that went silent? Only
   * shards, and a member slot when we have none and none is free: a dead
   * replica's member Lease stays expired until someone needs its slot, and
   * must not make every round list.
   */
  private wouldTakeOver(now: number): boolean {
    if (this.takeable(this.shardNames, now).some((n) => this.orphaned(n))) return true;
    if (this.memberSlot()) return false;
    const slots = this.takeable(this.memberNames, now);
    return slots.length > 0 && slots.every((n) => this.orphaned(n));
  }

  /** Our member slot: the member Lease we hold, or one whose record still names us. */
  private memberSlot(): string | undefined {
    return this.memberNames.find(
      (n) => this.held.has(n) || this.seen.get(n)?.record.holderIdentity === this.o.identity,
    );
  }

  /** The member Lease we hold, if any. */
  private ownMember(): string | undefined {
    return this.memberNames.find((n) => this.held.has(n));
  }

  /** Opens the watch; when it ends, the next round lists and opens it again. */
  private openWatch(): void {
    const watch = this.d.api.watch?.bind(this.d.api);
    if (!watch || this.watchOpening || this.stopped) return;
    this.watchOpening = true;
    const exclude = this.ownMember();
    let handle: LeaseWatch | undefined;
    let ended = false;
    watch(
      (type, lease) => {
        if (!ended) this.onWatchEvent(type, lease);
      },
      (err) => {
        ended = true;
        if (this.watch === handle) this.watch = undefined;
        this.d.log.debug({ err: err === undefined ? undefined : message(err) }, "fleet: Lease watch ended");
      },
      exclude,
    ).then(
      (h) => {
        this.watchOpening = false;
        handle = h;
        if (this.stopped || ended) return h.stop();
        this.watch = h;
        this.watchExcludes = exclude;
      },
      (err: unknown) => {
        this.watchOpening = false;
        // Said once: the fleet still works, at a list per round (the chart's Role grants watch on leases).
        this.d.log[this.watchRefused ? "debug" : "warn"](
          { err: message(err) },
          "fleet: cannot watch Leases; listing them every retry period instead",
        );
        this.watchRefused = true;
      },
    );
  }

  private onWatchEvent(type: LeaseEvent, l: ObservedLease): void {
    if (this.stopped) return;
    const now = this.d.monotonic();
    if (type === "DELETED") {
      this.seen.delete(l.name);
      if (this.held.has(l.name)) this.lose(l.name, "deleted");
    } else if (
      this.held.has(l.name) &&
      (l.record.holderIdentity === this.o.identity ||
        l.record.leaseTransitions <= (this.seen.get(l.name)?.record.leaseTransitions ?? -1))
    ) {
      // The echo of our own write: its answer told us already, and an echo arriving after a later write's
      // answer would set an older resourceVersion. Or an event from before our write, on a stream that lags
      // behind the answers: whoever takes a Lease from us writes a higher leaseTransitions than we did.
      return;
    } else {
      this.see(l, now);
      if (this.held.has(l.name)) this.lose(l.name, "taken over");
    }
    this.emit();
  }

  /** Leases nobody holds: absent, released, or unchanged for their duration as we saw them. */
  private takeable(names: readonly string[], now: number): string[] {
    return names.filter((n) => {
      if (this.held.has(n)) return false;
      const s = this.seen.get(n);
      if (!s || s.record.holderIdentity === "" || s.record.holderIdentity === this.o.identity) return true;
      return now >= this.expiresAt(n, s);
    });
  }

  /**
   * Monotonic ms at which a Lease someone else holds expires as we saw it: its record unchanged for its
   * duration, and for a shard also its holder's member Lease, when one names the holder (a shard lives by it).
   */
  private expiresAt(name: string, s: Seen): number {
    const at = s.observedAt + s.record.leaseDurationSeconds * 1000;
    const member = this.isShard(name) ? this.memberOf(s.record.holderIdentity) : undefined;
    return member ? Math.max(at, member.observedAt + member.record.leaseDurationSeconds * 1000) : at;
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
      if (err instanceof KubeApiError && (err.isConflict || err.isNotFound)) {
        // Someone wrote or deleted it after we looked (the watch leaves our member Lease out): read it again.
        this.seen.delete(name);
        this.needList = true;
        if (this.held.has(name)) this.lose(name, "changed by another writer (409)");
      } else {
        this.lastWriteError = message(err);
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
    this.armTakeover(now);
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
   * Runs a round when the first shard held by someone else would expire as
   * we saw it, instead of at the next retry period: with the watch, we see a
   * holder's last renewal as it happens, so its shards move one lease
   * duration after it (plus a list and a write), not up to a retry period
   * later. Each renewal seen pushes the timer back.
   */
  private armTakeover(now: number): void {
    clearTimeout(this.takeover);
    this.takeover = undefined;
    if (!this.started || this.stopped) return;
    let first = Infinity;
    for (const n of this.shardNames) {
      if (this.orphaned(n)) first = Math.min(first, this.expiresAt(n, this.seen.get(n)!));
    }
    // Already expired: the regular round takes it (or cannot yet); a timer here would spin.
    if (!Number.isFinite(first) || first <= now) return;
    this.takeover = setTimeout(() => this.nudge(), first - now + 1);
    this.takeover.unref?.();
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
