/**
 * Finding a past rollout in the Kubernetes Events rolloutd recorded on a policy's route, for
 * `rolloutd replay --rollout`: the latest `RolloutStarted` is the start, the first Event after it that ends a
 * rollout (`Promoted`, `RolledBack`, `Aborted`, or the next `RolloutStarted`) is the end. Events are kept by
 * the API server for a limited time (one hour by default), so only recent rollouts can be found this way.
 */
import type { CoreV1Api, CoreV1Event } from "@kubernetes/client-node";

import { COMPONENT } from "../kube/events.ts";
import { toKubeError } from "../kube/errors.ts";

export interface RecordedEvent {
  reason: string;
  /** When it (last) happened, ms. */
  at: number;
  message: string;
}

export interface RolloutRange {
  from: number;
  to: number;
  /** The Event that started it, and the one that ended it when there is one. */
  started: RecordedEvent;
  ended?: RecordedEvent;
}

const ENDINGS = new Set(["Promoted", "RolledBack", "Aborted", "RolloutStarted"]);

/**
 * The latest rollout among `events`, or undefined when none started. Without an ending Event the range runs
 * to `now` (the rollout may still be going on). The end is one second past the ending Event so that the
 * decision recorded then is inside the range.
 */
export function latestRollout(events: readonly RecordedEvent[], now: number): RolloutRange | undefined {
  const sorted = [...events].sort((a, b) => a.at - b.at);
  const starts = sorted.filter((e) => e.reason === "RolloutStarted");
  const started = starts[starts.length - 1];
  if (started === undefined) return undefined;
  const ended = sorted.find((e) => e.at > started.at && ENDINGS.has(e.reason));
  return ended !== undefined
    ? { from: started.at, to: ended.at + 1000, started, ended }
    : { from: started.at, to: now, started };
}

function timeOf(e: CoreV1Event): number | undefined {
  const t = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata.creationTimestamp;
  const ms = t === undefined ? Number.NaN : new Date(t).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}

/** The Events rolloutd recorded on one object (by name and kind) in a namespace. */
export async function routeEvents(
  core: CoreV1Api,
  namespace: string,
  object: { kind: string; name: string },
): Promise<RecordedEvent[]> {
  let list: CoreV1Event[];
  try {
    list = (
      await core.listNamespacedEvent({
        namespace,
        fieldSelector: `involvedObject.name=${object.name},involvedObject.kind=${object.kind}`,
      })
    ).items;
  } catch (err) {
    throw toKubeError(err, "list Events");
  }
  const out: RecordedEvent[] = [];
  for (const e of list) {
    if (e.source?.component !== undefined && e.source.component !== COMPONENT) continue;
    const at = timeOf(e);
    if (at !== undefined && e.reason !== undefined)
      out.push({ reason: e.reason, at, message: e.message ?? "" });
  }
  return out;
}
