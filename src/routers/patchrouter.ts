/**
 * What every router shares once read() has found the weight fields: the
 * per-location weight maths (weights.ts) and the one resourceVersion-guarded
 * JSON Patch. A router family says how to read, its largest weight, and what
 * an entry without a weight field means.
 */
import type { RolloutPolicy } from "../policy/types.ts";
import {
  asArray,
  asNumber,
  asRecord,
  entryIndexOf,
  locationOf,
  pointerGet,
  weightsPatch,
} from "./locations.ts";
import type { JsonPatchOp, ObjectReader, ObjectWriter } from "../kube/access.ts";
import type { PairWeight, RouteView, TrafficRouter } from "./types.ts";
import { planLocation } from "./weights.ts";

export abstract class PatchRouter implements TrafficRouter {
  /** The largest weight one field may hold. */
  protected abstract readonly maxWeight: number;
  /** What an entry without a weight field weighs. */
  protected abstract readonly defaultWeight: number;

  constructor(
    protected readonly reader: ObjectReader,
    protected readonly writer: ObjectWriter,
  ) {}

  /** What one entry of a weight list weighs (for the backends beside the pair). */
  protected entryWeight(entry: Record<string, unknown>): number {
    return asNumber(entry.weight, this.defaultWeight);
  }

  abstract read(policy: RolloutPolicy, roles: { stable: string; canary: string }): RouteView;

  plan(view: RouteView, roles: { stable: string; canary: string }, canaryPercent: number): PairWeight[] {
    const byLocation = new Map<string, PairWeight[]>();
    for (const w of view.pair) {
      const loc = locationOf(w.path);
      byLocation.set(loc, [...(byLocation.get(loc) ?? []), w]);
    }
    const planned = new Map<string, number>();
    for (const [loc, fields] of byLocation) {
      const pairEntries = new Set(fields.map((f) => entryIndexOf(f.path)));
      let others = 0;
      asArray(pointerGet(view.object, loc)).forEach((item, i) => {
        if (!pairEntries.has(i)) others += this.entryWeight(asRecord(item) ?? {});
      });
      const stable = fields.filter((f) => f.backend === roles.stable);
      const canary = fields.filter((f) => f.backend === roles.canary);
      // read() guarantees one field per backend per location.
      if (stable.length !== 1 || canary.length !== 1) {
        throw new Error(`${loc}: expected one weight field each for ${roles.stable} and ${roles.canary}`);
      }
      const next = planLocation(
        { stable: stable[0]!.weight, canary: canary[0]!.weight },
        others,
        canaryPercent,
        this.maxWeight,
      );
      planned.set(stable[0]!.path, next.stable);
      planned.set(canary[0]!.path, next.canary);
    }
    // Same fields, same order as read.
    return view.pair.map((w) => ({ ...w, weight: planned.get(w.path)! }));
  }

  async write(
    view: RouteView,
    weights: PairWeight[] | undefined,
    stateAnnotation: string | undefined,
    stageOps: JsonPatchOp[] = [],
  ): Promise<void> {
    await this.writer.jsonPatch(view.weightsRef, [
      ...weightsPatch(view.object, view.pair, weights, stateAnnotation),
      ...stageOps,
    ]);
  }
}
