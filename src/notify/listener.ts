/**
 * Turns the Reporter's decisions into notifications: which decisions people
 * are told about, and the idempotency key that makes a decision one message
 * however many times, replicas or restarts it is seen.
 *
 * | decision (Event reason)                      | notification |
 * |----------------------------------------------|--------------|
 * | RolloutStarted, RolloutRestarted             | started      |
 * | AnalysisNotPassed after a failed analysis, InStepBreach | stepFailed |
 * | RolledBack                                   | rolledBack   |
 * | Aborted                                      | aborted      |
 * | Promoted                                     | promoted     |
 * | WeightsDrifted, RouteNotAccepted, HoldExpired, the first hold for data or errors | stuck |
 * | a problem logged as a warning that persists for `stuckAfterMs` (default 60 s) with no decision since | stuck |
 *
 * A problem must persist before it is told: a watch that re-establishes for a
 * few seconds during an API-server restart is not worth waking anyone.
 */
import { createHash } from "node:crypto";
import type { RolloutState } from "../contract.ts";
import type { Announcement, Level, ReportListener } from "../controller/report.ts";
import { allSteps, type RolloutPolicy } from "../policy/types.ts";
import type { ChannelSpec, Notification, NotificationKind, Notifier } from "./types.ts";

export function kindOf(reason: string, s: RolloutState): NotificationKind | undefined {
  switch (reason) {
    case "RolloutStarted":
    case "RolloutRestarted":
      return "started";
    case "RolledBack":
      return "rolledBack";
    case "Aborted":
      return "aborted";
    case "Promoted":
      return "promoted";
    case "InStepBreach":
      return "stepFailed";
    case "WeightsDrifted":
    case "RouteNotAccepted":
    case "HoldExpired":
      return "stuck";
    case "AnalysisNotPassed":
      if (s.failures > 0) return "stepFailed";
      // The first hold says the rollout stopped moving; the next ones say nothing new.
      if (s.noData === 1 || s.errors === 1) return "stuck";
      return undefined;
    default:
      return undefined;
  }
}

export function idempotencyKey(...parts: Array<string | number | undefined>): string {
  return createHash("sha256")
    .update(parts.map((p) => String(p ?? "")).join("\u0000"))
    .digest("hex")
    .slice(0, 32);
}

export interface NotifyListenerOptions {
  /** How long a problem must persist, with no decision since, before it is a `stuck` notification. */
  stuckAfterMs?: number;
  now?: () => number;
}

export class NotifyListener implements ReportListener {
  /** The last state seen per policy, to describe a problem that comes without one. */
  private readonly last = new Map<string, RolloutState>();
  /** Problems waiting to have persisted long enough, per policy. */
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private readonly stuckAfterMs: number;
  private readonly now: () => number;

  constructor(
    private readonly notifier: Notifier,
    private readonly global: readonly ChannelSpec[],
    opts: NotifyListenerOptions = {},
  ) {
    this.stuckAfterMs = opts.stuckAfterMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  private settle(key: string): void {
    const t = this.pending.get(key);
    if (t) clearTimeout(t);
    this.pending.delete(key);
  }

  private channels(p: RolloutPolicy): readonly ChannelSpec[] {
    return p.notify?.length ? [...this.global, ...p.notify] : this.global;
  }

  decided(p: RolloutPolicy, s: RolloutState, announced: readonly Announcement[]): void {
    this.settle(p.key);
    this.last.set(p.key, s);
    const channels = this.channels(p);
    if (!channels.length) return;
    for (const a of announced) {
      const kind = kindOf(a.reason, s);
      if (!kind) continue;
      const key = idempotencyKey(p.key, s.revision, a.reason, s.updatedAt);
      this.notifier.notify(build(p, s, kind, key, a.reason, a.message, s.updatedAt), channels);
    }
  }

  /** A pass got as far as reading the state: whatever stood in its way before is gone. */
  observed(p: RolloutPolicy, s: RolloutState): void {
    this.settle(p.key);
    this.last.set(p.key, s);
  }

  problem(p: RolloutPolicy, level: Level, message: string): void {
    this.settle(p.key);
    if (level !== "warn" && level !== "error") return;
    if (!this.channels(p).length || !this.last.has(p.key)) return;
    const t = setTimeout(() => {
      this.pending.delete(p.key);
      const s = this.last.get(p.key);
      if (!s) return;
      // The same problem on the same persisted state is the same message, on every replica and after a restart.
      const key = idempotencyKey(p.key, s.revision, "Stuck", s.updatedAt, message);
      this.notifier.notify(build(p, s, "stuck", key, "Stuck", message, this.now()), this.channels(p));
    }, this.stuckAfterMs);
    t.unref();
    this.pending.set(p.key, t);
  }

  forget(key: string): void {
    this.settle(key);
    this.last.delete(key);
  }

  close(): void {
    for (const key of [...this.pending.keys()]) this.settle(key);
  }
}

function build(
  p: RolloutPolicy,
  s: RolloutState,
  kind: NotificationKind,
  key: string,
  reason: string,
  message: string,
  at: number,
): Notification {
  const n: Notification = {
    kind,
    key,
    policy: p.key,
    route: { kind: p.target.kind, namespace: p.namespace, name: p.target.name },
    reason,
    message,
    phase: s.phase,
    step: s.stepIndex >= 0 ? s.stepIndex + 1 : 0,
    steps: allSteps(p).length,
    canaryWeight: s.canaryWeight,
    stable: s.stable,
    canary: s.canary,
    at: new Date(at).toISOString(),
  };
  if (s.revision !== undefined) n.revision = s.revision;
  if (kind === "aborted" && s.abort)
    n.abort = { reason: s.abort.reason, at: new Date(s.abort.at).toISOString() };
  if (
    s.lastAnalysis &&
    (kind === "stepFailed" || kind === "rolledBack" || kind === "promoted" || kind === "stuck")
  )
    n.checks = s.lastAnalysis.checks;
  return n;
}
