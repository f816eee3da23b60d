/**
 * What a replica writes at rest, and what its shards hang on: only the member
 * Lease is renewed every retry period; a shard Lease is written when taken or
 * given back and is held only while the member Lease is, without a gap. A
 * shard held by another replica is taken only once that replica's member
 * Lease (and the shard) have been seen unchanged for a lease duration.
 * Driven round by round with an injected monotonic clock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { FleetOptions } from "../../../src/fleet/fleet.ts";
import { MemoryLeases } from "./memory-leases.ts";
import { replica as fleetReplica, type TestClock } from "./replicas.ts";

/** No watch: the fleet lists the Leases every round, as this suite always ran it (fleet.test.ts runs both ways). */
const replica = (store: MemoryLeases, identity: string, clock: TestClock, opts: Partial<FleetOptions> = {}) =>
  fleetReplica(store, identity, clock, { ...opts, watch: false });

void describe("fleet: renewals", () => {
  void it("at rest a replica writes its member Lease once per round, whatever number of shards it holds", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await a.fleet.tick();
    assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7]);
    a.sent.length = 0;
    for (let i = 1; i <= 30; i++) {
      clock.t = i * 2_000;
      await a.fleet.tick();
      assert.deepEqual(a.held(), [0, 1, 2, 3, 4, 5, 6, 7], `at ${clock.t} ms`);
    }
    assert.deepEqual(new Set(a.writes()), new Set(["rd-member-0"]));
    assert.equal(a.writes().length, 30);
  });

  void it("the shards end with the member Lease: a holder whose member renewals fail drops them all at its renew deadline", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock);
    await a.fleet.tick();
    const memberSent = 0;
    store.down = true;
    clock.t = memberSent + 9_999;
    assert.equal(a.held().length, 8);
    clock.t = memberSent + 10_000;
    assert.deepEqual(a.held(), [], "judged at the call, without a round");
  });

  void it("after a lapse the shards are taken back only by writing them again (never carried over)", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock, { shards: 2 });
    await a.fleet.tick();
    // Frozen past the renew deadline but short of the lease: nobody took anything.
    clock.t = 12_000;
    assert.deepEqual(a.held(), []);
    a.sent.length = 0;
    await a.fleet.tick();
    assert.deepEqual(a.held(), [0, 1]);
    assert.deepEqual(a.writes().sort(), ["rd-member-0", "rd-shard-0", "rd-shard-1"]);
  });

  void it("a replica whose member Lease another replica took holds no shard at once", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock, { shards: 2 });
    await a.fleet.tick();
    assert.deepEqual(a.held(), [0, 1]);
    // Someone else now holds a's member slot (as after a's member expired in their eyes), and a cannot
    // write this round: it must not go on holding its shards until its renew deadline.
    const m = store.leases.get("rd-member-0")!;
    store.put("rd-member-0", { ...m.record, holderIdentity: "x" });
    a.refuseWrites = true;
    clock.t = 2_000;
    await a.fleet.tick();
    assert.deepEqual(a.held(), []);
  });

  void it("a shard of a live holder is not taken however old the shard Lease itself is; it is once the holder's member Lease stops changing", async () => {
    const store = new MemoryLeases();
    const clock = { t: 0 };
    const a = replica(store, "a", clock, { shards: 1 });
    const b = replica(store, "b", clock, { shards: 1 });
    await a.fleet.tick();
    await b.fleet.tick();
    const shardWrites = store.leases.get("rd-shard-0")!.resourceVersion;
    for (let t = 2_000; t <= 60_000; t += 2_000) {
      clock.t = t;
      await a.fleet.tick();
      await b.fleet.tick();
      assert.equal(b.fleet.holds(0), false, `taken from a live holder at ${t} ms`);
      assert.equal(a.fleet.holds(0), true);
    }
    assert.equal(
      store.leases.get("rd-shard-0")!.resourceVersion,
      shardWrites,
      "the shard Lease was not written",
    );
    // a dies after its renewal at 60 s (b saw it in the same round).
    const diedAt = clock.t;
    for (clock.t = diedAt + 2_000; clock.t < diedAt + 15_000; clock.t += 2_000) {
      await b.fleet.tick();
      assert.equal(b.fleet.holds(0), false, `taken at ${clock.t} ms, before a's member Lease expired`);
    }
    clock.t = diedAt + 15_000;
    await b.fleet.tick();
    assert.equal(b.fleet.holds(0), true, "taken one lease duration after a's last renewal was seen");
  });
});
