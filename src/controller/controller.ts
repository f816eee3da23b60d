/**
 * The rollout controller: level-based reconcile of one policy at a time.
 *
 *   watch event / policy change / deadline → queue key → reconcile(key):
 *     read route, state and Deployments from the caches → derive at most one
 *     lifecycle event → decide() (pure) → write weights + state in one
 *     resourceVersion-guarded patch → record Event, log, metrics → requeue at
 *     the next deadline.
 *
 * Nothing here remembers a rollout between reconciles except caches for
 * metrics: the persisted state on the route is the truth, so the process can
 * die at any instant and the next reconcile continues from the cluster.
 */
import type { Logger } from "pino";
import type { AnalysisGate, AnalysisReport } from "../analysis/types.ts";
import type { Clock } from "../clock.ts";
import { KubeApiError } from "../kube/errors.ts";
import type { EventSink } from "../kube/events.ts";
import { refKey, type KindName, type KObject, type ObjectRef } from "../kube/kinds.ts";
import { WorkQueue, type ReconcileResult } from "../kube/workqueue.ts";
import { decide, type RolloutEvent, type Settings } from "../machine/machine.ts";
import {
  atRest,
  decodeState,
  encodeState,
  initialState,
  StateDecodeError,
  type RolloutState,
} from "../machine/state.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { policyWindow, type CronWindow } from "../policy/window.ts";
import { needsAcceptance, type RouterRegistry } from "../routers/index.ts";
import { RouteError, type PairWeight, type RouteView } from "../routers/types.ts";
import type { Metrics, RolloutSummary } from "../server/metrics.ts";
import { readControls, rolledOut, templateRevision, type Controls } from "./observe.ts";

export interface ObjectSource {
  get(kind: KindName, namespace: string, name: string): KObject | undefined;
  /** With a namespace: synced in that namespace (the daemon may be limited to some). */
  isAvailable(kind: KindName, namespace?: string): boolean;
}

export interface GateProvider {
  gateFor(policy: RolloutPolicy): AnalysisGate;
}

export interface ControllerDeps {
  objects: ObjectSource;
  routers: RouterRegistry;
  gates: GateProvider;
  events: EventSink;
  metrics: Metrics;
  clock: Clock;
  log: Logger;
  workers?: number;
  /**
   * The namespaces the daemon is limited to (`--namespaces`), when it is: a
   * policy in any other namespace is refused, since its route is neither
   * watched nor writable there.
   */
  namespaces?: readonly string[];
}

/** How long to wait before looking again at a policy whose route is missing (watches also wake it). */
const MISSING_RETRY_MS = 30_000;

export class RolloutController {
  private readonly policies = new Map<string, RolloutPolicy>();
  private readonly windows = new Map<string, CronWindow | undefined>();
  /** Object → policies that read it in their last reconcile. */
  private readonly dependents = new Map<string, Set<string>>();
  private readonly dependencies = new Map<string, string[]>();
  private readonly summaries = new Map<string, RolloutSummary>();
  /** Last problem reported per policy, so a persisting problem is logged once, not every retry. */
  private readonly lastProblem = new Map<string, string>();
  readonly queue: WorkQueue;

  constructor(private readonly deps: ControllerDeps) {
    this.queue = new WorkQueue((key) => this.reconcile(key), deps.clock, {
      workers: deps.workers ?? 8,
      onError: (key, err, retryIn) => {
        const conflict = err instanceof KubeApiError && err.isConflict;
        deps.log[conflict ? "debug" : "error"](
          { policy: key, err: err instanceof Error ? err.message : String(err), retryInMs: retryIn },
          conflict ? "route changed while deciding (409); re-reading" : "reconcile failed",
        );
      },
      onProcessed: (_key, ms, outcome) => {
        deps.metrics.reconcileTotal.inc({ result: outcome });
        deps.metrics.reconcileDuration.observe(ms / 1000);
      },
    });
    deps.metrics.observe(
      () => [...this.summaries.values()],
      () => this.queue.length,
    );
  }

  /** Applies a policy change set: new and changed policies are reconciled, removed ones forgotten. */
  setPolicies(upserted: RolloutPolicy[], removed: string[]): void {
    for (const key of removed) {
      const gone = this.policies.get(key);
      for (const other of this.policies.values()) {
        if (
          gone &&
          other.key !== key &&
          other.namespace === gone.namespace &&
          other.target.name === gone.target.name
        )
          this.queue.add(other.key);
      }
      this.policies.delete(key);
      void this.deps.metrics.forgetPolicy(key).catch(() => {});
      this.windows.delete(key);
      this.summaries.delete(key);
      this.setDependencies(key, []);
      this.queue.drop(key);
      this.lastProblem.delete(key);
      // A refused policy (outside --namespaces) was never managed: nothing to report on its removal.
      if (gone) this.deps.log.info({ policy: key }, "policy removed; its route is left as it is");
    }
    for (const p of upserted) {
      if (this.refuseOutsideNamespaces(p)) continue;
      this.policies.set(p.key, p);
      this.windows.set(p.key, policyWindow(p));
      this.setDependencies(p.key, this.staticDependencies(p));
      this.queue.add(p.key);
    }
    this.deps.metrics.policies.set(this.policies.size);
  }

  private ownerOf(p: RolloutPolicy): string {
    let owner = p.key;
    for (const other of this.policies.values()) {
      if (
        other.key < owner &&
        other.namespace === p.namespace &&
        other.target.kind === p.target.kind &&
        other.target.name === p.target.name
      ) {
        owner = other.key;
      }
    }
    return owner;
  }

  /**
   * A policy whose namespace the daemon is not limited to is refused: it
   * would be neither read nor written, and saying so once beats a route
   * that silently never moves. Returns true when refused.
   */
  private refuseOutsideNamespaces(p: RolloutPolicy): boolean {
    const allowed = this.deps.namespaces;
    if (!allowed || allowed.includes(p.namespace)) return false;
    if (this.policies.delete(p.key)) {
      this.windows.delete(p.key);
      this.summaries.delete(p.key);
      this.setDependencies(p.key, []);
      this.queue.drop(p.key);
    }
    this.deps.metrics.routeErrors.inc({ policy: p.key, reason: "NamespaceNotWatched" });
    this.report(
      p.key,
      "error",
      `policy ${p.key} refused: its route ${p.target.kind} ${p.namespace}/${p.target.name} is in namespace ` +
        `"${p.namespace}", outside the namespaces this rolloutd is limited to (${allowed.join(", ")}); ` +
        "nothing is read or written for it. Add the namespace to --namespaces (Helm: rbac.namespaces) or move the policy",
      { route: `${p.target.kind}/${p.namespace}/${p.target.name}`, namespaces: allowed },
    );
    return true;
  }

  /** Watch handler: maps a changed object to the policies that read it. Never decides anything. */
  onObjectChange(ref: ObjectRef): void {
    const keys = this.dependents.get(refKey(ref));
    if (keys) for (const k of keys) this.queue.add(k);
  }

  policyCount(): number {
    return this.policies.size;
  }

  private staticDependencies(p: RolloutPolicy): ObjectRef[] {
    return [
      { kind: p.target.kind, namespace: p.namespace, name: p.target.name },
      ...Object.values(p.deployments).map((name) => ({
        kind: "Deployment" as const,
        namespace: p.namespace,
        name,
      })),
    ];
  }

  private setDependencies(key: string, refs: ObjectRef[]): void {
    for (const old of this.dependencies.get(key) ?? []) this.dependents.get(old)?.delete(key);
    const keys = [...new Set(refs.map(refKey))];
    this.dependencies.set(key, keys);
    for (const k of keys) {
      let set = this.dependents.get(k);
      if (!set) this.dependents.set(k, (set = new Set()));
      set.add(key);
    }
  }

  private report(
    key: string,
    level: "warn" | "error" | "info" | "debug",
    problem: string,
    fields: Record<string, unknown> = {},
  ): void {
    if (this.lastProblem.get(key) === problem) return;
    this.lastProblem.set(key, problem);
    const p = this.policies.get(key);
    const route = p ? `${p.target.kind}/${p.namespace}/${p.target.name}` : undefined;
    this.deps.log[level]({ policy: key, route, ...fields }, problem);
  }

  /** One level-based pass over a policy. Exported for tests through the queue only. */
  async reconcile(key: string): Promise<ReconcileResult | void> {
    const policy = this.policies.get(key);
    if (!policy) return;
    const { objects, routers, clock } = this.deps;
    const log = this.deps.log.child({
      policy: key,
      route: `${policy.target.kind}/${policy.namespace}/${policy.target.name}`,
    });

    // Two policies on one route would overwrite each other's state: the first (by key) owns it.
    const owner = this.ownerOf(policy);
    if (owner !== key) {
      this.deps.metrics.routeErrors.inc({ policy: key, reason: "Conflict" });
      this.report(
        key,
        "error",
        `policy ${owner} already manages ${policy.target.kind} ${policy.namespace}/${policy.target.name}; this policy is ignored until that changes`,
      );
      return;
    }

    if (!objects.isAvailable(policy.target.kind, policy.namespace)) {
      this.report(
        key,
        "warn",
        `${policy.target.kind} is not served by this cluster (CRD missing or not allowed); waiting`,
      );
      return { requeueAfterMs: MISSING_RETRY_MS };
    }
    const router = routers.for(policy.target.kind);

    let view: RouteView;
    try {
      view = router.read(policy, { stable: policy.stable, canary: policy.canary });
    } catch (err) {
      if (err instanceof RouteError) {
        this.setDependencies(key, [...this.staticDependencies(policy), ...err.dependsOn]);
        this.deps.metrics.routeErrors.inc({ policy: key, reason: err.missing ? "NotFound" : "Invalid" });
        this.report(key, "warn", `${err.message}; will retry when it changes`);
        return { requeueAfterMs: MISSING_RETRY_MS };
      }
      throw err;
    }
    this.setDependencies(key, [...this.staticDependencies(policy), ...view.dependsOn]);

    const now = clock.now();
    const revisions: Record<string, string> = {};
    const readiness: Record<string, { ready: boolean; detail: string }> = {};
    for (const backend of [policy.stable, policy.canary]) {
      const name = policy.deployments[backend] ?? backend;
      const dep = objects.get("Deployment", policy.namespace, name);
      if (!dep) continue;
      const rev = templateRevision(dep);
      if (rev) revisions[backend] = rev;
      readiness[backend] = rolledOut(dep);
    }

    let state: RolloutState | undefined;
    if (view.stateAnnotation) {
      try {
        state = decodeState(view.stateAnnotation);
        const pair = new Set([policy.stable, policy.canary]);
        if (!pair.has(state.stable) || !pair.has(state.canary) || state.stable === state.canary) {
          log.warn(
            { stable: state.stable, canary: state.canary },
            "persisted state names other backends than the policy; adopting afresh",
          );
          state = undefined;
        }
      } catch (err) {
        if (!(err instanceof StateDecodeError)) throw err;
        log.warn({ err: err.message }, "persisted state unreadable; adopting afresh");
      }
    }

    const controls = readControls(view.target);
    if (!state) {
      const fresh: RolloutState = {
        ...initialState({ stable: policy.stable, canary: policy.canary, baseline: revisions, now }),
        policy: key,
        // One-shot controls already on the route when we adopt it are history, not requests.
        tokens: {
          start: controls.start,
          retry: controls.retry,
          resume: controls.resume,
          promote: controls.promote,
        },
      };
      // Adoption writes nothing but the state: the route's weights stay as their owners set them.
      await router.write(view, undefined, encodeState(fresh));
      this.lastProblem.delete(key);
      this.afterWrite(
        policy,
        view,
        fresh,
        [
          {
            type: "record",
            severity: "Normal",
            reason: "Adopted",
            message: `rolloutd manages ${policy.stable}/${policy.canary} weights of this route (policy ${key})`,
          },
        ],
        log,
      );
      return;
    }

    const settings: Settings = {
      steps: policy.steps,
      intervalMs: policy.intervalMs,
      failureLimit: policy.analysis?.failureLimit ?? 1,
      onNoData: policy.analysis?.onNoData ?? "hold",
      noDataLimit: policy.analysis?.noDataLimit ?? 3,
      onError: policy.analysis?.onError ?? { action: "hold", limit: 5 },
      needsAcceptance: needsAcceptance(policy.target.kind),
    };
    const stepped = await this.nextEvent(policy, state, view, controls, revisions, readiness, now, log);
    if (!stepped.event) {
      this.summaries.set(key, { policy: key, phase: state.phase, canaryWeight: state.canaryWeight });
      if (stepped.note) this.report(key, stepped.quiet ? "debug" : "info", stepped.note);
      return stepped.requeueAfterMs !== undefined ? { requeueAfterMs: stepped.requeueAfterMs } : undefined;
    }

    const decision = decide(settings, state, stepped.event);
    if (!decision.changed) return this.requeueFor(policy, state, clock.now());
    const next: RolloutState = { ...decision.state, policy: key };
    let planned: PairWeight[] | undefined;
    const setW = decision.effects.find((e) => e.type === "setWeights");
    if (setW) {
      planned = router.plan(view, { stable: setW.stable, canary: setW.canary }, setW.canaryPercent);
      next.applied = byPath(planned);
    }
    await router.write(view, planned, encodeState(next));
    this.lastProblem.delete(key);
    if (stepped.event.type === "ANALYSIS") {
      this.recordAnalysis(key, stepped.event.report);
      if (stepped.resultAt !== undefined) {
        const ms = performance.now() - stepped.resultAt;
        this.deps.metrics.resultToWrite.observe({ phase: next.phase }, ms / 1000);
        log.debug(
          { resultToWriteMs: Math.round(ms * 10) / 10, phase: next.phase },
          "analysis result written",
        );
      }
    }
    this.afterWrite(policy, view, next, decision.effects, log);
    return this.requeueFor(policy, next, clock.now());
  }

  /**
   * Derives the one lifecycle event this reconcile acts on, in priority
   * order: abort, promote, new revision, start/retry, pause/resume, drift,
   * acceptance, analysis. Returns no event (and maybe a requeue) when
   * nothing is due.
   */
  private async nextEvent(
    policy: RolloutPolicy,
    s: RolloutState,
    view: RouteView,
    c: Controls,
    revisions: Record<string, string>,
    readiness: Record<string, { ready: boolean; detail: string }>,
    now: number,
    log: Logger,
  ): Promise<{
    event?: RolloutEvent;
    requeueAfterMs?: number;
    note?: string;
    /** The note is routine (logged at debug). */
    quiet?: boolean;
    /** performance.now() when the analysis result was in hand, to measure result → write. */
    resultAt?: number;
  }> {
    const base = { now, revisions };
    const atStable = view.pair.every((w) => w.backend !== s.canary || w.weight === 0);

    if (c.abort) {
      if (s.phase !== "Aborted" || !atStable) {
        return {
          event: { type: "ABORT", reason: c.abortReason ?? "rolloutd.dev/abort annotation set", ...base },
        };
      }
      return { note: "aborted: remove the rolloutd.dev/abort annotation to allow new rollouts" };
    }

    if (c.promote && c.promote !== s.tokens.promote && !atRest(s.phase)) {
      return { event: { type: "PROMOTE", token: c.promote, ...base } };
    }

    const canaryRev = revisions[s.canary];
    if (canaryRev && canaryRev !== s.baseline[s.canary]) {
      const ready = readiness[s.canary];
      if (ready && !ready.ready) {
        return {
          note: `new revision ${canaryRev} of ${s.canary} is rolling out (${ready.detail}); waiting before starting`,
        };
      }
      return { event: { type: "NEW_REVISION", revision: canaryRev, ...base } };
    }

    if (atRest(s.phase)) {
      if (c.start && c.start !== s.tokens.start) {
        return { event: { type: "START", token: c.start, revision: canaryRev ?? "unknown", ...base } };
      }
      if (c.retry && c.retry !== s.tokens.retry && (s.phase === "Aborted" || s.phase === "RolledBack")) {
        return {
          event: { type: "RETRY", token: c.retry, revision: canaryRev ?? s.revision ?? "unknown", ...base },
        };
      }
      return {};
    }

    if (s.phase === "Paused") {
      if (s.pausedBy === "annotation" && !c.pause) {
        return {
          event: { type: "RESUME", ...(c.resume !== s.tokens.resume ? { token: c.resume } : {}), ...base },
        };
      }
      if (c.resume && c.resume !== s.tokens.resume)
        return { event: { type: "RESUME", token: c.resume, ...base } };
      if (s.pausedBy === "drift" && s.applied && samePair(s.applied, view.pair)) {
        return { event: { type: "RESUME", ...base } };
      }
      return { note: s.message };
    }

    // Progressing.
    if (c.pause) return { event: { type: "PAUSE", resumeToken: c.resume, ...base } };
    if (s.applied && !samePair(s.applied, view.pair)) {
      return {
        event: {
          type: "DRIFT",
          observed: byPath(view.pair),
          resumeToken: c.resume,
          ...base,
        },
      };
    }
    if (s.stepStartedAt === undefined) {
      if (view.accepted) return { event: { type: "ACCEPTED", ...base } };
      const waited = now - (s.weightsWrittenAt ?? now);
      if (waited >= policy.routeReadyTimeoutMs && !s.acceptWarned) {
        const reason = `weights ${fmtWeights(byPath(view.pair))} written ${Math.round(waited / 1000)} s ago are not accepted by every parent: ${view.acceptanceDetail ?? "unknown"}`;
        return { event: { type: "NOT_ACCEPTED", reason, ...base } };
      }
      return {
        quiet: true,
        note: `waiting for the route's parents to accept the weights: ${view.acceptanceDetail ?? ""}`,
        requeueAfterMs: Math.max(1000, policy.routeReadyTimeoutMs - waited),
      };
    }

    const due = s.analysisDueAt ?? s.stepStartedAt + policy.intervalMs;
    if (now < due) return { requeueAfterMs: due - now };
    const window = this.windows.get(policy.key);
    if (window && !window.contains(now)) {
      const next = window.nextOpen(now);
      return {
        note: `outside the rollout window "${policy.window}"; holding at ${s.canaryWeight}% until ${next ? new Date(next).toISOString() : "the window opens"}`,
        requeueAfterMs: next ? Math.max(1000, next - now) : 3_600_000,
      };
    }
    // How late this analysis starts against its deadline: the "no missed step deadlines" measure.
    this.deps.metrics.deadlineLateness.observe(Math.max(0, now - due) / 1000);
    const gate = this.deps.gates.gateFor(policy);
    const started = Date.now();
    const report = await gate.analyze({
      policyKey: policy.key,
      namespace: policy.namespace,
      stable: s.stable,
      canary: s.canary,
      canaryWeight: s.canaryWeight,
      stepStartedAt: s.stepStartedAt,
      now,
    });
    log.debug({ verdict: report.verdict, ms: Date.now() - started }, "analysis done");
    // Decide on the clock after the analysis: it may have taken a while.
    return {
      event: { type: "ANALYSIS", report, now: this.deps.clock.now(), revisions },
      resultAt: performance.now(),
    };
  }

  private requeueFor(_policy: RolloutPolicy, s: RolloutState, now: number): ReconcileResult | void {
    if (s.phase === "Progressing" && s.analysisDueAt !== undefined)
      return { requeueAfterMs: Math.max(0, s.analysisDueAt - now) };
    return undefined;
  }

  private recordAnalysis(key: string, report: AnalysisReport): void {
    const m = this.deps.metrics;
    m.analysis.inc({ policy: key, result: report.verdict });
    for (const c of report.checks) {
      if (c.outcome.kind === "value") m.checkValue.set({ policy: key, check: c.name }, c.outcome.value);
      else m.checkValue.remove({ policy: key, check: c.name });
      if (c.min !== undefined) m.checkBound.set({ policy: key, check: c.name, bound: "min" }, c.min);
      if (c.max !== undefined) m.checkBound.set({ policy: key, check: c.name, bound: "max" }, c.max);
    }
  }

  private afterWrite(
    policy: RolloutPolicy,
    view: RouteView,
    s: RolloutState,
    effects: Array<{ type: string; severity?: "Normal" | "Warning"; reason?: string; message?: string }>,
    log: Logger,
  ): void {
    const m = this.deps.metrics;
    this.summaries.set(policy.key, { policy: policy.key, phase: s.phase, canaryWeight: s.canaryWeight });
    for (const e of effects) {
      if (e.type !== "record" || !e.reason || !e.message || !e.severity) continue;
      m.decisions.inc({ policy: policy.key, reason: e.reason });
      if (e.reason === "StepAdvanced" || e.reason === "RolloutStarted" || e.reason === "RolloutRestarted")
        m.steps.inc({ policy: policy.key });
      if (e.reason === "Promoted") m.promotions.inc({ policy: policy.key });
      if (e.reason === "RolledBack") m.rollbacks.inc({ policy: policy.key });
      if (e.reason === "Aborted") m.aborts.inc({ policy: policy.key });
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
      const t = view.target;
      // Events are written after the state they describe, and never block the next decision.
      void this.deps.events.record(
        {
          apiVersion: t.apiVersion,
          kind: t.kind,
          namespace: t.metadata?.namespace ?? policy.namespace,
          name: t.metadata?.name ?? policy.target.name,
          uid: t.metadata?.uid,
        },
        e.severity,
        e.reason,
        e.message,
      );
    }
  }

  async stop(): Promise<void> {
    await this.queue.shutdown();
  }
}

/** Weight by JSON Pointer: how `applied` records what was written. */
function byPath(pair: readonly PairWeight[]): Record<string, number> {
  return Object.fromEntries(pair.map((w) => [w.path, w.weight]));
}

/** The pair's fields are exactly as last written. */
function samePair(applied: Record<string, number>, pair: readonly PairWeight[]): boolean {
  return pair.length === Object.keys(applied).length && pair.every((w) => applied[w.path] === w.weight);
}

function fmtWeights(w: Record<string, number>): string {
  return Object.entries(w)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}
