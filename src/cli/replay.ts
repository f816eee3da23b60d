/**
 * `rolloutd replay <policy.yaml> (--from <time> --to <time> | --rollout) [--prometheus URL] [--svg out.svg]`: runs a
 * policy's analysis against Prometheus history, as if a rollout had started at `--from`: the first step's
 * weight takes effect then, each analysis is evaluated at the deadline the daemon would have (step start +
 * interval, again after a hold or retry) over the window the daemon would use (since the step started, at
 * least --analysis-min-window), and the real lifecycle machine decides. It stops at promotion, rollback, or
 * when the next deadline falls after `--to`. Same table, picture and exit codes as simulate.
 *
 * Replay knows the metrics, not the weights the route had then: it answers "what would this policy have
 * decided on that traffic", for a past incident or a past rollout's time range. `--rollout` finds that range in
 * the Events rolloutd recorded on the policy's route (src/replay/events.ts).
 */
import { createAnalysisGateFactory, DEFAULT_MIN_WINDOW_SECONDS } from "../analysis/analyzer.ts";
import { PrometheusClient } from "../analysis/prometheus.ts";
import { TemplateError } from "../analysis/templates.ts";
import { CoreV1Api } from "@kubernetes/client-node";

import type { RolloutPolicy } from "../policy/types.ts";
import { rehearse } from "../replay/driver.ts";
import { latestRollout, routeEvents } from "../replay/events.ts";
import { isoTime } from "../replay/table.ts";
import { EXIT_INVALID, finish, InputError, readPolicy, type Out } from "./rehearsal.ts";
import { kubeFrom } from "./target.ts";

export interface ReplayOptions {
  from?: string;
  to?: string;
  /** Replay the latest rollout recorded in the route's Events instead of --from/--to. */
  rollout?: boolean;
  kubeconfig?: string;
  context?: string;
  prometheus?: string;
  svg?: string;
  policy?: string;
  analysisMinWindow?: number;
}

/** The time range to replay: --from/--to, or the latest rollout in the route's Events (--rollout). */
async function rangeOf(
  policy: RolloutPolicy,
  o: ReplayOptions,
): Promise<{ from: number; to: number; found?: string }> {
  if (o.rollout === true) {
    if (o.from !== undefined || o.to !== undefined)
      throw new InputError("use either --rollout or --from/--to");
    let events;
    try {
      const { kc } = kubeFrom({
        ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}),
        ...(o.context !== undefined ? { context: o.context } : {}),
      });
      events = await routeEvents(kc.makeApiClient(CoreV1Api), policy.namespace, policy.target);
    } catch (err) {
      throw new InputError(
        `cannot read the Events of ${policy.target.kind} ${policy.namespace}/${policy.target.name}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const range = latestRollout(events, Date.now());
    if (range === undefined) {
      throw new InputError(
        `no RolloutStarted Event on ${policy.target.kind} ${policy.namespace}/${policy.target.name} (Events expire, by default after one hour): use --from/--to`,
      );
    }
    const end =
      range.ended !== undefined
        ? `${range.ended.reason} at ${isoTime(range.ended.at)}`
        : "no ending Event yet";
    return {
      from: range.from,
      to: range.to,
      found: `rollout found in Events: started ${isoTime(range.from)} (${range.started.message.slice(0, 120)}); ${end}`,
    };
  }
  if (o.from === undefined || o.to === undefined) throw new InputError("give --from and --to, or --rollout");
  const from = parseTime(o.from, "--from");
  const to = parseTime(o.to, "--to");
  if (to <= from) throw new InputError("--to must be after --from");
  return { from, to };
}

/** ISO 8601 (2026-01-15T09:30:00Z) or Unix seconds. */
export function parseTime(text: string, what: string): number {
  const t = /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : Date.parse(text);
  if (!Number.isFinite(t)) {
    throw new InputError(
      `${what} ${JSON.stringify(text)}: expected an ISO 8601 time (2026-01-15T09:30:00Z) or Unix seconds`,
    );
  }
  return t;
}

export async function replayCommand(
  policyFile: string,
  o: ReplayOptions,
  out: Out,
  err: Out = out,
): Promise<number> {
  let client: PrometheusClient | undefined;
  try {
    const policy = await readPolicy(policyFile, o.policy);
    const { from, to, found } = await rangeOf(policy, o);
    if (found !== undefined) out.write(`${found}\n`);
    const spec = policy.analysis;
    if (spec === undefined) throw new InputError(`${policy.key} has no analysis: nothing to replay`);
    let url = spec.prometheus.url;
    if (o.prometheus !== undefined) {
      try {
        url = new URL(o.prometheus).toString();
      } catch {
        throw new InputError(`--prometheus ${JSON.stringify(o.prometheus)} is not a URL`);
      }
    }
    const target = url;
    // The daemon's own gate factory, with the client pointed at --prometheus when given.
    const gates = createAnalysisGateFactory({
      createSource: (p) => (client = new PrometheusClient({ ...p, url: target })),
      minWindowSeconds: o.analysisMinWindow ?? DEFAULT_MIN_WINDOW_SECONDS,
    });
    const gate = gates.gateFor(policy);
    const timeline = await rehearse({ policy, gate, start: from, end: to });
    return await finish(
      timeline,
      policy,
      isoTime,
      out,
      o.svg,
      `replay ${policy.key} (steps ${policy.steps.join(", ")}%, interval ${policy.intervalMs / 1000}s) from ${isoTime(from)} to ${isoTime(to)} on ${client?.url ?? url}`,
      (at) => isoTime(at).slice(11, 19),
    );
  } catch (e) {
    if (e instanceof InputError || e instanceof TemplateError) {
      err.write(`${e.message}\n`);
      return EXIT_INVALID;
    }
    throw e;
  } finally {
    client?.close();
  }
}
