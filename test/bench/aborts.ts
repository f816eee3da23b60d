/**
 * A sample of aborts at a steady pace, each timed on its own: from the
 * response to the annotation patch to the watch event whose HTTPRoute shows
 * the canary at weight 0 (all traffic on stable).
 */
import { ANNOTATIONS } from "../../src/contract.ts";
import { sleep } from "../support/chaos.ts";
import { mergePatch, type Cluster } from "../support/cluster.ts";
import { httpRoute } from "../support/routes.ts";
import type { Rollout } from "./objects.ts";
import type { RouteWatch } from "./watch.ts";

export interface AbortTimes {
  /** Milliseconds, ascending. */
  latencies: number[];
  /** Not at weight 0 within 60 s. */
  lost: Rollout[];
  /** Weight events that arrived before the patch's response (counted as 0 ms). */
  early: number;
}

/** `sample` evenly spread over `rs`. */
export function abortSample(rs: Rollout[], k: number): Rollout[] {
  return Array.from({ length: k }, (_, i) => rs[Math.floor((i * rs.length) / k)]!);
}

/** Aborts `burst` rollouts of the sample together every `everyMs`, and times each. */
export async function runAborts(
  c: Cluster,
  watch: RouteWatch,
  sample: Rollout[],
  everyMs: number,
  burst = 1,
): Promise<AbortTimes> {
  const out: AbortTimes = { latencies: [], lost: [], early: 0 };
  const one = async (r: Rollout, k: number) => {
    const seen = watch.next(r.ns, r.name, (obj) => httpRoute.weights(obj)[r.canary] === 0);
    await mergePatch(c, "HTTPRoute", r.ns, r.name, {
      metadata: {
        annotations: { [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: `bench abort ${k}` },
      },
    });
    const answered = performance.now();
    const at = await Promise.race([seen, sleep(60_000).then(() => NaN)]);
    if (Number.isNaN(at)) return void out.lost.push(r);
    if (at < answered) out.early++;
    out.latencies.push(Math.max(0, at - answered));
  };
  const t0 = performance.now();
  const inflight: Array<Promise<void>> = [];
  for (let i = 0; i < sample.length; i += burst) {
    await sleep(t0 + (i / burst) * everyMs - performance.now());
    sample.slice(i, i + burst).forEach((r, j) => inflight.push(one(r, i + j)));
  }
  await Promise.all(inflight);
  out.latencies.sort((a, b) => a - b);
  return out;
}
