import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KObject } from "../../../src/kube/kinds.ts";
import { ANNOTATIONS, readControls, rolledOut, templateRevision } from "../../../src/controller/observe.ts";

const withAnnotations = (annotations?: Record<string, string>): KObject => ({
  kind: "HTTPRoute",
  metadata: { namespace: "shop", name: "web", ...(annotations ? { annotations } : {}) },
});

void describe("readControls", () => {
  void it("absent annotations: nothing requested", () => {
    const expected = {
      abort: false,
      abortReason: undefined,
      pause: false,
      start: undefined,
      retry: undefined,
      resume: undefined,
      promote: undefined,
    };
    assert.deepEqual(readControls(withAnnotations()), expected);
    assert.deepEqual(readControls(withAnnotations({ unrelated: "true" })), expected);
    assert.deepEqual(readControls({}), expected);
  });

  void it("abort and pause accept true/yes/1/on in any case and with spaces", () => {
    for (const v of ["true", "TRUE", "True", "yes", "YES", "1", "on", " true ", "\tyes\n"]) {
      const c = readControls(withAnnotations({ [ANNOTATIONS.abort]: v, [ANNOTATIONS.pause]: v }));
      assert.equal(c.abort, true, JSON.stringify(v));
      assert.equal(c.pause, true, JSON.stringify(v));
    }
    for (const v of ["false", "no", "0", "off", "", "   ", "truthy", "2", "y"]) {
      const c = readControls(withAnnotations({ [ANNOTATIONS.abort]: v, [ANNOTATIONS.pause]: v }));
      assert.equal(c.abort, false, JSON.stringify(v));
      assert.equal(c.pause, false, JSON.stringify(v));
    }
  });

  void it("abort and pause are independent", () => {
    const c = readControls(withAnnotations({ [ANNOTATIONS.pause]: "yes" }));
    assert.deepEqual([c.abort, c.pause], [false, true]);
  });

  void it("tokens and the abort reason are trimmed; blank means absent", () => {
    const c = readControls(
      withAnnotations({
        [ANNOTATIONS.abortReason]: "  latency regression  ",
        [ANNOTATIONS.start]: " 2026-01-15T12:00 ",
        [ANNOTATIONS.retry]: "r1",
        [ANNOTATIONS.resume]: "\n42\n",
        [ANNOTATIONS.promote]: "   ",
      }),
    );
    assert.equal(c.abortReason, "latency regression");
    assert.equal(c.start, "2026-01-15T12:00");
    assert.equal(c.retry, "r1");
    assert.equal(c.resume, "42");
    assert.equal(c.promote, undefined);
  });

  void it("reads the documented annotation keys", () => {
    assert.deepEqual(ANNOTATIONS, {
      abort: "rolloutd.dev/abort",
      abortReason: "rolloutd.dev/abort-reason",
      pause: "rolloutd.dev/pause",
      start: "rolloutd.dev/start",
      retry: "rolloutd.dev/retry",
      resume: "rolloutd.dev/resume",
      promote: "rolloutd.dev/promote",
    });
  });
});

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
