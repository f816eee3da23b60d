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
import { KubeApiError } from "../../../src/kube/errors.ts";
import { Reporter } from "../../../src/controller/report.ts";
import type { JsonPatchOp } from "../../../src/kube/access.ts";
import type { CacheFreshness } from "../../../src/kube/cache.ts";
import type { EventSink } from "../../../src/kube/events.ts";
import type { KindName, KObject, ObjectRef } from "../../../src/kube/kinds.ts";
import { RouterRegistry } from "../../../src/routers/index.ts";
import { Metrics } from "../../../src/server/metrics.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";
import { applyPatch, SHOP_WEB, shopRouter, STEP_1, T0 } from "./fixtures.ts";

/** Objects by kind/namespace/name; JSON patches are applied to them as the API server would (add/replace only). */
class Store implements ObjectSource {
  readonly objects = new Map<string, KObject>();
  readonly writes: Array<{ ref: ObjectRef; ops: JsonPatchOp[] }> = [];
  fresh: CacheFreshness = "synced";
  /** Objects (by name) whose patches the API server refuses with this error. */
  readonly refuse = new Map<string, Error>();
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
    const refused = this.refuse.get(ref.name);
    if (refused) return Promise.reject(refused);
    this.writes.push({ ref, ops });
    const obj = applyPatch(this.get(ref.kind, ref.namespace, ref.name)!, ops);
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

const policy = SHOP_WEB;

function router(state: RolloutState, annotations: Record<string, string> = {}): KObject {
  return shopRouter({ [ANNOTATIONS.state]: encodeState(state), ...annotations }, [90, 10], "7");
}

function harness(state: RolloutState, p: RolloutPolicy = policy) {
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
  registry.upsert(p);
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
    const h = harness(STEP_1);
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.gate.requests.length, 1);
    assert.equal(h.jobs.running, 1);
    assert.equal(h.store.writes.length, 0, "starting an analysis writes nothing");
  });

  void it("an abort is written while the analysis hangs, and the hanging queries are cancelled", async () => {
    const h = harness(STEP_1);
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
    const h = harness(STEP_1);
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
    const h = harness(STEP_1);
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

void describe("reconcile with a blue/green preview route (App Mesh VirtualRouters)", () => {
  const bg: RolloutPolicy = {
    ...policy,
    strategy: "blueGreen",
    steps: [100],
    previewRoute: { kind: "VirtualRouter", name: "web-preview" },
  };
  /** The preview route: the pair at blue 100 / green 0, beside a route of someone else's. */
  const previewRouter = (): KObject => {
    const o = router(STEP_1);
    o.metadata = { namespace: "shop", name: "web-preview", resourceVersion: "3" };
    const spec = o.spec as { routes: Array<Record<string, unknown>> };
    spec.routes = [
      {
        name: "admin",
        httpRoute: {
          match: { prefix: "/admin" },
          action: { weightedTargets: [{ virtualNodeRef: { name: "blue" }, weight: 1 }] },
        },
      },
      ...spec.routes,
    ];
    const targets = (spec.routes[1]!.httpRoute as { action: { weightedTargets: Array<{ weight: number }> } })
      .action.weightedTargets;
    targets[0]!.weight = 100;
    targets[1]!.weight = 0;
    return o;
  };
  const Q0 = "/spec/routes/1/httpRoute/action/weightedTargets/0/weight";
  const Q1 = "/spec/routes/1/httpRoute/action/weightedTargets/1/weight";
  /** The preview step, its interval over, the preview route recorded at all-green (not written yet). */
  const previewing: RolloutState = {
    ...STEP_1,
    stepIndex: 0,
    canaryWeight: 0,
    previewRoute: {
      kind: "VirtualRouter",
      name: "web-preview",
      canaryPercent: 100,
      applied: [
        { path: Q0, backend: "blue", weight: 0 },
        { path: Q1, backend: "green", weight: 100 },
      ],
    },
  };
  const previewWeights = (h: ReturnType<typeof harness>) =>
    (
      h.store.get("VirtualRouter", "shop", "web-preview")!.spec as {
        routes: Array<{ httpRoute: { action: { weightedTargets: Array<{ weight: number }> } } }>;
      }
    ).routes.map((r) => r.httpRoute.action.weightedTargets.map((t) => t.weight));

  void it("the preview route follows the state, and an abort lands on the target first, then on the preview route", async () => {
    const h = harness(previewing, bg);
    h.store.put(previewRouter());
    await h.reconciler.reconcile("shop/web");
    assert.deepEqual(
      h.store.writes.map((w) => w.ref.name),
      ["web-preview"],
      "the preview route first",
    );
    assert.deepEqual(
      h.store.writes[0]!.ops.map((o) => o.path),
      ["/metadata/resourceVersion", Q0, Q1],
      "nothing but the pair's weights (and the precondition)",
    );
    assert.deepEqual(previewWeights(h), [[1], [0, 100]], "someone else's route untouched");
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.gate.requests.length, 1, "then the preview step's analysis");
    assert.equal(h.store.writes.length, 1);

    const obj = h.store.get("VirtualRouter", "shop", "web")!;
    obj.metadata!.annotations = { ...obj.metadata!.annotations, [ANNOTATIONS.abort]: "true" };
    await h.reconciler.reconcile("shop/web");
    assert.deepEqual(
      h.store.writes.map((w) => w.ref.name),
      ["web-preview", "web"],
      "the abort: the target first",
    );
    assert.deepEqual(h.weightsNow(), [100, 0]);
    const st = h.stateNow();
    assert.equal(st.phase, "Aborted");
    assert.equal(st.previewRoute?.canaryPercent, 0);
    assert.deepEqual(
      st.previewRoute?.from,
      previewing.previewRoute?.applied,
      "what the rollout had put there",
    );
    await h.reconciler.reconcile("shop/web");
    assert.deepEqual(previewWeights(h), [[1], [100, 0]], "then the preview route");
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.store.writes.length, 3, "and nothing more");
  });

  void it("a refused preview write is reported and does not stop the rollout's decisions", async () => {
    const h = harness(previewing, bg);
    h.store.put(previewRouter());
    h.store.refuse.set(
      "web-preview",
      new KubeApiError(422, "Invalid", "admission webhook denied the request"),
    );
    await h.reconciler.reconcile("shop/web");
    assert.ok(
      h.events.some(
        (e) => e.type === "Warning" && e.reason === "PreviewRouteInvalid" && /denied/.test(e.message),
      ),
      JSON.stringify(h.events),
    );
    assert.equal(h.gate.requests.length, 1, "the step's analysis still starts");
  });

  void it("a rollout's start waits for its missing preview route, writing nothing; then starts", async () => {
    const steady: RolloutState = {
      ...STEP_1,
      phase: "Steady",
      stepIndex: -1,
      canaryWeight: 0,
      applied: [],
    };
    delete steady.stepStartedAt;
    delete steady.analysisDueAt;
    const h = harness(steady, bg);
    const obj = h.store.get("VirtualRouter", "shop", "web")!;
    obj.metadata!.annotations = { ...obj.metadata!.annotations, [ANNOTATIONS.start]: "go" };
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.store.writes.length, 0);
    const warning = h.events.find((e) => e.reason === "PreviewRouteNotFound");
    assert.match(
      warning?.message ?? "",
      /^web\.yaml:1:1 spec\.preview\.route: VirtualRouter shop\/web-preview not found/,
    );
    assert.equal(h.stateNow().phase, "Steady");

    h.store.put(previewRouter());
    await h.reconciler.reconcile("shop/web");
    assert.deepEqual(
      h.store.writes.map((w) => w.ref.name),
      ["web"],
    );
    const st = h.stateNow();
    assert.equal(st.phase, "Progressing");
    assert.equal(st.stepIndex, 0);
    assert.deepEqual(
      st.previewRoute?.applied.map((a) => a.weight),
      [0, 100],
    );
    await h.reconciler.reconcile("shop/web");
    assert.deepEqual(previewWeights(h), [[1], [0, 100]]);
  });

  void it("a preview route that leads to the target's own weights is refused", async () => {
    const same: RolloutPolicy = { ...bg, previewRoute: { kind: "VirtualRouter", name: "web" } };
    const steady: RolloutState = {
      ...STEP_1,
      phase: "Steady",
      stepIndex: -1,
      canaryWeight: 0,
      applied: [],
    };
    const h = harness(steady, same);
    const obj = h.store.get("VirtualRouter", "shop", "web")!;
    obj.metadata!.annotations = { ...obj.metadata!.annotations, [ANNOTATIONS.start]: "go" };
    await h.reconciler.reconcile("shop/web");
    assert.equal(h.store.writes.length, 0);
    assert.ok(
      h.events.some((e) => e.reason === "PreviewRouteInvalid" && /weights of its own/.test(e.message)),
    );
  });
});
