/**
 * Test support for fault injection on the daemon's slow dependency, Prometheus: an HTTP server on loopback
 * that a policy can name as `analysis.prometheus.url` and that a test switches at runtime between
 * misbehaviours — hang (accept, never answer), slow (answer late), lie (a fixed or bogus value in Prometheus'
 * own JSON format) and proxy (pass through to a real Prometheus). It counts the requests it received and
 * those still open, so a test can say "a query was in flight when the abort was annotated" and "the daemon
 * gave that query up" instead of guessing from timings.
 *
 * The API server and etcd faults live on the control plane itself (test/controlplane/controlplane.ts):
 * killApiServer/startApiServer, freezeEtcd/thawEtcd. `abortable` below lets a client-node call give up.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Observable, type ConfigurationOptions, type ObservableMiddleware } from "@kubernetes/client-node";

/** What an answering mode sends: a one-sample vector with `value` (null: an empty vector), or upstream's answer. */
export type FaultAnswer = { kind: "lie"; value: string | null } | { kind: "proxy"; upstream: string };

export type FaultMode = { kind: "hang" } | { kind: "slow"; ms: number; then: FaultAnswer } | FaultAnswer;

export interface FaultyPrometheus {
  /** http://127.0.0.1:<port>, for `analysis.prometheus.url`. */
  readonly url: string;
  /** The mode new requests get. A request keeps the mode it arrived in (a hung one hangs until closed). */
  readonly mode: FaultMode;
  /** Accept and never answer, until the client gives up or close(). */
  hang(): void;
  /** Answer after `ms` as `then` says; by default as the last lie/proxy mode did (initially lie 1). */
  slow(ms: number, then?: FaultAnswer): void;
  /**
   * Answer /api/v1/query at once with one sample of `value`: numbers are written as Prometheus writes
   * floats (NaN, +Inf, -Inf), strings go out verbatim (bogus text included), null is an empty result (no data).
   */
  lie(value?: number | string | null): void;
  /** Pass every /api/v1/ request through to the Prometheus at `upstream` and its answer back. */
  proxy(upstream: string): void;
  /** Requests received since start (any path). */
  readonly received: number;
  /** Requests received and neither answered nor given up by the client yet. */
  readonly open: number;
  /** Requests whose answer was sent completely. */
  readonly answered: number;
  /** Requests whose client closed the connection before the answer was complete. */
  readonly abandoned: number;
  /** The PromQL of every query received, in order (form body or URL parameter `query`). */
  readonly queries: readonly string[];
  /** Stops listening and destroys every connection, hung ones included. Idempotent. */
  close(): Promise<void>;
}

/** A float as Prometheus' JSON writes it (Go's strconv.FormatFloat, 'f', -1). */
export function promFloat(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}

function lieAnswer(value: number | string | null): FaultAnswer {
  return { kind: "lie", value: typeof value === "number" ? promFloat(value) : value };
}

export async function startFaultyPrometheus(initial: FaultMode = lieAnswer(1)): Promise<FaultyPrometheus> {
  let mode: FaultMode = initial;
  let lastAnswer: FaultAnswer =
    initial.kind === "hang" ? lieAnswer(1) : initial.kind === "slow" ? initial.then : initial;
  let received = 0;
  let open = 0;
  let answered = 0;
  let abandoned = 0;
  const queries: string[] = [];
  // Delays and upstream requests still pending, so close() can end them.
  const pending = new Set<() => void>();
  let closed: Promise<void> | undefined;
  // Resolved each time the last open request closes (close() waits for it so that `open` reads 0 after).
  let idle: (() => void) | undefined;

  const server = http.createServer((req, res) => {
    received++;
    open++;
    const arrivedIn = mode;
    const cancel = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const end = () => {
      clearTimeout(timer);
      cancel.abort();
    };
    pending.add(end);
    res.on("close", () => {
      open--;
      if (res.writableFinished) answered++;
      else abandoned++;
      pending.delete(end);
      end();
      if (open === 0) idle?.();
    });

    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => {});
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url ?? "/", "http://faulty");
      const form = /application\/x-www-form-urlencoded/.test(req.headers["content-type"] ?? "")
        ? new URLSearchParams(body)
        : new URLSearchParams();
      const query = form.get("query") ?? url.searchParams.get("query");
      if (query !== null) queries.push(query);
      const time = Number(form.get("time") ?? url.searchParams.get("time") ?? Date.now() / 1000);
      const request: Incoming = { method: req.method ?? "GET", url, headers: req.headers, body, time };

      switch (arrivedIn.kind) {
        case "hang":
          return;
        case "slow":
          timer = setTimeout(() => void answer(arrivedIn.then, request, res, cancel.signal), arrivedIn.ms);
          return;
        default:
          void answer(arrivedIn, request, res, cancel.signal);
      }
    });
  });
  // Clients (the daemon's agent, fetch) keep connections alive; close() ends them explicitly.
  server.keepAliveTimeout = 1_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  const set = (next: FaultMode) => {
    if (next.kind === "lie" || next.kind === "proxy") lastAnswer = next;
    mode = next;
  };

  return {
    url: `http://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    hang: () => set({ kind: "hang" }),
    slow: (ms, then) => set({ kind: "slow", ms, then: then ?? lastAnswer }),
    lie: (value = 1) => set(lieAnswer(value)),
    proxy: (upstream) => set({ kind: "proxy", upstream }),
    get received() {
      return received;
    },
    get open() {
      return open;
    },
    get answered() {
      return answered;
    },
    get abandoned() {
      return abandoned;
    },
    get queries() {
      return queries;
    },
    close: () => {
      closed ??= (async () => {
        const drained = open === 0 ? Promise.resolve() : new Promise<void>((r) => (idle = r));
        const stopped = new Promise<void>((r) => server.close(() => r()));
        for (const end of pending) end();
        server.closeAllConnections();
        await Promise.all([stopped, drained]);
      })();
      return closed;
    },
  };
}

interface Incoming {
  method: string;
  url: URL;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The evaluation time asked for, in Unix seconds. */
  time: number;
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  if (res.destroyed) return;
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json", JSON.stringify(body));
}

async function answer(
  how: FaultAnswer,
  req: Incoming,
  res: http.ServerResponse,
  signal: AbortSignal,
): Promise<void> {
  if (how.kind === "lie") {
    if (req.url.pathname !== "/api/v1/query") {
      return sendJson(res, 400, {
        status: "error",
        errorType: "bad_data",
        error: `the faulty Prometheus only lies on /api/v1/query, not ${req.url.pathname}`,
      });
    }
    const result = how.value === null ? [] : [{ metric: {}, value: [req.time, how.value] }];
    return sendJson(res, 200, { status: "success", data: { resultType: "vector", result } });
  }

  if (!req.url.pathname.startsWith("/api/v1/")) {
    return sendJson(res, 404, { status: "error", errorType: "not_found", error: req.url.pathname });
  }
  const target = new URL(req.url.pathname + req.url.search, how.upstream);
  try {
    const headers: Record<string, string> = {};
    for (const name of ["content-type", "accept", "authorization"]) {
      const v = req.headers[name];
      if (typeof v === "string") headers[name] = v;
    }
    const up = await fetch(target, {
      method: req.method,
      headers,
      body: req.method === "GET" || req.method === "HEAD" ? undefined : req.body,
      signal,
    });
    const text = await up.text();
    send(res, up.status, up.headers.get("content-type") ?? "application/json", text);
  } catch (err) {
    if (signal.aborted) return;
    sendJson(res, 502, {
      status: "error",
      errorType: "unavailable",
      error: `faulty Prometheus could not reach ${how.upstream}: ${err instanceof Error ? err.message : String(err)}`,
    });
  }
}

/**
 * Options for one client-node call that give it up when `signal` aborts: `core.listNamespace({}, abortable(
 * AbortSignal.timeout(2_000)))` rejects instead of waiting on a frozen etcd.
 */
export function abortable(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (ctx) => {
      ctx.setSignal(signal);
      return new Observable(Promise.resolve(ctx));
    },
    post: (ctx) => new Observable(Promise.resolve(ctx)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}
