/**
 * Blue/green's separate preview route (Argo Rollouts' previewService), as
 * pure rules over the persisted state. The route the policy names is a
 * second route of the target's family holding the same pair; rolloutd writes
 * nothing of it but that pair's weights:
 *
 * - while a rollout runs (Progressing or Paused, any step), all of its pair's
 *   traffic goes to the new version — the preview step (0 % on the target)
 *   analyses that traffic, and after the switch it stays there;
 * - when the rollout ends it shows what the target shows: 100 % stable. On a
 *   promotion the roles swap, so that is the new version already (no write);
 *   on a rollback or an abort it is the old one again.
 *
 * The record lives in the target's state, written with the target's weights
 * (the commit point); the preview route follows it in the next pass, level
 * based, so a restart or a lost write converges on what the state says. At
 * rest it is put back only while it still holds what the rollout put there.
 */
import { atRest, type AppliedWeight, type RolloutState } from "../contract.ts";
import { sameAsApplied } from "./derive.ts";

export type PreviewRecord = NonNullable<RolloutState["previewRoute"]>;
export type PreviewRef = Pick<PreviewRecord, "kind" | "name">;

/** What a decision does to the preview route's record. */
export type PreviewChange =
  /** `next` carries the record it had before the decision (or none). */
  | { kind: "keep" }
  /**
   * A new record for `ref` at `canaryPercent`; the controller reads the
   * route and plans its pair. `required`: the rollout cannot begin without
   * it (a missing route holds the start); otherwise a missing route is
   * recorded with no weights and nothing waits.
   */
  | { kind: "set"; ref: PreviewRef; canaryPercent: 0 | 100; from?: AppliedWeight[]; required: boolean };

/** The preview route's share of the new version in a state: 100 while a rollout runs. */
export const previewPercent = (s: Pick<RolloutState, "phase">): 0 | 100 => (atRest(s.phase) ? 0 : 100);

/**
 * The record change from `was` to `next`. A rollout in flight keeps the
 * route it began with, even if the policy now names another: that is the one
 * whose traffic must come back at the end.
 */
export function previewChange(
  policyRef: PreviewRef | undefined,
  was: Pick<RolloutState, "previewRoute">,
  next: Pick<RolloutState, "phase">,
): PreviewChange {
  const rec = was.previewRoute;
  if (previewPercent(next) === 0) {
    if (!rec || rec.canaryPercent === 0) return { kind: "keep" };
    return { kind: "set", ref: refOf(rec), canaryPercent: 0, from: rec.applied, required: false };
  }
  if ((rec && rec.canaryPercent === 100) || !policyRef) return { kind: "keep" };
  return { kind: "set", ref: refOf(policyRef), canaryPercent: 100, required: true };
}

const refOf = (r: PreviewRef): PreviewRef => ({ kind: r.kind, name: r.name });

/**
 * The weights to write to the preview route now, or undefined to leave it:
 * `planned` is the record's share planned on the route as read. In flight
 * the route is brought to it; at rest only while it still holds what the
 * rollout put there (`from`).
 */
export function previewUpkeep(
  rec: PreviewRecord,
  pair: readonly AppliedWeight[],
  planned: readonly AppliedWeight[],
): AppliedWeight[] | undefined {
  if (sameAsApplied(planned, pair)) return undefined;
  if (rec.canaryPercent === 100) return [...planned];
  return rec.from?.length && sameAsApplied(rec.from, pair) ? [...planned] : undefined;
}
