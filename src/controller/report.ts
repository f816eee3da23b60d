/**
 * Every decision told where people look: a Kubernetes Event on the route, a
 * JSON log line naming policy and route, metrics, and the rollout summary
 * behind the point-in-time gauges. Reporting happens after the write it
 * describes and never blocks the next decision.
 */
import type { Logger } from "pino";
import type { AnalysisReport } from "../analysis/types.ts";
import type { RolloutState } from "../contract.ts";
import type { EventSink } from "../kube/events.ts";
import type { Effect } from "../machine/machine.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import type { Metrics } from "../server/metrics.ts";
import type { PolicyRecord } from "./registry.ts";

/** The object Events attach to: the one the policy names. */
export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata?: { namespace?: string; name?: string; uid?: string };
}

export type Level = "warn" | "error" | "info" | "debug";

/** A record of a decision, as the machine announced it (the Event's severity, reason and message). */
export type Announcement = Extract<Effect, { type: "record" }>;

/**
 * Hears what the Reporter tells: notifications and the live page are fed
 * here. Called synchronously after the write; a listener must return at
 * once (queue, never await) and is cut off from the decision if it throws.
 */
export interface ReportListener {
  /** Decisions written to the cluster, with the state as written. */
  decided?(p: RolloutPolicy, s: RolloutState, announced: readonly Announcement[]): void;
  /** The persisted state as read by a pass that decided nothing (waiting, holding). */
  observed?(p: RolloutPolicy, s: RolloutState): void;
  /** Every Event recorded on the route, decisions and Warnings alike. */
  event?(p: RolloutPolicy, severity: "Normal" | "Warning", reason: string, message: string): void;
  /** A problem that keeps a rollout from moving (logged once while it persists). */
  problem?(p: RolloutPolicy, level: Level, message: string): void;
  /** The policy is gone. */
  forget?(key: string): void;
}

export function routeLabel(p: RolloutPolicy): string {
  return `${p.target.kind}/${p.namespace}/${p.target.name}`;
}

export class Reporter {
  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly events: EventSink,
    private readonly listeners: readonly ReportListener[] = [],
  ) {}

  private tell(what: string, fn: (l: ReportListener) => void): void {
    for (const l of this.listeners) {
      try {
        fn(l);
      } catch (err) {
        // A listener is a courtesy; it must never fail a decision.
        this.log.error(
          { err: err instanceof Error ? err.message : String(err), listener: what },
          "report listener failed",
        );
      }
    }
  }

  /** A pass that decided nothing: listeners still see the state (after a restart, say). */
  observed(record: PolicyRecord, s: RolloutState): void {
    this.tell("observed", (l) => l.observed?.(record.policy, s));
  }

  /** The policy was removed. */
  forget(key: string): void {
    this.tell("forget", (l) => l.forget?.(key));
  }

  /** A child logger bound to the policy and its route, for one reconcile. */
  forPolicy(p: RolloutPolicy): Logger {
    return this.log.child({ policy: p.key, route: routeLabel(p) });
  }

  /**
   * Logs a problem once while it persists; a different problem (or a
   * success) is logged anew. With `warn`, a rollout that cannot move (route
   * missing, pair missing, no room, another policy owns the route) also gets
   * a Warning Event on the route the policy names, once per problem: that is
   * where `kubectl describe` and `rolloutd explain` look.
   */
  problem(
    record: PolicyRecord,
    level: Level,
    message: string,
    fields: Record<string, unknown> = {},
    warn?: { reason: string; target: EventTarget },
  ): void {
    if (record.lastProblem === message) return;
    record.lastProblem = message;
    this.log[level]({ policy: record.policy.key, route: routeLabel(record.policy), ...fields }, message);
    this.tell("problem", (l) => l.problem?.(record.policy, level, message));
    if (warn) this.event(record.policy, warn.target, "Warning", warn.reason, message);
  }

  /** A policy that is refused before it is managed (no record). */
  refused(p: RolloutPolicy, message: string, fields: Record<string, unknown> = {}): void {
    this.log.error({ policy: p.key, route: routeLabel(p), ...fields }, message);
  }

  /** After a write: summary, metrics, log line and Event for each recorded decision. */
  decided(record: PolicyRecord, target: EventTarget, s: RolloutState, effects: Effect[], log: Logger): void {
    const p = record.policy;
    const m = this.metrics;
    record.lastProblem = undefined;
    record.summary = { policy: p.key, phase: s.phase, canaryWeight: s.canaryWeight };
    // Listeners hear the decision before its Events, so the first Event of a rollout has a rollout to go with.
    const announced = effects.filter((e): e is Announcement => e.type === "record");
    this.tell("decided", (l) => l.decided?.(p, s, announced));
    for (const e of effects) {
      if (e.type !== "record") continue;
      m.decisions.inc({ policy: p.key, reason: e.reason });
      if (e.reason === "StepAdvanced" || e.reason === "RolloutStarted" || e.reason === "RolloutRestarted")
        m.steps.inc({ policy: p.key });
      if (e.reason === "Promoted") m.promotions.inc({ policy: p.key });
      if (e.reason === "RolledBack") m.rollbacks.inc({ policy: p.key });
      if (e.reason === "Aborted") m.aborts.inc({ policy: p.key });
      log[e.severity === "Warning" ? "warn" : "info"](
        {
          reason: e.reason,
          phase: s.phase,
          step: s.stepIndex + 1,
          canaryWeight: s.canaryWeight,
          stable: s.stable,
          canary: s.canary,
        },
        e.message,
      );
      this.event(p, target, e.severity, e.reason, e.message);
    }
  }

  /** A Warning that is not a lifecycle decision (a write that was refused, say). */
  warning(p: RolloutPolicy, target: EventTarget, reason: string, message: string, log: Logger): void {
    log.warn({ reason }, message);
    this.event(p, target, "Warning", reason, message);
  }

  analysis(key: string, report: AnalysisReport): void {
    const m = this.metrics;
    m.analysis.inc({ policy: key, result: report.verdict });
    for (const c of report.checks) {
      if (c.outcome.kind === "value") m.checkValue.set({ policy: key, check: c.name }, c.outcome.value);
      else m.checkValue.remove({ policy: key, check: c.name });
      if (c.min !== undefined) m.checkBound.set({ policy: key, check: c.name, bound: "min" }, c.min);
      if (c.max !== undefined) m.checkBound.set({ policy: key, check: c.name, bound: "max" }, c.max);
    }
  }

  private event(
    p: RolloutPolicy,
    t: EventTarget,
    severity: "Normal" | "Warning",
    reason: string,
    message: string,
  ): void {
    this.tell("event", (l) => l.event?.(p, severity, reason, message));
    void this.events.record(
      {
        apiVersion: t.apiVersion,
        kind: t.kind,
        namespace: t.metadata?.namespace ?? p.namespace,
        name: t.metadata?.name ?? p.target.name,
        uid: t.metadata?.uid,
      },
      severity,
      reason,
      message,
    );
  }
}
