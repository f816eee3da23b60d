/**
 * The weight contract of issue 8 by generation (fast-check): generated
 * HTTPRoutes, GRPCRoutes and VirtualRouters × sequences of adopt / step /
 * abort / rollback / promote / drift, through the real routers with the
 * written JSON Patch applied in memory. What is checked after every write is
 * listed in test/support/contract.ts. The same generators feed a sample
 * through a real API server in test/integration/contract.test.ts.
 *
 * ROLLOUTD_PROPERTY_RUNS scales the number of cases per family (default 1,000).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { caseArb, MemoryStore, runCase, type Family } from "../../support/contract.ts";

const RUNS = Number(process.env.ROLLOUTD_PROPERTY_RUNS ?? 1000);

void describe("weight contract over generated routes", () => {
  for (const family of ["HTTPRoute", "GRPCRoute", "VirtualRouter"] as Family[]) {
    void it(`${family}: only the pair's weights and the state change; others keep their share; writes stay valid`, async (t) => {
      let writes = 0;
      let cases = 0;
      await fc.assert(
        fc.asyncProperty(caseArb(family), async (c) => {
          cases++;
          writes += await runCase(c, new MemoryStore(c.route));
        }),
        { numRuns: RUNS },
      );
      // The generator must mostly produce routes that hold the pair, or the property says little.
      assert.ok(writes > cases * 2, `${writes} writes over ${cases} cases`);
      t.diagnostic(`${cases} generated routes, ${writes} router writes checked`);
    });
  }
});
