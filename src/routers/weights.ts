/**
 * Weight maths. Policies speak in percent of the pair (stable + canary);
 * routes speak in their own units, and every route family here treats
 * weights as proportional: a backend's share of a location (a Gateway API
 * rule, an App Mesh weightedTargets list) is its weight over the location's
 * sum. So the pair may move only within its own total at each location —
 * then every other backend's share stays exactly what it was.
 *
 * The rules, per location, with T = the pair's total there, O = the others'
 * total, p = the canary share asked for, MAX = the family's largest weight
 * (Gateway API 1,000,000; App Mesh 100):
 *
 * - T = 0: the pair carries no traffic at this location. It is left as it
 *   is (0/0) at every step, abort, rollback and promotion: giving it weight
 *   would take share from the others, or, with no others, make a rule that
 *   sends nothing start sending.
 * - O = 0: no other share can change, so the pair's total may be rescaled:
 *   it stays T when p % of T is a whole number; else it becomes 100 when T is
 *   at most 100 (every whole percent splits 100 exactly, and reads as
 *   percent: two default weights 1+1 at 5 % become 95/5), or else the
 *   smallest total above T, at most MAX, that splits exactly.
 * - O > 0: the pair keeps T exactly. The canary gets p % of T rounded to the
 *   nearest unit (a tie goes to the stable); a step above 0 % never rounds
 *   to no canary traffic, one below 100 % never to all of it, when T ≥ 2 can
 *   express it. With T = 1 no split exists: the unit goes to the stable below
 *   50 % and to the canary above it (nearest achievable). When T exceeds MAX
 *   (both fields large), a split is limited to what two fields of at most MAX
 *   can carry; only then, 0 % and 100 % (abort, rollback, promotion) put all
 *   the pair's traffic on one side at MAX, which is the one case where the
 *   others' share changes (it grows slightly): reaching 100 % stable wins.
 */

export class WeightError extends Error {
  override name = "WeightError";
}

/** Largest weight of a Gateway API backendRef (int32 0..1,000,000; default 1). */
export const GATEWAY_API_MAX_WEIGHT = 1_000_000;
/** Largest weight of an App Mesh weighted target (int64 0..100, required; no rule on the sum). */
export const APP_MESH_MAX_WEIGHT = 100;

export interface PairSplit {
  stable: number;
  canary: number;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** p % of `total`, to the nearest unit, ties to the stable (down). */
function nearestCanary(total: number, canaryPercent: number): number {
  if (Number.isInteger(canaryPercent)) return Math.floor((total * canaryPercent + 49) / 100);
  return Math.max(0, Math.ceil((total * canaryPercent) / 100 - 0.5));
}

/**
 * The pair's new weights at one location. `others` is the total weight of
 * every other backend there; see the header for the rules.
 */
export function planLocation(
  current: PairSplit,
  others: number,
  canaryPercent: number,
  maxWeight: number,
): PairSplit {
  if (!Number.isFinite(canaryPercent) || canaryPercent < 0 || canaryPercent > 100) {
    throw new WeightError(`canary percent must be within 0..100, got ${canaryPercent}`);
  }
  const total = current.stable + current.canary;
  if (total <= 0) return { ...current };

  if (others <= 0 && Number.isInteger(canaryPercent)) {
    // Rescaling is free: T if it splits exactly, else 100, else the smallest total above T that does
    // (MAX is a multiple of 100, so one always exists within it).
    const unit = 100 / gcd(canaryPercent, 100);
    let scaled = total % unit === 0 ? total : total <= 100 ? 100 : Math.ceil(total / unit) * unit;
    if (scaled > maxWeight) scaled = Math.floor(maxWeight / unit) * unit;
    const canary = (scaled * canaryPercent) / 100;
    return { stable: scaled - canary, canary };
  }

  if (total > maxWeight && (canaryPercent === 0 || canaryPercent === 100)) {
    return canaryPercent === 0 ? { stable: maxWeight, canary: 0 } : { stable: 0, canary: maxWeight };
  }
  let canary = nearestCanary(total, canaryPercent);
  if (canaryPercent > 0 && canary === 0 && total >= 2) canary = 1;
  if (canaryPercent < 100 && canary === total && total >= 2) canary = total - 1;
  // Both fields must stay within 0..MAX while keeping the total.
  canary = Math.min(Math.max(canary, total - maxWeight), maxWeight);
  return { stable: total - canary, canary };
}
