/**
 * Scripted metrics for `rolloutd simulate`: what every check of a policy measures at each analysis of each
 * step, written by a policy author instead of asked from Prometheus.
 *
 * ```yaml
 * steps:                                  # one entry per policy step, in order
 *   - requests: 400                       # canary requests in the window (needed when minRequests > 0)
 *     checks:
 *       p99-latency: 120                  # a value: every analysis of this step sees it
 *       error-rate: [0.2, 0.001]          # a list: the 1st analysis of this step sees 0.2, the 2nd 0.001
 *   - checks:
 *       p99-latency: nodata               # also: NaN, error, +Inf, -Inf
 *       error-rate: 0.001
 *       p99-vs-stable: { canary: 130, stable: 120 }                       # compare: stable, relative bounds
 *       p99-judged: { canary: [120, 131, 125], stable: [119, 121, 118] }  # compare: stable, judge: samples
 * ```
 *
 * A step has as many analyses as its longest list (at least one); when the rollout needs one more (a hold or a
 * retry beyond what the script says), the simulation ends as incomplete and says so, rather than inventing data.
 * Every check of the policy must have a value in every step, and every name must be a check of the policy.
 *
 * The script is served through the real PrometheusGate: each check's query is replaced by a synthetic one
 * naming the check and the backend (`rolloutd_simulated{check="p99-latency",backend="{{canary}}"}`), which the
 * ScriptSource below answers. Template units are lost on the way (values print without "ms").
 */
import { parseDocument } from "yaml";

import type { MetricSource, QueryOutcome, RangeOutcome } from "../analysis/types.ts";
import type { AnalysisSpec, RolloutPolicy } from "../policy/types.ts";

export type ScriptValue = QueryOutcome;

/** What one check measures at one analysis. */
export type ScriptEntry =
  | { kind: "single"; value: ScriptValue }
  | { kind: "pair"; canary: ScriptValue; stable: ScriptValue }
  | { kind: "samples"; canary: number[]; stable: number[] };

export interface ScriptStep {
  /** Per analysis (index = attempt within the step). */
  requests?: ScriptValue[];
  checks: Record<string, ScriptEntry[]>;
  analyses: number;
}

export interface MetricsScript {
  steps: ScriptStep[];
}

export class ScriptError extends Error {
  override readonly name = "ScriptError";
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const WORDS: Readonly<Record<string, ScriptValue>> = {
  nodata: { kind: "noData" },
  "no data": { kind: "noData" },
  nan: { kind: "nan" },
  error: { kind: "error", error: { code: "unreachable", message: "scripted error" } },
  "+inf": { kind: "value", value: Number.POSITIVE_INFINITY },
  inf: { kind: "value", value: Number.POSITIVE_INFINITY },
  "-inf": { kind: "value", value: Number.NEGATIVE_INFINITY },
};

function scalar(v: unknown, where: string): ScriptValue {
  if (typeof v === "number") return Number.isNaN(v) ? { kind: "nan" } : { kind: "value", value: v };
  if (typeof v === "string") {
    const w = WORDS[v.trim().toLowerCase()];
    if (w !== undefined) return w;
  }
  throw new ScriptError(
    `${where}: expected a number or one of nodata, NaN, error, +Inf, -Inf; got ${JSON.stringify(v)}`,
  );
}

function samples(v: unknown, where: string): number[] {
  if (!Array.isArray(v)) throw new ScriptError(`${where}: expected a list of numbers (samples)`);
  return v.map((x, i) => {
    const s = scalar(x, `${where}[${i}]`);
    if (s.kind === "value") return s.value;
    if (s.kind === "nan") return Number.NaN;
    throw new ScriptError(`${where}[${i}]: samples are numbers or NaN`);
  });
}

function entry(v: unknown, where: string): ScriptEntry {
  if (isRecord(v)) {
    const keys = Object.keys(v).sort().join(",");
    if (keys !== "canary,stable")
      throw new ScriptError(`${where}: a mapping needs exactly canary and stable`);
    if (Array.isArray(v.canary) || Array.isArray(v.stable)) {
      return {
        kind: "samples",
        canary: samples(v.canary, `${where}.canary`),
        stable: samples(v.stable, `${where}.stable`),
      };
    }
    return {
      kind: "pair",
      canary: scalar(v.canary, `${where}.canary`),
      stable: scalar(v.stable, `${where}.stable`),
    };
  }
  return { kind: "single", value: scalar(v, where) };
}

function entries(v: unknown, where: string): ScriptEntry[] {
  if (Array.isArray(v)) {
    if (v.length === 0) throw new ScriptError(`${where}: an empty list`);
    return v.map((x, i) => entry(x, `${where}[${i}]`));
  }
  return [entry(v, where)];
}

/** Parses and checks a metrics script against the policy it is meant for. Throws ScriptError naming the place. */
export function parseScript(text: string, policy: RolloutPolicy, file = "metrics"): MetricsScript {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new ScriptError(`${file}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
  const data: unknown = doc.toJS();
  if (!isRecord(data) || !Array.isArray(data.steps))
    throw new ScriptError(`${file}: expected a mapping with steps: [...]`);
  const analysis = policy.analysis;
  const checks = new Map((analysis?.checks ?? []).map((c) => [c.name, c]));
  const needRequests = (analysis?.minRequests ?? 0) > 0;
  const steps = data.steps.map((raw: unknown, i): ScriptStep => {
    const where = `${file}: steps[${i}]`;
    if (!isRecord(raw)) throw new ScriptError(`${where}: expected a mapping with checks (and requests)`);
    for (const k of Object.keys(raw)) {
      if (k !== "checks" && k !== "requests")
        throw new ScriptError(`${where}.${k}: unknown field (checks, requests)`);
    }
    const rawChecks = raw.checks ?? {};
    if (!isRecord(rawChecks))
      throw new ScriptError(`${where}.checks: expected a mapping of check name → value`);
    const out: Record<string, ScriptEntry[]> = {};
    for (const [name, v] of Object.entries(rawChecks)) {
      const check = checks.get(name);
      if (check === undefined) {
        throw new ScriptError(
          `${where}.checks.${name}: no such check in ${policy.key} (checks: ${[...checks.keys()].join(", ")})`,
        );
      }
      const list = entries(v, `${where}.checks.${name}`);
      const want = check.compare === undefined ? "single" : check.judge !== undefined ? "samples" : "pair";
      const bad = list.find((e) => e.kind !== want);
      if (bad !== undefined) {
        const shape =
          want === "single"
            ? "a value"
            : want === "pair"
              ? "{ canary: value, stable: value }"
              : "{ canary: [samples], stable: [samples] }";
        throw new ScriptError(`${where}.checks.${name}: this check needs ${shape} per analysis`);
      }
      out[name] = list;
    }
    for (const name of checks.keys()) {
      if (out[name] === undefined) throw new ScriptError(`${where}.checks: no value for check ${name}`);
    }
    let requests: ScriptValue[] | undefined;
    if (raw.requests !== undefined) {
      const list = Array.isArray(raw.requests) ? raw.requests : [raw.requests];
      requests = list.map((x, j) => scalar(x, `${where}.requests[${j}]`));
    } else if (needRequests) {
      throw new ScriptError(
        `${where}.requests: the policy has minRequests ${analysis?.minRequests}; say how many requests`,
      );
    }
    const analyses = Math.max(1, requests?.length ?? 1, ...Object.values(out).map((l) => l.length));
    return { checks: out, analyses, ...(requests !== undefined ? { requests } : {}) };
  });
  if (steps.length === 0) throw new ScriptError(`${file}: steps is empty`);
  return { steps };
}

const CHECK_RE = /^rolloutd_simulated\{check="([a-z0-9-]+)",backend="([^"]*)"\}$/;
const REQUESTS_RE = /^rolloutd_simulated_requests\{backend="([^"]*)"\}$/;

/** The policy's analysis with every query replaced by the synthetic one the ScriptSource answers. */
export function scriptedSpec(spec: AnalysisSpec): AnalysisSpec {
  return {
    ...spec,
    checks: spec.checks.map((c) => {
      const { template: _t, query: _q, ...rest } = c;
      return { ...rest, query: `rolloutd_simulated{check="${c.name}",backend="{{canary}}"}` };
    }),
    ...(spec.minRequests > 0 ? { requestsQuery: `rolloutd_simulated_requests{backend="{{canary}}"}` } : {}),
  };
}

/** Answers the synthetic queries from the script at the current step and attempt (set by `at`). */
export class ScriptSource implements MetricSource {
  #step = 0;
  #attempt = 0;

  constructor(
    private readonly script: MetricsScript,
    private readonly canary: string,
  ) {}

  /** Whether the script has data for this analysis; the reason when not. */
  at(stepIndex: number, attempt: number): string | undefined {
    const s = this.script.steps[stepIndex];
    if (s === undefined) {
      const n = this.script.steps.length;
      return `the script has ${n} ${n === 1 ? "step" : "steps"}; the rollout reached step ${stepIndex + 1}`;
    }
    if (attempt >= s.analyses) {
      return `the script has ${s.analyses} ${s.analyses === 1 ? "analysis" : "analyses"} for step ${stepIndex + 1}; the rollout needed another (still holding or retrying)`;
    }
    this.#step = stepIndex;
    this.#attempt = attempt;
    return undefined;
  }

  #entry(name: string): ScriptEntry | undefined {
    const list = this.script.steps[this.#step]?.checks[name];
    return list?.[Math.min(this.#attempt, list.length - 1)];
  }

  query(promql: string): Promise<QueryOutcome> {
    const req = REQUESTS_RE.exec(promql);
    if (req !== null) {
      const list = this.script.steps[this.#step]?.requests ?? [];
      return Promise.resolve(list[Math.min(this.#attempt, list.length - 1)] ?? { kind: "noData" });
    }
    const m = CHECK_RE.exec(promql);
    const e = m !== null ? this.#entry(m[1] ?? "") : undefined;
    if (m === null || e === undefined) {
      return Promise.resolve({
        kind: "error",
        error: { code: "badResponse", message: `not in the script: ${promql}` },
      });
    }
    const isCanary = m[2] === this.canary;
    if (e.kind === "single") return Promise.resolve(e.value);
    if (e.kind === "pair") return Promise.resolve(isCanary ? e.canary : e.stable);
    return Promise.resolve({
      kind: "error",
      error: { code: "badResponse", message: "samples need a range query" },
    });
  }

  queryRange(promql: string, range: { start: Date; stepSeconds: number }): Promise<RangeOutcome> {
    const m = CHECK_RE.exec(promql);
    const e = m !== null ? this.#entry(m[1] ?? "") : undefined;
    if (m === null || e?.kind !== "samples") {
      return Promise.resolve({
        kind: "error",
        error: { code: "badResponse", message: `not in the script: ${promql}` },
      });
    }
    const values = m[2] === this.canary ? e.canary : e.stable;
    const t0 = range.start.getTime() / 1000;
    return Promise.resolve({ kind: "series", points: values.map((v, i) => [t0 + i * range.stepSeconds, v]) });
  }
}
