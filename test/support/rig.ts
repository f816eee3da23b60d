/**
 * One analysis scenario's data plane, for end-to-end tests and benchmarks:
 * two prom-client backends (stable, canary) in a namespace, the Scenario's
 * route, a test gateway that splits generated load between the backends by
 * the route's current weights, and the load itself.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startPrometheus, type PrometheusHandle, type ScrapeTarget } from "../controlplane/prometheus.ts";
import { startBackend, type TestBackend } from "./backend.ts";
import { eventually, startCluster, type Cluster } from "./cluster.ts";
import { startDaemon, type DaemonProcess } from "./daemon.ts";
import { FakeGatewayStatus } from "./routes.ts";
import { LoadGenerator, TestGateway, type GatewayRouteKind, type PairWeights } from "./gateway.ts";
import type { RouteFamily } from "./routes.ts";
import { Scenario } from "./scenario.ts";

export interface RigDefaults {
  steps: number[];
  interval: string;
  rps: number;
  minRequests: number;
  p99MaxMs: number;
  errorRateMax: number;
}

export const RIG_DEFAULTS: RigDefaults = {
  steps: [25, 50, 100],
  interval: "3s",
  rps: 25,
  minRequests: 10,
  p99MaxMs: 300,
  errorRateMax: 0.05,
};

/** One scenario's data plane: its two backends, the gateway that splits load by the route's weights, the load. */
export class Rig {
  stable!: TestBackend;
  canary!: TestBackend;
  gateway!: TestGateway;
  load!: LoadGenerator;
  s!: Scenario;
  /** More streams of load (follow()), each through its own gateway. */
  readonly streams: Array<{ gateway: TestGateway; load: LoadGenerator }> = [];

  constructor(
    readonly fam: RouteFamily,
    readonly ns: string,
    readonly d: RigDefaults = RIG_DEFAULTS,
  ) {}

  async startBackends(): Promise<this> {
    // Names as the Scenario's route names them (web-v1 stable, web-v2 canary).
    [this.stable, this.canary] = await Promise.all([
      startBackend("web-v1", this.ns),
      startBackend("web-v2", this.ns),
    ]);
    return this;
  }

  targets(): ScrapeTarget[] {
    return [this.stable, this.canary].map((b) => ({ job: "backends", url: b.metricsUrl }));
  }

  /** Given: namespace, Deployments, route at 100 % stable, the gateway following it and load flowing. */
  async given(
    c: Cluster,
    policiesDir: string,
    opts: {
      paused?: boolean;
      maxRequests?: number;
      maxDurationMs?: number;
      /** The data plane's reaction to each new pair of weights (a canary that breaks under full traffic). */
      onWeights?: (w: PairWeights) => void;
    } = {},
  ): Promise<Scenario> {
    this.s = new Scenario(c, this.fam, this.ns, policiesDir);
    await this.s.given();
    this.gateway = new TestGateway(c.kc, {
      kind: this.fam.weightsKind as GatewayRouteKind,
      namespace: this.ns,
      name: this.fam.weightsObjectName(this.s.route),
      stable: this.stable,
      canary: this.canary,
      ...(opts.onWeights ? { onWeights: opts.onWeights } : {}),
    });
    await this.gateway.start();
    await eventually(`${this.ns}: gateway sees the route`, () => this.gateway.weights());
    this.load = new LoadGenerator(this.gateway, {
      rps: this.d.rps,
      maxRequests: opts.maxRequests ?? 6_000,
      maxDurationMs: opts.maxDurationMs ?? 170_000,
    });
    if (opts.paused === true) this.load.pause();
    this.load.start();
    return this.s;
  }

  /**
   * A second stream of load to the same backends: requests carrying `headers` (a preview's match), through a
   * gateway following the route `name` (default the scenario's; a separate preview route by its name).
   */
  async follow(
    c: Cluster,
    opts: { name?: string; headers?: Record<string, string>; rps?: number },
  ): Promise<{ gateway: TestGateway; load: LoadGenerator }> {
    const name = opts.name ?? this.fam.weightsObjectName(this.s.route);
    const gateway = new TestGateway(c.kc, {
      kind: this.fam.weightsKind as GatewayRouteKind,
      namespace: this.ns,
      name,
      stable: this.stable,
      canary: this.canary,
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
    await gateway.start();
    await eventually(`${this.ns}: gateway sees ${name}`, () => gateway.weights());
    const load = new LoadGenerator(gateway, { rps: opts.rps ?? this.d.rps, maxDurationMs: 170_000 });
    load.start();
    this.streams.push({ gateway, load });
    return { gateway, load };
  }

  writePolicy(
    promUrl: string,
    opts: {
      steps?: number[];
      onErrorLimit?: number;
      failureLimit?: number;
      interval?: string;
      p99MaxMs?: number;
      /** More lines of spec (before analysis), and of the analysis block. */
      spec?: string[];
      analysis?: string[];
    } = {},
  ): void {
    this.s.writePolicy({
      steps: opts.steps ?? this.d.steps,
      interval: opts.interval ?? this.d.interval,
      extra: [
        ...(opts.spec ?? []),
        "  analysis:",
        `    prometheus: { url: "${promUrl}", timeout: 2s }`,
        "    provider: app",
        `    minRequests: ${this.d.minRequests}`,
        "    checks:",
        `      - { name: p99-latency, template: latency-p99, max: ${opts.p99MaxMs ?? this.d.p99MaxMs} }`,
        `      - { name: error-rate, template: error-rate, max: ${this.d.errorRateMax} }`,
        `    failureLimit: ${opts.failureLimit ?? 1}`,
        `    onError: { action: hold, limit: ${opts.onErrorLimit ?? 5} }`,
        ...(opts.analysis ?? []),
      ].join("\n"),
    });
  }

  /** Canary shares (percent) the gateway routed by, in order. */
  shares(): number[] {
    return this.gateway.seen.map((w) => Math.round((w.canary / Math.max(1, w.stable + w.canary)) * 100));
  }

  /** Then: the gateway sends nothing more to `idle` while `busy` keeps getting traffic. */
  async assertNoTrafficTo(idle: TestBackend, busy: TestBackend): Promise<void> {
    const idleName = idle === this.canary ? "canary" : "stable";
    await eventually(`${this.ns}: gateway routes by the final weights`, () => {
      const w = this.gateway.weights();
      return w !== undefined && w[idleName] === 0;
    });
    const idleBefore = this.gateway.sentTo(idle);
    const busyBefore = this.gateway.sentTo(busy);
    await eventually(
      `${this.ns}: ${this.d.rps} more requests to ${busy.service}`,
      () => this.gateway.sentTo(busy) >= busyBefore + this.d.rps,
    );
    assert.equal(this.gateway.sentTo(idle), idleBefore, `no request reaches ${idle.service} any more`);
  }

  close(): void {
    for (const x of this.streams) {
      x.load.stop();
      x.gateway.stop();
    }
    this.load?.stop();
    this.gateway?.stop();
    this.s?.close();
  }

  async stop(): Promise<void> {
    this.close();
    await Promise.all([this.stable?.stop(), this.canary?.stop()]);
  }
}

/** The world of the suites judged by a real Prometheus: rigs' backends, their scrapes, a cluster and the daemon. */
export interface RigWorld {
  c: Cluster;
  prom: PrometheusHandle;
  fakeGateway: FakeGatewayStatus;
  daemon: DaemonProcess;
  policiesDir: string;
  /** Stops the rigs and everything started here; returns the daemon's exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts every rig's backends, one Prometheus scraping those of `scraped`
 * (default: all) every second, a control plane with the stand-in gateway
 * writing parent status, and the daemon with `--analysis-min-window`.
 */
export async function startRigWorld(
  rigs: Rig[],
  opts: { minWindowSeconds: number; scraped?: Rig[] },
): Promise<RigWorld> {
  const policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-rig-policies-"));
  let c: Cluster | undefined;
  let prom: PrometheusHandle | undefined;
  let fakeGateway: FakeGatewayStatus | undefined;
  let daemon: DaemonProcess | undefined;
  const stop = async (): Promise<number | null> => {
    await Promise.all(rigs.map((r) => r.stop()));
    fakeGateway?.stop();
    const code = (await daemon?.stop()) ?? null;
    await prom?.stop();
    await c?.stop();
    rmSync(policiesDir, { recursive: true, force: true });
    return code;
  };
  const cluster = startCluster();
  // Its failure is seen where it is awaited, not as an unhandled rejection while the backends start.
  cluster.catch(() => {});
  try {
    await Promise.all(rigs.map((r) => r.startBackends()));
    prom = await startPrometheus({
      targets: (opts.scraped ?? rigs).flatMap((r) => r.targets()),
      scrapeIntervalSeconds: 1,
    });
    c = await cluster;
    fakeGateway = new FakeGatewayStatus(c);
    await fakeGateway.start();
    daemon = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir,
      extraArgs: [`--analysis-min-window=${opts.minWindowSeconds}`],
    });
    return { c, prom, fakeGateway, daemon, policiesDir, stop };
  } catch (err) {
    // A cluster still starting is stopped with the rest once it is up.
    c ??= await cluster.catch(() => undefined);
    await stop().catch(() => {});
    throw err;
  }
}
