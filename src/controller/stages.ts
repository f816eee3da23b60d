/**
 * The request stage's owned rule (issue 12), kept what the persisted state
 * says. A decision writes the rule together with the state when it can (a
 * rule inside the route: Gateway API, a VirtualRouter). Upkeep then runs on
 * every pass that decides nothing, whatever woke it — the route's own watch
 * event included — so a rule someone removed by hand is put back (and an
 * Event says so) without touching the analysis or the weights.
 *
 * App Mesh's weighted GatewayRoute holds one route per object, so its stage
 * is a GatewayRoute of rolloutd's own that no patch can write together with
 * the state. The state records it first; upkeep then creates it, moves it to
 * the next stage, and deletes it once the stages are over, and only then
 * drops the record — one write per pass, so a restart at any point finds
 * what is left to do, and an object the state does not record (or that lacks
 * rolloutd's owner reference) is never touched.
 */
import type { Logger } from "pino";
import { encodeState, type RolloutState } from "../contract.ts";
import type { KObject } from "../kube/kinds.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import { KubeApiError } from "../kube/errors.ts";
import { stageAt, type RolloutPolicy } from "../policy/types.ts";
import { STAGE_RULE_NAME, stageLabel, type Stage } from "../routers/stagerule.ts";
import { RouteError, type RouteView, type TrafficRouter } from "../routers/types.ts";
import type { PolicyRecord } from "./registry.ts";
import type { Reporter } from "./report.ts";

/** The request stage whose rule belongs in the route: while a rollout is in (or paused at) a stage step. */
export function stageFor(
  policy: RolloutPolicy,
  s: RolloutState,
): { index: number; stage: Stage } | undefined {
  return s.phase === "Progressing" || s.phase === "Paused" ? stageAt(policy, s.stepIndex) : undefined;
}

/**
 * `next` with the owned stage rule it implies, and the operations that make
 * the route match: added when a stage begins, replaced by the next stage,
 * removed when the stages end (a weight step, promotion, rollback, abort).
 * A stage's object of its own stays recorded until upkeep has deleted it.
 */
export function withStageRule(
  policy: RolloutPolicy,
  router: TrafficRouter,
  view: RouteView,
  was: RolloutState,
  next: RolloutState,
): { state: RolloutState; ops: JsonPatchOp[] } {
  const desired = stageFor(policy, next);
  const roles = { stable: next.stable, canary: next.canary };
  const ops = router.stageOps?.(view, roles, desired, was.stageRule) ?? [];
  const own = router.stageObject?.(view, roles, desired, was.stageRule);
  const { stageRule: _old, ...rest } = next;
  if (desired) {
    const record = {
      name: own?.name ?? STAGE_RULE_NAME,
      stage: desired.index,
      match: stageLabel(desired.stage),
    };
    return { state: { ...rest, stageRule: record }, ops };
  }
  return { state: own?.present && was.stageRule ? { ...rest, stageRule: was.stageRule } : rest, ops };
}

/**
 * One pass's upkeep of the owned rule: at most one write, and true when it
 * wrote (the caller looks again at once). Refusals (someone else's rule, an
 * object the API server will not take) are reported and never block the
 * lifecycle; a conflict is thrown, to be retried.
 */
export async function keepStageRule(
  reporter: Reporter,
  record: PolicyRecord,
  router: TrafficRouter,
  view: RouteView,
  state: RolloutState,
  log: Logger,
): Promise<boolean> {
  const policy = record.policy;
  const desired = stageFor(policy, state);
  const recorded = state.stageRule;
  try {
    const fix = withStageRule(policy, router, view, state, state);
    if (fix.ops.length) {
      await router.write(view, undefined, encodeState(fix.state), fix.ops);
      // The state recorded the rule for this very stage and it had to be added: someone removed it.
      if (recorded && desired && recorded.stage === desired.index && fix.ops.some((o) => o.op === "add"))
        restored(reporter, record, view, recorded.name, log);
      return true;
    }
    const own = router.stageObject?.(view, { stable: state.stable, canary: state.canary }, desired, recorded);
    if (!own) return false;
    if (own.foreign) reporter.problem(record, "warn", own.foreign);
    const seen = desired ? `${own.name}#${desired.index}` : undefined;
    if (own.present && !own.write) record.stageSeen = seen;
    const write = own.write;
    if (!write) return false;
    if (write.op === "forget") {
      const { stageRule: _gone, ...rest } = state;
      await router.write(view, undefined, encodeState(rest));
      return true;
    }
    // Created for a stage whose object this daemon had already written or seen: someone removed it.
    const again = write.op === "create" && seen !== undefined && record.stageSeen === seen;
    try {
      const stored = await router.writeStageObject?.(write);
      if (write.op === "create" && stored) priorityKept(reporter, record, view, write.object, stored, log);
    } catch (err) {
      // Gone already: the next pass sees it gone and forgets it.
      if (!(write.op === "delete" && err instanceof KubeApiError && err.isNotFound)) throw err;
    }
    record.stageSeen = write.op === "delete" ? undefined : seen;
    if (again) restored(reporter, record, view, own.name, log);
    return true;
  } catch (err) {
    if (err instanceof RouteError) {
      reporter.problem(record, "warn", `${err.message}; will retry when it changes`);
      return false;
    }
    if (err instanceof KubeApiError && !err.isConflict) {
      reporter.problem(record, "warn", `the request stage's rule could not be written: ${err.message}`);
      return false;
    }
    throw err;
  }
}

/**
 * A GatewayRoute schema without spec.priority (the design document's
 * abridged v1beta1 one, say) prunes it silently: the stage's GatewayRoute is
 * then not placed before the user's, and App Mesh may send it nothing. Said
 * once per creation, so it is seen.
 */
function priorityKept(
  reporter: Reporter,
  record: PolicyRecord,
  view: RouteView,
  want: KObject,
  stored: KObject,
  log: Logger,
): void {
  const asked = (want.spec as { priority?: unknown } | undefined)?.priority;
  const kept = (stored.spec as { priority?: unknown } | undefined)?.priority;
  if (asked === kept) return;
  reporter.warning(
    record.policy,
    view.target,
    "StagePriorityDropped",
    `the GatewayRoute schema this cluster serves dropped spec.priority (${String(asked)}) from ` +
      `${stored.metadata?.name ?? "the stage's GatewayRoute"}: it is not placed before yours, so App Mesh may not ` +
      "send the stage's requests to it",
    log,
  );
}

function restored(
  reporter: Reporter,
  record: PolicyRecord,
  view: RouteView,
  name: string,
  log: Logger,
): void {
  reporter.warning(
    record.policy,
    view.target,
    "StageRuleRestored",
    `the request stage's rule ${name} (rolloutd's, recorded in its state) was removed by someone else; ` +
      "rolloutd put it back: a stage's rule lives until the stage ends (use the abort annotation to end a rollout)",
    log,
  );
}
