/**
 * `rolloutd explain <kind>/<name>`: one screen on one rollout, in words —
 * where it is and why, the values behind its last analysis against their
 * bounds, and its history: every decision rolloutd recorded as an Event on
 * the route, oldest first. Read from the cluster (the state annotation and
 * the Events), like `status`, so it works whether or not the daemon runs.
 */
import { CoreV1Api, CustomObjectsApi, type CoreV1Event, type KubeConfig } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  decodeState,
  describeState,
  type RecordedCheck,
  type RolloutState,
} from "../contract.ts";
import { toKubeError } from "../kube/errors.ts";
import { COMPONENT } from "../kube/events.ts";
import type { KObject } from "../kube/kinds.ts";
import { ago } from "./status.ts";
import { kindInfo, kubeFrom, parseTarget, type GlobalOptions } from "./target.ts";

export interface ExplainEvent {
  at: number;
  last: number;
  count: number;
  type: string;
  reason: string;
  message: string;
}

const time = (t: number) => new Date(t).toISOString().slice(11, 19);

function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, "");
}

/** "p99-latency measured 612, above its max 500: fail". */
export function checkInWords(c: RecordedCheck): string {
  const bounds = [c.min !== undefined ? `min ${c.min}` : "", c.max !== undefined ? `max ${c.max}` : ""]
    .filter(Boolean)
    .join(" and ");
  switch (c.outcome) {
    case "noData":
      return `${c.name}: Prometheus returned no data (an empty result): neither pass nor fail`;
    case "nan":
      return `${c.name}: the query returned NaN (0/0, no requests): counted as no data`;
    case "error":
      return `${c.name}: the query errored (Prometheus unreachable, or an answer that is not one value): no verdict`;
    case "value": {
      const v = c.value ?? Number.NaN;
      const where =
        c.max !== undefined && v > c.max
          ? `above its max ${c.max}`
          : c.min !== undefined && v < c.min
            ? `below its min ${c.min}`
            : `within ${bounds}`;
      return `${c.name} measured ${num(v)}, ${where}: ${c.verdict}`;
    }
  }
}

/** Where the rollout is, and why, in a few lines. */
function now(s: RolloutState, at: number): string[] {
  const lines: string[] = [];
  lines.push(
    `Now: ${s.phase}${s.pausedBy ? ` (by ${s.pausedBy})` : ""} since ${time(s.since)} (${ago(at - s.since)} ago)`,
  );
  lines.push(`  ${describeState(s)}`);
  const applied = s.applied?.length
    ? s.applied.map((w) => `${w.backend}=${w.weight}`).join(" ")
    : `all on ${s.stable}`;
  lines.push(
    `  Weights as last written: ${applied}${s.weightsWrittenAt ? ` at ${time(s.weightsWrittenAt)}` : ""}; canary share ${s.canaryWeight}%`,
  );
  if (s.stepIndex >= 0) lines.push(`  Step ${s.stepIndex + 1}, stable ${s.stable}, canary ${s.canary}`);
  if (s.revision) lines.push(`  Canary revision under rollout: ${s.revision}`);
  if (s.phase === "Progressing") {
    if (s.stepStartedAt === undefined)
      lines.push("  Waiting for the route to accept the step's weights before its analysis window starts");
    else if (s.analysisDueAt !== undefined)
      lines.push(
        `  Analysis window since ${time(s.stepStartedAt)}; next analysis due ${time(s.analysisDueAt)}` +
          (s.analysisDueAt > at
            ? ` (in ${ago(s.analysisDueAt - at)})`
            : ` (${ago(at - s.analysisDueAt)} overdue)`),
      );
  }
  const runs = [
    s.failures ? `${s.failures} failed ${s.failures === 1 ? "analysis" : "analyses"} in a row` : "",
    s.noData ? `${s.noData} ${s.noData === 1 ? "analysis" : "analyses"} without enough data in a row` : "",
    s.errors ? `${s.errors} errored ${s.errors === 1 ? "analysis" : "analyses"} in a row` : "",
  ].filter(Boolean);
  if (runs.length) lines.push(`  Counting: ${runs.join(", ")}`);
  if (s.abort) lines.push(`  Abort since ${time(s.abort.at)}: ${s.abort.reason}`);
  return lines;
}

export function explainText(opts: {
  route: string;
  namespace: string;
  state: RolloutState;
  events: readonly ExplainEvent[];
  now: number;
}): string {
  const { state: s, events } = opts;
  const out: string[] = [];
  out.push(`${opts.route} in ${opts.namespace}${s.policy ? ` — policy ${s.policy}` : ""}`, "");
  out.push(...now(s, opts.now));
  const a = s.lastAnalysis;
  if (a) {
    out.push(
      "",
      `Last analysis at ${time(a.at)} (step ${a.stepIndex + 1}, canary at ${a.canaryWeight}%): ${a.verdict}${a.summary ? ` — ${a.summary}` : ""}`,
    );
    for (const c of a.checks) out.push(`  ${checkInWords(c)}`);
    if (!a.checks.length) out.push("  no checks: the step passes when its interval ends");
  }
  out.push("", "History (rolloutd's Events on the route, oldest first):");
  if (!events.length) out.push("  none left: Kubernetes keeps Events for an hour by default");
  for (const e of [...events].sort((x, y) => x.at - y.at)) {
    const repeat = e.count > 1 ? ` ×${e.count}, last ${time(e.last)}` : "";
    out.push(`  ${time(e.at)}  ${e.type === "Warning" ? "⚠ " : ""}${e.reason}${repeat}: ${e.message}`);
  }
  return `${out.join("\n")}\n`;
}

function eventTime(t: Date | string | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

export function toExplainEvent(e: CoreV1Event): ExplainEvent {
  const at =
    eventTime(e.firstTimestamp) ?? eventTime(e.eventTime) ?? eventTime(e.metadata?.creationTimestamp) ?? 0;
  return {
    at,
    last: eventTime(e.lastTimestamp) ?? at,
    count: e.count ?? 1,
    type: e.type ?? "Normal",
    reason: e.reason ?? "",
    message: e.message ?? "",
  };
}

export async function explainCommand(
  routeArg: string,
  o: GlobalOptions,
  out: { write(s: string): void },
): Promise<number> {
  const target = parseTarget(routeArg);
  const { kc, namespace } = kubeFrom(o);
  const k = await kindInfo(kc, target.kind);
  const route = `${target.kind.toLowerCase()}/${target.name}`;
  const api = kc.makeApiClient(CustomObjectsApi);
  let obj: KObject;
  try {
    obj = (await api.getNamespacedCustomObject({
      group: k.group,
      version: k.version,
      namespace,
      plural: k.plural,
      name: target.name,
    })) as KObject;
  } catch (err) {
    const e = toKubeError(err, `get ${target.kind} ${namespace}/${target.name}`);
    if ((e as { isNotFound?: boolean }).isNotFound) {
      out.write(`${target.kind} ${namespace}/${target.name} not found\n`);
      return 1;
    }
    throw e;
  }
  // An App Mesh GatewayRoute as AWS ships it has no weights: the state is kept on the VirtualRouter it leads to.
  const weightsObj =
    target.kind === "GatewayRoute" && !obj.metadata?.annotations?.[ANNOTATIONS.state]
      ? ((await routerBehind(kc, api, namespace, obj)) ?? obj)
      : obj;
  const raw = weightsObj.metadata?.annotations?.[ANNOTATIONS.state];
  if (!raw) {
    out.write(
      `${route} in ${namespace} carries no rolloutd state: no policy manages it (yet)` +
        (target.kind === "GatewayRoute"
          ? ", nor does a VirtualRouter it leads to (through its VirtualService)"
          : "") +
        "\n",
    );
    return 1;
  }
  const state = decodeState(raw);
  const list = await kc.makeApiClient(CoreV1Api).listNamespacedEvent({
    namespace,
    fieldSelector: `involvedObject.kind=${target.kind},involvedObject.name=${target.name}`,
  });
  const uid = obj.metadata?.uid;
  const events = list.items
    .filter((e) => (e.source?.component ?? e.reportingComponent) === COMPONENT)
    // An Event of an earlier object of the same name is not this rollout's history.
    .filter((e) => !uid || !e.involvedObject.uid || e.involvedObject.uid === uid)
    .map(toExplainEvent);
  out.write(explainText({ route, namespace, state, events, now: Date.now() }));
  return 0;
}

const ROUTE_SPECS = ["httpRoute", "http2Route", "grpcRoute"] as const;

/** GatewayRoute → action.target.virtualService.virtualServiceRef → VirtualService → its VirtualRouter. */
async function routerBehind(
  kc: KubeConfig,
  api: CustomObjectsApi,
  ns: string,
  gr: KObject,
): Promise<KObject | undefined> {
  const get = async (kind: "VirtualService" | "VirtualRouter", namespace: string, name: string) => {
    try {
      // The version the cluster serves (App Mesh: v1beta2 as AWS ships it, or v1beta1).
      const k = await kindInfo(kc, kind);
      return (await api.getNamespacedCustomObject({
        group: k.group,
        version: k.version,
        namespace,
        plural: k.plural,
        name,
      })) as KObject;
    } catch {
      return undefined;
    }
  };
  const spec = (gr.spec ?? {}) as Record<
    string,
    {
      action?: {
        target?: { virtualService?: { virtualServiceRef?: { name?: string; namespace?: string } } };
      };
    }
  >;
  const vsRef = ROUTE_SPECS.map((r) => spec[r]?.action?.target?.virtualService?.virtualServiceRef).find(
    (r) => r?.name,
  );
  if (!vsRef?.name) return undefined;
  const vsNs = vsRef.namespace ?? ns;
  const vs = await get("VirtualService", vsNs, vsRef.name);
  const vrRef = (
    vs?.spec as
      | { provider?: { virtualRouter?: { virtualRouterRef?: { name?: string; namespace?: string } } } }
      | undefined
  )?.provider?.virtualRouter?.virtualRouterRef;
  if (!vrRef?.name) return undefined;
  return get("VirtualRouter", vrRef.namespace ?? vsNs, vrRef.name);
}
