/**
 * A small weighted test gateway and a load generator, so that the daemon's weights decide where real requests
 * go — as the mesh would — and Prometheus sees the canary's share of the traffic change step by step.
 *
 * TestGateway watches the route object through the API server (Gateway API HTTPRoute, App Mesh VirtualRouter,
 * or the weighted App Mesh GatewayRoute), picks the rule a request matches (longest path prefix, then the most
 * header matches, as Gateway API ranks them; a gateway may send a fixed set of headers, so a request stage's
 * header rule catches its requests), and sends each request to the stable or the canary backend by a weighted random pick over the CURRENT weights of
 * those two backends in that rule. It is the client side of a mesh (an Envoy sidecar's egress); it does not
 * listen on a port itself. Backends must be on loopback.
 *
 * LoadGenerator sends `rps` requests per second through a gateway, open loop (it does not wait for answers),
 * bounded in count and in time; it can be paused (zero traffic) and resumed.
 */
import http from "node:http";
import { Watch, type KubeConfig } from "@kubernetes/client-node";
import { KINDS, type KObject } from "../../src/kube/kinds.ts";
import type { TestBackend } from "./backend.ts";

type Json = Record<string, any>;

export type GatewayRouteKind = "HTTPRoute" | "VirtualRouter" | "GatewayRoute";

export interface PairWeights {
  stable: number;
  canary: number;
}

/** One way into a rule: a path prefix and the headers a request must carry (exact or regular expression). */
interface RuleMatch {
  prefix: string;
  headers: Array<{ name: string; value: string; regex: boolean }>;
}

interface Rule {
  matches: RuleMatch[];
  weights: Map<string, number>;
}

const prefixOnly = (prefix: string): RuleMatch[] => [{ prefix, headers: [] }];

/** The rules of a route object as the data plane sees them: path prefixes and backend weights. */
export function routeRules(kind: GatewayRouteKind, obj: KObject): Rule[] {
  const spec = (obj.spec ?? {}) as Json;
  switch (kind) {
    case "HTTPRoute":
      return ((spec.rules ?? []) as Json[]).map((r) => {
        const matches = (r.matches ?? []) as Json[];
        return {
          // No matches means "match everything"; an exact match is treated as a prefix (requests are to "/").
          matches:
            matches.length === 0
              ? prefixOnly("/")
              : matches.map((m) => ({
                  prefix: (m.path?.value as string) ?? "/",
                  headers: ((m.headers ?? []) as Json[]).map((h) => ({
                    name: (h.name as string).toLowerCase(),
                    value: h.value as string,
                    regex: h.type === "RegularExpression",
                  })),
                })),
          // Gateway API: an absent weight is 1.
          weights: new Map(
            ((r.backendRefs ?? []) as Json[]).map((b) => [b.name as string, (b.weight as number) ?? 1]),
          ),
        };
      });
    case "VirtualRouter":
      return ((spec.routes ?? []) as Json[]).flatMap((r) => {
        const route = (r.httpRoute ?? r.http2Route) as Json | undefined;
        if (route === undefined) return [];
        return [
          {
            matches: prefixOnly((route.match?.prefix as string) ?? "/"),
            weights: new Map(
              ((route.action?.weightedTargets ?? []) as Json[]).map((t) => [
                t.virtualNodeRef?.name as string,
                t.weight as number,
              ]),
            ),
          },
        ];
      });
    case "GatewayRoute": {
      const route = spec.httpRoute as Json | undefined;
      if (route === undefined) return [];
      return [
        {
          matches: prefixOnly((route.match?.prefix as string) ?? "/"),
          weights: new Map(
            ((route.action?.weightedTargets ?? []) as Json[]).map((t) => [
              t.targetRef?.virtualServiceRef?.name as string,
              t.weight as number,
            ]),
          ),
        },
      ];
    }
  }
}

/**
 * The rule serving a request: the one with the longest matching path prefix, then the most header matches
 * (first wins a tie). Header names in `headers` are lower case.
 */
export function ruleFor(rules: Rule[], path: string, headers: Record<string, string> = {}): Rule | undefined {
  let best: Rule | undefined;
  let bestRank = [-1, -1];
  const carries = (h: RuleMatch["headers"][number]) => {
    const v = headers[h.name];
    return v !== undefined && (h.regex ? new RegExp(`^(?:${h.value})$`).test(v) : v === h.value);
  };
  for (const r of rules) {
    for (const m of r.matches) {
      if (!path.startsWith(m.prefix) || !m.headers.every(carries)) continue;
      const rank = [m.prefix.length, m.headers.length];
      if (rank[0]! > bestRank[0]! || (rank[0] === bestRank[0] && rank[1]! > bestRank[1]!)) {
        best = r;
        bestRank = rank;
      }
    }
  }
  return best;
}

export interface TestGatewayOptions {
  kind: GatewayRouteKind;
  namespace: string;
  /** The object holding the weights (for App Mesh as shipped: the VirtualRouter). */
  name: string;
  stable: TestBackend;
  canary: TestBackend;
  /** Path the generated requests use; default "/". */
  path?: string;
  /** Headers every request carries (and that rule matching sees), e.g. a preview's `x-preview: yes`. */
  headers?: Record<string, string>;
  /** Called with every distinct pair of weights the watch sees (the data plane reacting to a switch). */
  onWeights?: (w: PairWeights) => void;
}

export class TestGateway {
  /** Requests sent, by backend service name, and those no backend could take (weights 0/0 or no route yet). */
  readonly sent = new Map<string, number>();
  unrouted = 0;
  /** Every distinct pair of weights seen by the watch, in order. */
  readonly seen: PairWeights[] = [];
  readonly #opts: TestGatewayOptions;
  readonly #kc: KubeConfig;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  #weights: PairWeights | undefined;
  #watch: AbortController | undefined;
  #stopped = false;

  constructor(kc: KubeConfig, opts: TestGatewayOptions) {
    for (const b of [opts.stable, opts.canary]) {
      const host = new URL(b.url).hostname;
      if (host !== "127.0.0.1" && host !== "[::1]" && host !== "localhost") {
        throw new Error(`test gateway backends must be on loopback, got ${b.url}`);
      }
    }
    this.#kc = kc;
    this.#opts = opts;
    this.#path = opts.path ?? "/";
    this.#headers = Object.fromEntries(
      Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    );
  }

  /** Starts watching the route object; routes nothing until the object is seen. */
  async start(): Promise<void> {
    const k = KINDS[this.#opts.kind];
    const path = `/apis/${k.group}/${k.version}/namespaces/${this.#opts.namespace}/${k.plural}`;
    const run = async (): Promise<void> => {
      if (this.#stopped) return;
      this.#watch = await new Watch(this.#kc).watch(
        path,
        { fieldSelector: `metadata.name=${this.#opts.name}` },
        (type: string, obj: KObject) => this.#onEvent(type, obj),
        () => {
          // The API server ends watches now and then: watch again (no resourceVersion: the current object first).
          if (!this.#stopped) setTimeout(() => void run().catch(() => {}), 200);
        },
      );
    };
    await run();
  }

  #onEvent(type: string, obj: KObject): void {
    if (type === "DELETED") {
      this.#weights = undefined;
      return;
    }
    if (type !== "ADDED" && type !== "MODIFIED") return;
    const rule = ruleFor(routeRules(this.#opts.kind, obj), this.#path, this.#headers);
    const w: PairWeights = {
      stable: rule?.weights.get(this.#opts.stable.service) ?? 0,
      canary: rule?.weights.get(this.#opts.canary.service) ?? 0,
    };
    this.#weights = w;
    const last = this.seen.at(-1);
    if (last === undefined || last.stable !== w.stable || last.canary !== w.canary) {
      this.seen.push(w);
      this.#opts.onWeights?.(w);
    }
  }

  /** The weights requests are split by right now; undefined before the route was seen. */
  weights(): PairWeights | undefined {
    return this.#weights === undefined ? undefined : { ...this.#weights };
  }

  /** Canary share in percent by the current weights (0 when nothing routes). */
  canaryPercent(): number {
    const w = this.#weights;
    if (w === undefined || w.stable + w.canary === 0) return 0;
    return Math.round((w.canary / (w.stable + w.canary)) * 100);
  }

  /** The backend the next request goes to, by a weighted random pick. */
  pick(): TestBackend | undefined {
    const w = this.#weights;
    if (w === undefined || w.stable + w.canary <= 0) return undefined;
    return Math.random() * (w.stable + w.canary) < w.canary ? this.#opts.canary : this.#opts.stable;
  }

  /** Sends one request through the gateway; resolves with the status code, 503 when nothing routes. */
  send(): Promise<number> {
    const backend = this.pick();
    if (backend === undefined) {
      this.unrouted++;
      return Promise.resolve(503);
    }
    this.sent.set(backend.service, (this.sent.get(backend.service) ?? 0) + 1);
    return new Promise((resolve) => {
      const req = http.get(
        new URL(this.#path, backend.url),
        { agent: this.#agent, timeout: 10_000, headers: this.#headers },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", () => resolve(0));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", () => resolve(0));
    });
  }

  sentTo(backend: TestBackend): number {
    return this.sent.get(backend.service) ?? 0;
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.abort();
    this.#agent.destroy();
  }
}

export interface LoadOptions {
  /** Requests per second. */
  rps: number;
  /** Stop after this many requests. Default 20,000. */
  maxRequests?: number;
  /** Stop after this long, in milliseconds. Default 180,000. */
  maxDurationMs?: number;
}

export class LoadGenerator {
  sent = 0;
  failed = 0;
  readonly #gateway: TestGateway;
  readonly #opts: Required<LoadOptions>;
  #timer: NodeJS.Timeout | undefined;
  #startedAt = 0;
  #due = 0;
  #paused = false;

  constructor(gateway: TestGateway, opts: LoadOptions) {
    if (!(opts.rps > 0 && opts.rps <= 500)) throw new RangeError(`rps must be in (0, 500], got ${opts.rps}`);
    this.#gateway = gateway;
    this.#opts = { maxRequests: 20_000, maxDurationMs: 180_000, ...opts };
  }

  start(): this {
    if (this.#timer !== undefined) return this;
    this.#startedAt = performance.now();
    this.#due = 0;
    // Ticks every 20 ms send what the rate owes since the last one (at most one second's worth after a stall).
    let last = this.#startedAt;
    this.#timer = setInterval(() => {
      const now = performance.now();
      if (now - this.#startedAt > this.#opts.maxDurationMs || this.sent >= this.#opts.maxRequests) {
        this.stop();
        return;
      }
      const owed = ((now - last) / 1000) * this.#opts.rps;
      last = now;
      if (this.#paused) return;
      this.#due = Math.min(this.#due + owed, this.#opts.rps);
      while (this.#due >= 1 && this.sent < this.#opts.maxRequests) {
        this.#due -= 1;
        this.sent++;
        void this.#gateway.send().then((code) => {
          if (code !== 200) this.failed++;
        });
      }
    }, 20);
    return this;
  }

  /** Zero traffic until resume(). */
  pause(): void {
    this.#paused = true;
    this.#due = 0;
  }

  resume(): void {
    this.#paused = false;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
