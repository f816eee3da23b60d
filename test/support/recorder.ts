/**
 * Test support: records every version of one weights object, as a watch sees
 * it, with the persisted rollout state found on it. Unlike a bare Watch it
 * survives the client's 30 s inactivity timeout and server-side closes by
 * re-watching from the last resourceVersion, so a quiet object cannot end the
 * record early; a real gap (410 Gone) is counted, never hidden.
 *
 * Also the checks every restart/benchmark scenario shares: whether weights
 * are valid for their kind, and the canary's share of the pair.
 */
import { Watch } from "@kubernetes/client-node";
import { KINDS, type KObject } from "../../src/kube/kinds.ts";
import type { AppliedWeight, RolloutState } from "../../src/contract.ts";
import { pointerGet } from "../../src/routers/locations.ts";
import type { Cluster } from "./cluster.ts";
import { stateOf, type RouteFamily } from "./routes.ts";

export interface Observation {
  /** Date.now() when the watch delivered it. */
  at: number;
  resourceVersion: string;
  weights: Record<string, number>;
  state: RolloutState | undefined;
  /** The object as delivered, for checks by JSON Pointer (state.applied). */
  object: KObject;
}

export class WeightsRecorder {
  readonly observations: Observation[] = [];
  /** Times the record may have missed versions (watch expired with 410 Gone). */
  gaps = 0;
  /** Times the watch ended and was resumed from the last resourceVersion. */
  resumes = 0;
  private lastRv = "";
  private req: { abort(): void } | undefined;
  private closed = false;
  private readonly listeners = new Set<(o: Observation) => void>();

  constructor(
    private readonly c: Cluster,
    readonly fam: RouteFamily,
    readonly ns: string,
    readonly name: string,
  ) {}

  /** Resolves once the watch is established (the current version is delivered as its first event). */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const k = KINDS[this.fam.weightsKind];
    const watch = new Watch(this.c.kc);
    try {
      this.req = await watch.watch(
        `/apis/${k.group}/${k.version}/namespaces/${this.ns}/${k.plural}`,
        {
          fieldSelector: `metadata.name=${this.name}`,
          allowWatchBookmarks: true,
          ...(this.lastRv ? { resourceVersion: this.lastRv } : {}),
        },
        (type: string, obj: KObject & { code?: number }) => this.onEvent(type, obj),
        () => this.reconnect(),
      );
    } catch {
      this.reconnect();
    }
  }

  private reconnect(): void {
    if (this.closed) return;
    this.resumes++;
    setTimeout(() => void this.connect(), 100).unref();
  }

  private onEvent(type: string, obj: KObject & { code?: number }): void {
    if (type === "ERROR") {
      // 410 Gone: our resourceVersion is too old; start afresh and admit the possible gap.
      if (obj.code === 410) {
        this.gaps++;
        this.lastRv = "";
      }
      return;
    }
    const rv = obj.metadata?.resourceVersion ?? "";
    if (rv) this.lastRv = rv;
    if (type === "BOOKMARK" || type === "DELETED") return;
    if (this.observations.at(-1)?.resourceVersion === rv) return;
    const o: Observation = {
      at: Date.now(),
      resourceVersion: rv,
      weights: this.fam.weights(obj),
      state: stateOf(obj),
      object: obj,
    };
    this.observations.push(o);
    for (const l of this.listeners) l(o);
  }

  latest(): Observation | undefined {
    return this.observations.at(-1);
  }

  /** Every distinct weights-by-backend in order, like Scenario.history. */
  history(): Array<Record<string, number>> {
    const out: Array<Record<string, number>> = [];
    for (const o of this.observations) {
      const last = out.at(-1);
      if (!last || JSON.stringify(last) !== JSON.stringify(o.weights)) out.push(o.weights);
    }
    return out;
  }

  /** Resolves with the first observation (already seen or future) satisfying `pred`. */
  waitFor(pred: (o: Observation) => boolean): Promise<Observation> {
    const seen = this.observations.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const l = (o: Observation) => {
        if (!pred(o)) return;
        this.listeners.delete(l);
        resolve(o);
      };
      this.listeners.add(l);
    });
  }

  close(): void {
    this.closed = true;
    this.req?.abort();
    this.listeners.clear();
  }
}

/** Why these weights are invalid for the family's kind, or undefined when they are valid. */
export function invalidWeights(fam: RouteFamily, w: Record<string, number>): string | undefined {
  const values = Object.values(w);
  if (values.length === 0) return "no weights";
  if (fam.weightsKind === "GatewayRoute" || fam.weightsKind === "VirtualRouter") {
    // App Mesh: integers 0..100. Upstream has no sum rule, but these fixtures' lists sum to 100 and
    // rolloutd keeps each list's total, so a sum past 100 here means it did not.
    if (!values.every((v) => Number.isInteger(v) && v >= 0 && v <= 100))
      return `App Mesh weight outside integers 0..100: ${JSON.stringify(w)}`;
    const sum = values.reduce((a, b) => a + b, 0);
    if (sum > 100) return `App Mesh weights sum to ${sum} > 100: ${JSON.stringify(w)}`;
    if (sum === 0) return `every target at weight 0: ${JSON.stringify(w)}`;
    return undefined;
  }
  if (!values.every((v) => Number.isInteger(v) && v >= 0 && v <= 1_000_000))
    return `Gateway API weight outside integers 0..1,000,000: ${JSON.stringify(w)}`;
  if (values.every((v) => v === 0)) return `every backend at weight 0: ${JSON.stringify(w)}`;
  return undefined;
}

/** The canary's share of the pair in whole percent (0 when the pair has no weight). */
export function canaryShare(w: Record<string, number>, stable: string, canary: string): number {
  const s = w[stable] ?? 0;
  const c = w[canary] ?? 0;
  return s + c === 0 ? 0 : Math.round((c / (s + c)) * 100);
}

/**
 * Where state.applied (weight by JSON Pointer) and the object disagree, as
 * "path: applied x, object y"; empty when they agree. An absent Gateway API
 * weight means 1.
 */
export function appliedMismatches(
  fam: RouteFamily,
  obj: KObject,
  applied: readonly AppliedWeight[],
): string[] {
  const dflt = fam.weightsKind === "HTTPRoute" || fam.weightsKind === "GRPCRoute" ? 1 : undefined;
  return applied.flatMap(({ path, weight: w }) => {
    const got = pointerGet(obj, path) ?? dflt;
    return got === w ? [] : [`${path}: applied ${w}, object ${JSON.stringify(got)}`];
  });
}

/** How many observations changed the weights or rolloutd's state (status writes by others do not count). */
export function decisions(observations: readonly Observation[]): number {
  let n = 0;
  let last = "";
  for (const o of observations) {
    const now = JSON.stringify([o.weights, o.state]);
    if (now !== last) n++;
    last = now;
  }
  return n;
}
