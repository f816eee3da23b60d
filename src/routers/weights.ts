/**
 * Weight maths. Policies speak in percent of the pair (stable + canary);
 * routes speak in their own units. A pair never takes weight from backends
 * the policy does not name: on App Mesh, where weights are integers whose
 * sum may not exceed 100, the pair shares what the other targets leave.
 */

export class WeightError extends Error {
  override name = "WeightError";
}

/** Splits `pairTotal` units so the canary gets `canaryPercent` %, in integers, summing exactly to pairTotal. */
export function splitPair(canaryPercent: number, pairTotal: number): { stable: number; canary: number } {
  if (!Number.isFinite(canaryPercent) || canaryPercent < 0 || canaryPercent > 100) {
    throw new WeightError(`canary percent must be within 0..100, got ${canaryPercent}`);
  }
  if (!Number.isInteger(pairTotal) || pairTotal <= 0) {
    throw new WeightError(`the pair needs a positive integer weight budget, got ${pairTotal}`);
  }
  let canary = Math.round((pairTotal * canaryPercent) / 100);
  // Never round a non-zero step down to no traffic, nor a partial step up to all of it.
  if (canaryPercent > 0 && canary === 0) canary = 1;
  if (canaryPercent < 100 && canary === pairTotal && pairTotal > 1) canary = pairTotal - 1;
  return { stable: pairTotal - canary, canary };
}

/** App Mesh: integers 0..100 whose sum per weightedTargets list may not exceed 100. */
export const APP_MESH_TOTAL = 100;

export function appMeshPairTotal(otherWeights: number[]): number {
  const others = otherWeights.reduce((a, b) => a + b, 0);
  const total = APP_MESH_TOTAL - others;
  if (total <= 0) {
    throw new WeightError(
      `the other weighted targets already use ${others} of 100; no weight is left for the stable and canary backends`,
    );
  }
  return total;
}

/** Gateway API weights are proportional int32s (0..1,000,000): the pair uses 100 units, readable as percent. */
export const GATEWAY_API_PAIR_TOTAL = 100;
