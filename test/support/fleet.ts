/**
 * A fleet of rolloutd replicas on one real control plane, for the fleet's
 * integration tests: the cluster with a gateway stand-in writing route
 * status, a namespace for the Leases, one policy folder every replica reads,
 * replicas started under one fleet name with identities r0, r1, …, and what
 * the Lease objects and the replicas' logs say about who holds which shard.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { shardOf } from "../../src/fleet/shards.ts";
import { lineTime, mapLimit } from "./chaos.ts";
import { createNamespace, startCluster, type Cluster } from "./cluster.ts";
import { startDaemon, type DaemonProcess, type LogLine } from "./daemon.ts";
import { WeightsRecorder } from "./recorder.ts";
import { FakeGatewayStatus, httpRoute } from "./routes.ts";
import { Scenario } from "./scenario.ts";

export interface Replica {
  identity: string;
  d: DaemonProcess;
  /** The log, kept after the process is gone. */
  final?: LogLine[];
  busy: boolean;
  alive: boolean;
}

/** A rollout of an HTTPRoute held at its first step, with every version of its route recorded. */
export interface HeldRollout {
  s: Scenario;
  rec: WeightsRecorder;
  /** The shard its policy belongs to. */
  shard: number;
}

export class FleetWorld {
  c!: Cluster;
  gateway!: FakeGatewayStatus;
  policiesDir = "";
  readonly replicas: Replica[] = [];
  private generation = 0;

  /** `args`: the fleet flags every replica gets (shards, lease namespace, timings). */
  constructor(
    readonly fleet: string,
    readonly leaseNamespace: string,
    private readonly args: string[],
  ) {}

  async start(): Promise<void> {
    this.c = await startCluster();
    this.gateway = new FakeGatewayStatus(this.c);
    await this.gateway.start();
    await createNamespace(this.c, this.leaseNamespace);
    this.policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-fleet-"));
  }

  async stop(): Promise<void> {
    this.gateway?.stop();
    for (const r of this.replicas) {
      await r.d.proc.signal("SIGCONT").catch(() => false);
      await r.d.dispose();
    }
    await this.c?.stop();
    if (this.policiesDir) rmSync(this.policiesDir, { recursive: true, force: true });
  }

  async startReplica(): Promise<Replica> {
    const identity = `r${this.generation++}`;
    const d = await startDaemon({
      kubeconfig: this.c.cp.kubeconfigPath,
      policiesDir: this.policiesDir,
      fleet: this.fleet,
      extraArgs: [...this.args, `--lease-namespace=${this.leaseNamespace}`, `--identity=${identity}`],
    });
    const r: Replica = { identity, d, busy: false, alive: true };
    this.replicas.push(r);
    return r;
  }

  /**
   * `n` HTTPRoutes `<prefix>-<i>`, each with a policy stepping 10, 50, 100 every 10 minutes, so a rollout
   * stays at its first step: nothing is written to it unless someone decides to. Started by shipCanary().
   */
  async heldRollouts(prefix: string, n: number, shards: number): Promise<HeldRollout[]> {
    return mapLimit(
      Array.from({ length: n }, (_, i) => i),
      6,
      async (i) => {
        const s = new Scenario(this.c, httpRoute, `${prefix}-${i}`, this.policiesDir);
        await s.given({ createRoute: false });
        await httpRoute.create(this.c, s.ns, s.route, s.stable, s.canary);
        const rec = new WeightsRecorder(this.c, httpRoute, s.ns, s.route);
        await rec.start();
        s.writePolicy({ steps: [10, 50, 100], interval: "10m" });
        const shard = shardOf({ namespace: s.ns, target: { kind: "HTTPRoute", name: s.route } }, shards);
        return { s, rec, shard };
      },
    );
  }

  /** SIGKILL, as in a node failure; the log is kept. */
  async kill(r: Replica): Promise<void> {
    await r.d.kill();
    r.alive = false;
    r.final = r.d.lines();
  }

  linesOf(r: Replica): LogLine[] {
    return r.final ?? r.d.lines();
  }

  /** Shard → holder identity, as the Lease objects say now ("" when released). */
  async holders(): Promise<Map<number, string>> {
    const api = this.c.kc.makeApiClient(CoordinationV1Api);
    const list = await api.listNamespacedLease({ namespace: this.leaseNamespace });
    const out = new Map<number, string>();
    const shard = new RegExp(`^${this.fleet}-shard-(\\d+)$`);
    for (const l of list.items) {
      const m = shard.exec(l.metadata?.name ?? "");
      if (m) out.set(Number(m[1]), l.spec?.holderIdentity ?? "");
    }
    return out;
  }

  /** The shards a replica holds, as the Leases say now. */
  async shardsOf(r: Replica): Promise<number[]> {
    return [...(await this.holders())].filter(([, id]) => id === r.identity).map(([s]) => s);
  }

  /** Every "took a Lease" of every replica, from the logs. */
  tookLeases(): Array<{ lease: string; at: number; by: string }> {
    return this.replicas.flatMap((r) =>
      this.linesOf(r)
        .filter((l) => l.msg === "fleet: took a Lease" && typeof l.lease === "string")
        .map((l) => ({ lease: l.lease as string, at: lineTime(l), by: r.identity })),
    );
  }

  /** Milliseconds from `at` until another replica than `dead` took the shard's Lease; undefined if none did. */
  failover(shard: number, at: number, dead: string): number | undefined {
    const next = this.tookLeases()
      .filter((t) => t.lease === `${this.fleet}-shard-${shard}` && t.at > at && t.by !== dead)
      .sort((a, b) => a.at - b.at)[0];
    return next ? next.at - at : undefined;
  }
}
