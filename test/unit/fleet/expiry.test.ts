/**
 * The fleet's expiry timer (Fleet.armExpiry): a replica whose renewals stop
 * getting through must stop writing at its renew deadline by itself, while
 * its Lease round is still stuck waiting for the API server, and before any
 * other replica may take its shards. Time is injected: the monotonic clock is
 * a number the test moves, and node:test's mocked setTimeout drives every
 * timer of the fleet (rounds, the per-call bound, the expiry timer), so the
 * deadlines are exact and nothing sleeps.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { ShardLostError, WriteFence } from "../../../src/fleet/fence.ts";
import type { KObject } from "../../../src/kube/kinds.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";
import { FLEET_OPTS, healthyLink, MemoryLeases } from "./memory-leases.ts";
import { replica, type TestReplica } from "./replicas.ts";

const { leaseDurationMs: LEASE, renewDeadlineMs: RENEW_DEADLINE, retryPeriodMs: RETRY } = FLEET_OPTS;
const SHARDS = 4;
/** The clock moves in steps this long; every timer fires within one step of its due time. */
const STEP = 10;

/** The monotonic clock (ms); advance() moves it with the mocked timers. */
const clock = { t: 0 };

/** Moves the clock and the mocked timers together, letting promise callbacks run after every step. */
async function advance(ms: number, each?: () => void): Promise<void> {
  for (let done = 0; done < ms; done += STEP) {
    clock.t += STEP;
    mock.timers.tick(STEP);
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
    each?.();
  }
}

void describe("fleet: the expiry timer", () => {
  const started: TestReplica[] = [];
  beforeEach(() => {
    clock.t = 0;
    mock.timers.enable({ apis: ["setTimeout"] });
  });
  afterEach(async () => {
    // A stop waits for the round in flight, which may wait on a mocked timer: keep the clock moving.
    let stopped = false;
    const stopping = Promise.all(
      started.splice(0).map((r) => {
        Object.assign(r.link, healthyLink());
        return r.fleet.stop();
      }),
    ).finally(() => (stopped = true));
    while (!stopped) await advance(RETRY);
    await stopping;
    mock.timers.reset();
  });
  /** A replica of a fleet of SHARDS shards, started (its first round done). */
  const start = async (store: MemoryLeases, identity: string) => {
    const r = replica(store, identity, clock, { shards: SHARDS });
    started.push(r);
    await r.fleet.start();
    return r;
  };

  void it("drops the shards at the renew deadline while the round is stuck, before another replica may take them", async () => {
    const store = new MemoryLeases();
    const a = await start(store, "a");
    assert.deepEqual(a.held(), [0, 1, 2, 3], "a fleet of one holds every shard after its first round");
    const b = await start(store, "b");
    // The two settle on two shards each.
    await advance(6 * RETRY);
    const aShards = a.held();
    assert.equal(aShards.length, 2);
    assert.deepEqual([...aShards, ...b.held()].sort(), [0, 1, 2, 3]);

    // In-flight work of a: a write for a policy of one of its shards, fenced as the daemon does.
    const policy = { key: "shop/web" } as RolloutPolicy;
    const shard = aShards[0]!;
    const fence = new WriteFence(() => a.fleet.holds(shard));
    let writes = 0;
    const writer = fence.wrap({
      jsonPatch: () => (writes++, Promise.resolve({} as KObject)),
      create: () => Promise.reject(new Error("no object is created here")),
      delete: () => Promise.reject(new Error("no object is deleted here")),
    });
    const write = () =>
      fence.run(policy, () => writer.jsonPatch({ kind: "HTTPRoute", namespace: "shop", name: "web" }, []));
    await write();

    // a's connection goes silent: its round waits on calls that are never answered.
    a.link.hang = true;
    const silentFrom = clock.t;
    const lastSent = Math.max(...a.sent.filter((s) => s.method === "update").map((s) => s.at));
    assert.ok(lastSent <= silentFrom);
    const deadline = lastSent + RENEW_DEADLINE;
    const changesBefore = a.changes.length;
    let bTook: number | undefined;
    let overlap = 0;
    await advance(LEASE + 4 * RETRY, () => {
      if (bTook === undefined && aShards.every((s) => b.fleet.holds(s))) bTook = clock.t;
      for (const s of aShards) if (a.fleet.holds(s) && b.fleet.holds(s)) overlap++;
    });

    const dropped = a.changes.slice(changesBefore).find((c) => c.owned.length === 0);
    assert.ok(dropped, "onChange told the controller that nothing is held (it cancels the shards' work)");
    assert.ok(
      dropped.at >= deadline && dropped.at <= deadline + 2 * STEP,
      `told at ${dropped.at} ms, the renew deadline was ${deadline} ms`,
    );
    assert.deepEqual(a.held(), []);
    await assert.rejects(write(), ShardLostError, "a write after the deadline is refused before it is sent");
    assert.equal(writes, 1);
    assert.ok(bTook !== undefined, "b took a's shards once their lease expired");
    assert.ok(
      bTook >= lastSent + LEASE,
      `b took them at ${bTook} ms, not before a full lease after a's renewal`,
    );
    assert.ok(dropped.at < bTook, "a stopped before b started");
    assert.equal(overlap, 0, "never both holding a shard");
  });

  void it("a dead holder's shards move one lease duration after its last renewal was seen, not at the next round", async () => {
    const store = new MemoryLeases();
    const a = await start(store, "a");
    // b's rounds run out of step with a's renewals, and with a's lease running out (15 s is an odd number of 1 s).
    await advance(RETRY / 4);
    const b = await start(store, "b");
    await advance(6 * RETRY);
    const aShards = a.held();
    assert.equal(aShards.length, 2);
    // a dies: nothing it sends arrives any more, and its watch ends.
    a.link.down = true;
    const lastRenewal = Math.max(...a.sent.filter((s) => s.method === "update").map((s) => s.at));
    let bTook: number | undefined;
    await advance(LEASE + 2 * RETRY, () => {
      if (bTook === undefined && aShards.every((s) => b.fleet.holds(s))) bTook = clock.t;
    });
    assert.ok(bTook !== undefined, "b took a's shards");
    assert.ok(bTook >= lastRenewal + LEASE, `taken at ${bTook} ms, before a's lease ran out`);
    assert.ok(
      bTook <= lastRenewal + LEASE + 3 * STEP,
      `taken at ${bTook} ms: ${bTook - lastRenewal - LEASE} ms after a's lease ran out (${lastRenewal} + ${LEASE})`,
    );
  });

  void it("counts a renewal from when it was sent: an answer that comes late does not extend the hold", async () => {
    const store = new MemoryLeases();
    const a = await start(store, "a");
    // Every answer now takes 1.5 s (under the per-call bound of 2 s): the renewals still get through.
    a.link.delayMs = 1_500;
    await advance(3 * RETRY);
    assert.deepEqual(a.held(), [0, 1, 2, 3]);
    // Up to the instant a renewal is sent (the next comes a retry period after its answer, 3.5 s later).
    const lastUpdate = () => a.sent.filter((s) => s.method === "update").at(-1)!.at;
    while (lastUpdate() !== clock.t) await advance(STEP);
    const lastSent = lastUpdate();
    // The last renewal was answered 1.5 s after it was sent; then the connection goes silent.
    await advance(1_500);
    a.link.hang = true;
    const changesBefore = a.changes.length;
    const answeredTimely = a.sent.filter((s) => s.method === "update" && s.at <= lastSent);
    assert.equal(answeredTimely.at(-1)!.at, lastSent);
    await advance(RENEW_DEADLINE + RETRY, () => {
      if (clock.t >= lastSent + RENEW_DEADLINE) assert.deepEqual(a.held(), [], `held at ${clock.t} ms`);
    });
    const dropped = a.changes.slice(changesBefore).find((c) => c.owned.length === 0);
    assert.ok(dropped);
    assert.ok(
      dropped.at <= lastSent + RENEW_DEADLINE + 2 * STEP,
      `dropped at ${dropped.at} ms: sent at ${lastSent}, answered at ${lastSent + 1_500}; the hold ends at send + renew deadline`,
    );
  });

  void it("an answer slower than the per-call bound is not a renewal, even though the server applied it", async () => {
    const store = new MemoryLeases();
    const a = await start(store, "a");
    const tookAt = a.sent.filter((s) => s.method === "create").at(-1)!.at;
    // The server applies every write but answers after 3 s: the fleet gives up on each call at 2 s.
    a.link.writeDelayMs = 3_000;
    const writesBefore = store.writes;
    await advance(RENEW_DEADLINE + 2 * RETRY, () => {
      if (clock.t >= tookAt + RENEW_DEADLINE) assert.deepEqual(a.held(), [], `held at ${clock.t} ms`);
    });
    assert.ok(store.writes > writesBefore, "renewals reached the store");
    const dropped = a.changes.find((c) => c.owned.length === 0);
    assert.ok(dropped && dropped.at <= tookAt + RENEW_DEADLINE + 2 * STEP, `dropped at ${dropped?.at} ms`);
  });

  void it("a holder whose renewals get through is never told it lost anything (the timer is re-armed)", async () => {
    const store = new MemoryLeases();
    const a = await start(store, "a");
    await advance(6 * LEASE, () => assert.deepEqual(a.held(), [0, 1, 2, 3], `at ${clock.t} ms`));
    assert.deepEqual(
      a.changes.map((c) => c.owned),
      [[0, 1, 2, 3]],
    );
  });
});
