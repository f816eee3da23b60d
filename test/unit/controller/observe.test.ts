import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KObject } from "../../../src/kube/kinds.ts";
import { rolledOut, templateRevision } from "../../../src/controller/observe.ts";

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
