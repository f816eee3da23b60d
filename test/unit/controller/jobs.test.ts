import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { AnalysisReport } from "../../../src/analysis/types.ts";
import { AnalysisJobs, type DiscardReason } from "../../../src/controller/jobs.ts";

const REPORT: AnalysisReport = { verdict: "pass", checks: [], summary: "ok", windowSeconds: 10 };

function harness() {
  const done: string[] = [];
  const discarded: Array<[string, DiscardReason]> = [];
  const failed: string[] = [];
  const jobs = new AnalysisJobs({
    done: (k) => done.push(k),
    discarded: (k, r) => discarded.push([k, r]),
    failed: (k) => failed.push(k),
  });
  /** A run that resolves when told to, and records whether it was cancelled. */
  const controllable = () => {
    let resolve!: (r: AnalysisReport) => void;
    const seen: { signal?: AbortSignal } = {};
    const run = (signal: AbortSignal) => {
      seen.signal = signal;
      return new Promise<AnalysisReport>((r) => (resolve = r));
    };
    return { run, finish: () => resolve(REPORT), seen };
  };
  return { jobs, done, discarded, failed, controllable };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

void describe("analysis jobs", () => {
  void it("a finished job is a fact for its step only, handed over once", async () => {
    const h = harness();
    const a = h.controllable();
    h.jobs.start("ns/p", "s1", a.run);
    assert.deepEqual(h.jobs.slot("ns/p"), { kind: "running", step: "s1" });
    assert.equal(h.jobs.running, 1);
    a.finish();
    await tick();
    assert.deepEqual(h.done, ["ns/p"]);
    assert.deepEqual(h.jobs.slot("ns/p"), { kind: "done", step: "s1", report: REPORT });
    assert.equal(h.jobs.take("ns/p", "s2"), undefined, "not for another step");
    assert.equal(typeof h.jobs.take("ns/p", "s1"), "number");
    assert.deepEqual(h.jobs.slot("ns/p"), { kind: "none" });
  });

  void it("starting the same step twice runs it once", () => {
    const h = harness();
    let runs = 0;
    const run = () => {
      runs++;
      return new Promise<AnalysisReport>(() => {});
    };
    h.jobs.start("k", "s1", run);
    h.jobs.start("k", "s1", run);
    assert.equal(runs, 1);
  });

  void it("moving off the step aborts the running job's signal, and its late result is ignored", async () => {
    const h = harness();
    const a = h.controllable();
    h.jobs.start("k", "s1", a.run);
    h.jobs.retain("k", undefined);
    assert.equal(a.seen.signal?.aborted, true, "the HTTP request is told to stop");
    assert.deepEqual(h.discarded, [["k", "cancelled"]]);
    a.finish();
    await tick();
    assert.deepEqual(h.done, [], "a cancelled job never wakes the policy");
    assert.deepEqual(h.jobs.slot("k"), { kind: "none" });
  });

  void it("a finished result for a step that no longer exists is dropped as stale", async () => {
    const h = harness();
    const a = h.controllable();
    h.jobs.start("k", "s1", a.run);
    a.finish();
    await tick();
    h.jobs.retain("k", "s2");
    assert.deepEqual(h.discarded, [["k", "stale"]]);
    assert.deepEqual(h.jobs.slot("k"), { kind: "none" });
  });

  void it("retain keeps the job of the current step", () => {
    const h = harness();
    const a = h.controllable();
    h.jobs.start("k", "s1", a.run);
    h.jobs.retain("k", "s1");
    assert.equal(a.seen.signal?.aborted, false);
    assert.deepEqual(h.discarded, []);
  });

  void it("a new step's job replaces and cancels the old one", () => {
    const h = harness();
    const a = h.controllable();
    const b = h.controllable();
    h.jobs.start("k", "s1", a.run);
    h.jobs.start("k", "s2", b.run);
    assert.equal(a.seen.signal?.aborted, true);
    assert.deepEqual(h.jobs.slot("k"), { kind: "running", step: "s2" });
  });

  void it("a job that throws (analyze broke its contract) is reported, not kept", async () => {
    const h = harness();
    h.jobs.start("k", "s1", () => Promise.reject(new Error("bug")));
    await tick();
    assert.deepEqual(h.failed, ["k"]);
    assert.deepEqual(h.jobs.slot("k"), { kind: "none" });
  });

  void it("cancelAll stops every job", () => {
    const h = harness();
    const runs = [h.controllable(), h.controllable()];
    h.jobs.start("a", "s", runs[0]!.run);
    h.jobs.start("b", "s", runs[1]!.run);
    h.jobs.cancelAll();
    assert.deepEqual(
      runs.map((r) => r.seen.signal?.aborted),
      [true, true],
    );
    assert.equal(h.jobs.running, 0);
  });
});
