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

export function routeLabel(p: RolloutPolicy): string {
  return `${p.target.kind}/${p.namespace}/${p.target.name}`;
}

export class Reporter {
  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly events: EventSink,
  ) {}

  /** A child logger bound to the policy and its route, for one reconcile. */
  forPolicy(p: RolloutPolicy): Logger {
    return this.log.child({ policy: p.key, route: routeLabel(p) });
  }

  /** Logs a problem once while it persists; a different problem (or a success) is logged anew. */
  problem(record: PolicyRecord, level: Level, message: string, fields: Record<string, unknown> = {}): void {
    if (record.lastProblem === message) return;
    record.lastProblem = message;
    this.log[level]({ policy: record.policy.key, route: routeLabel(record.policy), ...fields }, message);
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
