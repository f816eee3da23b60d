/**
 * Analyses run here, as their own jobs, never inside a reconcile: a query
 * may take as long as Prometheus' timeout, and an abort must not wait for
 * it. A job belongs to one step window (derive's stepKey); its result comes
 * back as a fact for the next reconcile of its policy. Anything that moves
 * the rollout off that step cancels the job down to the HTTP request, and a
 * result for a window that no longer exists is dropped and counted.
 */
import type { AnalysisReport } from "../analysis/types.ts";
import { ofStep, type AnalysisSlot } from "../machine/derive.ts";

interface Job {
  step: string;
  controller: AbortController;
  /** performance.now() when the report was in hand, to measure result → write. */
  doneAt?: number;
  report?: AnalysisReport;
}

export type DiscardReason = "cancelled" | "stale";

export interface JobHooks {
  /** A job finished: its policy should be reconciled. */
  done(key: string): void;
  discarded(key: string, reason: DiscardReason): void;
  failed(key: string, err: unknown): void;
}

export class AnalysisJobs {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly hooks: JobHooks) {}

  /** What derive() sees of the policy's analysis. */
  slot(key: string): AnalysisSlot {
    const j = this.jobs.get(key);
    if (!j) return { kind: "none" };
    return j.report ? { kind: "done", step: j.step, report: j.report } : { kind: "running", step: j.step };
  }

  /** Starts the analysis of `step`, replacing (and cancelling) any job for another step. */
  start(key: string, step: string, run: (signal: AbortSignal) => Promise<AnalysisReport>): void {
    const existing = this.jobs.get(key);
    if (existing?.step === step) return;
    if (existing) this.cancel(key);
    const job: Job = { step, controller: new AbortController() };
    this.jobs.set(key, job);
    const signal = job.controller.signal;
    run(signal).then(
      (report) => {
        if (signal.aborted || this.jobs.get(key) !== job) return;
        job.report = report;
        job.doneAt = performance.now();
        this.hooks.done(key);
      },
      (err: unknown) => {
        if (this.jobs.get(key) !== job) return;
        this.jobs.delete(key);
        this.hooks.failed(key, err);
      },
    );
  }

  /** Hands over a finished result; keeps nothing. Returns when it was in hand. */
  take(key: string, step: string): number | undefined {
    const j = this.jobs.get(key);
    if (!j?.report || j.step !== step) return undefined;
    this.jobs.delete(key);
    return j.doneAt;
  }

  /**
   * Keeps the job only if it belongs to `step` (the rollout's current
   * analysis window — its deadline analysis or an in-step evaluation — or
   * none at all): a running job for another window is cancelled, a finished
   * one for another window is stale.
   */
  retain(key: string, step: string | undefined): void {
    const j = this.jobs.get(key);
    if (!j || (step !== undefined && ofStep(j.step, step))) return;
    if (j.report) {
      this.jobs.delete(key);
      this.hooks.discarded(key, "stale");
    } else this.cancel(key);
  }

  cancel(key: string): void {
    const j = this.jobs.get(key);
    if (!j) return;
    this.jobs.delete(key);
    j.controller.abort();
    this.hooks.discarded(key, j.report ? "stale" : "cancelled");
  }

  get running(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (!j.report) n++;
    return n;
  }

  cancelAll(): void {
    for (const key of [...this.jobs.keys()]) this.cancel(key);
  }
}
