/**
 * The reconcile at its seams: caches, routers, the analysis gate and the
 * Event sink are in-memory stand-ins for the interfaces, so the loop's own
 * promises can be checked without a cluster — above all that an abort is
 * decided and written while the step's analysis is still hanging, and that
 * nothing is written from a stale cache. (The real API server checks the
 * same end to end in test/integration/abort.test.ts.)
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import pino from "pino";
import type { AnalysisGate, AnalysisReport, AnalysisRequest } from "../../../src/analysis/types.ts";
import { ANNOTATIONS, decodeState, encodeState, type RolloutState } from "../../../src/contract.ts";
import { AnalysisJobs } from "../../../src/controller/jobs.ts";
import { Reconciler, type ObjectSource } from "../../../src/controller/reconcile.ts";
import { PolicyRegistry } from "../../../src/controller/registry.ts";
import { Reporter } from "../../../src/controller/report.ts";
import type { JsonPatchOp } from "../../../src/kube/access.ts";
import type { CacheFreshness } from "../../../src/kube/cache.ts";
import type { EventSink } from "../../../src/kube/events.ts";
import type { KindName, KObject, ObjectRef } from "../../../src/kube/kinds.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";
import { RouterRegistry } from "../../../src/routers/index.ts";
import { Metrics } from "../../../src/server/metrics.ts";

const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

/** Objects by kind/namespace/name; JSON patches are applied to them as the API server would (add/replace only). */
class Store implements ObjectSource {
  readonly objects = new Map<string, KObject>();
  readonly writes: Array<{ ref: ObjectRef; ops: JsonPatchOp[] }> = [];
  fresh: CacheFreshness = "synced";
  put(o: KObject): void {
    this.objects.set(`${o.kind}/${o.metadata!.namespace}/${o.metadata!.name}`, o);
  }
  get(kind: KindName, namespace: string, name: string): KObject | undefined {
    return this.objects.get(`${kind}/${namespace}/${name}`);
  }
  freshness(): CacheFreshness {
    return this.fresh;
  }
  jsonPatch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> {
    this.writes.push({ ref, ops });
    const obj = structuredClone(this.get(ref.kind, ref.namespace, ref.name)!);
    for (const op of ops) {
      if (op.op === "remove" || op.op === "test" || op.path === "/metadata/resourceVersion") continue;
      const parts = op.path
        .split("/")
        .slice(1)
        .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
      let at = obj as unknown as Record<string, unknown>;
      for (const p of parts.slice(0, -1)) at = at[p] as Record<string, unknown>;
      at[parts.at(-1)!] = op.value;
    }
    obj.metadata!.resourceVersion = String(Number(obj.metadata!.resourceVersion ?? "0") + 1);
    this.put(obj);
    return Promise.resolve(obj);
  }
  create(): Promise<KObject> {
    return Promise.reject(new Error("no object is created here"));
  }
  delete(): Promise<void> {
    return Promise.reject(new Error("no object is deleted here"));
  }
}

/** A gate whose analyses never end unless cancelled; it keeps each request's signal. */
class HangingGate implements AnalysisGate {
  readonly requests: AnalysisRequest[] = [];
  analyze(req: AnalysisRequest): Promise<AnalysisReport> {
    this.requests.push(req);
    return new Promise((_resolve, reject) => {
      req.signal?.addEventListener("abort", () => reject(new Error("cancelled")));
    });
  }
}

const policy: RolloutPolicy = {
  key: "shop/web",
  name: "web",
  namespace: "shop",
  target: { kind: "VirtualRouter", name: "web" },
  stable: "blue",
  canary: "green",
  deployments: {},
  steps: [10, 50, 100],
  intervalMs: 60_000,
  routeReadyTimeoutMs: 30_000,
  source: { file: "web.yaml", line: 1, column: 1 },
};

function router(state: RolloutState, annotations: Record<string, string> = {}): KObject {
  return {
    apiVersion: "appmesh.k8s.aws/v1beta2",
    kind: "VirtualRouter",
    metadata: {
      namespace: "shop",
      name: "web",
      resourceVersion: "7",
      annotations: { [ANNOTATIONS.state]: encodeState(state), ...annotations },
    },
    spec: {
      routes: [
        {
          name: "r",
          httpRoute: {
            match: { prefix: "/" },
            action: {
              weightedTargets: [
                { virtualNodeRef: { name: "blue" }, weight: 90 },
                { virtualNodeRef: { name: "green" }, weight: 10 },
              ],
            },
          },
        },
      ],
    },
  };
}

const P0 = "/spec/routes/0/httpRoute/action/weightedTargets/0/weight";
const P1 = "/spec/routes/0/httpRoute/action/weightedTargets/1/weight";

/** Step 1 at 10 %, its interval over: its analysis is due. */
const analysing: RolloutState = {
  v: 1,
  policy: "shop/web",
  phase: "Progressing",
  stable: "blue",
  canary: "green",
  revision: "r2",
  baseline: {},
  stepIndex: 0,
  canaryWeight: 10,
  applied: [
    { path: P0, backend: "blue", weight: 90 },
    { path: P1, backend: "green", weight: 10 },
  ],
  weightsWrittenAt: T0,
  stepStartedAt: T0,
  analysisDueAt: T0 + 60_000,
  failures: 0,
  noData: 0,
  errors: 0,
  tokens: {},
  message: "step 1/3",
  since: T0,
  updatedAt: T0,
};

function harness(state: RolloutState) {
  const store = new Store();
  store.put(router(state));
  const gate = new HangingGate();
  const metrics = new Metrics({ processMetrics: false });
  const events: Array<{ type: string; reason: string; message: string }> = [];
  const sink: EventSink = {
    record: (_o, type, reason, message) => {
      events.push({ type, reason, message });
      return Promise.resolve();
    },
  };
  const registry = new PolicyRegistry();
  registry.upsert(policy);
  const woken: string[] = [];
  const jobs = new AnalysisJobs({
    done: (k) => woken.push(k),
    discarded: (_k, reason) => metrics.analysisDiscarded.inc({ reason }),
    failed: () => {},
  });
  const reconciler = new Reconciler({
    registry,
    objects: store,
    routers: new RouterRegistry(store, store),
    gates: { gateFor: () => gate },
    jobs,
    reporter: new Reporter(pino({ level: "silent" }), metrics, sink),
    metrics,
    clock: { now: () => T0 + 61_000 },
  });
  const stateNow = () =>
    decodeState(store.get("VirtualRouter", "shop", "web")!.metadata!.annotations![ANNOTATIONS.state]!);
  const weightsNow = () =>
    (
      store.get("VirtualRouter", "shop", "web")!.spec as {
        routes: Array<{ httpRoute: { action: { weightedTargets: Array<{ weight: number }> } } }>;
      }
    ).routes[0]!.httpRoute.action.weightedTargets.map((t) => t.weight);
  return { store, gate, metrics, events, jobs, reconciler, stateNow, weightsNow };
}

void describe("reconcile at its seams", () => {
  void it("starts the due analysis as a job and returns without waiting for it", async () => {
    const h = harness(analysing);
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.gate.requests.length, 1);
    assert.equal(h.jobs.running, 1);
    assert.equal(h.store.writes.length, 0, "starting an analysis writes nothing");
  });

  void it("an abort is written while the analysis hangs, and the hanging queries are cancelled", async () => {
    const h = harness(analysing);
    await h.reconciler.reconcile("shop/web");
    const signal = h.gate.requests[0]!.signal!;
    const obj = h.store.get("VirtualRouter", "shop", "web")!;
    obj.metadata!.annotations = {
      ...obj.metadata!.annotations,
      [ANNOTATIONS.abort]: "true",
      [ANNOTATIONS.abortReason]: "INC-1",
    };
    await h.reconciler.reconcile("shop/web");
    assert.deepEqual(h.weightsNow(), [100, 0]);
    const st = h.stateNow();
    assert.equal(st.phase, "Aborted");
    assert.deepEqual(st.abort, { at: T0 + 61_000, reason: "INC-1" });
    assert.equal(signal.aborted, true, "the step's queries were told to stop");
    assert.equal(h.jobs.running, 0);
    assert.ok(h.events.some((e) => e.reason === "Aborted" && e.message.includes("INC-1")));
  });

  void it("nothing is decided or written from a stale cache", async () => {
    const h = harness(analysing);
    h.store.fresh = "stale";
    const obj = h.store.get("VirtualRouter", "shop", "web")!;
    obj.metadata!.annotations = { ...obj.metadata!.annotations, [ANNOTATIONS.abort]: "true" };
    const r = await h.reconciler.reconcile("shop/web");
    assert.equal(h.store.writes.length, 0);
    assert.ok(r && typeof r.requeueAfterMs === "number", "looked at again soon");
    h.store.fresh = "synced";
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.stateNow().phase, "Aborted");
  });

  void it("adoption writes rolloutd's state and no weight", async () => {
    const h = harness(analysing);
    const obj = h.store.get("VirtualRouter", "shop", "web")!;
    delete obj.metadata!.annotations![ANNOTATIONS.state];
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.store.writes.length, 1);
    assert.deepEqual(
      h.store.writes[0]!.ops.map((o) => o.path).filter((p) => p.startsWith("/spec")),
      [],
      "no weight field in the adoption patch",
    );
    assert.equal(h.stateNow().phase, "Steady");
    assert.deepEqual(h.weightsNow(), [90, 10]);
  });
});
