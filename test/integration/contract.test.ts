/**
 * The weight contract of issue 8 judged by a real API server: a sample of the
 * generated routes of test/support/contract.ts (HTTPRoute and GRPCRoute with
 * the upstream Gateway API v1.6.1 CRDs, VirtualRouter with our App Mesh CRD)
 * is created, then driven through the routers with every JSON Patch sent to
 * the server. The server's validation (OpenAPI schema and CEL rules) judges
 * each write; the same checks as the unit property test run on what it
 * stored.
 *
 * ROLLOUTD_CONTRACT_SAMPLE sets the routes per family (default 20),
 * ROLLOUTD_CONTRACT_SEED the generator's seed (default fixed, so a failure
 * reproduces).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import type { KObject, ObjectRef } from "../../src/kube/kinds.ts";
import type { JsonPatchOp } from "../../src/kube/access.ts";
import {
  createNamespace,
  createObject,
  getObject,
  jsonPatch,
  startCluster,
  type Cluster,
} from "../support/cluster.ts";
import { caseArb, NS, runCase, type Family, type ObjectStore } from "../support/contract.ts";

const SAMPLE = Number(process.env.ROLLOUTD_CONTRACT_SAMPLE ?? 20);
const SEED = Number(process.env.ROLLOUTD_CONTRACT_SEED ?? 20261130);

class ApiStore implements ObjectStore {
  constructor(
    private readonly c: Cluster,
    private readonly kind: Family,
    private readonly name: string,
  ) {}
  get(): Promise<KObject> {
    return getObject(this.c, this.kind, NS, this.name);
  }
  patch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> {
    assert.deepEqual(ref, { kind: this.kind, namespace: NS, name: this.name });
    return jsonPatch(this.c, this.kind, NS, this.name, ops);
  }
  async foreign(ops: JsonPatchOp[]): Promise<void> {
    if (ops.length) await jsonPatch(this.c, this.kind, NS, this.name, ops);
  }
}

void describe("weight contract on generated routes, judged by the API server", () => {
  let c: Cluster;

  before(async () => {
    c = await startCluster();
    await createNamespace(c, NS);
  });

  after(async () => {
    await c?.stop();
  });

  for (const family of ["HTTPRoute", "GRPCRoute", "VirtualRouter"] as Family[]) {
    void it(`${family}: ${SAMPLE} generated routes, every write accepted and within the contract`, async (t) => {
      const cases = fc.sample(caseArb(family), { numRuns: SAMPLE, seed: SEED });
      let writes = 0;
      for (const [i, generated] of cases.entries()) {
        const name = `${family.toLowerCase()}-${i}`;
        const { resourceVersion: _rv, generation: _g, ...metadata } = generated.route.metadata!;
        const route = { ...generated.route, metadata: { ...metadata, name } };
        try {
          await createObject(c, family, route);
        } catch (err) {
          throw new Error(`the API server refused generated ${family} ${i}: ${describeError(err)}`, {
            cause: err,
          });
        }
        const stored = await getObject(c, family, NS, name);
        try {
          writes += await runCase({ ...generated, route: stored }, new ApiStore(c, family, name));
        } catch (err) {
          throw new Error(
            `${family} ${i} (seed ${SEED}): ${describeError(err)}\n${JSON.stringify(generated)}`,
            { cause: err },
          );
        }
      }
      t.diagnostic(`${cases.length} routes created, ${writes} router writes accepted by the API server`);
      assert.ok(writes >= SAMPLE, `${writes} writes`);
    });
  }
});

function describeError(err: unknown): string {
  if (err && typeof err === "object" && "body" in err) return String(err.body);
  return err instanceof Error ? err.message : String(err);
}
