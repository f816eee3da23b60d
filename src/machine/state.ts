/**
 * The state a policy's route starts with when rolloutd adopts it. The state's
 * shape and encoding are part of the public contract (src/contract.ts).
 */
import type { RolloutState } from "../contract.ts";

export function initialState(opts: {
  stable: string;
  canary: string;
  baseline: Record<string, string>;
  now: number;
}): RolloutState {
  return {
    v: 1,
    phase: "Steady",
    stable: opts.stable,
    canary: opts.canary,
    baseline: { ...opts.baseline },
    stepIndex: -1,
    canaryWeight: 0,
    failures: 0,
    noData: 0,
    errors: 0,
    tokens: {},
    message: "adopted: watching for a new canary revision",
    since: opts.now,
    updatedAt: opts.now,
  };
}
