/**
 * Prometheus metrics of the daemon, on its own Registry (never the global
 * one), named after controller-runtime's conventions. Point-in-time gauges
 * (rollouts by phase, canary weight) are computed at scrape time from the
 * controller's view, so they cannot drift from it.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { PHASES, type Phase } from "../contract.ts";

export interface RolloutSummary {
  policy: string;
  phase: Phase;
  canaryWeight: number;
}

export interface WatchSync {
  kind: string;
  namespace?: string;
  synced: boolean;
  lists: number;
}

/**
 * How often the event-loop delay histogram samples (prom-client's default is
 * every 10 ms: a timer waking the process 100 times a second, which alone
 * cost 0.12 CPU-s per minute, more than all the rest of an idle daemon).
 * Sampled once a second, a stall is still recorded in full whenever it spans
 * a sample (every stall over 1 s does); shorter ones are caught in
 * proportion to their length, so the lag percentiles stay unbiased but rest
 * on 60 samples a minute instead of 6,000.
 */
const EVENT_LOOP_SAMPLE_MS = 1_000;

export class Metrics {
  readonly registry = new Registry();
  readonly reconcileTotal: Counter<"result">;
  readonly reconcileDuration: Histogram;
  readonly decisions: Counter<"policy" | "reason">;
  readonly steps: Counter<"policy">;
  readonly promotions: Counter<"policy">;
  readonly rollbacks: Counter<"policy">;
  readonly aborts: Counter<"policy">;
  readonly analysis: Counter<"policy" | "result">;
  readonly checkValue: Gauge<"policy" | "check">;
  readonly checkBound: Gauge<"policy" | "check" | "bound">;
  readonly policyErrors: Gauge;
  readonly policyLoadErrors: Counter;
  readonly policies: Gauge;
  readonly routeErrors: Counter<"policy" | "reason">;
  readonly queueDepth: Gauge;
  readonly resultToWrite: Histogram<"phase">;
  readonly deadlineLateness: Histogram;
  readonly analysisDiscarded: Counter<"reason">;
  readonly stateWriteRejected: Counter<"policy">;
  readonly leaseRequests: Counter<"verb">;
  readonly abortLatency: Histogram;
  private summaries: () => RolloutSummary[] = () => [];
  private depth: () => number = () => 0;
  private inFlight: () => number = () => 0;
  private watches: () => WatchSync[] = () => [];

  constructor(opts: { processMetrics?: boolean } = {}) {
    const r = [this.registry];
    if (opts.processMetrics !== false)
      collectDefaultMetrics({
        register: this.registry,
        prefix: "rolloutd_",
        eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
      });
    this.reconcileTotal = new Counter({
      name: "rolloutd_reconcile_total",
      help: "Reconciles by result (success, error, requeue).",
      labelNames: ["result"],
      registers: r,
    });
    this.reconcileDuration = new Histogram({
      name: "rolloutd_reconcile_duration_seconds",
      help: "Time to reconcile one policy, including analysis queries.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    this.decisions = new Counter({
      name: "rolloutd_decisions_total",
      help: "Rollout decisions by reason (the Event reason).",
      labelNames: ["policy", "reason"],
      registers: r,
    });
    this.steps = new Counter({
      name: "rolloutd_steps_total",
      help: "Weight steps written.",
      labelNames: ["policy"],
      registers: r,
    });
    this.promotions = new Counter({
      name: "rolloutd_promotions_total",
      help: "Canaries promoted to 100 %.",
      labelNames: ["policy"],
      registers: r,
    });
    this.rollbacks = new Counter({
      name: "rolloutd_rollbacks_total",
      help: "Rollbacks after a failed analysis.",
      labelNames: ["policy"],
      registers: r,
    });
    this.aborts = new Counter({
      name: "rolloutd_aborts_total",
      help: "Rollouts aborted by annotation.",
      labelNames: ["policy"],
      registers: r,
    });
    this.analysis = new Counter({
      name: "rolloutd_analysis_total",
      help: "Analyses by verdict (pass, fail, inconclusive, error).",
      labelNames: ["policy", "result"],
      registers: r,
    });
    this.checkValue = new Gauge({
      name: "rolloutd_check_value",
      help: "Last measured value of each check (absent when there was none).",
      labelNames: ["policy", "check"],
      registers: r,
    });
    this.checkBound = new Gauge({
      name: "rolloutd_check_bound",
      help: "Bounds of each check (bound=min|max), to plot values against them.",
      labelNames: ["policy", "check", "bound"],
      registers: r,
    });
    this.policyErrors = new Gauge({
      name: "rolloutd_policy_errors",
      help: "Problems found in the policy files at the last load.",
      registers: r,
    });
    this.policyLoadErrors = new Counter({
      name: "rolloutd_policy_load_errors_total",
      help: "Policy problems reported, across reloads.",
      registers: r,
    });
    this.policies = new Gauge({ name: "rolloutd_policies", help: "Valid policies loaded.", registers: r });
    this.routeErrors = new Counter({
      name: "rolloutd_route_errors_total",
      help: "Reconciles that could not read or write the route, by reason.",
      labelNames: ["policy", "reason"],
      registers: r,
    });
    this.queueDepth = new Gauge({
      name: "rolloutd_workqueue_depth",
      help: "Policies waiting in the work queue.",
      registers: r,
      collect: () => this.queueDepth.set(this.depth()),
    });

    this.resultToWrite = new Histogram({
      name: "rolloutd_analysis_result_to_write_seconds",
      help: "From an analysis result in hand to the resulting weights and state written, by resulting phase.",
      labelNames: ["phase"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: r,
    });

    this.deadlineLateness = new Histogram({
      name: "rolloutd_step_deadline_lateness_seconds",
      help: "How long after its deadline (stepStartedAt + interval) a step's analysis started.",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: r,
    });

    this.analysisDiscarded = new Counter({
      name: "rolloutd_analysis_discarded_total",
      help:
        "Analyses whose result was not used: cancelled (the rollout moved on while the queries ran), " +
        "stale (the result arrived for a step that no longer exists) or shed (an in-step check skipped " +
        "while too many analyses were running).",
      labelNames: ["reason"],
      registers: r,
    });
    this.stateWriteRejected = new Counter({
      name: "rolloutd_state_write_rejected_total",
      help: "Writes of weights and state rejected as invalid (422); the weights were then written alone.",
      labelNames: ["policy"],
      registers: r,
    });
    this.abortLatency = new Histogram({
      name: "rolloutd_abort_seconds",
      help:
        "From the watch event that brought an abort annotation to the weights at 100 % stable written and " +
        "answered, in this replica.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    });
    this.leaseRequests = new Counter({
      name: "rolloutd_lease_requests_total",
      help: "Requests on the fleet's Leases by verb (list, create, update, watch); at rest, one update per retry period.",
      labelNames: ["verb"],
      registers: r,
    });
    const inFlight = () => this.inFlight();
    new Gauge({
      name: "rolloutd_analysis_in_flight",
      help: "Analyses whose queries are running now.",
      registers: r,
      collect() {
        this.set(inFlight());
      },
    });
    const watches = () => this.watches();
    new Gauge({
      name: "rolloutd_watch_synced",
      help: "1 when the watch of a kind (in a namespace, when limited) is synced, 0 while it is blind.",
      labelNames: ["kind", "namespace"],
      registers: r,
      collect() {
        this.reset();
        for (const w of watches()) this.set({ kind: w.kind, namespace: w.namespace ?? "" }, w.synced ? 1 : 0);
      },
    });
    // A counter read from the watchers' own tally: each relist (after a failure, or a 410 on an expired
    // resourceVersion) is one more; a steady climb means watches keep expiring.
    new Counter({
      name: "rolloutd_watch_lists_total",
      help: "Full lists made by the watch of a kind (in a namespace, when limited), the first one included.",
      labelNames: ["kind", "namespace"],
      registers: r,
      collect() {
        this.reset();
        for (const w of watches()) this.inc({ kind: w.kind, namespace: w.namespace ?? "" }, w.lists);
      },
    });

    const summaries = () => this.summaries();
    new Gauge({
      name: "rolloutd_rollouts",
      help: "Policies by rollout phase.",
      labelNames: ["phase"],
      registers: r,
      collect() {
        const counts = new Map<string, number>(PHASES.map((p) => [p, 0]));
        for (const s of summaries()) counts.set(s.phase, (counts.get(s.phase) ?? 0) + 1);
        for (const [phase, n] of counts) this.set({ phase }, n);
      },
    });
    new Gauge({
      name: "rolloutd_canary_weight_percent",
      help: "Canary share of the pair's traffic, percent, as last written.",
      labelNames: ["policy"],
      registers: r,
      collect() {
        this.reset();
        for (const s of summaries()) this.set({ policy: s.policy }, s.canaryWeight);
      },
    });
  }

  /**
   * Removes every series of these policies. Reading a metric's series costs
   * as much as it has series, so a fleet losing half of 10,000 policies must
   * read each metric once, not once per policy (that was quadratic: about
   * 80 ms of CPU for 1,000 policies, minutes for 10,000, with the event loop
   * blocked and aborts waiting).
   */
  async forgetPolicies(policies: Iterable<string>): Promise<void> {
    const gone = new Set(policies);
    if (gone.size === 0) return;
    const perPolicy = [
      this.decisions,
      this.steps,
      this.promotions,
      this.rollbacks,
      this.aborts,
      this.analysis,
      this.checkValue,
      this.checkBound,
      this.routeErrors,
      this.stateWriteRejected,
    ] as const;
    for (const metric of perPolicy) {
      const current = await metric.get();
      for (const v of current.values) {
        if (typeof v.labels.policy === "string" && gone.has(v.labels.policy))
          (metric as Counter<string>).remove(v.labels as Record<string, string>);
      }
    }
  }

  /** The controller registers where point-in-time values come from. */
  observe(summaries: () => RolloutSummary[], depth: () => number, inFlight: () => number): void {
    this.summaries = summaries;
    this.depth = depth;
    this.inFlight = inFlight;
  }

  /** The cluster cache registers its watches' sync state. */
  observeWatches(watches: () => WatchSync[]): void {
    this.watches = watches;
  }
}
