/**
 * One level-based pass over one policy:
 *
 *   read (caches) → derive (pure: facts → one event) → decide (pure: the
 *   machine) → write (one resourceVersion-guarded patch of weights and state)
 *   → report (Event, log, metrics) → requeue at the next deadline.
 *
 * A pass awaits at most one API write. Analyses run as jobs beside it
 * (jobs.ts) and come back as facts, so an abort, a pause or a new revision
 * is decided and written at once whatever Prometheus is doing. Nothing is
 * remembered between passes that the cluster does not also hold: the
 * persisted state on the route is the truth.
 */
import type { Logger } from "pino";
import type { AnalysisGate } from "../analysis/types.ts";
import type { Clock } from "../clock.ts";
import {
  atRest,
  decodeState,
  encodeState,
  readControls,
  StateDecodeError,
  type Controls,
  type RolloutState,
} from "../contract.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import type { CacheFreshness } from "../kube/cache.ts";
import { apiVersionOf, KINDS, type KindName, type KObject, type ObjectRef } from "../kube/kinds.ts";
import type { ReconcileResult } from "../kube/workqueue.ts";
import { derive, stepKey, type Facts } from "../machine/derive.ts";
import { stageLabel } from "../routers/stagerule.ts";
import { decide, type Effect, type Settings } from "../machine/machine.ts";
import { initialState } from "../machine/state.ts";
import {
  allSteps,
  cadenceOf,
  DEFAULT_HOLD_LIMIT,
  previewRouteLabel,
  type RolloutPolicy,
} from "../policy/types.ts";
import { needsAcceptance, type RouterRegistry } from "../routers/index.ts";
import { RouteError, type PairWeight, type RouteView, type TrafficRouter } from "../routers/types.ts";
import type { Metrics } from "../server/metrics.ts";
import type { AnalysisJobs } from "./jobs.ts";
import { rolledOut, templateRevision } from "./observe.ts";
import type { PolicyRecord, PolicyRegistry } from "./registry.ts";
import type { EventTarget, Reporter } from "./report.ts";
import { TokenBucket } from "./budget.ts";
import { StateWriter } from "./write.ts";
import { KubeApiError } from "../kube/errors.ts";
import { PreviewRoutes } from "./preview.ts";
import { keepStageRule, withStageRule } from "./stages.ts";

export interface ObjectSource {
  get(kind: KindName, namespace: string, name: string): KObject | undefined;
  /** How far the watch cache of a kind can be trusted: a write is never based on a stale one. */
  freshness(kind: KindName, namespace: string): CacheFreshness;
}

export interface GateProvider {
  gateFor(policy: RolloutPolicy): AnalysisGate;
}

export interface ReconcileDeps {
  registry: PolicyRegistry;
  objects: ObjectSource;
  routers: RouterRegistry;
  gates: GateProvider;
  jobs: AnalysisJobs;
  reporter: Reporter;
  metrics: Metrics;
  clock: Clock;
}

/** How long to wait before looking again at a policy whose route is missing (watches also wake it). */
const MISSING_RETRY_MS = 30_000;
/** A stale cache is looked at again this soon; a resync also wakes every policy. */
const STALE_RETRY_MS = 2_000;
/** After a write the API server refused as invalid, look again this late (the route's own edits wake it sooner). */
const REJECTED_RETRY_MS = 30_000;
/**
 * In-step evaluations start at most IN_STEP_PER_SECOND a second (a token
 * bucket) and only while fewer analyses than MAX_IN_STEP_IN_FLIGHT are
 * running: that bounds the Prometheus load they add, whatever the fleet's
 * size. A step's own analysis at its deadline always runs.
 */
const MAX_IN_STEP_IN_FLIGHT = 64;
const IN_STEP_PER_SECOND = 50;

export function settingsOf(p: RolloutPolicy): Settings {
  return {
    steps: allSteps(p),
    ...(p.stages ? { stageLabels: p.stages.map(stageLabel) } : {}),
    ...(p.previewRoute ? { stageLabels: [previewRouteLabel(p.previewRoute)] } : {}),
    intervalMs: p.intervalMs,
    failureLimit: p.analysis?.failureLimit ?? 1,
    onNoData: p.analysis?.onNoData ?? "hold",
    noDataLimit: p.analysis?.noDataLimit ?? 3,
    onError: p.analysis?.onError ?? { action: "hold", limit: 5 },
    needsAcceptance: needsAcceptance(p.target.kind),
    holdAction: (p.holdLimit ?? DEFAULT_HOLD_LIMIT).action,
  };
}

/** The analysis window the state is in, if any: a job for any other window is of no use. */
function currentStep(s: RolloutState | undefined): string | undefined {
  return s?.phase === "Progressing" && s.stepStartedAt !== undefined ? stepKey(s) : undefined;
}

export class Reconciler {
  private readonly inStepBudget = new TokenBucket(IN_STEP_PER_SECOND, IN_STEP_PER_SECOND);
  private readonly writer: StateWriter;
  private readonly previews: PreviewRoutes;

  constructor(private readonly d: ReconcileDeps) {
    this.writer = new StateWriter(d);
    this.previews = new PreviewRoutes(d.routers);
  }

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const record = this.d.registry.get(key);
    if (!record) return;
    const policy = record.policy;
    const { reporter } = this.d;

    const owner = this.d.registry.ownerOf(policy);
    if (owner !== key) {
      this.d.metrics.routeErrors.inc({ policy: key, reason: "Conflict" });
      reporter.problem(
        record,
        "error",
        `policy ${owner} already manages ${policy.target.kind} ${policy.namespace}/${policy.target.name}` +
          (policy.previewRoute
            ? ` or ${policy.previewRoute.kind} ${policy.namespace}/${policy.previewRoute.name}`
            : "") +
          "; this policy is ignored until that changes",
        {},
        { reason: "PolicyConflict", target: this.named(policy) },
      );
      return;
    }

    const targetFreshness = this.d.objects.freshness(policy.target.kind, policy.namespace);
    if (targetFreshness === "unavailable") {
      reporter.problem(
        record,
        "warn",
        `${policy.target.kind} is not served by this cluster (CRD missing or not allowed); waiting`,
      );
      return { requeueAfterMs: MISSING_RETRY_MS };
    }
    if (targetFreshness === "stale") {
      // A route that seems missing from a cache being relisted is not missing: decide nothing on it.
      reporter.problem(
        record,
        "warn",
        `the watch of ${policy.target.kind} is re-establishing; not deciding on a stale cache`,
      );
      return { requeueAfterMs: STALE_RETRY_MS };
    }
    const router = this.d.routers.for(policy.target.kind);
    let view: RouteView;
    try {
      view = router.read(policy, { stable: policy.stable, canary: policy.canary });
    } catch (err) {
      if (!(err instanceof RouteError)) throw err;
      this.d.registry.setRead(key, err.dependsOn);
      this.d.metrics.routeErrors.inc({ policy: key, reason: err.missing ? "NotFound" : "Invalid" });
      const inFlight = record.last && !atRest(record.last.phase) ? record.last : undefined;
      if (err.missing && inFlight) {
        // The object holding the rollout's state is gone mid-rollout: remember it, so a re-created route
        // does not silently take the revision under test as its baseline.
        record.interrupted = { at: this.d.clock.now(), state: inFlight };
      }
      const reason = err.missing ? "RouteNotFound" : "RouteInvalid";
      const message = `${err.message}${record.interrupted ? ` (a rollout was in flight at step ${record.interrupted.state.stepIndex + 1})` : ""}; will retry when it changes`;
      reporter.problem(record, "warn", message, {}, { reason, target: this.named(policy) });
      await this.writer.recordStuck(policy, reason, err.message);
      return { requeueAfterMs: MISSING_RETRY_MS };
    }
    this.d.registry.setRead(key, view.dependsOn);

    // A write based on a cache known to be behind would be refused (409) at best and wrong at worst.
    const stale = this.staleKinds(policy, view.dependsOn);
    if (stale.length) {
      reporter.problem(
        record,
        "warn",
        `the watch of ${stale.join(", ")} is re-establishing; not deciding on a stale cache`,
      );
      return { requeueAfterMs: STALE_RETRY_MS };
    }

    const log = reporter.forPolicy(policy);
    const state = this.persisted(policy, view, log);
    if (state) {
      record.last = state;
      record.interrupted = undefined;
    }
    // The route can be used again: whatever kept the rollout stuck is over. The next write clears it (below).
    const wasStuck = state?.stuck !== undefined;
    if (state && wasStuck) delete state.stuck;
    this.d.jobs.retain(key, currentStep(state));
    const now = this.d.clock.now();
    const observed = this.deployments(policy);
    const controls = readControls(view.target);

    if (!state) return this.adopt(record, router, view, observed.revisions, controls, now, log);

    // Blue/green's preview route follows the state (controller/preview.ts); an abort to decide goes first.
    let preview: { accepted: boolean; detail?: string } = { accepted: true };
    if (state.previewRoute && !(controls.abort && state.phase !== "Aborted")) {
      const needed = state.previewRoute.canaryPercent === 100;
      try {
        const up = await this.previews.upkeep(policy, view.weightsRef, state);
        if (up.kind === "written") return;
        if (needed) preview = up;
      } catch (caught) {
        // A refused write (not a stale one: that is retried) must not stop the rollout's own decisions.
        const err =
          caught instanceof KubeApiError && !caught.isConflict
            ? new RouteError(
                `preview route ${state.previewRoute.name}: the API server refused the write: ${caught.message}`,
              )
            : caught;
        if (!(err instanceof RouteError)) throw err;
        this.previewProblem(record, err);
        if (needed) preview = { accepted: false, detail: err.message };
      }
    }

    const facts: Facts = {
      controls,
      revisions: observed.revisions,
      readiness: observed.readiness,
      pair: view.pair,
      accepted: view.accepted && preview.accepted,
      ...(view.acceptanceDetail !== undefined || preview.detail !== undefined
        ? { acceptanceDetail: [view.acceptanceDetail, preview.detail].filter(Boolean).join("; ") }
        : {}),
      ...(record.window && policy.window
        ? {
            window: {
              open: record.window.contains(now),
              nextOpen: record.window.nextOpen(now) ?? undefined,
              expression: policy.window,
            },
          }
        : {}),
      analysis: this.d.jobs.slot(key),
      ...this.earlySchedule(record, state),
    };
    const derived = derive(state, facts, now, {
      intervalMs: policy.intervalMs,
      routeReadyTimeoutMs: policy.routeReadyTimeoutMs,
      holdAfterMs: (policy.holdLimit ?? DEFAULT_HOLD_LIMIT).afterMs,
    });

    if (wasStuck && derived.kind !== "event") {
      await router.write(view, undefined, encodeState({ ...state, updatedAt: now }));
      return { requeueAfterMs: 0 };
    }
    // A pass that decides nothing still keeps the stage's rule what the state says.
    if (derived.kind !== "event" && (await keepStageRule(reporter, record, router, view, state, log)))
      return { requeueAfterMs: 0 };
    if (derived.kind === "wait") {
      record.summary = { policy: key, phase: state.phase, canaryWeight: state.canaryWeight };
      reporter.observed(record, state);
      if (derived.note) reporter.problem(record, derived.quiet ? "debug" : "info", derived.note);
      return derived.requeueAfterMs !== undefined ? { requeueAfterMs: derived.requeueAfterMs } : undefined;
    }
    if (derived.kind === "analyze") {
      const early = derived.step !== stepKey(state);
      if (
        early &&
        record.early &&
        (this.d.jobs.running >= MAX_IN_STEP_IN_FLIGHT || !this.inStepBudget.take(now))
      ) {
        // In-step checks are extra evidence, not the step's verdict: under load they are shed, never queued.
        record.early.at = now + cadenceOf(policy);
        this.d.metrics.analysisDiscarded.inc({ reason: "shed" });
        return { requeueAfterMs: Math.max(0, record.early.at - now) };
      }
      this.startAnalysis(record, state, derived.step, derived.dueAt, now, log);
      return;
    }

    const event = derived.event;
    // A result is used once, whatever the machine makes of it.
    const resultAt =
      event.type === "ANALYSIS" && facts.analysis.kind === "done"
        ? this.d.jobs.take(key, facts.analysis.step)
        : undefined;
    if (event.type === "ANALYSIS" && event.early && record.early) {
      record.early.at = now + cadenceOf(policy);
    }
    const decision = decide(settingsOf(policy), state, event);
    if (!decision.changed) {
      if (event.type === "ANALYSIS") this.d.reporter.analysis(key, event.report);
      if (await keepStageRule(reporter, record, router, view, state, log)) return { requeueAfterMs: 0 };
      return this.d.clock.now() < (state.analysisDueAt ?? 0) ? { requeueAfterMs: 0 } : requeueFor(state, now);
    }
    let staged: { state: RolloutState; ops: JsonPatchOp[] };
    try {
      staged = withStageRule(policy, router, view, state, { ...decision.state, policy: key });
    } catch (err) {
      // Only a stage's start can fail here (removal never does), so an abort is never held up by it.
      if (!(err instanceof RouteError)) throw err;
      this.d.metrics.routeErrors.inc({ policy: key, reason: "Invalid" });
      reporter.problem(record, "warn", `${err.message}; will retry when it changes`);
      return { requeueAfterMs: MISSING_RETRY_MS };
    }
    let next: RolloutState;
    try {
      next = this.previews.record(policy, view.weightsRef, state, staged.state);
    } catch (err) {
      // Only a rollout's start needs its preview route: it waits for the route, nothing is written.
      if (!(err instanceof RouteError)) throw err;
      this.previewProblem(record, err);
      return { requeueAfterMs: MISSING_RETRY_MS };
    }
    let pair: PairWeight[] | undefined;
    const setW = decision.effects.find((e) => e.type === "setWeights");
    if (setW) {
      pair = router.plan(view, { stable: setW.stable, canary: setW.canary }, setW.canaryPercent);
      next.applied = pair;
    }
    // Cancel before writing: nothing the old step's queries say can matter any more.
    this.d.jobs.retain(key, currentStep(next));
    const written = await this.writer.write(policy, router, view, pair, next, log, staged.ops);
    if (event.type === "ANALYSIS") {
      reporter.analysis(key, event.report);
      if (resultAt !== undefined) {
        const ms = performance.now() - resultAt;
        this.d.metrics.resultToWrite.observe({ phase: next.phase }, ms / 1000);
        log.debug(
          { resultToWriteMs: Math.round(ms * 10) / 10, phase: next.phase },
          "analysis result written",
        );
      }
    }
    reporter.decided(record, view.target, next, decision.effects, log);
    if (written === "weightsOnly") return { requeueAfterMs: REJECTED_RETRY_MS };
    // A stage's object of its own is created, moved or deleted by the passes after this one.
    if (router.stageObject && (next.stageRule ?? state.stageRule)) return { requeueAfterMs: 0 };
    return requeueFor(next, this.d.clock.now());
  }

  /**
   * A route rolloutd has no record on yet: write its record and nothing else
   * (traffic moves only with a rollout). A route that was deleted mid-rollout
   * and is back does not take the revision under test as its baseline.
   */
  private async adopt(
    record: PolicyRecord,
    router: TrafficRouter,
    view: RouteView,
    revisions: Record<string, string>,
    controls: Controls,
    now: number,
    log: Logger,
  ): Promise<ReconcileResult | void> {
    const policy = record.policy;
    const key = policy.key;
    const interrupted = record.interrupted?.state;
    const roles = interrupted ?? { stable: policy.stable, canary: policy.canary };
    const baseline = { ...revisions };
    // A rollout cut short by the route's deletion: the revision it was testing is not taken as proven. Its
    // canary gets no baseline, so the revision it runs now starts a rollout from the first step.
    if (interrupted) delete baseline[interrupted.canary];
    const fresh: RolloutState = {
      ...initialState({ stable: roles.stable, canary: roles.canary, baseline, now }),
      policy: key,
      // One-shot controls already on the route when we adopt it are history, not requests.
      tokens: {
        start: controls.start,
        retry: controls.retry,
        resume: controls.resume,
        promote: controls.promote,
      },
    };
    // Adoption writes rolloutd's own record and nothing else: traffic moves only with a rollout.
    await router.write(view, undefined, encodeState(fresh));
    const announced: Effect[] = [
      {
        type: "record",
        severity: "Normal",
        reason: "Adopted",
        message: `rolloutd manages ${policy.stable}/${policy.canary} weights of this route (policy ${key})`,
      },
    ];
    if (interrupted) {
      announced.push({
        type: "record",
        severity: "Warning",
        reason: "RolloutInterrupted",
        message:
          `the route was deleted during the rollout of ${interrupted.canary} ${interrupted.revision ?? ""} at step ` +
          `${interrupted.stepIndex + 1} (${interrupted.canaryWeight}%); it is back, and that revision is rolled out again from the first step ` +
          "rather than taken as the baseline",
      });
    }
    record.interrupted = undefined;
    record.last = fresh;
    this.d.reporter.decided(record, view.target, fresh, announced, log);
    return interrupted ? { requeueAfterMs: 0 } : undefined;
  }

  /**
   * When the next in-step evaluation of the current step is due. The cadence
   * lives in memory only: persisting it would cost a write per evaluation,
   * and after a restart evaluating at once is what we want anyway.
   */
  private earlySchedule(record: PolicyRecord, s: RolloutState): Pick<Facts, "nextEarlyAt"> {
    const cadence = cadenceOf(record.policy);
    const step = currentStep(s);
    if (!cadence || step === undefined || s.stepStartedAt === undefined) {
      record.early = undefined;
      return {};
    }
    if (record.early?.step !== step) record.early = { step, at: s.stepStartedAt + cadence };
    return { nextEarlyAt: record.early.at };
  }

  private previewProblem(record: PolicyRecord, err: RouteError): void {
    this.d.metrics.routeErrors.inc({
      policy: record.policy.key,
      reason: err.missing ? "NotFound" : "Invalid",
    });
    this.d.reporter.problem(
      record,
      "warn",
      `${err.message}; will retry when it changes`,
      {},
      {
        reason: err.missing ? "PreviewRouteNotFound" : "PreviewRouteInvalid",
        target: this.named(record.policy),
      },
    );
  }

  /** The object the policy names, for an Event about it: with its UID when it exists, so Events follow that object. */
  private named(p: RolloutPolicy): EventTarget {
    const k = KINDS[p.target.kind];
    const uid = this.d.objects.get(p.target.kind, p.namespace, p.target.name)?.metadata?.uid;
    return {
      apiVersion: apiVersionOf(k),
      kind: k.kind,
      metadata: { namespace: p.namespace, name: p.target.name, ...(uid ? { uid } : {}) },
    };
  }

  /** Kinds this policy read whose watch is re-establishing. */
  private staleKinds(policy: RolloutPolicy, read: readonly ObjectRef[]): string[] {
    // The Deployments are read too, for revisions.
    const kinds = new Map<KindName, string>([["Deployment", policy.namespace]]);
    for (const r of read) kinds.set(r.kind, r.namespace);
    const out: string[] = [];
    for (const [kind, ns] of kinds) if (this.d.objects.freshness(kind, ns) === "stale") out.push(kind);
    return out;
  }

  private persisted(policy: RolloutPolicy, view: RouteView, log: Logger): RolloutState | undefined {
    if (!view.stateAnnotation) return undefined;
    try {
      const state = decodeState(view.stateAnnotation);
      const pair = new Set([policy.stable, policy.canary]);
      if (!pair.has(state.stable) || !pair.has(state.canary) || state.stable === state.canary) {
        log.warn(
          { stable: state.stable, canary: state.canary },
          "persisted state names other backends than the policy; adopting afresh",
        );
        return undefined;
      }
      return state;
    } catch (err) {
      if (!(err instanceof StateDecodeError)) throw err;
      log.warn({ err: err.message }, "persisted state unreadable; adopting afresh");
      return undefined;
    }
  }

  private deployments(policy: RolloutPolicy): Pick<Facts, "revisions" | "readiness"> {
    const revisions: Facts["revisions"] = {};
    const readiness: Facts["readiness"] = {};
    for (const backend of [policy.stable, policy.canary]) {
      const name = policy.deployments[backend] ?? backend;
      const dep = this.d.objects.get("Deployment", policy.namespace, name);
      if (!dep) continue;
      const rev = templateRevision(dep);
      if (rev) revisions[backend] = rev;
      readiness[backend] = rolledOut(dep);
    }
    return { revisions, readiness };
  }

  private startAnalysis(
    record: PolicyRecord,
    s: RolloutState,
    step: string,
    dueAt: number,
    now: number,
    log: Logger,
  ): void {
    const policy = record.policy;
    const gate = this.d.gates.gateFor(policy);
    // How late a step's analysis starts against its deadline: the "no missed step deadlines" measure.
    if (step === stepKey(s)) this.d.metrics.deadlineLateness.observe(Math.max(0, now - dueAt) / 1000);
    const stepStartedAt = s.stepStartedAt ?? now;
    this.d.jobs.start(policy.key, step, async (signal) => {
      const started = performance.now();
      const report = await gate.analyze({
        policyKey: policy.key,
        namespace: policy.namespace,
        stable: s.stable,
        canary: s.canary,
        canaryWeight: s.canaryWeight,
        stepStartedAt,
        now,
        signal,
      });
      log.debug({ verdict: report.verdict, ms: Math.round(performance.now() - started) }, "analysis done");
      return report;
    });
  }
}

function requeueFor(s: RolloutState, now: number): ReconcileResult | void {
  if (s.phase === "Progressing" && s.analysisDueAt !== undefined)
    return { requeueAfterMs: Math.max(0, s.analysisDueAt - now) };
  return undefined;
}
