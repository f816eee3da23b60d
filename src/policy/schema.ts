/**
 * The RolloutPolicy document schema (apiVersion rolloutd.dev/v1alpha1) and its
 * normalization into the RolloutPolicy of types.ts.
 *
 * This module knows nothing about YAML or files: it validates plain data and
 * reports issues as (path, message). load.ts turns paths into file positions.
 *
 * Every name that can end up inside PromQL (metadata, target, backends,
 * Deployments) must be a Kubernetes name, so substitution can never inject
 * label matchers or quotes. Raw queries may only use the template variables in
 * TEMPLATE_VARIABLES.
 */
import { z } from "zod";
import {
  queryVariables,
  TEMPLATE_NAMES,
  TEMPLATE_VARIABLES,
  TemplateError,
  type TemplateVariable,
} from "./query.ts";
import { parseDuration, type DurationOptions } from "./duration.ts";
import type { AnalysisSpec, CheckSpec, RolloutPolicy, TargetKind } from "./types.ts";
import type { Stage } from "../routers/stagerule.ts";
import { cronExpressionError, isValidTimeZone } from "./window.ts";
import { channelSchema, toChannels } from "../notify/config.ts";

export const API_VERSION = "rolloutd.dev/v1alpha1";
export const KIND = "RolloutPolicy";

export const TARGET_KINDS = [
  "GatewayRoute",
  "VirtualRouter",
  "HTTPRoute",
  "GRPCRoute",
] as const satisfies readonly TargetKind[];

/** Names `template:` may use by default: the built-in templates (rendered by src/analysis/templates.ts). */
export const DEFAULT_TEMPLATE_NAMES: readonly string[] = TEMPLATE_NAMES;

/**
 * Variables a raw `query:` / `requestsQuery:` may use, as `{{name}}` (spaces
 * inside the braces allowed). Defined in ./query.ts with the placeholder
 * parser; src/analysis/templates.ts substitutes them.
 */
export { TEMPLATE_VARIABLES, type TemplateVariable };

/** Flagger's names for the same things, to point its users at ours. */
const FLAGGER_VARIABLES: Readonly<Record<string, TemplateVariable>> = {
  target: "canary",
  interval: "window",
};

export const MAX_STEPS = 100;

/** Routes of one family are driven by one router: a preview route must be of the target's. */
const familyOf = (kind: (typeof TARGET_KINDS)[number]) =>
  kind === "HTTPRoute" || kind === "GRPCRoute" ? "Gateway API" : "App Mesh";

type StageInput =
  | { header: { name: string; value: string } | { name: string; regex: string } }
  | { cookie: { name: string; value: string } }
  | { query: { name: string; value: string } }
  | { pathPrefix: string };

function toStage(s: StageInput): Stage {
  if ("header" in s) {
    const h = s.header;
    return {
      match: {
        header:
          "regex" in h
            ? { name: h.name, value: h.regex, type: "RegularExpression" }
            : { name: h.name, value: h.value, type: "Exact" },
      },
    };
  }
  return { match: s };
}
export const MAX_CHECKS = 20;
/**
 * Consecutive analyses (failureLimit, noDataLimit, onError.limit): a limit
 * past a thousand steps' worth of analyses is a typo, not a policy.
 */
export const MAX_LIMIT = 1_000;
/** Requests in one analysis window below which a step is inconclusive. */
export const MAX_MIN_REQUESTS = 1_000_000;
const DAY_MS = 24 * 3_600_000;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** RFC 1123 DNS subdomain: what Kubernetes accepts as most object names. */
export function isKubernetesName(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

/** RFC 1123 DNS label: namespaces, and check names (they become label values and Event text). */
export function isDnsLabel(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

/**
 * Why `text` is not an acceptable query template, or undefined when it is.
 * Uses the renderer's own parser, so whatever passes here renders later.
 */
export function templateVariableError(text: string): string | undefined {
  try {
    queryVariables(text);
    return undefined;
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    if (err.code !== "unknownVariable") return err.message;
    const name = err.variable ?? "";
    const hint = FLAGGER_VARIABLES[name];
    const allowed = `allowed: ${TEMPLATE_VARIABLES.join(", ")}`;
    return `unknown template variable {{${name}}} (${hint ? `did you mean {{${hint}}}? ` : ""}${allowed})`;
  }
}

// ---------------------------------------------------------------------------
// Issues

export type PathSegment = string | number;

export interface PolicyIssue {
  path: PathSegment[];
  message: string;
  /**
   * Where a position should point: the value at `path`, the key of the last
   * segment (unknown fields), or the closest existing parent (missing fields).
   */
  at: "value" | "key" | "parent";
}

export type ValidatedPolicy = Omit<RolloutPolicy, "source">;

export type PolicyValidation = { ok: true; policy: ValidatedPolicy } | { ok: false; issues: PolicyIssue[] };

export interface PolicySchemaOptions {
  /** Names `template:` may use (src/analysis/templates.ts TEMPLATE_NAMES). */
  templateNames?: readonly string[];
}

/** "spec.analysis.checks[1].query"; keys that are not identifiers are quoted: deployments["a.b"]. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(seg)) out += out === "" ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Field schemas

function nameSchema(kind: "subdomain" | "label") {
  return z.string().superRefine((value, ctx) => {
    if (kind === "subdomain" && !isKubernetesName(value)) {
      ctx.addIssue({
        code: "custom",
        message:
          `invalid name ${JSON.stringify(value)}: must be a Kubernetes name (lowercase letters, digits, ` +
          `'-' and '.', starting and ending with a letter or digit, at most 253 characters)`,
      });
    } else if (kind === "label" && !isDnsLabel(value)) {
      ctx.addIssue({
        code: "custom",
        message:
          `invalid name ${JSON.stringify(value)}: must be a DNS label (lowercase letters, digits and '-', ` +
          `starting and ending with a letter or digit, at most 63 characters)`,
      });
    }
  });
}

function durationSchema(opts: DurationOptions) {
  return z.string().transform((text, ctx) => {
    const parsed = parseDuration(text, opts);
    if (!parsed.ok) {
      ctx.issues.push({ code: "custom", message: parsed.error, input: text });
      return z.NEVER;
    }
    return parsed.ms;
  });
}

const nonEmpty = z.string().min(1);

const promqlSchema = z
  .string()
  .min(1)
  .superRefine((text, ctx) => {
    const error = templateVariableError(text);
    if (error !== undefined) ctx.addIssue({ code: "custom", message: error });
  });

/**
 * A backend as the route names it: `checkout-v1`, or `{ name: checkout-v1,
 * namespace: payments }` for a Service (Gateway API) or virtual node /
 * virtual service (App Mesh) in another namespace than the route's. Only
 * references naming exactly that namespace are then the backend; without a
 * namespace, only references to the route's own namespace are.
 */
function backendSchema() {
  return z.union([
    nameSchema("subdomain"),
    z.strictObject({ name: nameSchema("subdomain"), namespace: nameSchema("label").optional() }),
  ]);
}

type BackendInput = string | { name: string; namespace?: string | undefined };
const backendName = (b: BackendInput): string => (typeof b === "string" ? b : b.name);

function weightSchema() {
  return z.number().int().min(1).max(100);
}

// ---------------------------------------------------------------------------
// Document schema

export function createPolicySchema(opts: PolicySchemaOptions = {}) {
  const templateNames = opts.templateNames ?? DEFAULT_TEMPLATE_NAMES;

  const metadata = z.strictObject({
    name: nameSchema("subdomain"),
    namespace: nameSchema("label").default("default"),
  });

  const target = z.strictObject({
    kind: z.enum(TARGET_KINDS),
    name: nameSchema("subdomain"),
  });

  const trigger = z.strictObject({
    deployment: nameSchema("subdomain").optional(),
    deployments: z.record(z.string(), nameSchema("subdomain")).optional(),
  });

  const steps = z
    .array(weightSchema())
    .min(1)
    .max(MAX_STEPS)
    .superRefine((weights, ctx) => {
      for (let i = 1; i < weights.length; i++) {
        const prev = weights[i - 1] ?? 0;
        const cur = weights[i] ?? 0;
        if (cur <= prev) {
          ctx.addIssue({
            code: "custom",
            path: [i],
            message: `weights must increase (${cur} after ${prev})`,
          });
        }
      }
    });

  const prometheus = z
    .strictObject({
      url: z.string().superRefine((text, ctx) => {
        const error = prometheusUrlError(text);
        if (error !== undefined) ctx.addIssue({ code: "custom", message: error });
      }),
      timeout: durationSchema({ min: 100, max: 5 * 60_000 }).prefault("10s"),
      bearerTokenFile: nonEmpty.optional(),
      caFile: nonEmpty.optional(),
      insecureSkipVerify: z.boolean().optional(),
      basicAuth: z.strictObject({ username: nonEmpty, passwordFile: nonEmpty }).optional(),
    })
    .superRefine((p, ctx) => {
      if (p.bearerTokenFile !== undefined && p.basicAuth !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["basicAuth"],
          message: "use either bearerTokenFile or basicAuth, not both",
        });
      }
    });

  const check = z
    .strictObject({
      name: nameSchema("label"),
      template: z
        .string()
        .superRefine((name, ctx) => {
          if (!templateNames.includes(name)) {
            ctx.addIssue({
              code: "custom",
              message: `unknown template ${JSON.stringify(name)} (known: ${templateNames.join(", ")})`,
            });
          }
        })
        .optional(),
      query: promqlSchema.optional(),
      min: z.number().optional(),
      max: z.number().optional(),
      ...compareFields(),
    })
    .superRefine((c, ctx) => {
      if (c.template !== undefined && c.query !== undefined) {
        ctx.addIssue({ code: "custom", path: ["query"], message: "set either template or query, not both" });
      } else if (c.template === undefined && c.query === undefined) {
        ctx.addIssue({ code: "custom", path: [], message: "set either template or query" });
      }
      if (c.compare !== undefined || c.maxIncrease !== undefined || c.maxDecrease !== undefined || c.judge) {
        for (const issue of compareIssues(c)) ctx.addIssue({ code: "custom", ...issue });
      } else if (c.min === undefined && c.max === undefined) {
        ctx.addIssue({
          code: "custom",
          path: [],
          message: "set min, max or both: a check without bounds cannot fail",
        });
      } else if (c.min !== undefined && c.max !== undefined && c.min > c.max) {
        ctx.addIssue({
          code: "custom",
          path: ["min"],
          message: `min (${c.min}) must not exceed max (${c.max})`,
        });
      }
    });

  const analysis = z.strictObject({
    prometheus,
    provider: z.enum(["envoy", "istio", "app"]).default("app"),
    minRequests: z.number().int().min(0).max(MAX_MIN_REQUESTS).default(0),
    requestsQuery: promqlSchema.optional(),
    checks: z
      .array(check)
      .min(1)
      .max(MAX_CHECKS)
      .superRefine((checks, ctx) => {
        const seen = new Map<string, number>();
        checks.forEach((c, i) => {
          const first = seen.get(c.name);
          if (first === undefined) seen.set(c.name, i);
          else {
            ctx.addIssue({
              code: "custom",
              path: [i, "name"],
              message: `duplicate check name ${JSON.stringify(c.name)} (also checks[${first}])`,
            });
          }
        });
      }),
    failureLimit: z.number().int().min(1).max(MAX_LIMIT).default(1),
    // In-step detection: how often the checks run during a step (a breach rolls back before the interval ends).
    cadence: z.union([z.literal(0), z.literal("0"), durationSchema({ min: 1_000, max: DAY_MS })]).optional(),
    onNoData: z.enum(["hold", "fail", "pass"]).default("hold"),
    noDataLimit: z.number().int().min(1).max(MAX_LIMIT).default(3),
    onError: z
      .strictObject({
        action: z.enum(["hold", "fail", "pass"]).default("hold"),
        limit: z.number().int().min(1).max(MAX_LIMIT).default(5),
      })
      .prefault({}),
  });

  // A request stage: only matching requests go to the canary (Gateway API: a rule rolloutd owns).
  const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$/, "not an HTTP header name");
  const matchValue = z.string().min(1).max(1024);
  const stage = z.union([
    z.strictObject({
      header: z.union([
        z.strictObject({ name: headerName, value: matchValue }),
        z.strictObject({ name: headerName, regex: matchValue }),
      ]),
    }),
    z.strictObject({
      cookie: z.strictObject({
        name: z.string().regex(/^[A-Za-z0-9_\-.]{1,256}$/),
        value: z.string().regex(/^[A-Za-z0-9_\-.]{1,1024}$/),
      }),
    }),
    z.strictObject({ query: z.strictObject({ name: z.string().min(1).max(256), value: matchValue }) }),
    z.strictObject({ pathPrefix: z.string().regex(/^\/[^\s?#]{0,1023}$/, "a path starting with /") }),
  ]);

  // Blue/green's other preview: a separate route the user names (Argo Rollouts' previewService), in the
  // policy's namespace, holding the same pair; rolloutd sends all of its traffic to the new version.
  const previewRoute = z.strictObject({
    route: z.strictObject({ kind: z.enum(TARGET_KINDS).optional(), name: nameSchema("subdomain") }),
  });

  const spec = z
    .strictObject({
      target,
      stages: z.array(stage).min(1).max(MAX_STEPS).optional(),
      // Blue/green: a verified preview (a request stage or a preview route), then 100 % at once, analysed
      // after the switch too.
      strategy: z.enum(["canary", "blueGreen"]).default("canary"),
      preview: z.union([...stage.options, previewRoute]).optional(),
      stable: backendSchema(),
      canary: backendSchema(),
      trigger: trigger.optional(),
      steps: steps.optional(),
      stepWeight: weightSchema().optional(),
      maxWeight: weightSchema().optional(),
      interval: durationSchema({ min: 1_000, max: DAY_MS }).prefault("1m"),
      routeReadyTimeout: durationSchema({ min: 1_000, max: DAY_MS }).prefault("2m"),
      // Every hold (no data, too few requests, Prometheus errors, parents not accepting) ends after this.
      holdLimit: z
        .strictObject({
          after: durationSchema({ min: 1_000, max: DAY_MS }).prefault("10m"),
          action: z.enum(["rollback", "pause"]).default("rollback"),
        })
        .prefault({}),
      window: z
        .string()
        .superRefine((expr, ctx) => {
          const error = cronExpressionError(expr);
          if (error !== undefined) {
            ctx.addIssue({
              code: "custom",
              message: `invalid cron expression ${JSON.stringify(expr)} (${error})`,
            });
          }
        })
        .optional(),
      windowTimeZone: z
        .string()
        .superRefine((tz, ctx) => {
          if (!isValidTimeZone(tz)) {
            ctx.addIssue({
              code: "custom",
              message: `unknown time zone ${JSON.stringify(tz)} (use an IANA name like Europe/Berlin)`,
            });
          }
        })
        .optional(),
      analysis: analysis.optional(),
      notify: z.array(channelSchema).max(10).optional(),
    })
    .superRefine((s, ctx) => {
      if (s.strategy === "blueGreen") {
        for (const field of ["steps", "stepWeight", "maxWeight", "stages"] as const) {
          if (s[field] !== undefined)
            ctx.addIssue({
              code: "custom",
              path: [field],
              message: "a blueGreen policy switches 100 % at once after its preview: no steps or stages",
            });
        }
        if (s.preview === undefined)
          ctx.addIssue({
            code: "custom",
            path: ["preview"],
            message:
              "missing: a blueGreen policy needs a preview (a request match, or route: a separate preview " +
              "route, sent to the new version first)",
          });
        else if ("route" in s.preview) {
          const kind = s.preview.route.kind ?? s.target.kind;
          if (familyOf(kind) !== familyOf(s.target.kind))
            ctx.addIssue({
              code: "custom",
              path: ["preview", "route", "kind"],
              message: `a preview route must be of the target's family (${s.target.kind}: ${TARGET_KINDS.filter((k) => familyOf(k) === familyOf(s.target.kind)).join(" or ")}), got ${kind}`,
            });
          else if (kind === s.target.kind && s.preview.route.name === s.target.name)
            ctx.addIssue({
              code: "custom",
              path: ["preview", "route", "name"],
              message: `the preview route must be another route than the target (${kind} ${s.target.name})`,
            });
        }
      } else if (s.preview !== undefined) {
        ctx.addIssue({ code: "custom", path: ["preview"], message: "preview needs strategy: blueGreen" });
      } else if (s.steps !== undefined && s.stepWeight !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["stepWeight"],
          message: "use either steps or stepWeight, not both",
        });
      } else if (s.steps === undefined && s.stepWeight === undefined) {
        ctx.addIssue({ code: "custom", path: ["steps"], message: "missing: set steps or stepWeight" });
      }
      if (s.maxWeight !== undefined && s.stepWeight === undefined) {
        ctx.addIssue({ code: "custom", path: ["maxWeight"], message: "maxWeight needs stepWeight" });
      } else if (s.maxWeight !== undefined && s.stepWeight !== undefined && s.maxWeight < s.stepWeight) {
        ctx.addIssue({
          code: "custom",
          path: ["maxWeight"],
          message: `maxWeight (${s.maxWeight}) must be at least stepWeight (${s.stepWeight})`,
        });
      }
      for (const issue of judgeSampleIssues(s.interval, s.analysis?.checks ?? [])) {
        ctx.addIssue({ code: "custom", ...issue });
      }
      const requestStages = [
        ...(s.stages ?? []),
        ...(s.preview && !("route" in s.preview) ? [s.preview] : []),
      ];

      if (s.target.kind === "GRPCRoute") {
        requestStages.forEach((st, i) => {
          if ("query" in st || "pathPrefix" in st)
            ctx.addIssue({
              code: "custom",
              path: s.stages ? ["stages", i] : ["preview"],
              message: "a GRPCRoute matches headers (or cookies), not query parameters or paths",
            });
        });
      }
      const stable = backendName(s.stable);
      const canary = backendName(s.canary);
      if (canary === stable) {
        ctx.addIssue({
          code: "custom",
          path: ["canary"],
          message:
            typeof s.stable === "string" && typeof s.canary === "string"
              ? `must differ from spec.stable (both are ${JSON.stringify(stable)})`
              : `must have another name than spec.stable (both are ${JSON.stringify(stable)}): ` +
                "rolloutd tells the two backends apart by name",
        });
        return;
      }
      const backends = [stable, canary];
      for (const key of Object.keys(s.trigger?.deployments ?? {})) {
        if (!backends.includes(key)) {
          ctx.addIssue({
            code: "custom",
            path: ["trigger", "deployments", key],
            message: `${JSON.stringify(key)} is not a backend of this policy (stable: ${stable}, canary: ${canary})`,
          });
        }
      }
      if (s.trigger?.deployment !== undefined && s.trigger.deployments?.[canary] !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["trigger", "deployment"],
          message: `conflicts with trigger.deployments.${canary}: set the canary's Deployment once`,
        });
      }
      const d = deploymentsOf(s);
      if (d[stable] === d[canary]) {
        ctx.addIssue({
          code: "custom",
          path: ["trigger"],
          message: `stable and canary must be different Deployments (both are ${JSON.stringify(d[stable])})`,
        });
      }
    });

  return z
    .strictObject({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal(KIND),
      metadata,
      spec,
    })
    .transform((doc): ValidatedPolicy => {
      const s = doc.spec;
      const policy: ValidatedPolicy = {
        key: `${doc.metadata.namespace}/${doc.metadata.name}`,
        name: doc.metadata.name,
        namespace: doc.metadata.namespace,
        target: { kind: s.target.kind, name: s.target.name },
        stable: backendName(s.stable),
        canary: backendName(s.canary),
        deployments: deploymentsOf(s),
        steps:
          s.strategy === "blueGreen"
            ? [100]
            : (s.steps ?? expandStepWeight(s.stepWeight ?? 100, s.maxWeight ?? 100)),
        intervalMs: s.interval,
        routeReadyTimeoutMs: s.routeReadyTimeout,
        holdLimit: { afterMs: s.holdLimit.after, action: s.holdLimit.action },
      };
      const namespaces: Record<string, string> = {};
      for (const b of [s.stable, s.canary])
        if (typeof b !== "string" && b.namespace !== undefined) namespaces[b.name] = b.namespace;
      if (Object.keys(namespaces).length) policy.backendNamespaces = namespaces;
      if (s.stages) policy.stages = s.stages.map(toStage);
      if (s.strategy === "blueGreen" && s.preview) {
        policy.strategy = "blueGreen";
        if ("route" in s.preview)
          policy.previewRoute = { kind: s.preview.route.kind ?? s.target.kind, name: s.preview.route.name };
        else policy.stages = [toStage(s.preview)];
      }
      if (s.window !== undefined) policy.window = s.window;
      if (s.windowTimeZone !== undefined) policy.windowTimeZone = s.windowTimeZone;
      if (s.analysis !== undefined) policy.analysis = normalizeAnalysis(s.analysis);
      if (s.notify?.length)
        policy.notify = toChannels(s.notify, `${doc.metadata.namespace}/${doc.metadata.name}/`);
      return policy;
    });
}

// ---------------------------------------------------------------------------
// Canary versus stable (compare: stable)

/**
 * ```yaml
 * - name: p99-vs-stable
 *   template: latency-p99
 *   compare: stable                              # same query, rendered for the stable, same window
 *   maxIncrease: { ratio: 0.2, absolute: 10 }    # canary ≤ stable + 20 % AND ≤ stable + 10 (units of the query)
 * - name: p99-judged
 *   template: latency-p99
 *   compare: stable
 *   judge: mann-whitney                          # or { kind: mann-whitney, confidence: 0.98, tolerance: 0.25,
 *                                                #      sampleInterval: 10s, direction: increase, or
 *                                                #      decrease for request-success-rate }
 * ```
 */
function compareFields() {
  const bound = z
    .strictObject({ ratio: z.number().min(0).optional(), absolute: z.number().min(0).optional() })
    .superRefine((b, ctx) => {
      if (b.ratio === undefined && b.absolute === undefined) {
        ctx.addIssue({ code: "custom", message: "set ratio, absolute or both" });
      }
    });
  const judgeObject = z.strictObject({
    kind: z.literal("mann-whitney"),
    confidence: z.number().gt(0.5).lt(1).default(0.98),
    tolerance: z.number().min(0).default(0.25),
    sampleInterval: durationSchema({ min: 1_000, max: 3_600_000 }).prefault("10s"),
    // Default: "decrease" for request-success-rate (lower is worse), "increase" for everything else.
    direction: z.enum(["increase", "decrease", "either"]).optional(),
  });
  return {
    compare: z.literal("stable").optional(),
    maxIncrease: bound.optional(),
    maxDecrease: bound.optional(),
    judge: z
      .union([
        z.literal("mann-whitney").transform(() => judgeObject.parse({ kind: "mann-whitney" })),
        judgeObject,
      ])
      .optional(),
  };
}

function compareIssues(c: {
  compare?: "stable" | undefined;
  min?: number | undefined;
  max?: number | undefined;
  query?: string | undefined;
  maxIncrease?: unknown;
  maxDecrease?: unknown;
  judge?: unknown;
}): { path: PathSegment[]; message: string }[] {
  const issues: { path: PathSegment[]; message: string }[] = [];
  for (const field of ["maxIncrease", "maxDecrease", "judge"] as const) {
    if (c[field] !== undefined && c.compare === undefined) {
      issues.push({
        path: [field],
        message: `${field} compares with the stable backend: add compare: stable`,
      });
    }
  }
  if (c.compare === undefined) return issues;
  if (c.maxIncrease === undefined && c.maxDecrease === undefined && c.judge === undefined) {
    issues.push({ path: ["compare"], message: "compare: stable needs maxIncrease, maxDecrease or judge" });
  }
  for (const field of ["min", "max"] as const) {
    if (c[field] !== undefined) {
      issues.push({
        path: [field],
        message: `${field} is an absolute bound; a compare: stable check has relative ones (write a second check for ${field})`,
      });
    }
  }
  if (c.query !== undefined) {
    let vars: readonly string[];
    try {
      vars = queryVariables(c.query);
    } catch {
      vars = ["canary"]; // reported by the query's own validation
    }
    if (!vars.includes("canary") && !vars.includes("canaryDeployment")) {
      issues.push({
        path: ["query"],
        message: "a compare: stable query must select the canary with {{canary}} or {{canaryDeployment}}",
      });
    }
  }
  return issues;
}

/**
 * The fewest samples per side with which a Mann-Whitney test can reach `confidence` at all: the smallest p-value
 * of n against n samples is 1/C(2n, n) one-sided (twice that two-sided). Computed here, not imported from
 * src/analysis/stats.ts: the policy format does not depend on the analysis code.
 */
export function judgeMinSamples(confidence: number, direction: "increase" | "decrease" | "either"): number {
  const alpha = 1 - confidence;
  let c = 1; // C(2n, n)
  for (let n = 1; n <= 1000; n++) {
    c = (c * (2 * n) * (2 * n - 1)) / (n * n);
    if ((direction === "either" ? 2 : 1) / c < alpha) return n;
  }
  return Number.POSITIVE_INFINITY;
}

/**
 * A judge whose step interval holds fewer samples than the test needs could never fail nor pass: it would be
 * inconclusive at every deadline and end every rollout at holdLimit. Refused when the policy is loaded.
 */
function judgeSampleIssues(
  intervalMs: number,
  checks: readonly {
    judge?:
      | {
          confidence: number;
          sampleInterval: number;
          direction?: "increase" | "decrease" | "either" | undefined;
        }
      | undefined;
  }[],
): { path: PathSegment[]; message: string }[] {
  const issues: { path: PathSegment[]; message: string }[] = [];
  checks.forEach((c, i) => {
    if (c.judge === undefined) return;
    const samples = Math.floor(intervalMs / c.judge.sampleInterval);
    const need = judgeMinSamples(c.judge.confidence, c.judge.direction ?? "increase");
    if (samples < need) {
      issues.push({
        path: ["analysis", "checks", i, "judge"],
        message:
          `a step's interval (${intervalMs / 1000}s) holds ${samples} samples of ${c.judge.sampleInterval / 1000}s per side; ` +
          `the Mann-Whitney test needs at least ${need} to reach ${c.judge.confidence * 100} % confidence: ` +
          "shorten sampleInterval or lengthen interval",
      });
    }
  });
  return issues;
}

/** [w, 2w, …] up to and including maxWeight. */
export function expandStepWeight(stepWeight: number, maxWeight = 100): number[] {
  const steps: number[] = [];
  for (let w = stepWeight; w <= maxWeight; w += stepWeight) steps.push(w);
  return steps;
}

function deploymentsOf(s: {
  stable: BackendInput;
  canary: BackendInput;
  trigger?: { deployment?: string; deployments?: Record<string, string> } | undefined;
}): Record<string, string> {
  const given = s.trigger?.deployments ?? {};
  const stable = backendName(s.stable);
  const canary = backendName(s.canary);
  return {
    [stable]: given[stable] ?? stable,
    [canary]: s.trigger?.deployment ?? given[canary] ?? canary,
  };
}

type ParsedAnalysis = Omit<AnalysisSpec, "prometheus" | "checks" | "cadenceMs"> & {
  cadence?: number | "0" | undefined;
  prometheus: {
    url: string;
    timeout: number;
    bearerTokenFile?: string | undefined;
    caFile?: string | undefined;
    insecureSkipVerify?: boolean | undefined;
    basicAuth?: { username: string; passwordFile: string } | undefined;
  };
  checks: {
    name: string;
    template?: string | undefined;
    query?: string | undefined;
    min?: number | undefined;
    max?: number | undefined;
    compare?: "stable" | undefined;
    maxIncrease?: { ratio?: number | undefined; absolute?: number | undefined } | undefined;
    maxDecrease?: { ratio?: number | undefined; absolute?: number | undefined } | undefined;
    judge?:
      | {
          kind: "mann-whitney";
          confidence: number;
          tolerance: number;
          sampleInterval: number;
          direction?: "increase" | "decrease" | "either" | undefined;
        }
      | undefined;
  }[];
  requestsQuery?: string | undefined;
};

function normalizeAnalysis(a: ParsedAnalysis): AnalysisSpec {
  const { timeout, ...prom } = a.prometheus;
  const out: AnalysisSpec = {
    prometheus: { ...dropUndefined(prom), timeoutMs: timeout },
    provider: a.provider,
    minRequests: a.minRequests,
    checks: a.checks.map(normalizeCheck),
    failureLimit: a.failureLimit,
    ...(a.cadence !== undefined ? { cadenceMs: Number(a.cadence) } : {}),
    onNoData: a.onNoData,
    noDataLimit: a.noDataLimit,
    onError: { action: a.onError.action, limit: a.onError.limit },
  };
  if (a.requestsQuery !== undefined) out.requestsQuery = a.requestsQuery;
  return out;
}

function normalizeCheck(c: ParsedAnalysis["checks"][number]): CheckSpec {
  const { maxIncrease, maxDecrease, judge, ...rest } = c;
  const out: CheckSpec = dropUndefined(rest);
  if (maxIncrease !== undefined) out.maxIncrease = dropUndefined(maxIncrease);
  if (maxDecrease !== undefined) out.maxDecrease = dropUndefined(maxDecrease);
  if (judge !== undefined) {
    const { sampleInterval, direction, ...j } = judge;
    out.judge = {
      ...j,
      sampleIntervalMs: sampleInterval,
      direction: direction ?? (c.template === "request-success-rate" ? "decrease" : "increase"),
    };
  }
  return out;
}

function dropUndefined<T extends object>(obj: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>;
  };
}

function prometheusUrlError(text: string): string | undefined {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return `invalid URL ${JSON.stringify(text)} (expected http://host:port or https://host:port)`;
  }
  if (url.username !== "" || url.password !== "") {
    return "credentials in the URL would end up in logs: use basicAuth.passwordFile or bearerTokenFile";
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Validation entry points

/** A reusable validator: build it once per load, call it per document. */
export function createPolicyValidator(opts: PolicySchemaOptions = {}): (data: unknown) => PolicyValidation {
  const schema = createPolicySchema(opts);
  return (data) => {
    const header = headerIssues(data);
    if (header.length > 0) return { ok: false, issues: header };
    const result = schema.safeParse(data, { reportInput: true });
    if (result.success) return { ok: true, policy: result.data };
    return { ok: false, issues: result.error.issues.flatMap((iss) => toPolicyIssues(iss, data)) };
  };
}

export function validatePolicyDocument(data: unknown, opts: PolicySchemaOptions = {}): PolicyValidation {
  return createPolicyValidator(opts)(data);
}

/**
 * The key ("namespace/name") an invalid document claims, when its metadata is
 * readable. Lets the store keep the last good version of a policy whose
 * document is broken.
 */
export function claimedPolicyKey(data: unknown): string | undefined {
  if (!isRecord(data) || !isRecord(data.metadata)) return undefined;
  const { name, namespace } = data.metadata;
  if (typeof name !== "string" || !isKubernetesName(name)) return undefined;
  if (namespace !== undefined && (typeof namespace !== "string" || !isDnsLabel(namespace))) return undefined;
  return `${namespace ?? "default"}/${name}`;
}

/**
 * A document of another kind (a Deployment that strayed into the folder, a
 * future apiVersion) gets one clear error instead of a page of unknown fields.
 */
function headerIssues(data: unknown): PolicyIssue[] {
  if (!isRecord(data)) {
    return [{ path: [], at: "value", message: `expected a ${KIND} mapping, got ${describe(data)}` }];
  }
  const issues: PolicyIssue[] = [];
  if (!("apiVersion" in data)) {
    issues.push({
      path: ["apiVersion"],
      at: "parent",
      message: `missing required field (use ${API_VERSION})`,
    });
  } else if (data.apiVersion !== API_VERSION) {
    issues.push({
      path: ["apiVersion"],
      at: "value",
      message: `unsupported apiVersion ${describe(data.apiVersion)} (supported: ${API_VERSION})`,
    });
  }
  if (!("kind" in data)) {
    issues.push({ path: ["kind"], at: "parent", message: `missing required field (use ${KIND})` });
  } else if (data.kind !== KIND) {
    issues.push({ path: ["kind"], at: "value", message: `must be ${KIND} (got ${describe(data.kind)})` });
  }
  return issues;
}

const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
  record: "a mapping",
};

function toPolicyIssues(iss: z.core.$ZodIssue, data: unknown): PolicyIssue[] {
  const path = iss.path.map((seg) => (typeof seg === "symbol" ? String(seg) : seg));
  if (iss.code === "unrecognized_keys") {
    return iss.keys.map((key) => ({ path: [...path, key], at: "key" as const, message: "unknown field" }));
  }
  const found = lookup(data, path);
  if (iss.code === "custom") return [{ path, at: found.exists ? "value" : "parent", message: iss.message }];
  if (!found.exists) return [{ path, at: "parent", message: "missing required field" }];
  const got = describe(found.value);
  switch (iss.code) {
    case "invalid_type":
      return [
        { path, at: "value", message: `expected ${EXPECTED[iss.expected] ?? iss.expected}, got ${got}` },
      ];
    case "too_small":
    case "too_big": {
      const small = iss.code === "too_small";
      const bound = small
        ? (iss as { minimum: number | bigint }).minimum
        : (iss as { maximum: number | bigint }).maximum;
      const word = small ? "at least" : "at most";
      if (iss.origin === "array") {
        return [{ path, at: "value", message: `must have ${word} ${bound} item${bound === 1 ? "" : "s"}` }];
      }
      if (iss.origin === "string") {
        return [
          {
            path,
            at: "value",
            message: small && bound === 1 ? "must not be empty" : `must have ${word} ${bound} characters`,
          },
        ];
      }
      return [{ path, at: "value", message: `must be ${word} ${bound} (got ${got})` }];
    }
    case "invalid_union": {
      // A name or a mapping (spec.stable / spec.canary): report the branch that matches the value's type,
      // and of mappings (a stage, a preview route) the one whose keys the value has.
      const fits = (errs: (typeof iss.errors)[number], keys: boolean) =>
        !errs.some(
          (e) =>
            e.path.length === 0 && (e.code === "invalid_type" || (keys && e.code === "unrecognized_keys")),
        );
      const branch =
        iss.errors.find((errs) => fits(errs, true)) ?? iss.errors.find((errs) => fits(errs, false));
      if (branch)
        return branch.flatMap((e) => toPolicyIssues({ ...e, path: [...iss.path, ...e.path] }, data));
      return [{ path, at: "value", message: `expected a name or a mapping {name, namespace}, got ${got}` }];
    }
    case "invalid_value": {
      const values = iss.values.map((v) => (typeof v === "string" ? v : String(v)));
      const message = values.length === 1 ? `must be ${values[0]}` : `must be one of ${values.join(", ")}`;
      return [{ path, at: "value", message: `${message} (got ${got})` }];
    }
    default:
      return [{ path, at: "value", message: iss.message }];
  }
}

function lookup(data: unknown, path: readonly PathSegment[]): { exists: boolean; value?: unknown } {
  let cur: unknown = data;
  for (const seg of path) {
    if (Array.isArray(cur) && typeof seg === "number" && seg < cur.length) cur = cur[seg];
    else if (isRecord(cur) && Object.hasOwn(cur, seg)) cur = cur[seg];
    else return { exists: false };
  }
  return { exists: true, value: cur };
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint")
    return String(value);
  return typeof value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
