/**
 * What every router shares once read() has found the weight fields: the
 * weight maths (the pair's budget comes with the view) and the one
 * resourceVersion-guarded JSON Patch. A router family only says how to read.
 */
import type { RolloutPolicy } from "../policy/types.ts";
import { weightsPatch } from "./locations.ts";
import type { ObjectReader, ObjectWriter, RouteView, TrafficRouter } from "./types.ts";
import { splitPair } from "./weights.ts";

export abstract class PatchRouter implements TrafficRouter {
  constructor(
    protected readonly reader: ObjectReader,
    protected readonly writer: ObjectWriter,
  ) {}

  abstract read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView;

  plan(
    view: RouteView,
    roles: { stable: string; canary: string },
    canaryPercent: number,
  ): Record<string, number> {
    const { stable, canary } = splitPair(canaryPercent, view.pairTotal);
    return { [roles.stable]: stable, [roles.canary]: canary };
  }

  async write(view: RouteView, weights: Record<string, number>, stateAnnotation: string): Promise<void> {
    await this.writer.jsonPatch(
      view.weightsRef,
      weightsPatch(view.object, view.locations, weights, stateAnnotation),
    );
  }
}
