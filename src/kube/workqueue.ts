/**
 * A work queue of keys, after client-go's: a key waiting once is not queued
 * twice, one key is never processed by two workers at once (an add during
 * processing re-runs it afterwards), errors requeue with per-key exponential
 * backoff under a global token bucket, and addAfter() turns deadlines into
 * requeues. Watch handlers only call add(); all decisions happen in the
 * handler, which is level-based and so never needs to know why it ran.
 *
 * One addition to client-go's: an urgent lane. A key added as urgent (a
 * route that now carries an abort) goes ahead of everything queued and may
 * run on a worker of its own beyond `workers`, so an abort never waits for
 * step work that is itself waiting on a slow API server.
 */
import type { Clock } from "../clock.ts";

export interface ReconcileResult {
  /** Run this key again after so many ms (a deadline), even if nothing changes. */
  requeueAfterMs?: number;
}

export type ReconcileFn = (key: string) => Promise<ReconcileResult | void>;

export interface WorkQueueOptions {
  workers: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Global limit for error retries: tokens per second and burst. */
  retryQps?: number;
  retryBurst?: number;
  onError?: (key: string, err: unknown, retryInMs: number) => void;
  onProcessed?: (key: string, durationMs: number, outcome: "success" | "error" | "requeue") => void;
  /** Workers beyond `workers` that only urgent keys may use (default 2). */
  urgentWorkers?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly urgent: string[] = [];
  private readonly queued = new Set<string>();
  /** Keys running now that were re-added as urgent: they run again in the urgent lane. */
  private readonly dirtyUrgent = new Set<string>();
  private readonly processing = new Set<string>();
  /** Keys running now that were taken from the urgent lane: a failure retries them there. */
  private readonly runningUrgent = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; urgent: boolean; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private tokens: number;
  private lastRefill: number;
  private active = 0;
  private shuttingDown = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly handler: ReconcileFn,
    private readonly clock: Clock,
    private readonly opts: WorkQueueOptions,
  ) {
    this.tokens = opts.retryBurst ?? 100;
    this.lastRefill = clock.now();
  }

  add(key: string, opts: { urgent?: boolean } = {}): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      if (opts.urgent) this.dirtyUrgent.add(key);
      return;
    }
    if (opts.urgent) {
      if (this.urgent.includes(key)) return;
      // Waiting in the ordinary lane: it moves ahead.
      if (this.queued.has(key)) this.queue.splice(this.queue.indexOf(key), 1);
      this.queued.add(key);
      this.urgent.push(key);
      this.pump();
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /**
   * Adds the key after `ms`. One timer per key: the earlier time wins, and it is urgent if either is (a
   * pending step deadline must not hold an abort's retry back, nor put it in the ordinary lane).
   */
  addAfter(key: string, ms: number, opts: { urgent?: boolean } = {}): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key, opts);
    const now = this.clock.now();
    const existing = this.timers.get(key);
    const at = Math.min(now + ms, existing?.at ?? Infinity);
    const urgent = opts.urgent === true || existing?.urgent === true;
    if (existing && existing.at === at && existing.urgent === urgent) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(
      () => {
        this.timers.delete(key);
        this.add(key, { urgent });
      },
      Math.max(0, at - now),
    );
    timer.unref();
    this.timers.set(key, { at, urgent, timer });
  }

  /**
   * Requeue after an error: per-key exponential backoff, bounded by a global bucket. An urgent key (an abort
   * whose write met a 409) retries in the urgent lane: behind the backlog of step work it would wait for every
   * reconcile queued while it ran.
   */
  addRateLimited(key: string, opts: { urgent?: boolean } = {}): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const base = this.opts.baseBackoffMs ?? 50;
    const perKey = Math.min(base * 2 ** (n - 1), this.opts.maxBackoffMs ?? 300_000);
    const delay = Math.max(perKey, this.bucketDelay());
    this.addAfter(key, delay, opts);
    return delay;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Removes a key entirely (its policy was deleted). */
  drop(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t.timer);
    this.timers.delete(key);
    this.failures.delete(key);
    this.dirty.delete(key);
    this.dirtyUrgent.delete(key);
    if (this.queued.delete(key)) {
      const lane = this.urgent.includes(key) ? this.urgent : this.queue;
      lane.splice(lane.indexOf(key), 1);
    }
  }

  get length(): number {
    return this.queue.length + this.urgent.length;
  }

  private bucketDelay(): number {
    const qps = this.opts.retryQps ?? 10;
    const now = this.clock.now();
    this.tokens = Math.min(this.opts.retryBurst ?? 100, this.tokens + ((now - this.lastRefill) / 1000) * qps);
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / qps) * 1000);
  }

  private pump(): void {
    const urgentLimit = this.opts.workers + (this.opts.urgentWorkers ?? 2);
    for (;;) {
      let key: string | undefined;
      let urgent = false;
      if (this.urgent.length > 0 && this.active < urgentLimit) {
        key = this.urgent.shift();
        urgent = true;
      } else if (this.queue.length > 0 && this.active < this.opts.workers) key = this.queue.shift();
      if (key === undefined) break;
      if (urgent) this.runningUrgent.add(key);
      this.queued.delete(key);
      this.processing.add(key);
      this.active++;
      void this.run(key);
    }
    if (this.active === 0 && this.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async run(key: string): Promise<void> {
    const started = this.clock.now();
    let outcome: "success" | "error" | "requeue" = "success";
    try {
      const result = await this.handler(key);
      this.forget(key);
      if (result?.requeueAfterMs !== undefined) {
        outcome = "requeue";
        this.addAfter(key, result.requeueAfterMs);
      }
    } catch (err) {
      outcome = "error";
      const retryIn = this.addRateLimited(key, { urgent: this.runningUrgent.has(key) });
      try {
        this.opts.onError?.(key, err, retryIn);
      } catch {
        // an error reporter must not break the queue
      }
    } finally {
      this.processing.delete(key);
      this.runningUrgent.delete(key);
      this.active--;
      try {
        this.opts.onProcessed?.(key, this.clock.now() - started, outcome);
      } catch {
        // metrics must not break the queue
      }
      if (this.dirty.delete(key)) this.add(key, { urgent: this.dirtyUrgent.delete(key) });
      this.pump();
    }
  }

  /** Resolves when nothing is queued or running (timers may still be pending). */
  idle(): Promise<void> {
    if (this.active === 0 && this.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking work, cancels timers and waits for running handlers. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.length = 0;
    this.urgent.length = 0;
    this.queued.clear();
    await this.idle();
  }
}
