/**
 * `rolloutd status`: the rollouts as the cluster records them — read from
 * the state annotations on the routes, not from the daemon, so it works
 * whether or not the daemon runs and shows exactly what a restart resumes.
 */
import { CustomObjectsApi } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { toKubeError } from "../kube/errors.ts";
import type { KObject } from "../kube/kinds.ts";
import { kindInfo, kubeFrom, ROUTE_KINDS, type GlobalOptions } from "./target.ts";
import { decodeState, describeState, type RolloutState, ANNOTATIONS } from "../contract.ts";

export interface StatusRow {
  namespace: string;
  route: string;
  state: RolloutState;
}

export function ago(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  if (s < 172800) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

function checks(s: RolloutState): string {
  const a = s.lastAnalysis;
  if (!a) return "-";
  if (!a.checks.length) return a.verdict === "pass" ? "pass (no checks)" : a.verdict;
  return a.checks
    .map((c) => {
      const bound =
        c.max !== undefined && c.value !== null && c.value > c.max
          ? `>${c.max}`
          : c.min !== undefined && c.value !== null && c.value < c.min
            ? `<${c.min}`
            : "";
      const v =
        c.value === null || Number.isNaN(c.value)
          ? c.outcome
          : `${c.atLeast ? "≥" : ""}${!Number.isFinite(c.value) ? (c.value > 0 ? "+Inf" : "-Inf") : Number.isInteger(c.value) ? String(c.value) : c.value.toPrecision(3)}`;
      return `${c.name}=${v}${bound} ${c.verdict === "pass" ? "✓" : c.verdict === "fail" ? "✗" : "?"}`;
    })
    .join(", ");
}

/** The pair as last written; several locations show as "web-v1=95,80" in the order of the route. */
function weightsOf(s: RolloutState): string {
  const of = (b: string) =>
    (s.applied ?? [])
      .filter((w) => w.backend === b)
      .map((w) => w.weight)
      .join(",") || "0";
  return `${s.stable}=${of(s.stable)} ${s.canary}=${of(s.canary)}`;
}

/** Shown in the table; `-o json` and `rolloutd explain` give all of it. */
const WHY_CHARS = 100;

/**
 * Why the rollout is where it is, and for how long it has been at its step:
 * a rollout held twelve times for too few requests says so, and since when.
 */
export function why(s: RolloutState, now: number): string {
  const text = describeState(s) || "-";
  const atStep =
    s.phase === "Progressing" && s.stepStartedAt !== undefined
      ? `; at this step for ${ago(now - s.stepStartedAt)}`
      : s.phase === "Progressing"
        ? `; waiting for the route to accept the step for ${ago(now - (s.weightsWrittenAt ?? s.updatedAt))}`
        : "";
  const full = `${text}${atStep}`;
  const chars = [...full];
  return chars.length <= WHY_CHARS ? full : `${chars.slice(0, WHY_CHARS - 1).join("")}…`;
}

/** A fixed-width table, as kubectl prints. */
export function table(rows: StatusRow[], now: number, allNamespaces: boolean): string {
  const head = [
    ...(allNamespaces ? ["NAMESPACE"] : []),
    "POLICY",
    "ROUTE",
    "PHASE",
    "STEP",
    "WEIGHTS",
    "LAST ANALYSIS",
    "AGE",
    "WHY",
  ];
  const body = rows.map(({ namespace, route, state: s }) => [
    ...(allNamespaces ? [namespace] : []),
    s.policy?.split("/")[1] ?? "-",
    route,
    s.phase === "Paused" && s.pausedBy ? `Paused(${s.pausedBy})` : s.phase,
    s.stepIndex < 0
      ? "-"
      : s.stageRule
        ? `${s.stepIndex + 1} (stage: ${s.stageRule.match ?? "request match"})`
        : s.previewRoute?.canaryPercent === 100 && s.stepIndex === 0
          ? `1 (preview: ${s.previewRoute.kind} ${s.previewRoute.name})`
          : `${s.stepIndex + 1} (${s.canaryWeight}%)`,
    s.applied?.length ? weightsOf(s) : `${s.stable} (stable)`,
    checks(s),
    ago(now - s.since),
    why(s, now),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  return (
    [head, ...body]
      .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("   "))
      .join("\n") + "\n"
  );
}

export async function collectStatus(o: GlobalOptions & { allNamespaces?: boolean }): Promise<StatusRow[]> {
  const { kc, namespace } = kubeFrom(o);
  const api = kc.makeApiClient(CustomObjectsApi);
  const rows: StatusRow[] = [];
  for (const kind of ROUTE_KINDS) {
    const k = await kindInfo(kc, kind);
    let items: KObject[];
    try {
      const list = (
        o.allNamespaces
          ? await api.listClusterCustomObject({ group: k.group, version: k.version, plural: k.plural })
          : await api.listNamespacedCustomObject({
              group: k.group,
              version: k.version,
              namespace,
              plural: k.plural,
            })
      ) as { items: KObject[] };
      items = list.items;
    } catch (err) {
      const e = toKubeError(err, `list ${k.plural}`);
      // A cluster without App Mesh (or without Gateway API) simply has no such rollouts.
      if ((e as { isNotFound?: boolean }).isNotFound) continue;
      throw e;
    }
    for (const obj of items) {
      const raw = obj.metadata?.annotations?.[ANNOTATIONS.state];
      if (!raw) continue;
      try {
        rows.push({
          namespace: obj.metadata!.namespace!,
          route: `${kind.toLowerCase()}/${obj.metadata!.name}`,
          state: decodeState(raw),
        });
      } catch {
        // not ours to show
      }
    }
  }
  return rows.sort((a, b) =>
    `${a.namespace}/${a.state.policy}`.localeCompare(`${b.namespace}/${b.state.policy}`),
  );
}

export async function statusCommand(
  policy: string | undefined,
  o: GlobalOptions & { allNamespaces?: boolean; output?: string },
  out: { write(s: string): void },
): Promise<number> {
  let rows = await collectStatus(o);
  if (policy)
    rows = rows.filter((r) => r.state.policy?.split("/")[1] === policy || r.state.policy === policy);
  if (o.output === "json") out.write(`${JSON.stringify(rows, null, 2)}\n`);
  else if (o.output === "yaml") out.write(stringify(rows));
  else if (!rows.length)
    out.write(policy ? `no rollout found for policy ${policy}\n` : "no rollouts found\n");
  else out.write(table(rows, Date.now(), o.allNamespaces === true));
  return policy && !rows.length ? 1 : 0;
}
