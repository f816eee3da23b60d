/**
 * The daemon's in-memory view of its rollouts for the live page: what the
 * Reporter tells (decisions, observed states, Events, problems), kept per
 * policy with a bounded history of weights, check values and Events. It is
 * a courtesy view, rebuilt from the persisted states after a restart (every
 * policy is observed on its first pass); the cluster remains the truth.
 */
import { describeState, type Phase, type RecordedCheck, type RolloutState } from "../contract.ts";
import type { Announcement, Level, ReportListener } from "../controller/report.ts";
import { allSteps, type RolloutPolicy } from "../policy/types.ts";

export interface BoardEvent {
  at: number;
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export interface RolloutCard {
  policy: string;
  route: { kind: string; namespace: string; name: string };
  phase: Phase;
  /** 1-based; 0 when no step is active. */
  step: number;
  steps: number[];
  canaryWeight: number;
  stable: string;
  canary: string;
  revision?: string;
  message: string;
  since: number;
  updatedAt: number;
  abort?: { reason: string; at: number };
  lastAnalysis?: { at: number; verdict: string; summary: string; checks: RecordedCheck[] };
  /** Time, canary weight, time, canary weight…: a point after each change, flat (8 bytes a number). */
  weights: number[];
  /** Check name → time, value, time, value… per analysis; NaN where there was no value (null in JSON). */
  values: Record<string, number[]>;
  bounds: Record<string, { min?: number; max?: number }>;
  events: BoardEvent[];
  /** What keeps the rollout from moving, while it persists. */
  problem?: { level: Level; message: string; at: number };
}

export type BoardUpdate = { type: "rollout"; card: RolloutCard } | { type: "removed"; policy: string };

export interface BoardLimits {
  rollouts: number;
  points: number;
  events: number;
}

const DEFAULT_LIMITS: BoardLimits = { rollouts: 2_000, points: 120, events: 30 };

function push<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

/** Appends the point (t, v) to a flat series, keeping at most `max` points. */
function pushPoint(series: number[], t: number, v: number, max: number): void {
  series.push(t, v);
  if (series.length > 2 * max) series.splice(0, series.length - 2 * max);
}

export class RolloutBoard implements ReportListener {
  private readonly cards = new Map<string, RolloutCard>();
  private readonly subscribers = new Set<(u: BoardUpdate) => void>();
  private readonly limits: BoardLimits;

  constructor(
    private readonly now: () => number,
    limits: Partial<BoardLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  list(): RolloutCard[] {
    return [...this.cards.values()].sort((a, b) => a.policy.localeCompare(b.policy));
  }

  get(policy: string): RolloutCard | undefined {
    return this.cards.get(policy);
  }

  /** Calls `fn` for every change until the returned function is called. */
  subscribe(fn: (u: BoardUpdate) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  decided(p: RolloutPolicy, s: RolloutState, _announced: readonly Announcement[]): void {
    const card = this.apply(p, s);
    card.problem = undefined;
    this.publish(card);
  }

  observed(p: RolloutPolicy, s: RolloutState): void {
    const known = this.cards.get(p.key);
    if (known && known.updatedAt === s.updatedAt) return;
    this.publish(this.apply(p, s));
  }

  event(p: RolloutPolicy, severity: "Normal" | "Warning", reason: string, message: string): void {
    const card = this.cards.get(p.key);
    if (!card) return;
    push(card.events, { at: this.now(), type: severity, reason, message }, this.limits.events);
    this.publish(card);
  }

  problem(p: RolloutPolicy, level: Level, message: string): void {
    const card = this.cards.get(p.key);
    if (!card || level === "debug") return;
    card.problem = { level, message, at: this.now() };
    this.publish(card);
  }

  forget(key: string): void {
    if (!this.cards.delete(key)) return;
    for (const fn of this.subscribers) fn({ type: "removed", policy: key });
  }

  private apply(p: RolloutPolicy, s: RolloutState): RolloutCard {
    let card = this.cards.get(p.key);
    if (!card) {
      card = {
        policy: p.key,
        route: { kind: p.target.kind, namespace: p.namespace, name: p.target.name },
        phase: s.phase,
        step: 0,
        steps: allSteps(p),
        canaryWeight: s.canaryWeight,
        stable: s.stable,
        canary: s.canary,
        message: "",
        since: s.since,
        updatedAt: s.updatedAt,
        weights: [],
        values: {},
        bounds: {},
        events: [],
      };
      this.cards.set(p.key, card);
      if (this.cards.size > this.limits.rollouts) this.evictOldest();
    }
    card.steps = allSteps(p);
    card.phase = s.phase;
    card.step = s.stepIndex >= 0 ? s.stepIndex + 1 : 0;
    card.stable = s.stable;
    card.canary = s.canary;
    card.revision = s.revision;
    card.message = describeState(s);
    card.since = s.since;
    card.updatedAt = s.updatedAt;
    card.abort = s.abort;
    if (card.weights.length === 0 || card.weights.at(-1) !== s.canaryWeight)
      pushPoint(card.weights, s.updatedAt, s.canaryWeight, this.limits.points);
    card.canaryWeight = s.canaryWeight;
    const a = s.lastAnalysis;
    if (a && a.at !== card.lastAnalysis?.at) {
      for (const c of a.checks) {
        const series = (card.values[c.name] ??= []);
        pushPoint(
          series,
          a.at,
          c.value !== null && Number.isFinite(c.value) ? c.value : Number.NaN,
          this.limits.points,
        );
        card.bounds[c.name] = {
          ...(c.min !== undefined ? { min: c.min } : {}),
          ...(c.max !== undefined ? { max: c.max } : {}),
        };
      }
    }
    card.lastAnalysis = a
      ? { at: a.at, verdict: a.verdict, summary: a.summary, checks: a.checks }
      : undefined;
    return card;
  }

  private evictOldest(): void {
    let oldest: RolloutCard | undefined;
    for (const c of this.cards.values()) if (!oldest || c.updatedAt < oldest.updatedAt) oldest = c;
    if (oldest) this.forget(oldest.policy);
  }

  private publish(card: RolloutCard): void {
    for (const fn of this.subscribers) fn({ type: "rollout", card });
  }
}
