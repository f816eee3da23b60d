/**
 * What every router shares once read() has found the weight fields: the
 * weight maths (the pair's budget comes with the view) and the one
 * resourceVersion-guarded JSON Patch. A router family only says how to read.
 */
import type { RolloutPolicy } from "../policy/types.ts";
import { weightsPatch } from "./locations.ts";
import type { ObjectReader, ObjectWriter } from "../kube/access.ts";
import type { PairWeight, RouteView, TrafficRouter } from "./types.ts";
import { splitPair } from "./weights.ts";

export abstract class PatchRouter implements TrafficRouter {
  constructor(
    protected readonly reader: ObjectReader,
    protected readonly writer: ObjectWriter,
  ) {}

  abstract read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView;

  plan(view: RouteView, roles: { stable: string; canary: string }, canaryPercent: number): PairWeight[] {
    const { stable, canary } = splitPair(canaryPercent, view.pairTotal);
    return view.pair.map((w) => ({
      ...w,
      weight: w.backend === roles.stable ? stable : w.backend === roles.canary ? canary : w.weight,
    }));
  }

  async write(
    view: RouteView,
    weights: PairWeight[] | undefined,
    stateAnnotation: string | undefined,
  ): Promise<void> {
    await this.writer.jsonPatch(view.weightsRef, weightsPatch(view.object, weights, stateAnnotation));
  }
}
