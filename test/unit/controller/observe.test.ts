import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KObject } from "../../../src/kube/kinds.ts";
import fc from "fast-check";
import { rolledOut, slimDeployment, templateRevision } from "../../../src/controller/observe.ts";
import { ANNOTATIONS, asksAbort } from "../../../src/contract.ts";
import { managedFieldsArb } from "../../support/managedfields.ts";

const deployment = (spec: Record<string, unknown>, extra: Partial<KObject> = {}): KObject => ({
  kind: "Deployment",
  metadata: { namespace: "shop", name: "green", generation: 2 },
  spec,
  ...extra,
});

const template = {
  metadata: { labels: { app: "green", tier: "web" }, annotations: { a: "1" } },
  spec: {
    containers: [
      {
        name: "app",
        image: "shop/green:1.0",
        env: [
          { name: "A", value: "1" },
          { name: "B", value: "2" },
        ],
      },
    ],
  },
};

void describe("templateRevision", () => {
  const rev = (spec: Record<string, unknown>) => templateRevision(deployment(spec));

  void it("is a short hex hash", () => {
    assert.match(rev({ template })!, /^[0-9a-f]{10}$/);
  });

  void it("is stable under key reordering at every depth", () => {
    const reordered = {
      spec: {
        containers: [
          {
            env: [
              { value: "1", name: "A" },
              { value: "2", name: "B" },
            ],
            image: "shop/green:1.0",
            name: "app",
          },
        ],
      },
      metadata: { annotations: { a: "1" }, labels: { tier: "web", app: "green" } },
    };
    assert.equal(rev({ template: reordered }), rev({ template }));
  });

  void it("changes with the image, env, template annotations and array order", () => {
    const base = rev({ template })!;
    const image = structuredClone(template);
    image.spec.containers[0]!.image = "shop/green:1.1";
    const env = structuredClone(template);
    env.spec.containers[0]!.env[1]!.value = "3";
    const ann = structuredClone(template);
    ann.metadata.annotations.a = "2";
    const order = structuredClone(template);
    order.spec.containers[0]!.env.reverse();
    const revs = [
      base,
      rev({ template: image }),
      rev({ template: env }),
      rev({ template: ann }),
      rev({ template: order }),
    ];
    assert.equal(new Set(revs).size, revs.length, revs.join(" "));
  });

  void it("is unchanged by replicas, selector or strategy", () => {
    assert.equal(
      rev({ replicas: 7, template, strategy: { type: "Recreate" } }),
      rev({ replicas: 1, template }),
    );
  });

  void it("is a function of the template's JSON: an object hashes as its JSON round-trip does", () => {
    // Undefined members, Dates, sparse arrays, objects without a prototype: what an object built in code
    // or decoded by a typed client may hold, and the wire never does.
    const value = fc.anything({
      withDate: true,
      withNullPrototype: true,
      withSparseArray: true,
      withBoxedValues: false,
      withMap: false,
      withSet: false,
      withBigInt: false,
      withTypedArray: false,
    });
    fc.assert(
      fc.property(fc.dictionary(fc.string(), value), (tmpl) => {
        const wire = JSON.parse(JSON.stringify(tmpl)) as unknown;
        assert.equal(rev({ template: tmpl }), rev({ template: wire }));
      }),
      { numRuns: Number(process.env.ROLLOUTD_PROPERTY_RUNS ?? 1000) },
    );
    assert.equal(
      rev({ template: { metadata: { labels: undefined }, spec: {} } }),
      rev({ template: { metadata: {}, spec: {} } }),
    );
  });

  void it("is undefined without a template", () => {
    assert.equal(rev({ replicas: 1 }), undefined);
    assert.equal(templateRevision({ kind: "Deployment", metadata: { name: "x" } }), undefined);
  });
});

void describe("rolledOut", () => {
  const dep = (
    replicas: number | undefined,
    generation: number,
    status: Record<string, number> | undefined,
  ) =>
    rolledOut({
      kind: "Deployment",
      metadata: { name: "green", generation },
      spec: replicas === undefined ? { template } : { replicas, template },
      ...(status ? { status } : {}),
    });

  void it("ready when the generation is observed and every replica updated and available", () => {
    assert.deepEqual(
      dep(3, 2, { observedGeneration: 2, updatedReplicas: 3, availableReplicas: 3, replicas: 3 }),
      {
        ready: true,
        detail: "3/3 replicas updated and available",
      },
    );
    assert.deepEqual(dep(undefined, 1, { observedGeneration: 1, updatedReplicas: 1, availableReplicas: 1 }), {
      ready: true,
      detail: "1/1 replicas updated and available",
    });
    assert.equal(dep(0, 4, { observedGeneration: 4 }).ready, true, "scaled to zero is rolled out");
  });

  void it("not ready while the controller has not seen the generation", () => {
    assert.deepEqual(dep(3, 5, { observedGeneration: 4, updatedReplicas: 3, availableReplicas: 3 }), {
      ready: false,
      detail: "generation 5 not yet observed by the deployment controller",
    });
    assert.equal(dep(1, 1, undefined).ready, false);
  });

  void it("not ready while replicas are being updated or becoming available", () => {
    assert.deepEqual(dep(3, 2, { observedGeneration: 2, updatedReplicas: 1, availableReplicas: 3 }), {
      ready: false,
      detail: "1/3 replicas updated",
    });
    assert.deepEqual(dep(3, 2, { observedGeneration: 2, updatedReplicas: 3, availableReplicas: 2 }), {
      ready: false,
      detail: "2/3 replicas available",
    });
    assert.deepEqual(dep(2, 2, { observedGeneration: 3 }), { ready: false, detail: "0/2 replicas updated" });
  });
});

// ---------------------------------------------------------------------------
// The watch cache keeps a Deployment slimmed (issue 11): what the engine reads of it must not change.

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";

const containerArb = fc.record(
  {
    name: fc.constantFrom("app", "sidecar", "proxy"),
    image: fc.stringMatching(/^[a-z]{1,8}\/[a-z]{1,8}:[0-9]{1,2}\.[0-9]$/),
    env: fc.array(
      fc.record({ name: fc.stringMatching(/^[A-Z][A-Z_]{0,6}$/), value: fc.string({ maxLength: 8 }) }),
      {
        maxLength: 4,
      },
    ),
    resources: fc.record({
      limits: fc.record({ cpu: fc.constantFrom("100m", "1"), memory: fc.constantFrom("64Mi", "1Gi") }),
    }),
    ports: fc.array(
      fc.record({ containerPort: fc.integer({ min: 1, max: 65535 }), protocol: fc.constant("TCP") }),
      {
        maxLength: 2,
      },
    ),
    terminationMessagePath: fc.constant("/dev/termination-log"),
  },
  { requiredKeys: ["name", "image"] },
);

const labelsArb = fc.dictionary(fc.stringMatching(/^[a-z][a-z./-]{0,12}$/), fc.string({ maxLength: 10 }), {
  maxKeys: 4,
});

/** Mostly pod templates as the API server serves them; sometimes anything at all. */
const templateArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record(
      {
        metadata: fc.record(
          { labels: labelsArb, annotations: labelsArb, creationTimestamp: fc.constant(null) },
          { requiredKeys: [] },
        ),
        spec: fc.record(
          {
            containers: fc.array(containerArb, { minLength: 1, maxLength: 3 }),
            restartPolicy: fc.constant("Always"),
            terminationGracePeriodSeconds: fc.nat(60),
            dnsPolicy: fc.constantFrom("ClusterFirst", "Default"),
          },
          { requiredKeys: ["containers"] },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue() },
  { weight: 1, arbitrary: fc.constantFrom(null, undefined, 0, "", {}, []) },
);

const countArb = fc.oneof(fc.nat(6), fc.constant(null));

const specArb = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record(
      {
        replicas: countArb,
        paused: fc.boolean(),
        template: templateArb,
        selector: fc.record({ matchLabels: labelsArb }),
        strategy: fc.constantFrom(
          { type: "Recreate" },
          { type: "RollingUpdate", rollingUpdate: { maxSurge: "25%" } },
        ),
        revisionHistoryLimit: fc.nat(10),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(undefined, null, "x", [], 3) },
);

const statusArb = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record(
      {
        observedGeneration: fc.nat(6),
        replicas: countArb,
        updatedReplicas: countArb,
        readyReplicas: countArb,
        availableReplicas: countArb,
        unavailableReplicas: countArb,
        conditions: fc.array(
          fc.record({
            type: fc.constantFrom("Available", "Progressing"),
            status: fc.constantFrom("True", "False"),
          }),
          { maxLength: 2 },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(undefined, null, "x", [], 3) },
);

const metadataArb = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record(
      {
        name: fc.constant("green"),
        namespace: fc.constant("shop"),
        uid: fc.uuid(),
        resourceVersion: fc.nat().map(String),
        generation: fc.nat(6),
        labels: labelsArb,
        annotations: fc.record(
          {
            [ANNOTATIONS.abort]: fc.constantFrom("true", "false"),
            [LAST_APPLIED]: fc.jsonValue().map((v) => JSON.stringify(v)),
            "deployment.kubernetes.io/revision": fc.nat(9).map(String),
          },
          { requiredKeys: [] },
        ),
        managedFields: fc.oneof(managedFieldsArb, fc.jsonValue()),
      },
      { requiredKeys: ["name", "namespace"] },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(undefined, null, {}) },
);

const deploymentArb = fc
  .record({ metadata: metadataArb, spec: specArb, status: statusArb }, { requiredKeys: [] })
  // Plain JSON, as decoded from a response (fast-check builds some objects without a prototype).
  .map((d) => JSON.parse(JSON.stringify({ apiVersion: "apps/v1", kind: "Deployment", ...d })) as KObject);

/** The same value with every object's keys in another order (from a seed), as another serializer might send it. */
function reordered(v: unknown, seed: number): unknown {
  if (Array.isArray(v)) return v.map((x, i) => reordered(x, seed + i));
  if (!v || typeof v !== "object") return v;
  let x = seed || 1;
  const keys = Object.keys(v)
    .map((k) => ({ k, r: (x = (x * 1103515245 + 12345) % 2 ** 31) }))
    .sort((a, b) => a.r - b.r)
    .map((e) => e.k);
  return Object.fromEntries(keys.map((k) => [k, reordered((v as Record<string, unknown>)[k], seed + 7)]));
}

void describe("slimDeployment: what the watch cache keeps of a Deployment", () => {
  const RUNS = Number(process.env.ROLLOUTD_PROPERTY_RUNS ?? 1000);

  void it("templateRevision and rolledOut say the same of the kept object as of the one served, in any key order", () => {
    fc.assert(
      fc.property(deploymentArb, fc.nat(), (raw, seed) => {
        const before = structuredClone(raw);
        const kept = slimDeployment(raw);
        assert.deepEqual(raw, before, "the object served is not changed");
        assert.equal(templateRevision(kept), templateRevision(raw));
        assert.deepEqual(rolledOut(kept), rolledOut(raw));
        assert.equal(asksAbort(kept), asksAbort(raw));
        const other = reordered(raw, seed) as KObject;
        assert.equal(templateRevision(slimDeployment(other)), templateRevision(raw));
        assert.deepEqual(rolledOut(slimDeployment(other)), rolledOut(raw));
        // Slimming what is already slim changes nothing the engine reads (a relist may meet kept objects).
        const again = slimDeployment(kept);
        assert.equal(templateRevision(again), templateRevision(raw));
        assert.deepEqual(rolledOut(again), rolledOut(raw));
        // What the watch machinery needs, and nothing heavy.
        assert.equal(kept.metadata?.name, raw.metadata?.name ?? undefined);
        assert.equal(kept.metadata?.namespace, raw.metadata?.namespace ?? undefined);
        assert.equal(kept.metadata?.resourceVersion, raw.metadata?.resourceVersion ?? undefined);
        assert.equal((kept.spec as { template?: unknown } | undefined)?.template, undefined);
        assert.equal(kept.metadata?.managedFields, undefined);
        assert.equal(kept.metadata?.annotations?.[LAST_APPLIED], undefined);
        assert.equal(
          kept.metadata?.annotations === undefined,
          !raw.metadata?.annotations,
          "a map stays a map",
        );
        assert.ok(JSON.stringify(kept).length <= JSON.stringify(raw).length + 2);
      }),
      { numRuns: RUNS },
    );
  });

  void it("a template change changes the kept revision; scaling, status and managers do not", () => {
    const raw: KObject = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "green", namespace: "shop", generation: 2, managedFields: [{ manager: "kubectl" }] },
      spec: { replicas: 2, template },
      status: { observedGeneration: 2, updatedReplicas: 2, availableReplicas: 2 },
    };
    const image = structuredClone(template);
    image.spec.containers[0]!.image = "shop/green:2.0";
    const shipped = { ...raw, spec: { replicas: 2, template: image } };
    const scaled = {
      ...raw,
      metadata: { ...raw.metadata, managedFields: [{ manager: "hpa" }, { manager: "kubectl" }] },
      spec: { replicas: 5, template },
      status: { observedGeneration: 2, updatedReplicas: 2, availableReplicas: 2 },
    };
    assert.notEqual(templateRevision(slimDeployment(shipped)), templateRevision(slimDeployment(raw)));
    assert.equal(templateRevision(slimDeployment(scaled)), templateRevision(slimDeployment(raw)));
    assert.equal(templateRevision(slimDeployment(raw)), templateRevision(raw));
    assert.deepEqual(rolledOut(slimDeployment(scaled)), { ready: false, detail: "2/5 replicas updated" });
  });
});
