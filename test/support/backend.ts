/**
 * A test backend: one service of the mesh, played by a small node:http server on a random loopback port and
 * instrumented with prom-client (its own Registry) under the `app` provider's names (src/analysis/templates.ts):
 *
 * - `http_requests_total{service, namespace, code}` — every request `/` handled, by status code;
 * - `http_request_duration_seconds{service, namespace}` — a histogram of the handling time.
 *
 * Its behaviour is settable while it runs: `latencyMs` is really waited before answering, and it is what the
 * histogram records (not the measured time: this server shares its event loop with the test's load generator,
 * watches and polls, and that loop's lag must not become the canary's latency). `errorRate` is the share of
 * 500s, spread evenly over the requests (not random, so a short window measures it closely). A request is
 * counted when it is answered, as an instrumented app does. Prometheus scrapes `/metrics`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Histogram, Registry } from "prom-client";

export interface Behaviour {
  /** Time the handler waits before answering, in milliseconds. */
  latencyMs: number;
  /** Share of requests answered with 500, 0..1, spread evenly (0.25: every fourth request). */
  errorRate: number;
}

/** Buckets around the tests' thresholds (p99 ≤ 300 ms): a healthy backend lands far below, a slow one far above. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class TestBackend {
  readonly registry = new Registry();
  /** Requests answered, by status code, as counted here. */
  readonly answered = new Map<number, number>();
  #behaviour: Behaviour = { latencyMs: 20, errorRate: 0 };
  readonly #requests: Counter<"service" | "namespace" | "code">;
  readonly #duration: Histogram<"service" | "namespace">;
  readonly #server: http.Server;
  readonly #labels: { service: string; namespace: string };
  #port = 0;
  /** Errors owed: grows by errorRate per request, a 500 is answered whenever it reaches 1. */
  #errorDebt = 0;

  constructor(
    readonly service: string,
    readonly namespace: string,
  ) {
    this.#labels = { service, namespace };
    this.#requests = new Counter({
      name: "http_requests_total",
      help: "HTTP requests handled",
      labelNames: ["service", "namespace", "code"],
      registers: [this.registry],
    });
    this.#duration = new Histogram({
      name: "http_request_duration_seconds",
      help: "HTTP request handling time",
      labelNames: ["service", "namespace"],
      buckets: BUCKETS,
      registers: [this.registry],
    });
    // Series exist from the first scrape, so rate() of the first errors counts them from zero.
    this.#requests.labels({ ...this.#labels, code: "200" }).inc(0);
    this.#requests.labels({ ...this.#labels, code: "500" }).inc(0);
    this.#duration.zero(this.#labels);
    this.#server = http.createServer((req, res) => this.#handle(req, res));
    this.#server.keepAliveTimeout = 30_000;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", () => resolve());
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/`;
  }

  get metricsUrl(): string {
    return `http://127.0.0.1:${this.#port}/metrics`;
  }

  get behaviour(): Behaviour {
    return { ...this.#behaviour };
  }

  setBehaviour(b: Partial<Behaviour>): void {
    const next = { ...this.#behaviour, ...b };
    if (!(next.latencyMs >= 0) || !(next.errorRate >= 0 && next.errorRate <= 1)) {
      throw new RangeError(`invalid behaviour ${JSON.stringify(next)}`);
    }
    this.#behaviour = next;
  }

  /** Requests answered so far (any status). */
  total(): number {
    let n = 0;
    for (const v of this.answered.values()) n += v;
    return n;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url === "/metrics") {
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
      return;
    }
    const { latencyMs, errorRate } = this.#behaviour;
    this.#errorDebt += errorRate;
    const code = this.#errorDebt >= 1 ? 500 : 200;
    if (code === 500) this.#errorDebt -= 1;
    req.resume();
    setTimeout(() => {
      res.writeHead(code, { "content-type": "text/plain" }).end(`${this.service} ${code}\n`);
      this.#requests.labels({ ...this.#labels, code: String(code) }).inc();
      this.#duration.labels(this.#labels).observe(latencyMs / 1000);
      this.answered.set(code, (this.answered.get(code) ?? 0) + 1);
    }, latencyMs);
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export async function startBackend(service: string, namespace: string): Promise<TestBackend> {
  return new TestBackend(service, namespace).start();
}
