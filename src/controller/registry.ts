/**
 * The policies this daemon manages, one record each, and the index from a
 * cluster object to the policies that read it (so a watch event wakes only
 * those). Records hold what is derived from the policy file and the last
 * reconcile — never the rollout's state, which lives in the cluster.
 */
import type { RolloutState } from "../contract.ts";
import { refKey, type ObjectRef } from "../kube/kinds.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { policyWindow, type CronWindow } from "../policy/window.ts";
import type { RolloutSummary } from "../server/metrics.ts";

export interface PolicyRecord {
  policy: RolloutPolicy;
  window: CronWindow | undefined;
  /** Object keys the policy read in its last reconcile. */
  deps: string[];
  summary?: RolloutSummary;
  /** Last problem reported, so a persisting problem is logged once, not on every retry. */
  lastProblem?: string;
  /** The persisted state as last read or written. */
  last?: RolloutState;
  /** The route holding the state was deleted while this rollout was in flight (memory only). */
  interrupted?: { at: number; state: RolloutState };
  /** The in-step evaluation schedule of the current step (memory only). */
  early?: { step: string; at: number };
  /**
   * The stage's own GatewayRoute ("name#stage") this daemon last saw in place
   * (memory only): one missing after that was removed by someone, and its
   * re-creation is reported as such.
   */
  stageSeen?: string;
}

export class PolicyRegistry {
  private readonly records = new Map<string, PolicyRecord>();
  /** Object key → policies that read it. */
  private readonly dependents = new Map<string, Set<string>>();

  get size(): number {
    return this.records.size;
  }

  get(key: string): PolicyRecord | undefined {
    return this.records.get(key);
  }

  keys(): IterableIterator<string> {
    return this.records.keys();
  }

  summaries(): RolloutSummary[] {
    const out: RolloutSummary[] = [];
    for (const r of this.records.values()) if (r.summary) out.push(r.summary);
    return out;
  }

  /** Adds or replaces a policy; returns the previous version, if any. */
  upsert(policy: RolloutPolicy): RolloutPolicy | undefined {
    const prev = this.records.get(policy.key);
    const record: PolicyRecord = {
      policy,
      window: policyWindow(policy),
      deps: [],
      ...(prev?.summary ? { summary: prev.summary } : {}),
    };
    this.records.set(policy.key, record);
    this.setDependencies(policy.key, staticDependencies(policy));
    return prev?.policy;
  }

  remove(key: string): RolloutPolicy | undefined {
    const prev = this.records.get(key);
    this.setDependencies(key, []);
    this.records.delete(key);
    return prev?.policy;
  }

  /** The policies that read this object. */
  dependentsOf(ref: ObjectRef): Iterable<string> {
    return this.dependents.get(refKey(ref)) ?? [];
  }

  /** Other policies naming the same route: one of them may now own it. */
  sharingRoute(policy: RolloutPolicy): string[] {
    const out: string[] = [];
    for (const [k, r] of this.records) {
      if (k !== policy.key && sameRoute(r.policy, policy)) out.push(k);
    }
    return out;
  }

  /** Two policies on one route would overwrite each other's state: the first by key owns it. */
  ownerOf(policy: RolloutPolicy): string {
    let owner = policy.key;
    for (const [k, r] of this.records) if (k < owner && sameRoute(r.policy, policy)) owner = k;
    return owner;
  }

  /** Records what a reconcile read, on top of what the policy names itself. */
  setRead(key: string, refs: readonly ObjectRef[]): void {
    const r = this.records.get(key);
    if (r) this.setDependencies(key, [...staticDependencies(r.policy), ...refs]);
  }

  private setDependencies(key: string, refs: readonly ObjectRef[]): void {
    const record = this.records.get(key);
    for (const old of record?.deps ?? []) {
      const set = this.dependents.get(old);
      set?.delete(key);
      if (set?.size === 0) this.dependents.delete(old);
    }
    if (!record) return;
    record.deps = [...new Set(refs.map(refKey))];
    for (const k of record.deps) {
      let set = this.dependents.get(k);
      if (!set) this.dependents.set(k, (set = new Set()));
      set.add(key);
    }
  }
}

/** The routes a policy writes to: its target and, for blue/green, its preview route. */
const routesOf = (p: RolloutPolicy) => [p.target, ...(p.previewRoute ? [p.previewRoute] : [])];

/** Whether two policies write to one route (either's target or preview route). */
function sameRoute(a: RolloutPolicy, b: RolloutPolicy): boolean {
  return (
    a.namespace === b.namespace &&
    routesOf(a).some((x) => routesOf(b).some((y) => x.kind === y.kind && x.name === y.name))
  );
}

function staticDependencies(p: RolloutPolicy): ObjectRef[] {
  return [
    ...routesOf(p).map((r) => ({ kind: r.kind, namespace: p.namespace, name: r.name })),
    ...Object.values(p.deployments).map((name) => ({
      kind: "Deployment" as const,
      namespace: p.namespace,
      name,
    })),
  ];
}
