import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { systemClock, type Clock } from "../../../src/clock.ts";
import { WorkQueue, type ReconcileFn, type WorkQueueOptions } from "../../../src/kube/workqueue.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

function queue(handler: ReconcileFn, opts: Partial<WorkQueueOptions> = {}, clock: Clock = systemClock) {
  return new WorkQueue(handler, clock, { workers: 1, baseBackoffMs: 10, ...opts });
}

void describe("WorkQueue", () => {
  void it("a key waiting once is not queued twice", async () => {
    const g = gate();
    const runs: string[] = [];
    const q = queue(async (key) => {
      runs.push(key);
      if (key === "block") await g.wait;
    });
    q.add("block");
    q.add("a");
    q.add("a");
    q.add("b");
    q.add("a");
    assert.equal(q.length, 2, "a and b wait, a only once");
    g.open();
    await until(() => runs.length === 3, "three runs");
    await q.idle();
    assert.deepEqual(runs, ["block", "a", "b"]);
    await sleep(20);
    assert.deepEqual(runs, ["block", "a", "b"], "no late duplicate");
  });

  void it("an add during processing re-runs once afterwards, never concurrently", async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const q = queue(
      async () => {
        runs++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(20);
        running--;
      },
      { workers: 4 },
    );
    q.add("k");
    await until(() => runs === 1, "first run");
    q.add("k");
    q.add("k");
    q.add("k");
    assert.equal(q.length, 0, "a key being processed is marked, not queued for another worker");
    await until(() => runs === 2 && running === 0, "the re-run");
    await q.idle();
    await sleep(40);
    assert.equal(runs, 2);
    assert.equal(maxRunning, 1);
  });

  void it("respects the workers limit and processes everything", async () => {
    let running = 0;
    let maxRunning = 0;
    const done: string[] = [];
    const q = queue(
      async (key) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(15);
        running--;
        done.push(key);
      },
      { workers: 2 },
    );
    for (const k of ["a", "b", "c", "d", "e"]) q.add(k);
    assert.equal(running, 2);
    assert.equal(q.length, 3);
    await until(() => done.length === 5, "all keys");
    await q.idle();
    assert.equal(maxRunning, 2);
    assert.deepEqual([...done].sort(), ["a", "b", "c", "d", "e"]);
  });

  void it("addAfter: the earliest pending deadline wins, and it runs once", async () => {
    const ranAt = new Map<string, number[]>();
    const q = queue(
      (key) => {
        ranAt.set(key, [...(ranAt.get(key) ?? []), Date.now()]);
        return Promise.resolve();
      },
      { workers: 2 },
    );
    const start = Date.now();
    q.addAfter("later-then-sooner", 250);
    q.addAfter("later-then-sooner", 25);
    q.addAfter("sooner-then-later", 25);
    q.addAfter("sooner-then-later", 250);
    await until(() => ranAt.size === 2, "both keys");
    for (const [key, times] of ranAt) {
      assert.ok(times[0]! - start >= 20, `${key} not before its deadline`);
      assert.ok(times[0]! - start < 240, `${key} ran at the earlier deadline`);
    }
    await sleep(300);
    assert.deepEqual(
      [...ranAt.values()].map((t) => t.length),
      [1, 1],
    );
  });

  void it("addAfter with no delay adds at once", async () => {
    let runs = 0;
    const q = queue(() => {
      runs++;
      return Promise.resolve();
    });
    q.addAfter("k", 0);
    assert.equal(runs, 1);
    await q.idle();
  });

  void it("a handler's requeueAfterMs runs the key again after the delay", async () => {
    const times: number[] = [];
    const outcomes: string[] = [];
    const q = queue(
      () => {
        times.push(Date.now());
        return Promise.resolve(times.length === 1 ? { requeueAfterMs: 30 } : undefined);
      },
      { onProcessed: (_k, _ms, outcome) => outcomes.push(outcome) },
    );
    q.add("k");
    await until(() => times.length === 2, "the requeue");
    assert.ok(times[1]! - times[0]! >= 25);
    await sleep(50);
    assert.equal(times.length, 2);
    assert.deepEqual(outcomes, ["requeue", "success"]);
  });

  void it("an error is retried with growing backoff until it succeeds", async () => {
    const times: number[] = [];
    const retries: Array<number | undefined> = [];
    const q = queue(
      () => {
        times.push(Date.now());
        return times.length <= 3 ? Promise.reject(new Error("409 conflict")) : Promise.resolve();
      },
      {
        baseBackoffMs: 10,
        onError: (key, err, retryIn) => {
          assert.equal(key, "k");
          assert.match((err as Error).message, /409/);
          retries.push(retryIn);
        },
      },
    );
    q.add("k");
    await until(() => times.length === 4, "the fourth attempt");
    assert.deepEqual(retries, [10, 20, 40]);
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i]! - times[i - 1]! >= retries[i - 1]! - 2, `attempt ${i + 1} waited its backoff`);
    }
    await sleep(100);
    assert.equal(times.length, 4, "success stops the retries");
  });

  void it("backoff is capped by maxBackoffMs", () => {
    const q = queue(() => Promise.resolve(), { baseBackoffMs: 10, maxBackoffMs: 35 });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => q.addRateLimited("k")),
      [10, 20, 35, 35, 35],
    );
    void q.shutdown();
  });

  void it("the global retry bucket delays retries once the burst is spent", () => {
    const frozen: Clock = { now: () => 1_000_000 };
    const q = queue(() => Promise.resolve(), { baseBackoffMs: 10, retryQps: 2, retryBurst: 2 }, frozen);
    assert.equal(q.addRateLimited("a"), 10);
    assert.equal(q.addRateLimited("b"), 10);
    assert.equal(q.addRateLimited("c"), 500, "third retry waits for a token at 2/s");
    assert.equal(q.addRateLimited("d"), 1000);
    void q.shutdown();
  });

  void it("forget, and a success, reset the backoff", async () => {
    const q = queue(() => Promise.resolve(), { baseBackoffMs: 10 });
    assert.equal(q.addRateLimited("k"), 10);
    assert.equal(q.addRateLimited("k"), 20);
    q.forget("k");
    assert.equal(q.addRateLimited("k"), 10);
    await q.shutdown();

    let runs = 0;
    const retries: Array<number | undefined> = [];
    const q2 = queue(
      () => {
        runs++;
        return runs === 3 ? Promise.resolve() : Promise.reject(new Error("boom"));
      },
      { baseBackoffMs: 10, onError: (_k, _e, retryIn) => retries.push(retryIn) },
    );
    q2.add("k");
    await until(() => runs === 3, "success on the third run");
    q2.add("k");
    await until(() => retries.length === 3, "a new failure");
    assert.deepEqual(retries.slice(0, 3), [10, 20, 10]);
    await q2.shutdown();
  });

  void it("drop removes a waiting key, its timer and its backoff", async () => {
    const g = gate();
    const runs: string[] = [];
    const q = queue(async (key) => {
      runs.push(key);
      if (key === "block") await g.wait;
    });
    q.add("block");
    q.add("a");
    q.add("b");
    q.drop("a");
    assert.equal(q.length, 1);
    q.addAfter("timed", 20);
    q.drop("timed");
    assert.equal(q.addRateLimited("c"), 10);
    assert.equal(q.addRateLimited("c"), 20);
    q.drop("c");
    assert.equal(q.addRateLimited("c"), 10, "backoff forgotten");
    q.drop("c");
    g.open();
    await q.idle();
    await sleep(60);
    assert.deepEqual(runs, ["block", "b"]);
  });

  void it("drop during processing cancels a pending re-run", async () => {
    const g = gate();
    let runs = 0;
    const q = queue(async () => {
      runs++;
      await g.wait;
    });
    q.add("k");
    q.add("k");
    q.drop("k");
    g.open();
    await q.idle();
    await sleep(20);
    assert.equal(runs, 1);
  });

  void it("a throwing onError or onProcessed does not break the queue", async () => {
    const runs: string[] = [];
    const q = queue(
      (key) => {
        runs.push(key);
        return key === "bad" ? Promise.reject(new Error("x")) : Promise.resolve();
      },
      {
        onError: () => {
          throw new Error("reporter broke");
        },
        onProcessed: () => {
          throw new Error("metrics broke");
        },
      },
    );
    q.add("bad");
    q.add("good");
    await until(() => runs.length === 2, "both keys");
    await q.idle();
    assert.deepEqual(runs, ["bad", "good"]);
  });

  void it("idle resolves at once when nothing is queued or running", async () => {
    const q = queue(() => Promise.resolve());
    let resolved = false;
    void q.idle().then(() => (resolved = true));
    await sleep(0);
    assert.equal(resolved, true);
  });

  void it("shutdown waits for running handlers, drops queued keys and timers, refuses new work", async () => {
    const g = gate();
    const runs: string[] = [];
    let finished = false;
    const q = queue(async (key) => {
      runs.push(key);
      if (key === "slow") {
        await g.wait;
        finished = true;
      }
    });
    q.add("slow");
    q.add("queued");
    q.addAfter("timed", 20);
    let shutDown = false;
    const stopping = q.shutdown().then(() => (shutDown = true));
    q.add("late");
    q.addAfter("late-timer", 1);
    await sleep(50);
    assert.equal(shutDown, false, "still waiting for the running handler");
    assert.equal(q.length, 0);
    g.open();
    await stopping;
    assert.equal(finished, true);
    await sleep(40);
    assert.deepEqual(runs, ["slow"]);
  });

  void it("an urgent key runs on a lane of its own while every worker is busy, ahead of waiting keys", async () => {
    const g = gate();
    const runs: string[] = [];
    const q = queue(
      async (key) => {
        runs.push(key);
        if (key.startsWith("slow")) await g.wait;
      },
      { workers: 2, urgentWorkers: 1 },
    );
    q.add("slow-1");
    q.add("slow-2");
    q.add("waiting");
    q.add("abort", { urgent: true });
    await until(() => runs.includes("abort"), "the urgent key runs");
    assert.deepEqual(runs, ["slow-1", "slow-2", "abort"], "the urgent key did not wait for a worker");
    // The urgent lane is only for urgent keys: the waiting one still waits for an ordinary worker.
    await sleep(20);
    assert.ok(!runs.includes("waiting"));
    g.open();
    await q.idle();
    assert.deepEqual(runs, ["slow-1", "slow-2", "abort", "waiting"]);
  });

  void it("a waiting key added again as urgent moves ahead, once; a running one re-runs urgently", async () => {
    const g = gate();
    const runs: string[] = [];
    const q = queue(
      async (key) => {
        runs.push(key);
        if (key === "block" && runs.length === 1) await g.wait;
      },
      { workers: 1, urgentWorkers: 0 },
    );
    q.add("block");
    q.add("a");
    q.add("b");
    q.add("b", { urgent: true });
    q.add("b", { urgent: true });
    q.add("block", { urgent: true });
    assert.equal(q.length, 2, "b moved lanes, not doubled; block is running, so it is marked to run again");
    g.open();
    await q.idle();
    assert.deepEqual(runs, ["block", "b", "block", "a"]);
  });

  void it("an urgent key that fails retries in the urgent lane, not behind the ordinary backlog", async () => {
    // An abort whose write meets a 409 (the route changed while deciding) must not fall behind step work.
    const g = gate();
    const runs: string[] = [];
    let failed = false;
    const q = queue(
      async (key) => {
        runs.push(key);
        if (key === "slow") await g.wait;
        if (key === "abort" && !failed) {
          failed = true;
          throw new Error("409");
        }
      },
      { workers: 1, urgentWorkers: 1, baseBackoffMs: 5 },
    );
    q.add("slow");
    q.add("waiting");
    q.add("abort", { urgent: true });
    await until(() => runs.filter((k) => k === "abort").length === 2, "the abort's retry runs");
    assert.deepEqual(runs, ["slow", "abort", "abort"], "the retry waited for an ordinary worker");
    g.open();
    await q.idle();
    assert.deepEqual(runs, ["slow", "abort", "abort", "waiting"]);
  });

  void it("an urgent retry pending beside an earlier step deadline keeps both the earlier time and the lane", async () => {
    const g = gate();
    const runs: string[] = [];
    const q = queue(
      async (key) => {
        runs.push(key);
        if (key === "slow") await g.wait;
      },
      { workers: 1, urgentWorkers: 1 },
    );
    q.add("slow");
    q.addAfter("abort", 5); // the step deadline
    q.addAfter("abort", 60_000, { urgent: true }); // the abort's retry, later
    await until(() => runs.includes("abort"), "the key runs at the earlier time, urgently", 2000);
    assert.deepEqual(runs, ["slow", "abort"], "it waited for an ordinary worker");
    g.open();
    await q.idle();
    await q.shutdown();
  });

  void it("a deadline requeue of a key that ran urgently is ordinary again", async () => {
    const g = gate();
    const runs: string[] = [];
    let first = true;
    const q = queue(
      async (key) => {
        runs.push(key);
        if (key === "slow") await g.wait;
        if (key === "abort" && first) {
          first = false;
          return { requeueAfterMs: 5 };
        }
        return undefined;
      },
      { workers: 1, urgentWorkers: 1 },
    );
    q.add("slow");
    q.add("abort", { urgent: true });
    await until(() => runs.includes("abort"), "the urgent key runs");
    await sleep(40);
    assert.deepEqual(runs, ["slow", "abort"], "a deadline is step work: it waits for an ordinary worker");
    g.open();
    await q.idle();
    await until(() => runs.length === 3, "the requeue runs");
    assert.deepEqual(runs, ["slow", "abort", "abort"]);
  });

  void it("dropping an urgent key removes it from its lane", async () => {
    const g = gate();
    const runs: string[] = [];
    const q = queue(
      async (key) => {
        runs.push(key);
        if (key === "block") await g.wait;
      },
      { workers: 1, urgentWorkers: 0 },
    );
    q.add("block");
    q.add("gone", { urgent: true });
    q.drop("gone");
    assert.equal(q.length, 0);
    g.open();
    await q.idle();
    assert.deepEqual(runs, ["block"]);
  });
});
