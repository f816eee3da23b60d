/**
 * Given/When/Then helpers for engine scenarios: a namespace with two
 * Deployments and a route, a policy file, and readable waits on the
 * persisted state, the weights and the Events.
 */
import { writeFileSync, rmSync } from "node:fs";
import path from "node:path";
import { Watch, type CoreV1Event } from "@kubernetes/client-node";
import { KINDS, type KObject } from "../../src/kube/kinds.ts";
import {
  createNamespace,
  createObject,
  deployment,
  eventually,
  markRolledOut,
  shipRevision,
  annotate,
  type Cluster,
} from "./cluster.ts";
import { readWeightsObject, stateOf, type RouteFamily } from "./routes.ts";
import { type RolloutState } from "../../src/contract.ts";

export interface PolicyOptions {
  /** No steps ([]): the line is left out (a blueGreen policy has none). */
  steps: number[];
  interval: string;
  extra?: string;
}

export interface GivenOptions {
  /** Default true. */
  createRoute?: boolean;
  /** How each backend's Deployment is made (its image must be the first container's); cluster.ts's by default. */
  deployment?: (ns: string, name: string, version: string) => KObject;
}

export class Scenario {
  readonly route = "web";
  readonly stable = "web-v1";
  readonly canary = "web-v2";
  /** Every distinct weights-by-backend the route went through, in order, as seen by a watch. */
  readonly history: Array<Record<string, number>> = [];
  private watchReq: { abort(): void } | undefined;
  private closed = false;

  constructor(
    readonly c: Cluster,
    readonly fam: RouteFamily,
    readonly ns: string,
    readonly policiesDir: string,
  ) {}

  /** Given: a namespace, both Deployments rolled out at v1, the route at 100 % stable. */
  async given(opts: GivenOptions = {}): Promise<this> {
    await createNamespace(this.c, this.ns);
    const make = opts.deployment ?? deployment;
    for (const d of [this.stable, this.canary]) {
      await createObject(this.c, "Deployment", make(this.ns, d, "1"));
      await markRolledOut(this.c, this.ns, d);
    }
    if (opts.createRoute !== false) await this.createRoute();
    return this;
  }

  async createRoute(): Promise<void> {
    await this.fam.create(this.c, this.ns, this.route, this.stable, this.canary);
    await this.recordHistory();
  }

  /**
   * Watches the weights object for the scenario's lifetime. A watch the API server ends (its request timeout,
   * a restart) is started again without a resourceVersion, so its first events are the current objects: the
   * history may then miss states from the gap, never invent one.
   */
  private async recordHistory(): Promise<void> {
    const k = KINDS[this.fam.weightsKind];
    if (this.closed) return;
    const watch = new Watch(this.c.kc);
    this.watchReq = await watch.watch(
      `/apis/${k.group}/${k.version}/namespaces/${this.ns}/${k.plural}`,
      {},
      (_t, obj: KObject) => {
        if (obj.metadata?.name !== this.fam.weightsObjectName(this.route)) return;
        const w = this.fam.weights(obj);
        const last = this.history.at(-1);
        if (!last || JSON.stringify(last) !== JSON.stringify(w)) this.history.push(w);
      },
      () => {
        if (!this.closed) setTimeout(() => void this.recordHistory().catch(() => this.rewatchLater()), 200);
      },
    );
  }

  private rewatchLater(): void {
    if (!this.closed) setTimeout(() => void this.recordHistory().catch(() => this.rewatchLater()), 1000);
  }

  policyYaml(p: PolicyOptions): string {
    return [
      "apiVersion: rolloutd.dev/v1alpha1",
      "kind: RolloutPolicy",
      `metadata: { name: ${this.route}, namespace: ${this.ns} }`,
      "spec:",
      `  target: { kind: ${this.fam.targetKind}, name: ${this.route} }`,
      `  stable: ${this.stable}`,
      `  canary: ${this.canary}`,
      ...(p.steps.length ? [`  steps: [${p.steps.join(", ")}]`] : []),
      `  interval: ${p.interval}`,
      ...(p.extra ? [p.extra] : []),
      "",
    ].join("\n");
  }

  writePolicy(p: PolicyOptions): void {
    writeFileSync(path.join(this.policiesDir, `${this.ns}.yaml`), this.policyYaml(p));
  }

  removePolicy(): void {
    rmSync(path.join(this.policiesDir, `${this.ns}.yaml`), { force: true });
  }

  async weightsObject(): Promise<KObject> {
    return readWeightsObject(this.c, this.fam, this.ns, this.route);
  }

  async state(): Promise<RolloutState | undefined> {
    return stateOf(await this.weightsObject());
  }

  async weights(): Promise<Record<string, number>> {
    return this.fam.weights(await this.weightsObject());
  }

  /** Waits until the persisted state satisfies `pred`. */
  async until(
    what: string,
    pred: (s: RolloutState, w: Record<string, number>) => boolean,
    timeoutMs = 60_000,
  ): Promise<RolloutState> {
    return eventually(
      `${this.ns}: ${what}`,
      async () => {
        const obj = await this.weightsObject();
        const s = stateOf(obj);
        return s && pred(s, this.fam.weights(obj)) ? s : undefined;
      },
      timeoutMs,
      50,
    );
  }

  /** A new template for `who` (the canary by default), marked rolled out unless told otherwise. */
  async shipCanary(version: string, who = this.canary, rolledOut = true): Promise<void> {
    await shipRevision(this.c, this.ns, who, version, rolledOut);
  }

  async annotateTarget(a: Record<string, string | null>): Promise<void> {
    await annotate(this.c, this.fam.targetKind, this.ns, this.route, a);
  }

  async events(): Promise<CoreV1Event[]> {
    return (await this.c.core.listNamespacedEvent({ namespace: this.ns })).items;
  }

  async eventWith(reason: string, timeoutMs = 15_000): Promise<CoreV1Event> {
    return eventually(
      `${this.ns}: Event ${reason}`,
      async () => (await this.events()).find((e) => e.reason === reason),
      timeoutMs,
    );
  }

  close(): void {
    this.closed = true;
    this.watchReq?.abort();
  }
}
