/**
 * The writes a reconcile makes besides the plain guarded patch: falling back
 * when the API server refuses the state (422), and recording on the route
 * why a rollout is stuck when its weights cannot be used. Both keep the
 * promise in order — traffic where the decision put it first, the record
 * second — and both go through the routers, so every write is still one
 * resourceVersion-guarded JSON Patch of rolloutd's own fields.
 */
import type { Logger } from "pino";
import type { Clock } from "../clock.ts";
import { ANNOTATIONS, decodeState, encodeState, type RolloutState } from "../contract.ts";
import type { JsonPatchOp } from "../kube/access.ts";
import { KubeApiError } from "../kube/errors.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import type { RouterRegistry } from "../routers/index.ts";
import type { PairWeight, RouteView, TrafficRouter } from "../routers/types.ts";
import type { Metrics } from "../server/metrics.ts";
import type { ObjectSource } from "./reconcile.ts";
import type { Reporter } from "./report.ts";

/** A compacted state keeps this much of the message. */
const COMPACT_MESSAGE_CHARS = 300;
/** …and of the abort reason. */
const COMPACT_REASON_CHARS = 200;

const cut = (text: string, n: number) => [...text].slice(0, n).join("");

export class StateWriter {
  constructor(
    private readonly d: {
      objects: ObjectSource;
      routers: RouterRegistry;
      reporter: Reporter;
      metrics: Metrics;
      clock: Clock;
    },
  ) {}

  /**
   * The guarded write. A 422 means the object as patched would be invalid;
   * the likeliest cause is the 256 KiB annotation budget, filled by someone
   * else's annotations. The state is then written compacted, and if even that
   * is refused, the weights alone: traffic on stable is the promise, the
   * record is the courtesy.
   */
  async write(
    policy: RolloutPolicy,
    router: TrafficRouter,
    view: RouteView,
    pair: PairWeight[] | undefined,
    next: RolloutState,
    log: Logger,
    /** A request stage's rule added or removed in the same patch. */
    stageOps: JsonPatchOp[] = [],
  ): Promise<"whole" | "compact" | "weightsOnly"> {
    try {
      await router.write(view, pair, encodeState(next), stageOps);
      return "whole";
    } catch (err) {
      if (!(err instanceof KubeApiError && err.isInvalid)) throw err;
      log.warn({ err: err.message }, "state write refused as invalid; retrying with a compact state");
    }
    const compact: RolloutState = {
      ...next,
      lastAnalysis: undefined,
      message: cut(next.message, COMPACT_MESSAGE_CHARS),
      ...(next.abort
        ? { abort: { at: next.abort.at, reason: cut(next.abort.reason, COMPACT_REASON_CHARS) } }
        : {}),
    };
    try {
      await router.write(view, pair, encodeState(compact), stageOps);
      return "compact";
    } catch (err) {
      if (!(err instanceof KubeApiError && err.isInvalid) || !pair) throw err;
      // Without a state nothing would record a rule as rolloutd's: only its removal goes with the weights.
      await router.write(view, pair, undefined, next.stageRule ? [] : stageOps);
      this.d.metrics.stateWriteRejected.inc({ policy: policy.key });
      this.d.reporter.warning(
        policy,
        view.target,
        "StateNotRecorded",
        `weights set (${pair.map((w) => `${w.backend}=${w.weight}`).join(" ")}) but the API server refused rolloutd's ` +
          `state annotation: ${err.message}. The object's annotations are likely near the 256 KiB limit; ` +
          "remove large annotations so the rollout can be recorded",
        log,
      );
      return "weightsOnly";
    }
  }

  /**
   * When the object the policy names holds rolloutd's state but cannot be
   * used (the pair is gone from it, say), the state says why and since when,
   * so `rolloutd status` and `explain` show it, not a step that no longer
   * moves. Written once per reason; an object without our state is left alone.
   */
  async recordStuck(p: RolloutPolicy, reason: string, message: string): Promise<void> {
    const obj = this.d.objects.get(p.target.kind, p.namespace, p.target.name);
    const raw = obj?.metadata?.annotations?.[ANNOTATIONS.state];
    if (!obj || raw === undefined) return;
    let state: RolloutState;
    try {
      state = decodeState(raw);
    } catch {
      return;
    }
    if (state.stuck?.reason === reason && state.stuck.message === message) return;
    const now = this.d.clock.now();
    const since = state.stuck?.reason === reason ? state.stuck.since : now;
    const next: RolloutState = { ...state, stuck: { reason, message, since }, updatedAt: now };
    await this.d.routers.writeStateOnly(
      { kind: p.target.kind, namespace: p.namespace, name: p.target.name },
      obj,
      encodeState(next),
    );
  }
}
