/**
 * A MetricSource over the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`).
 *
 * Every call ends in exactly one outcome and never throws: a value, no data (empty vector), NaN, or an error
 * with a code (see MetricErrorCode). Requests go through node:http / node:https directly so that a custom CA
 * and insecureSkipVerify work without extra dependencies; one keep-alive agent per client.
 *
 * Secrets are read from files and re-read at most every `secretCacheMs` (default 5 s), because Kubernetes
 * rotates projected service-account tokens and mounted Secrets in place. A file that cannot be read is an
 * `unreachable` error (the request was never sent) naming the file, never its content.
 */
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";

import type { PrometheusSpec } from "../policy/types.ts";
import type { MetricError, MetricErrorCode, MetricSource, QueryOutcome, RangeOutcome } from "./types.ts";

export interface PrometheusClientOptions {
  /** How long a bearer token / password / CA read from a file is reused. Default 5000 ms; 0 re-reads every request. */
  secretCacheMs?: number;
  /** Largest response body accepted, in bytes. Default 16 MiB; larger is `badResponse`. */
  maxResponseBytes?: number;
  /** Clock for the secret cache (tests). */
  now?: () => number;
}

const DEFAULT_SECRET_CACHE_MS = 5_000;
const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** How much of a foreign body (HTML from a proxy, …) is quoted in an error message. */
const BODY_EXCERPT_CHARS = 200;
/** How many label sets a multipleSeries error lists. */
const LISTED_SERIES = 3;

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parses a sample value the way Prometheus writes it (Go's strconv.FormatFloat): "NaN", "+Inf", "-Inf", plain
 * and exponent notation. `Number("+Inf")` is NaN in JavaScript, hence this function. Returns undefined for text
 * that is not a Prometheus float.
 */
export function parseSampleValue(text: unknown): number | undefined {
  if (typeof text !== "string") return undefined;
  switch (text) {
    case "NaN":
      return Number.NaN;
    case "+Inf":
    case "Inf":
      return Number.POSITIVE_INFINITY;
    case "-Inf":
      return Number.NEGATIVE_INFINITY;
  }
  return NUMBER_RE.test(text) ? Number(text) : undefined;
}

function excerpt(body: string): string {
  const flat = body.replace(/\s+/g, " ").trim();
  return flat.length > BODY_EXCERPT_CHARS
    ? `${flat.slice(0, BODY_EXCERPT_CHARS)}… (${body.length} chars)`
    : flat;
}

function fail(code: MetricErrorCode, message: string): { kind: "error"; error: MetricError } {
  return { kind: "error", error: { code, message } };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function formatLabels(metric: unknown): string {
  if (!isRecord(metric)) return "{}";
  const parts = Object.entries(metric).map(([k, v]) => `${k}=${JSON.stringify(String(v))}`);
  return `{${parts.join(", ")}}`;
}

/** A sample `[ <unix seconds>, "<value>" ]` → outcome. */
function sampleOutcome(sample: unknown): QueryOutcome {
  if (!Array.isArray(sample) || sample.length !== 2) {
    return fail("badResponse", `sample is not [time, "value"]: ${excerpt(JSON.stringify(sample) ?? "")}`);
  }
  const value = parseSampleValue(sample[1]);
  if (value === undefined) {
    return fail(
      "badResponse",
      `sample value is not a Prometheus float: ${excerpt(JSON.stringify(sample[1]) ?? "")}`,
    );
  }
  return Number.isNaN(value) ? { kind: "nan" } : { kind: "value", value };
}

type Envelope = { ok: true; data: Record<string, unknown> } | { ok: false; error: MetricError };

/**
 * Classifies an HTTP response from the Prometheus API into its `data` object or an error. A Prometheus error
 * body (`status: "error"`) wins over the HTTP status, because Prometheus answers 400/422/503 with one.
 */
function readEnvelope(status: number, statusText: string, body: string): Envelope {
  let parsed: unknown;
  let isJson = true;
  try {
    parsed = JSON.parse(body);
  } catch {
    isJson = false;
  }
  if (isJson && isRecord(parsed) && parsed.status === "error") {
    const errorType = typeof parsed.errorType === "string" ? parsed.errorType : "unknown";
    const text = typeof parsed.error === "string" ? parsed.error : "(no error text)";
    return { ok: false, error: { code: "prometheus", message: `${errorType}: ${text} (HTTP ${status})` } };
  }
  if (status < 200 || status > 299) {
    const what = body.length > 0 ? `: ${excerpt(body)}` : "";
    return { ok: false, error: { code: "http", message: `HTTP ${status} ${statusText}${what}`.trim() } };
  }
  if (!isJson) {
    return { ok: false, error: { code: "badResponse", message: `response is not JSON: ${excerpt(body)}` } };
  }
  if (!isRecord(parsed) || parsed.status !== "success" || !isRecord(parsed.data)) {
    return {
      ok: false,
      error: { code: "badResponse", message: `not a Prometheus API response: ${excerpt(body)}` },
    };
  }
  return { ok: true, data: parsed.data };
}

/** Classifies an instant-query response. Exported for tests. */
export function classifyQueryResponse(status: number, statusText: string, body: string): QueryOutcome {
  const envelope = readEnvelope(status, statusText, body);
  if (!envelope.ok) return { kind: "error", error: envelope.error };
  const { resultType, result } = envelope.data;
  if (resultType === "scalar") return sampleOutcome(result);
  if (resultType !== "vector") {
    return fail(
      "badResponse",
      `resultType ${JSON.stringify(resultType)} is not a vector or scalar; the query must return one number`,
    );
  }
  if (!Array.isArray(result)) return fail("badResponse", "vector result is not an array");
  if (result.length === 0) return { kind: "noData" };
  if (result.length > 1) return tooManySeries(result);
  const only: unknown = result[0];
  return sampleOutcome(isRecord(only) ? only.value : undefined);
}

/** A query that returned several series where one number was expected: name the first few. */
function tooManySeries(result: unknown[]): { kind: "error"; error: MetricError } {
  const first = result
    .slice(0, LISTED_SERIES)
    .map((s) => formatLabels(isRecord(s) ? s.metric : undefined))
    .join(", ");
  const more = result.length > LISTED_SERIES ? `, …` : "";
  return fail(
    "multipleSeries",
    `query returned ${result.length} series, expected 1 (aggregate with sum/max): ${first}${more}`,
  );
}

/** Classifies a range-query response (`resultType: matrix`) into one series' points. Exported for tests. */
export function classifyRangeResponse(status: number, statusText: string, body: string): RangeOutcome {
  const envelope = readEnvelope(status, statusText, body);
  if (!envelope.ok) return { kind: "error", error: envelope.error };
  const { resultType, result } = envelope.data;
  if (resultType !== "matrix") {
    return fail("badResponse", `resultType ${JSON.stringify(resultType)} is not a matrix`);
  }
  if (!Array.isArray(result)) return fail("badResponse", "matrix result is not an array");
  if (result.length === 0) return { kind: "noData" };
  if (result.length > 1) return tooManySeries(result);
  const only: unknown = result[0];
  const values = isRecord(only) ? only.values : undefined;
  if (!Array.isArray(values)) return fail("badResponse", "matrix series has no values array");
  const points: Array<[number, number]> = [];
  for (const sample of values) {
    const t: unknown = Array.isArray(sample) ? sample[0] : undefined;
    const v = Array.isArray(sample) && sample.length === 2 ? parseSampleValue(sample[1]) : undefined;
    if (typeof t !== "number" || v === undefined) {
      return fail("badResponse", `sample is not [time, "value"]: ${excerpt(JSON.stringify(sample) ?? "")}`);
    }
    points.push([t, v]);
  }
  return { kind: "series", points };
}

interface RawResponse {
  status: number;
  statusText: string;
  body: string;
}

class TooLargeError extends Error {}

/** Network error codes of node:net / node:tls that mean "could not talk to Prometheus". */
function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

function unixSeconds(at: Date): string {
  return (at.getTime() / 1000).toFixed(3);
}

interface CachedSecret {
  value: string;
  readAt: number;
}

export class PrometheusClient implements MetricSource {
  readonly #spec: PrometheusSpec;
  readonly #base: URL;
  readonly #secretCacheMs: number;
  readonly #maxResponseBytes: number;
  readonly #now: () => number;
  readonly #secrets = new Map<string, CachedSecret>();
  #agent: http.Agent | undefined;
  #agentCa: string | undefined;

  constructor(spec: PrometheusSpec, options: PrometheusClientOptions = {}) {
    this.#spec = spec;
    const base = new URL(spec.url);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.#base = base;
    this.#secretCacheMs = options.secretCacheMs ?? DEFAULT_SECRET_CACHE_MS;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#now = options.now ?? Date.now;
  }

  /** The base URL for logs, without any user:password written into it. */
  get url(): string {
    const shown = new URL(this.#base);
    shown.username = "";
    shown.password = "";
    return shown.toString();
  }

  async query(promql: string, at: Date = new Date(), signal?: AbortSignal): Promise<QueryOutcome> {
    const form = new URLSearchParams({ query: promql, time: unixSeconds(at) });
    const res = await this.#post("api/v1/query", form, signal);
    if ("error" in res) return { kind: "error", error: res.error };
    return classifyQueryResponse(res.status, res.statusText, res.body);
  }

  /**
   * Range query (`/api/v1/query_range`), for judges that compare per-interval samples. Cancelled by `signal`
   * and bounded by the policy's timeout exactly like `query`.
   */
  async queryRange(
    promql: string,
    range: { start: Date; end: Date; stepSeconds: number },
    signal?: AbortSignal,
  ): Promise<RangeOutcome> {
    const form = new URLSearchParams({
      query: promql,
      start: unixSeconds(range.start),
      end: unixSeconds(range.end),
      step: String(range.stepSeconds),
    });
    const res = await this.#post("api/v1/query_range", form, signal);
    if ("error" in res) return { kind: "error", error: res.error };
    return classifyRangeResponse(res.status, res.statusText, res.body);
  }

  /** Closes idle keep-alive connections. The client stays usable (a new agent is made on the next call). */
  close(): void {
    this.#agent?.destroy();
    this.#agent = undefined;
  }

  async #secret(file: string): Promise<string> {
    const cached = this.#secrets.get(file);
    const now = this.#now();
    if (cached !== undefined && now - cached.readAt < this.#secretCacheMs) return cached.value;
    const value = (await readFile(file, "utf8")).trim();
    this.#secrets.set(file, { value, readAt: now });
    return value;
  }

  async #headers(): Promise<Record<string, string>> {
    const headers: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
      "user-agent": "rolloutd",
    };
    const spec = this.#spec;
    if (spec.bearerTokenFile !== undefined) {
      headers.authorization = `Bearer ${await this.#secret(spec.bearerTokenFile)}`;
    } else if (spec.basicAuth !== undefined) {
      const password = await this.#secret(spec.basicAuth.passwordFile);
      const encoded = Buffer.from(`${spec.basicAuth.username}:${password}`).toString("base64");
      headers.authorization = `Basic ${encoded}`;
    }
    return headers;
  }

  async #getAgent(): Promise<http.Agent> {
    if (this.#base.protocol !== "https:") {
      this.#agent ??= new http.Agent({ keepAlive: true });
      return this.#agent;
    }
    const ca = this.#spec.caFile !== undefined ? await this.#secret(this.#spec.caFile) : undefined;
    if (this.#agent === undefined || ca !== this.#agentCa) {
      this.#agent?.destroy();
      this.#agent = new https.Agent({
        keepAlive: true,
        ...(ca !== undefined ? { ca } : {}),
        rejectUnauthorized: this.#spec.insecureSkipVerify !== true,
      });
      this.#agentCa = ca;
    }
    return this.#agent;
  }

  async #post(
    path: string,
    form: URLSearchParams,
    cancel?: AbortSignal,
  ): Promise<RawResponse | { error: MetricError }> {
    const url = new URL(path, this.#base);
    let headers: Record<string, string>;
    let agent: http.Agent;
    try {
      headers = await this.#headers();
      agent = await this.#getAgent();
    } catch (err) {
      return { error: { code: "unreachable", message: `request not sent: ${describeNetworkError(err)}` } };
    }
    const body = form.toString();
    headers["content-length"] = String(Buffer.byteLength(body));
    const timeout = AbortSignal.timeout(this.#spec.timeoutMs);
    const signal = cancel ? AbortSignal.any([timeout, cancel]) : timeout;
    try {
      return await this.#send(url, headers, body, agent, signal);
    } catch (err) {
      if (cancel?.aborted) {
        return { error: { code: "cancelled", message: `query to ${url.origin} cancelled` } };
      }
      if (signal.aborted) {
        return {
          error: {
            code: "timeout",
            message: `no answer from ${url.origin} within ${this.#spec.timeoutMs} ms`,
          },
        };
      }
      if (err instanceof TooLargeError) return { error: { code: "badResponse", message: err.message } };
      return { error: { code: "unreachable", message: `${url.origin}: ${describeNetworkError(err)}` } };
    }
  }

  #send(
    url: URL,
    headers: Record<string, string>,
    body: string,
    agent: http.Agent,
    signal: AbortSignal,
  ): Promise<RawResponse> {
    const transport = url.protocol === "https:" ? https : http;
    const max = this.#maxResponseBytes;
    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        fn();
      };
      const req = transport.request(url, { method: "POST", headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > max) {
            const err = new TooLargeError(`response larger than ${max} bytes`);
            settle(() => reject(err));
            req.destroy(err);
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () =>
          settle(() =>
            resolve({
              status: res.statusCode ?? 0,
              statusText: res.statusMessage ?? "",
              body: Buffer.concat(chunks).toString("utf8"),
            }),
          ),
        );
        res.on("error", (err) => settle(() => reject(err)));
        res.on("close", () => {
          if (!res.complete) settle(() => reject(new Error("connection closed before the response ended")));
        });
      });
      const onAbort = (): void => {
        const err = new Error("timeout");
        settle(() => reject(err));
        req.destroy(err);
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      req.on("error", (err) => settle(() => reject(err)));
      req.end(body);
    });
  }
}
