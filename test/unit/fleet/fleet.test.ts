/**
 * The fleet's election and sharding logic, with an injected monotonic clock
 * and an in-memory Lease store (memory-leases.ts). Every case runs twice:
 * with the Lease watch the daemon uses, and listing every round (client-go's
 * way, and the fleet's fallback while its watch is closed).
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { FleetError, type Fleet, type FleetOptions } from "../../../src/fleet/fleet.ts";
import { microTime } from "../../../src/fleet/lease.ts";
import { fairShare, fnv1a, shardOf } from "../../../src/fleet/shards.ts";
import { MemoryLeases } from "./memory-leases.ts";
import { replica as fleetReplica, type TestClock } from "./replicas.ts";

/** Set by each suite before its cases run. */
let watching = true;

/** A replica watching the Leases or listing every round, as the suite running says. */
const replica = (store: MemoryLeases, identity: string, clock: TestClock, opts: Partial<FleetOptions> = {}) =>
  fleetReplica(store, identity, clock, { ...opts, watch: watching });

/** Lets the watch's events (delivered as microtasks after each write) arrive. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** `n` rounds a retry period apart: each replica in the order given, then the watch's events. */
async function rounds(clock: { t: number }, replicas: Array<{ fleet: Fleet }>, n: number): Promise<void> {
  for (let i = 0; i < n; i++, clock.t += 2_000) {
    for (const r of replicas) await r.fleet.tick();
    await settle();
  }
}

/** No shard is held by two replicas at one instant, and (when all are healthy) every shard is held. */
function assertExclusive(replicas: Array<{ held(): number[] }>, shards = 8) {
  const seen = new Map<number, number>();
  replicas.forEach((r, i) => {
    for (const s of r.held()) {
      assert.equal(seen.get(s), undefined, `shard ${s} held by replicas ${seen.get(s)} and ${i}`);
      seen.set(s, i);
    }
  });
  return seen.size === shards;
}

for (const watch of [true, false])
  void describe(`fleet: Lease election and sharding (${watch ? "watching the Leases" : "listing every round"})`, () => {
    before(() => (watching = watch));

    void it("writes MicroTime with exactly six fractional digits, UTC", () => {
      assert.equal(microTime(Date.UTC(2026, 10, 30, 9, 24, 28, 123)), "2026-11-30T09:24:28.123000Z");
      assert.equal(microTime(Date.UTC(2026, 0, 1) + 0.5), "2026-01-01T00:00:00.000500Z");
      assert.match(microTime(Date.now()), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    });

    void it("a fleet of one takes every shard in its first round", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock);
      await a.fleet.tick();
      assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(
        a.changes.map((c) => c.owned),
        [[0, 1, 2, 3, 4, 5, 6, 7]],
      );
      assert.equal(store.holder("rd-member-0"), "a");
      for (let i = 0; i < 8; i++) assert.equal(store.holder(`rd-shard-${i}`), "a");
      assert.equal(a.fleet.liveReplicas(), 1);
    });

    void it("a second replica gets half: the first gives back what is over its share, never both holding one", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock);
      const b = replica(store, "b", clock);
      await a.fleet.tick();
      for (let round = 0; round < 4; round++) {
        clock.t += 2_000;
        await b.fleet.tick();
        assertExclusive([a, b]);
        await a.fleet.tick();
        assertExclusive([a, b]);
      }
      assert.equal(a.held().length, 4);
      assert.equal(b.held().length, 4);
      assert.equal(assertExclusive([a, b]), true);
      assert.equal(a.fleet.liveReplicas(), 2);
      // Three replicas: at most ceil(8 / 3) = 3 each, all 8 held.
      const c = replica(store, "c", clock);
      for (let round = 0; round < 4; round++) {
        clock.t += 2_000;
        for (const r of [c, a, b]) {
          await r.fleet.tick();
          assertExclusive([a, b, c]);
        }
      }
      assert.deepEqual([a, b, c].map((r) => r.held().length).sort(), [2, 3, 3]);
      assert.equal(assertExclusive([a, b, c]), true);
    });

    void it("judges expiry by its own clock from when it saw the record change, not by the times written", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      // A holder whose written renewTime is a year old, and one dated in the future: neither time counts.
      store.put("rd-shard-0", {
        holderIdentity: "old",
        leaseDurationSeconds: 15,
        renewTime: "2025-01-01T00:00:00.000000Z",
        leaseTransitions: 0,
      });
      store.put("rd-shard-1", {
        holderIdentity: "future",
        leaseDurationSeconds: 15,
        renewTime: "2099-01-01T00:00:00.000000Z",
        leaseTransitions: 0,
      });
      const b = replica(store, "b", clock);
      await b.fleet.tick();
      assert.deepEqual(b.held(), [2, 3, 4, 5, 6, 7], "freshly seen records are held by others");
      clock.t = 14_000;
      await b.fleet.tick();
      assert.equal(b.fleet.holds(0), false, "not before a full lease duration has passed on our clock");
      assert.equal(b.fleet.holds(1), false);
      clock.t = 15_000;
      await b.fleet.tick();
      assert.deepEqual(b.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.equal(store.leases.get("rd-shard-0")!.record.leaseTransitions, 1);
    });

    void it("a renewal seen resets the expiry: a live holder keeps its shard however old its clock says it is", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock, { shards: 1 });
      const b = replica(store, "b", clock, { shards: 1 });
      await a.fleet.tick();
      for (let t = 2_000; t <= 40_000; t += 2_000) {
        clock.t = t;
        await a.fleet.tick();
        await b.fleet.tick();
        assert.equal(b.fleet.holds(0), false, `taken from a live holder at ${t} ms`);
        assert.equal(a.fleet.holds(0), true);
      }
    });

    void it("a holder that cannot renew stops holding at its renew deadline, before anyone may take over", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock, { shards: 2 });
      await a.fleet.tick();
      assert.deepEqual(a.held(), [0, 1]);
      const b = replica(store, "b", clock, { shards: 2 });
      await b.fleet.tick(); // b sees a's records now (t = 0): it may take them at 15 s
      store.down = true;
      clock.t = 9_999;
      assert.deepEqual(a.held(), [0, 1]);
      clock.t = 10_000;
      assert.deepEqual(a.held(), [], "judged at the call, without waiting for a round");
      await a.fleet.tick();
      assert.deepEqual(a.changes.at(-1)?.owned, []);
      store.down = false;
      clock.t = 14_999;
      await b.fleet.tick();
      assert.deepEqual(b.held(), []);
      clock.t = 15_000;
      await b.fleet.tick();
      assert.deepEqual(b.held(), [0, 1]);
    });

    void it("a frozen replica (SIGSTOP) holds nothing on waking and cannot take back what another took", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock, { shards: 2 });
      const b = replica(store, "b", clock, { shards: 2 });
      await a.fleet.tick();
      await b.fleet.tick();
      // a is frozen from t = 0; b keeps running.
      for (let t = 2_000; t <= 20_000; t += 2_000) {
        clock.t = t;
        await b.fleet.tick();
      }
      assert.deepEqual(b.held(), [0, 1]);
      assert.deepEqual(a.held(), [], "on waking, before any round");
      await a.fleet.tick();
      assert.deepEqual(a.changes.at(-1)?.owned, []);
      assertExclusive([a, b], 2);
      // a comes back as a live member: the shards are split again, one each.
      for (let round = 0; round < 3; round++) {
        clock.t += 2_000;
        await a.fleet.tick();
        assertExclusive([a, b], 2);
        await b.fleet.tick();
        assertExclusive([a, b], 2);
      }
      assert.deepEqual([a.held().length, b.held().length], [1, 1]);
    });

    void it("a dead replica's shards move at its lease expiry, even while a newcomer keeps the live count up", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const [a, b, c] = ["a", "b", "c"].map((id) => replica(store, id, clock));
      const round = async (rs: Array<ReturnType<typeof replica>>) => {
        for (const r of rs) {
          await r.fleet.tick();
          assertExclusive([a!, b!, c!, ...extra]);
        }
      };
      const extra: Array<ReturnType<typeof replica>> = [];
      for (let i = 0; i < 5; i++, clock.t += 2_000) await round([c!, a!, b!]);
      assert.deepEqual([a!, b!, c!].map((r) => r.held().length).sort(), [2, 3, 3]);
      const dead = c!.held();
      const diedAt = clock.t - 2_000; // c's last renewal, seen by a and b in the same round
      const d = replica(store, "d", clock);
      extra.push(d);
      for (; clock.t < diedAt + 15_000; clock.t += 2_000) await round([a!, b!, d]);
      assert.ok(
        dead.every((s) => !a!.fleet.holds(s) && !b!.fleet.holds(s) && !d.fleet.holds(s)),
        "not taken before the lease expired",
      );
      await round([a!, b!, d]); // the first round at or after expiry (t = diedAt + 16 s)
      for (const s of dead)
        assert.ok(a!.fleet.holds(s) || b!.fleet.holds(s) || d.fleet.holds(s), `shard ${s} not failed over`);
      // Then the newcomer gets its share, handed over without a gap in the fleet's cover.
      for (let i = 0; i < 4; i++) {
        clock.t += 2_000;
        await round([a!, b!, d]);
      }
      assert.deepEqual([a!, b!, d].map((r) => r.held().length).sort(), [2, 3, 3]);
      assert.equal(assertExclusive([a!, b!, d]), true);
    });

    void it("of two replicas racing for one released Lease, exactly one gets it (resourceVersion)", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      store.put("rd-shard-0", { holderIdentity: "", leaseDurationSeconds: 1, leaseTransitions: 3 });
      const a = replica(store, "a", clock, { shards: 1 });
      const b = replica(store, "b", clock, { shards: 1 });
      await Promise.all([a.fleet.tick(), b.fleet.tick()]);
      assert.equal([a.fleet.holds(0), b.fleet.holds(0)].filter(Boolean).length, 1);
    });

    void it("stop gives every Lease back, so a successor takes them in its first round", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock);
      await a.fleet.tick();
      await a.fleet.stop();
      assert.deepEqual(a.held(), []);
      assert.deepEqual(a.changes.at(-1)?.owned, []);
      for (const l of store.leases.values()) assert.equal(l.record.holderIdentity, "");
      const b = replica(store, "b", clock);
      await b.fleet.tick();
      assert.equal(b.held().length, 8);
    });

    void it("says when and why the Leases cannot be read (for /readyz), and when they can again", async () => {
      const store = new MemoryLeases();
      const clock = { t: 0 };
      const a = replica(store, "a", clock);
      await a.fleet.tick();
      assert.equal(a.fleet.trouble(), undefined);
      store.down = true;
      clock.t = 2_000;
      await a.fleet.tick();
      clock.t = 5_000;
      await a.fleet.tick();
      assert.deepEqual(a.fleet.trouble(), { forMs: 3_000, error: "down" });
      store.down = false;
      await a.fleet.tick();
      assert.equal(a.fleet.trouble(), undefined);
      assert.equal(a.held().length, 8, "taken back: the records still name it");
    });

    void it("refuses timings client-go would refuse", () => {
      const bad = (o: Partial<FleetOptions>) =>
        assert.throws(() => replica(new MemoryLeases(), "a", { t: 0 }, o), FleetError);
      bad({ leaseDurationMs: 10_000 });
      bad({ renewDeadlineMs: 2_000 });
      bad({ shards: 0 });
      bad({ shards: 1.5 });
    });

    void it("maps a route to one shard, stably, and spreads routes fairly", () => {
      // Pinned: a change of hash would move every rollout to another replica on upgrade.
      assert.equal(fnv1a("shop/HTTPRoute/checkout"), fnv1a("shop/HTTPRoute/checkout"));
      assert.equal(fnv1a(""), 0x811c9dc5);
      assert.equal(fnv1a("a"), 0xe40c292c);
      const p = (ns: string, name: string) => ({
        namespace: ns,
        target: { kind: "HTTPRoute" as const, name },
      });
      assert.equal(shardOf(p("shop", "checkout"), 8), shardOf(p("shop", "checkout"), 8));
      const counts = Array<number>(8).fill(0);
      for (let i = 0; i < 8000; i++) counts[shardOf(p(`ns-${i % 37}`, `route-${i}`), 8)]!++;
      for (const c of counts) assert.ok(c > 800 && c < 1200, `uneven spread: ${counts.join(",")}`);
      assert.equal(fairShare(8, 3), 3);
      assert.equal(fairShare(8, 0), 8);
      assert.equal(fairShare(8, 16), 1);
    });
  });

void describe("fleet: the Lease watch", () => {
  before(() => (watching = true));

  void it("at rest a round is one write, and the Leases are read only once per lease duration: the watch says what changed", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    // The first round lists and opens the watch; the second, holding a member Lease now, opens it again
    // leaving that Lease out (we make its renewals; hearing them back would cost an event each).
    await rounds(clock, [a], 2);
    const before = { ...store.calls };
    await rounds(clock, [a], 30);
    assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
    // Rounds at 4..62 s; the last list was at 2 s (the watch opened again leaving our member Lease out), so the
    // safety-net lists come at 17 s and more after each: at 18 s, 34 s and 50 s.
    assert.equal(store.calls.list - before.list, 3, "one list per lease duration while the watch is open");
    assert.equal(store.calls.update - before.update, 30, "one renewal per round");
    assert.equal(store.calls.watch, 2);
  });

  void it("our member Lease deleted under us (the watch leaves it out) is written again, not renewed in vain", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await rounds(clock, [a], 3);
    store.delete("rd-member-0");
    await rounds(clock, [a], 3);
    assert.equal(store.holder("rd-member-0"), "a", "created again");
    assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  void it("a watch that died without a word never moves a live holder's shards: a takeover reads first", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    const b = replica(store, "b", clock);
    await rounds(clock, [a, b], 6);
    const aShards = a.held();
    assert.equal(aShards.length, 4);
    assert.equal(assertExclusive([a, b]), true);
    // b's watch stays open and sends nothing more: every holder looks silent to it.
    b.link.watchSilent = true;
    const listsBefore = store.calls.list;
    for (const end = clock.t + 4 * 15_000; clock.t < end; clock.t += 2_000) {
      await a.fleet.tick();
      await b.fleet.tick();
      await settle();
      assert.deepEqual(a.held(), aShards, `a keeps its shards (at ${clock.t} ms)`);
      assertExclusive([a, b]);
    }
    assert.ok(store.calls.list > listsBefore, "b read the Leases before each takeover it considered");
  });

  void it("a watch that stays open but delivers nothing hides a joining replica for at most a lease duration", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await rounds(clock, [a], 3);
    store.silenceWatches();
    const b = replica(store, "b", clock);
    const joined = clock.t;
    while (b.held().length === 0 && clock.t < joined + 60_000) {
      await b.fleet.tick();
      await a.fleet.tick();
      await settle();
      clock.t += 2_000;
    }
    assert.ok(clock.t - joined <= 15_000 + 3 * 2_000, `b got shards ${clock.t - joined} ms after joining`);
    await rounds(clock, [b, a], 3);
    assert.deepEqual([a.held().length, b.held().length], [4, 4]);
  });

  void it("a watch the server ends is opened again after one list", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await rounds(clock, [a], 1);
    store.endWatches();
    const lists = store.calls.list;
    await rounds(clock, [a], 5);
    assert.equal(store.calls.list - lists, 1, "one list, then the new watch");
    assert.equal(store.calls.watch, 2);
    assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  void it("after the API server was away, the watch is opened afresh (it may have died silently with the connection)", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await rounds(clock, [a], 2);
    const watches = store.calls.watch;
    // The link hangs for a round (the renewal times out at the per-call bound), its watch dying with it
    // unnoticed; then the link is back.
    a.link.hang = true;
    store.silenceWatches();
    await a.fleet.tick();
    a.link.hang = false;
    clock.t += 2_000;
    await a.fleet.tick();
    await settle();
    assert.equal(store.calls.watch, watches + 1, "a new watch");
    // b joins; a hears of it on the new watch (the old one is still silent) and gives half back.
    const b = replica(store, "b", clock);
    await rounds(clock, [b, a], 4);
    assert.deepEqual([a.held().length, b.held().length], [4, 4]);
  });

  void it("a Lease of ours deleted or taken is given up on the event, before the next round", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await a.fleet.tick();
    await settle();
    store.delete("rd-shard-3");
    await settle();
    assert.equal(a.fleet.holds(3), false, "deleted");
    const rv = store.leases.get("rd-shard-5")!.resourceVersion;
    await store.api().update("rd-shard-5", rv, {
      holderIdentity: "intruder",
      leaseDurationSeconds: 15,
      leaseTransitions: 1,
    });
    await settle();
    assert.equal(a.fleet.holds(5), false, "taken by another writer");
    assert.deepEqual(a.changes.at(-1)?.owned, [0, 1, 2, 4, 6, 7]);
  });

  void it("echoes of our own renewals arriving late never make a renewal fail (no 409 from an older resourceVersion)", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await a.fleet.tick();
    // Rounds run back to back, each before the last one's echo is delivered.
    for (let i = 1; i <= 10; i++) {
      clock.t = i * 2_000;
      await a.fleet.tick();
    }
    await settle();
    await a.fleet.tick();
    assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(
      a.changes.map((c) => c.owned),
      [[0, 1, 2, 3, 4, 5, 6, 7]],
      "never lost anything",
    );
  });
});
