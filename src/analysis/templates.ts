/**
 * Built-in PromQL templates and safe variable substitution.
 *
 * A check names a template (`template: latency-p99`) or writes its own `query:`; both may use the variables
 * below. Every value is validated before it is substituted — Kubernetes names must be RFC 1123 names, the window
 * must be `<int>s` — so no user text is ever spliced into PromQL. An unknown variable, a missing value or an
 * invalid value throws a TemplateError.
 *
 * | variable             | value                                                    | validated as                |
 * |----------------------|----------------------------------------------------------|-----------------------------|
 * | `{{canary}}`         | canary backend name, as it appears in the route          | RFC 1123 subdomain          |
 * | `{{stable}}`         | stable backend name                                      | RFC 1123 subdomain          |
 * | `{{namespace}}`      | the policy's namespace                                   | RFC 1123 label (≤ 63 chars) |
 * | `{{window}}`         | seconds since the step's weight took effect, e.g. `60s`  | `<int>s`, int ≥ 1           |
 * | `{{route}}`          | the route object's name                                  | RFC 1123 subdomain          |
 * | `{{canaryDeployment}}` / `{{stableDeployment}}` | the Deployment behind each backend | RFC 1123 subdomain  |
 *
 * Placeholders may contain spaces (`{{ canary }}`). Text containing `{{` or `}}` that is not a placeholder is
 * rejected, so a typo cannot reach Prometheus half-substituted.
 *
 * Units are the same for every provider: ratios in 0..1, latencies in milliseconds, rates in requests per
 * second. Built-in templates never answer NaN for "no traffic": ratio denominators are filtered with `> 0` and
 * quantiles with `>= 0` (NaN compares false), so an idle canary yields no data, which the engine treats as
 * inconclusive (onNoData), not as a breach. Every built-in template aggregates to exactly one series.
 */
import {
  PLACEHOLDER_RE,
  TEMPLATE_NAMES,
  TEMPLATE_VARIABLES,
  TemplateError,
  isTemplateVariable,
  queryVariables,
  type TemplateErrorCode,
  type TemplateName,
  type TemplateVariable,
} from "../policy/query.ts";
import type { AnalysisSpec } from "../policy/types.ts";

// The policy language (names, variables, placeholder syntax) is the policy's; the queries behind it are ours.
export { TEMPLATE_NAMES, TEMPLATE_VARIABLES, TemplateError, queryVariables };
export type { TemplateErrorCode, TemplateName, TemplateVariable };
export type TemplateVars = Partial<Record<TemplateVariable, string>>;

export type Provider = AnalysisSpec["provider"];
export const PROVIDERS: readonly Provider[] = ["envoy", "istio", "app"];

export type TemplateUnit = "ratio" | "ms" | "req/s";
/** Unit of each template's value, identical for every provider. */
export const TEMPLATE_UNITS: Readonly<Record<TemplateName, TemplateUnit>> = {
  "request-success-rate": "ratio",
  "error-rate": "ratio",
  "latency-p99": "ms",
  "latency-p95": "ms",
  "latency-p50": "ms",
  "request-rate": "req/s",
};

// ---------------------------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------------------------

export interface ProviderTemplates {
  templates: Readonly<Record<TemplateName, string>>;
  /** Total canary requests in the window (a count, not a rate): used for `minRequests`. */
  requests: string;
  /**
   * For the latency templates: the share of the window's requests that fell
   * into a finite bucket. When it is below the quantile, the quantile lies in
   * the +Inf bucket and `histogram_quantile` answers with the top finite
   * bound instead: the true value is only known to be at least that.
   */
  finiteShare: string;
}

/** The quantile each latency template computes. */
export const TEMPLATE_QUANTILES: Readonly<Partial<Record<TemplateName, number>>> = {
  "latency-p99": 0.99,
  "latency-p95": 0.95,
  "latency-p50": 0.5,
};

function quantile(q: number, bucketRate: string, toMs: string): string {
  return `histogram_quantile(${q}, sum by (le) (${bucketRate}))${toMs} >= 0`;
}

/**
 * Buckets are cumulative, so the largest finite bucket's rate is the rate of
 * every request that was not beyond the histogram; divided by the +Inf
 * bucket's rate (all requests) it is the finite share.
 */
function finiteShare(bucketRate: string): string {
  const only = (le: string) => bucketRate.replace("}[", `,le${le}}[`);
  return `max(sum by (le) (${only('!="+Inf"')})) / (sum(${only('="+Inf"')}) > 0)`;
}

function family(opts: {
  /** `rate(...)` of all canary requests, one series or many (summed). */
  total: (fn: "rate" | "increase") => string;
  /** Canary 5xx responses per second, summed to one series (may be empty when there are none). */
  errors: string;
  /** `rate(<bucket>{...}[{{window}}])` of the canary's latency histogram. */
  bucketRate: string;
  /** Multiplier turning the histogram's unit into milliseconds ("" if already ms). */
  toMs: string;
}): ProviderTemplates {
  const total = `sum(${opts.total("rate")})`;
  const errorRate = `(${opts.errors} or vector(0)) / (${total} > 0)`;
  return {
    templates: {
      "request-success-rate": `1 - (${errorRate})`,
      "error-rate": errorRate,
      "latency-p99": quantile(0.99, opts.bucketRate, opts.toMs),
      "latency-p95": quantile(0.95, opts.bucketRate, opts.toMs),
      "latency-p50": quantile(0.5, opts.bucketRate, opts.toMs),
      "request-rate": total,
    },
    requests: `sum(${opts.total("increase")})`,
    finiteShare: finiteShare(opts.bucketRate),
  };
}

/**
 * `envoy` — App Mesh (or any Envoy) cluster statistics, as Envoy's `/stats/prometheus` names them:
 *
 * - `envoy_cluster_upstream_rq_xx{envoy_cluster_name, envoy_response_code_class}` — counter of responses per
 *   class ("2", "4", "5"…); Envoy's tag extraction turns `cluster.<name>.upstream_rq_5xx` into this series.
 *   (The per-code counter `envoy_cluster_upstream_rq{envoy_response_code}` holds the same traffic; the class
 *   counter is used because numerator and denominator then come from one metric.)
 * - `envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name, le}` — upstream request time histogram, already in
 *   milliseconds.
 *
 * Label convention: the canary is matched by `envoy_cluster_name` containing the canary backend name as one
 * `_`-separated segment: `envoy_cluster_name=~"(.*_)?<canary>(_.*)?"`, the name's regex metacharacters escaped
 * (`web.v2` becomes `web\\.v2`, so it never matches `webxv2`). App Mesh names clusters
 * `cds_{ingress,egress}_<mesh>_<virtual node>_<protocol>_<port>`, and the App Mesh controller names the AWS
 * virtual node `<name>_<namespace>` unless `awsName` is set, so both the canary's own sidecar (ingress) and a
 * gateway or caller (egress) match. Backend names cannot contain `_`, so `checkout-v2` never matches
 * `checkout-v20`. The namespace is not part of the selector (awsName may drop it): when one mesh reuses a backend
 * name across namespaces, or when both the gateway and the canary's sidecar are scraped and request counts
 * must not be doubled, write a `query:` (and `requestsQuery:`) instead.
 */
const envoySel = `envoy_cluster_name=~"(.*_)?{{canary}}(_.*)?"`;
const envoy = family({
  total: (fn) => `${fn}(envoy_cluster_upstream_rq_xx{${envoySel}}[{{window}}])`,
  errors: `sum(rate(envoy_cluster_upstream_rq_xx{${envoySel},envoy_response_code_class="5"}[{{window}}]))`,
  bucketRate: `rate(envoy_cluster_upstream_rq_time_bucket{${envoySel}}[{{window}}])`,
  toMs: "",
});

/**
 * `istio` — Gateway API served by Istio (Envoy with Istio's standard metrics):
 *
 * - `istio_requests_total{reporter="destination", destination_workload, destination_workload_namespace,
 *   response_code}` — counter of requests as reported by the canary's own proxy.
 * - `istio_request_duration_milliseconds_bucket{...same labels, le}` — request duration histogram, milliseconds.
 *
 * `destination_workload` is the canary's Deployment name (`{{canaryDeployment}}`; the gate falls back to the
 * backend name when the policy maps no Deployment), `destination_workload_namespace` is `{{namespace}}`.
 * `reporter="destination"` counts each request once, at the canary's sidecar; a canary without a sidecar
 * (ambient mode) needs a `query:` on the gateway's `reporter="source"` series instead.
 */
const istioSel = `reporter="destination",destination_workload="{{canaryDeployment}}",destination_workload_namespace="{{namespace}}"`;
const istio = family({
  total: (fn) => `${fn}(istio_requests_total{${istioSel}}[{{window}}])`,
  errors: `sum(rate(istio_requests_total{${istioSel},response_code=~"5.."}[{{window}}]))`,
  bucketRate: `rate(istio_request_duration_milliseconds_bucket{${istioSel}}[{{window}}])`,
  toMs: "",
});

/**
 * `app` — the application's own instrumentation (prom-client, or OpenTelemetry exported with these names):
 *
 * - `http_requests_total{service, namespace, code | status_code}` — counter of handled requests. `service` is
 *   the backend name (`{{canary}}`), `namespace` the policy namespace (usually added by the Kubernetes scrape
 *   config). The status label may be `code` or `status_code`; 5xx under either counts as an error.
 * - `http_request_duration_seconds_bucket{service, namespace, le}` — request duration histogram in seconds,
 *   converted to milliseconds by the templates.
 */
const appSel = `service="{{canary}}",namespace="{{namespace}}"`;
const app = family({
  total: (fn) => `${fn}(http_requests_total{${appSel}}[{{window}}])`,
  errors:
    `sum(rate(http_requests_total{${appSel},code=~"5.."}[{{window}}])` +
    ` or rate(http_requests_total{${appSel},status_code=~"5.."}[{{window}}]))`,
  bucketRate: `rate(http_request_duration_seconds_bucket{${appSel}}[{{window}}])`,
  toMs: " * 1000",
});

/**
 * The built-in templates per provider. Per template (every provider):
 *
 * - `request-success-rate` — share of canary responses that are not 5xx, 0..1; no data without traffic.
 * - `error-rate` — share of canary responses that are 5xx, 0..1 (0 when there is traffic and no 5xx); no data
 *   without traffic.
 * - `latency-p99` / `latency-p95` / `latency-p50` — quantile of the canary's request duration histogram, in
 *   milliseconds, linearly interpolated inside a bucket by `histogram_quantile`; no data without traffic.
 * - `request-rate` — canary requests per second over the window (0 is a value, not no data).
 * - `requests` (not nameable in `template:`) — total canary requests in the window, for `minRequests`.
 */
export const BUILTIN_TEMPLATES: Readonly<Record<Provider, ProviderTemplates>> = { envoy, istio, app };

export function isTemplateName(name: string): name is TemplateName {
  return (TEMPLATE_NAMES as readonly string[]).includes(name);
}

/** The PromQL text (with placeholders) of a built-in template. Throws TemplateError `unknownTemplate`. */
export function templateText(provider: Provider, name: string): string {
  const templates = BUILTIN_TEMPLATES[provider]?.templates;
  if (templates === undefined) {
    throw new TemplateError("unknownTemplate", `unknown provider ${JSON.stringify(provider)}`);
  }
  if (!isTemplateName(name)) {
    throw new TemplateError(
      "unknownTemplate",
      `unknown template ${JSON.stringify(name)}; built-in templates are ${TEMPLATE_NAMES.join(", ")}`,
    );
  }
  return templates[name];
}

/** The finite-share guard of a latency template, or undefined for any other check. */
export function quantileGuard(provider: Provider, name: string): { q: number; text: string } | undefined {
  const q = isTemplateName(name) ? TEMPLATE_QUANTILES[name] : undefined;
  const p = BUILTIN_TEMPLATES[provider];
  return q === undefined || p === undefined ? undefined : { q, text: p.finiteShare };
}

/** The provider's requests-count query text (with placeholders). */
export function requestsTemplateText(provider: Provider): string {
  const p = BUILTIN_TEMPLATES[provider];
  if (p === undefined)
    throw new TemplateError("unknownTemplate", `unknown provider ${JSON.stringify(provider)}`);
  return p.requests;
}

// ---------------------------------------------------------------------------------------------------------------
// Substitution
// ---------------------------------------------------------------------------------------------------------------

const DNS_LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const SUBDOMAIN_RE = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*$`);
const LABEL_RE = new RegExp(`^${DNS_LABEL}$`);
const WINDOW_RE = /^[1-9][0-9]{0,8}s$/;

function quoteForMessage(value: string): string {
  const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(shown);
}

/** Throws TemplateError `invalidValue` unless `value` is valid for `variable`. */
export function validateVariable(variable: TemplateVariable, value: string): void {
  let ok: boolean;
  let rule: string;
  switch (variable) {
    case "window":
      ok = WINDOW_RE.test(value);
      rule = "a whole number of seconds like 60s";
      break;
    case "namespace":
      ok = value.length <= 63 && LABEL_RE.test(value);
      rule = "an RFC 1123 label (lower-case letters, digits and '-', at most 63 characters)";
      break;
    default:
      ok = value.length <= 253 && SUBDOMAIN_RE.test(value);
      rule = "an RFC 1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)";
  }
  if (!ok) {
    throw new TemplateError(
      "invalidValue",
      `invalid value ${quoteForMessage(value)} for {{${variable}}}: must be ${rule}`,
      variable,
    );
  }
}

/** What to render: a built-in template of a provider, or a raw query written in the policy. */
export type QuerySource = { provider: Provider; template: string } | { query: string };

/**
 * Renders a template or raw query with validated variables. Throws TemplateError on an unknown template,
 * an unknown variable, a variable used but not given, or a value that is not valid for its variable.
 * Values given but not used are still validated (a bad value is a bug wherever it is).
 */
export function renderQuery(source: QuerySource, vars: TemplateVars): string {
  const text = "query" in source ? source.query : templateText(source.provider, source.template);
  for (const [name, value] of Object.entries(vars)) {
    if (!isTemplateVariable(name)) {
      throw new TemplateError("unknownVariable", `unknown template variable ${JSON.stringify(name)}`, name);
    }
    if (value !== undefined) validateVariable(name, value);
  }
  for (const name of queryVariables(text)) {
    if (vars[name] === undefined) {
      throw new TemplateError("missingVariable", `{{${name}}} is used but has no value here`, name);
    }
  }
  const regexes = regexLiterals(text);
  return text.replace(PLACEHOLDER_RE, (_whole, name: string, offset: number) => {
    const value = vars[name as TemplateVariable] ?? "";
    const literal = regexes.find((r) => offset > r.start && offset < r.end);
    return literal ? escapeForRegex(value, literal.quote) : value;
  });
}

/**
 * The string literals of a query that are regular expressions: the right-hand side of a `=~` or `!~` label
 * matcher. A name substituted there must match only itself: `web.v2` must not match `webxv2`.
 */
function regexLiterals(text: string): Array<{ start: number; end: number; quote: string }> {
  const out: Array<{ start: number; end: number; quote: string }> = [];
  const re = /[=!]~\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/g;
  for (const m of text.matchAll(re)) {
    const literal = m[1] ?? "";
    const start = (m.index ?? 0) + m[0].length - literal.length;
    out.push({ start, end: start + literal.length, quote: literal[0] ?? '"' });
  }
  return out;
}

/**
 * Regex metacharacters escaped for RE2, then written as PromQL string text: inside `"` or `'` a backslash is
 * itself escaped (`\\.`), inside backticks (raw strings) it is not (`\.`). Validated names only hold
 * `[a-z0-9.-]`, so `.` is the one metacharacter that can occur; the rest are escaped for safety all the same.
 */
export function escapeForRegex(value: string, quote: string): string {
  const re2 = value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return quote === "`" ? re2 : re2.replace(/\\/g, "\\\\");
}
