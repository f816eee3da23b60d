/**
 * The rollout controller: wires the policy registry, the work queue, the
 * analysis jobs and the reconcile together.
 *
 *   watch event / policy change / deadline / analysis done
 *     → queue key (deduplicated, one worker per key)
 *     → Reconciler.reconcile(key)        (reconcile.ts)
 *
 * Watch handlers and job completions only enqueue; they never decide.
 */
import type { Logger } from "pino";
import type { Clock } from "../clock.ts";
import { asksAbort } from "../contract.ts";
import type { EventSink } from "../kube/events.ts";
import { KubeApiError } from "../kube/errors.ts";
import type { KindName, KObject, ObjectRef } from "../kube/kinds.ts";
import { WorkQueue, type ReconcileResult } from "../kube/workqueue.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import type { RouterRegistry } from "../routers/index.ts";
import type { Metrics } from "../server/metrics.ts";
import { AnalysisJobs } from "./jobs.ts";
import { Reconciler, type GateProvider, type ObjectSource } from "./reconcile.ts";
import { PolicyRegistry } from "./registry.ts";
import { Reporter, type ReportListener } from "./report.ts";

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
  /**
   * Which policies this replica may manage at this instant (the fleet's
   * shards, src/fleet/); every policy when absent. Asked again right before
   * each reconcile, which runs inside `run` so the writer can ask once more
   * at the write itself (src/fleet/fence.ts).
   */
  fence?: {
    owns(policy: RolloutPolicy): boolean;
    run<T>(policy: RolloutPolicy, fn: () => T): T;
  };
  /** Hear every decision after it is written (notifications, the live page); never awaited. */
  listeners?: readonly ReportListener[];
}

export class RolloutController {
  private readonly registry = new PolicyRegistry();
  /** Every valid policy from the files, managed here or not (the registry holds those managed here). */
  private readonly all = new Map<string, RolloutPolicy>();
  private readonly reporter: Reporter;
  private readonly jobs: AnalysisJobs;
  private readonly reconciler: Reconciler;
  readonly queue: WorkQueue;
  /**
   * When an abort annotation was first seen on a policy's objects, until a reconcile that started after it ends:
   * the time to the abort written is rolloutd_abort_seconds (the daemon's own part of an abort's latency, apart
   * from the API server's and the watch's).
   */
  private readonly abortSeen = new Map<string, { at: number; seq: number }>();
  /** Aborts seen so far: orders one against a reconcile's start, which the clock cannot (both in one ms). */
  private abortSightings = 0;
  /** Policies whose running reconcile wrote an abort (told by the Reporter during the reconcile). */
  private readonly abortWritten = new Set<string>();

  constructor(private readonly deps: ControllerDeps) {
    const { log, metrics } = deps;
    // The controller hears its own decisions too: an abort written is what ends rolloutd_abort_seconds' clock.
    const aborts: ReportListener = {
      decided: (p, _s, announced) => {
        if (announced.some((a) => a.reason === "Aborted")) this.abortWritten.add(p.key);
      },
    };
    this.reporter = new Reporter(log, metrics, deps.events, [...(deps.listeners ?? []), aborts]);
    this.jobs = new AnalysisJobs({
      done: (key) => this.queue.add(key),
      discarded: (_key, reason) => metrics.analysisDiscarded.inc({ reason }),
      failed: (key, err) => {
        // analyze() never throws by contract; one that does is a bug to see, and the step is tried again.
        log.error({ policy: key, err: err instanceof Error ? err.message : String(err) }, "analysis failed");
        this.queue.addAfter(key, 5_000);
      },
    });
    this.reconciler = new Reconciler({
      registry: this.registry,
      objects: deps.objects,
      routers: deps.routers,
      gates: deps.gates,
      jobs: this.jobs,
      reporter: this.reporter,
      metrics,
      clock: deps.clock,
    });
    this.queue = new WorkQueue((key) => this.reconcileOwned(key), deps.clock, {
      // Reconciles mostly wait on the API server; 8 left a replica's rollouts that step in the same second queued
      // long enough to miss the abort target (npm run bench -- --fleet 3 --fleet-rollouts 1000: abort p99 289 ms
      // with 8, 12 ms with 32).
      workers: deps.workers ?? 32,
      onError: (key, err, retryIn) => {
        // A write the fence refused: the shard was lost mid-reconcile; the next pass lets the policy go.
        if (err instanceof Error && err.name === "ShardLostError") {
          log.info({ policy: key, err: err.message }, "write not sent: shard lost");
          return;
        }
        const conflict = err instanceof KubeApiError && err.isConflict;
        log[conflict ? "debug" : "error"](
          { policy: key, err: err instanceof Error ? err.message : String(err), retryInMs: retryIn },
          conflict ? "route changed while deciding (409); re-reading" : "reconcile failed",
        );
      },
      onProcessed: (_key, ms, outcome) => {
        metrics.reconcileTotal.inc({ result: outcome });
        metrics.reconcileDuration.observe(ms / 1000);
      },
    });
    metrics.observe(
      () => this.registry.summaries(),
      () => this.queue.length,
      () => this.jobs.running,
    );
  }

  /** Applies a policy change set: new and changed policies are reconciled, removed ones forgotten. */
  setPolicies(upserted: RolloutPolicy[], removed: string[]): void {
    for (const key of removed) {
      this.all.delete(key);
      this.abortSeen.delete(key);
      const gone = this.registry.remove(key);
      this.jobs.cancel(key);
      this.queue.drop(key);
      if (!gone) continue;
      // Another policy on the same route may own it now.
      for (const other of this.registry.sharingRoute(gone)) this.queue.add(other);
      this.forgetMetrics(key);
      this.reporter.forget(key);
      this.deps.log.info({ policy: key }, "policy removed; its route is left as it is");
    }
    for (const p of upserted) {
      // A changed policy may change the step's analysis: its running queries are of no use.
      this.jobs.cancel(p.key);
      this.all.set(p.key, p);
      if (!this.owned(p)) {
        if (this.registry.get(p.key)) this.release(p.key);
        continue;
      }
      if (this.refuseOutsideNamespaces(p)) continue;
      this.registry.upsert(p);
      this.queue.add(p.key);
    }
    this.deps.metrics.policies.set(this.registry.size);
  }

  /**
   * A policy whose namespace the daemon is not limited to is refused: it
   * would be neither read nor written, and saying so once beats a route
   * that silently never moves. Returns true when refused.
   */
  private refuseOutsideNamespaces(p: RolloutPolicy): boolean {
    const allowed = this.deps.namespaces;
    if (!allowed || allowed.includes(p.namespace)) return false;
    if (this.registry.remove(p.key)) this.queue.drop(p.key);
    this.deps.metrics.routeErrors.inc({ policy: p.key, reason: "NamespaceNotWatched" });
    this.reporter.refused(
      p,
      `policy ${p.key} refused: its route ${p.target.kind} ${p.namespace}/${p.target.name} is in namespace ` +
        `"${p.namespace}", outside the namespaces this rolloutd is limited to (${allowed.join(", ")}); ` +
        "nothing is read or written for it. Add the namespace to --namespaces (Helm: rbac.namespaces) or move the policy",
      { namespaces: allowed },
    );
    return true;
  }

  private owned(p: RolloutPolicy): boolean {
    return this.deps.fence ? this.deps.fence.owns(p) : true;
  }

  /** The fence: a policy this replica no longer owns is let go instead of reconciled. */
  private reconcileOwned(key: string): Promise<ReconcileResult | void> {
    const r = this.registry.get(key);
    if (r && !this.owned(r.policy)) {
      this.deps.log.debug({ policy: key }, "not reconciled: its shard is not held here now");
      this.release(key);
      return Promise.resolve();
    }
    const fence = this.deps.fence;
    return this.timeAbort(key, () =>
      fence && r ? fence.run(r.policy, () => this.reconciler.reconcile(key)) : this.reconciler.reconcile(key),
    );
  }

  /** Stops managing a policy here at once: its analysis is cancelled, its key dropped, its route untouched. */
  private release(key: string): void {
    this.abortSeen.delete(key);
    if (!this.registry.remove(key)) return;
    this.jobs.cancel(key);
    this.queue.drop(key);
    this.forgetMetrics(key);
    this.deps.metrics.policies.set(this.registry.size);
  }

  /** Policies whose metric series go at the end of this turn, all in one pass (see Metrics.forgetPolicies). */
  private forgetting: Set<string> | undefined;

  private forgetMetrics(key: string): void {
    if (this.forgetting) {
      this.forgetting.add(key);
      return;
    }
    const batch = (this.forgetting = new Set([key]));
    queueMicrotask(() => {
      this.forgetting = undefined;
      void this.deps.metrics.forgetPolicies(batch).catch(() => {});
    });
  }

  /**
   * The set of policies this replica may manage changed (the fleet gained or
   * lost shards): lost ones are let go before anything else happens, gained
   * ones are queued, to be read afresh from the route.
   */
  ownershipChanged(): void {
    const gained: RolloutPolicy[] = [];
    for (const p of this.all.values()) {
      const here = this.registry.get(p.key) !== undefined;
      const owned = this.owned(p);
      if (here && !owned) this.release(p.key);
      else if (!here && owned) gained.push(p);
    }
    for (const p of gained) {
      if (this.refuseOutsideNamespaces(p)) continue;
      this.registry.upsert(p);
      this.queue.add(p.key);
    }
    this.deps.metrics.policies.set(this.registry.size);
  }

  /**
   * Watch handler: maps a changed object to the policies that read it. Never decides anything; an object that
   * carries an abort is queued in the urgent lane, ahead of step work.
   */
  onObjectChange(ref: ObjectRef, obj?: KObject): void {
    const urgent = obj !== undefined && asksAbort(obj);
    for (const k of this.registry.dependentsOf(ref)) {
      if (urgent && !this.abortSeen.has(k))
        this.abortSeen.set(k, { at: this.deps.clock.now(), seq: ++this.abortSightings });
      this.queue.add(k, { urgent });
    }
  }

  private async timeAbort(key: string, reconcile: () => Promise<ReconcileResult | void>) {
    const startedAfter = this.abortSightings;
    this.abortWritten.delete(key);
    // A failed reconcile (a 409) keeps the clock running: its retry writes the abort.
    const result = await reconcile();
    const seen = this.abortSeen.get(key);
    // A reconcile that started before the abort was seen may have missed it: the re-run it causes settles it.
    if (seen !== undefined && seen.seq <= startedAfter) {
      this.abortSeen.delete(key);
      // Nothing to abort (the rollout was over already) stops the clock without a sample.
      if (this.abortWritten.has(key))
        this.deps.metrics.abortLatency.observe((this.deps.clock.now() - seen.at) / 1000);
    }
    this.abortWritten.delete(key);
    return result;
  }

  /** A watch has listed again after failing: every policy looks afresh, none waits for its next deadline. */
  onResync(_kind: KindName): void {
    for (const k of this.registry.keys()) this.queue.add(k);
  }

  /** Policies managed by this replica. */
  policyCount(): number {
    return this.registry.size;
  }

  /** Valid policies in the files, managed here or elsewhere in the fleet. */
  knownPolicyCount(): number {
    return this.all.size;
  }

  async stop(): Promise<void> {
    this.jobs.cancelAll();
    await this.queue.shutdown();
  }
}
