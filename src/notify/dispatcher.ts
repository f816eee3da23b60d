/**
 * Delivery, off the decision path. `notify()` only queues and returns: the
 * reconcile that decided never waits for a receiver, so an abort is written
 * just as fast whether Slack answers in 50 ms, in a minute or never.
 *
 * - a bounded queue (the oldest waiting delivery is dropped when full, and
 *   counted), a few deliveries at a time per channel (a receiver that hangs
 *   holds up only its own), each attempt with its own timeout;
 * - retries with exponential backoff and jitter on network errors, timeouts,
 *   429 (honouring Retry-After) and 5xx; other 4xx are final;
 * - every retry carries the same Idempotency-Key; a bounded in-memory set of
 *   keys already queued drops repeats inside one process, and the key itself
 *   (derived from the persisted state) lets receivers drop repeats across
 *   restarts and replicas;
 * - counted in `rolloutd_notifications_total{channel,kind,result}`.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { payload } from "./format.ts";
import { IDEMPOTENCY_HEADER, sign, SIGNATURE_HEADER, TIMESTAMP_HEADER } from "./sign.ts";
import type { ChannelSpec, Notification, Notifier } from "./types.ts";

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export interface DispatcherOptions {
  log: Logger;
  /** Where the delivery metrics are registered (the daemon's own registry). */
  registry?: Registry;
  fetch?: typeof fetch;
  retry?: Partial<RetryPolicy>;
  /** Per-attempt timeout unless the channel sets its own, ms. */
  timeoutMs?: number;
  /** Deliveries in flight per channel: a receiver that hangs holds only its own. */
  concurrency?: number;
  maxQueue?: number;
  /** Keys remembered to drop repeats. */
  seenLimit?: number;
  random?: () => number;
}

interface Job {
  channel: ChannelSpec;
  n: Notification;
  attempt: number;
  queuedAt: number;
}

type Outcome = { done: true } | { done: false; retryAfterMs?: number; why: string; final: boolean };

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseMs: 2_000, maxMs: 60_000 };

export class NotificationDispatcher implements Notifier {
  private readonly ready: Job[] = [];
  private readonly delayed = new Set<NodeJS.Timeout>();
  private readonly seen = new Map<string, true>();
  private readonly closing = new AbortController();
  private running = 0;
  private readonly runningBy = new Map<string, number>();
  private readonly idle: Array<() => void> = [];
  private readonly retry: RetryPolicy;
  private readonly doFetch: typeof fetch;
  private readonly total: Counter<"channel" | "kind" | "result">;
  private readonly attempts: Counter<"channel" | "outcome">;
  private readonly latency: Histogram<"channel">;

  constructor(private readonly o: DispatcherOptions) {
    this.retry = { ...DEFAULT_RETRY, ...o.retry };
    this.doFetch = o.fetch ?? fetch;
    const registers = o.registry ? [o.registry] : [];
    this.total = new Counter({
      name: "rolloutd_notifications_total",
      help: "Notifications by channel, kind and result (sent, failed, dropped, duplicate).",
      labelNames: ["channel", "kind", "result"],
      registers,
    });
    this.attempts = new Counter({
      name: "rolloutd_notification_attempts_total",
      help: "Delivery attempts by channel and outcome (ok, retry, error).",
      labelNames: ["channel", "outcome"],
      registers,
    });
    this.latency = new Histogram({
      name: "rolloutd_notification_delivery_seconds",
      help: "Decision queued → receiver answered 2xx, retries included.",
      labelNames: ["channel"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300],
      registers,
    });
    const pending = () => this.pending;
    new Gauge({
      name: "rolloutd_notification_queue",
      help: "Deliveries waiting, in flight or waiting to retry.",
      registers,
      collect() {
        this.set(pending());
      },
    });
  }

  /** Deliveries not finished: waiting, in flight, or waiting to retry. */
  get pending(): number {
    return this.ready.length + this.running + this.delayed.size;
  }

  notify(n: Notification, channels: readonly ChannelSpec[]): void {
    if (this.closing.signal.aborted) return;
    for (const channel of channels) {
      if (channel.on && !channel.on.includes(n.kind)) continue;
      const id = `${channel.name}\u0000${n.key}`;
      if (this.seen.has(id)) {
        this.total.inc({ channel: channel.name, kind: n.kind, result: "duplicate" });
        continue;
      }
      this.seen.set(id, true);
      if (this.seen.size > (this.o.seenLimit ?? 10_000)) this.seen.delete(this.seen.keys().next().value!);
      if (this.pending >= (this.o.maxQueue ?? 1_000)) {
        const dropped = this.ready.shift();
        if (dropped) {
          this.total.inc({ channel: dropped.channel.name, kind: dropped.n.kind, result: "dropped" });
          this.o.log.warn(
            { channel: dropped.channel.name, key: dropped.n.key },
            "notification queue full: dropped the oldest waiting notification",
          );
        } else {
          this.total.inc({ channel: channel.name, kind: n.kind, result: "dropped" });
          continue;
        }
      }
      this.ready.push({ channel, n, attempt: 0, queuedAt: performance.now() });
    }
    this.pump();
  }

  /** Resolves when nothing is pending (for tests and orderly shutdown). */
  drained(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Stops: in-flight attempts are cancelled (resolves when they have settled), nothing more is sent. */
  close(): Promise<void> {
    this.closing.abort();
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
    this.ready.length = 0;
    this.settle();
    // In-flight attempts were aborted: they settle at once.
    return this.drained();
  }

  private pump(): void {
    const limit = this.o.concurrency ?? 2;
    for (let i = 0; i < this.ready.length;) {
      const job = this.ready[i]!;
      const name = job.channel.name;
      const busy = this.runningBy.get(name) ?? 0;
      if (busy >= limit) {
        i++;
        continue;
      }
      this.ready.splice(i, 1);
      this.running++;
      this.runningBy.set(name, busy + 1);
      void this.attempt(job).finally(() => {
        this.running--;
        const left = (this.runningBy.get(name) ?? 1) - 1;
        if (left > 0) this.runningBy.set(name, left);
        else this.runningBy.delete(name);
        this.pump();
        this.settle();
      });
    }
  }

  private settle(): void {
    if (this.pending > 0) return;
    for (const resolve of this.idle.splice(0)) resolve();
  }

  private async attempt(job: Job): Promise<void> {
    const { channel, n } = job;
    job.attempt++;
    let outcome: Outcome;
    try {
      outcome = await this.send(channel, n);
    } catch (err) {
      outcome = { done: false, final: false, why: err instanceof Error ? err.message : String(err) };
    }
    if (this.closing.signal.aborted) return;
    const log = this.o.log;
    const fields = {
      channel: channel.name,
      kind: n.kind,
      policy: n.policy,
      key: n.key,
      attempt: job.attempt,
    };
    if (outcome.done) {
      this.attempts.inc({ channel: channel.name, outcome: "ok" });
      this.total.inc({ channel: channel.name, kind: n.kind, result: "sent" });
      this.latency.observe({ channel: channel.name }, (performance.now() - job.queuedAt) / 1000);
      log.debug(fields, "notification sent");
      return;
    }
    if (outcome.final || job.attempt >= this.retry.attempts) {
      this.attempts.inc({ channel: channel.name, outcome: "error" });
      this.total.inc({ channel: channel.name, kind: n.kind, result: "failed" });
      log.warn({ ...fields, why: outcome.why }, "notification not delivered; giving up");
      return;
    }
    this.attempts.inc({ channel: channel.name, outcome: "retry" });
    const backoff = Math.min(this.retry.maxMs, this.retry.baseMs * 2 ** (job.attempt - 1));
    const jittered = backoff / 2 + (this.o.random ?? Math.random)() * (backoff / 2);
    const delay = Math.min(this.retry.maxMs, Math.max(jittered, outcome.retryAfterMs ?? 0));
    log.debug(
      { ...fields, why: outcome.why, retryInMs: Math.round(delay) },
      "notification failed; will retry",
    );
    const t = setTimeout(() => {
      this.delayed.delete(t);
      this.ready.push(job);
      this.pump();
    }, delay);
    t.unref();
    this.delayed.add(t);
  }

  private async send(channel: ChannelSpec, n: Notification): Promise<Outcome> {
    let url: string;
    let secret: string | undefined;
    try {
      url = channel.url ?? (await readSecret(channel.urlFile));
      secret = channel.secretFile !== undefined ? await readSecret(channel.secretFile) : undefined;
    } catch (err) {
      return { done: false, final: true, why: `cannot read a secret file: ${(err as Error).message}` };
    }
    const body = JSON.stringify(payload(channel.type, n));
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "rolloutd",
      [IDEMPOTENCY_HEADER]: n.key,
    };
    if (secret !== undefined) {
      const ts = Math.floor(Date.now() / 1000);
      headers[TIMESTAMP_HEADER] = String(ts);
      headers[SIGNATURE_HEADER] = sign(secret, ts, body);
    }
    const timeout = AbortSignal.timeout(channel.timeoutMs ?? this.o.timeoutMs ?? 10_000);
    const res = await this.doFetch(url, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.any([timeout, this.closing.signal]),
      redirect: "error",
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return { done: true };
    const why = `HTTP ${res.status}`;
    if (res.status === 429 || res.status >= 500) {
      const after = Number(res.headers.get("retry-after"));
      return {
        done: false,
        final: false,
        why,
        ...(Number.isFinite(after) && after > 0 ? { retryAfterMs: after * 1000 } : {}),
      };
    }
    return { done: false, final: true, why };
  }
}

async function readSecret(file: string | undefined): Promise<string> {
  if (file === undefined) throw new Error("no url or urlFile");
  return (await readFile(file, "utf8")).trim();
}
