/**
 * The fleet's Lease watch across a kube-apiserver outage, on the real control plane: three replicas hold
 * the 8 shards with their Lease watches open, and the API server is SIGKILLed under them.
 *
 * - A short outage (killed and restarted at once: less than the renew deadline): every replica keeps its
 *   shards (no shard Lease changes holder or counts a transition, no replica logs a lost Lease or a change of
 *   what it holds), and each opens its Lease watch again: at rest afterwards it lists once per lease duration,
 *   not every round as it would without a watch.
 * - A long outage (longer than the lease duration): every replica stops acting as a holder while it cannot
 *   renew (it tells its controller it holds nothing before the server is back), no route is written meanwhile,
 *   and once the server is back the shards are split fairly again and an abort annotated on every rollout
 *   lands.
 *
 * Lease timings 30 s / 20 s / 2 s (client-go's proportions, longer than its 15 / 10 / 2 so that restarting the
 * API server, which takes some seconds, fits in the renew deadline). Waits are on conditions with generous
 * deadlines; the outages' durations are printed, not asserted.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { ANNOTATIONS } from "../../src/contract.ts";
import { scrape, value } from "../bench/metrics.ts";
import { lineTime, sleep } from "../support/chaos.ts";
import { eventually, mergePatch } from "../support/cluster.ts";
import { readyz } from "../support/daemon.ts";
import { FleetWorld, type HeldRollout, type Replica } from "../support/fleet.ts";
import { decisions } from "../support/recorder.ts";

const SHARDS = 8;
const LEASE_MS = 30_000;
const RETRY_MS = 2_000;
const FLEET = "leasewatch";
const LEASE_NS = "rolloutd-system";
const ROLLOUTS = 6;

/** `p`, or a failure naming `what` after `ms`: the recorder's waitFor has no deadline of its own. */
function within<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

void describe("the fleet's Lease watch across API server outages", () => {
  const world = new FleetWorld(FLEET, LEASE_NS, [
    `--shards=${SHARDS}`,
    `--lease-duration=${LEASE_MS / 1000}`,
    "--renew-deadline=20",
    `--retry-period=${RETRY_MS / 1000}`,
  ]);
  const rollouts: HeldRollout[] = [];
  let replicas: Replica[] = [];

  before(async () => {
    await world.start();
    rollouts.push(...(await world.heldRollouts("lw", ROLLOUTS, SHARDS)));
    replicas = [await world.startReplica(), await world.startReplica(), await world.startReplica()];
    await eventually("the shards split 3/3/2", () => fairSplit(), 120_000, 500);
    await Promise.all(
      rollouts.map(async (r) => {
        await within(
          `${r.s.ns} adopted`,
          r.rec.waitFor((o) => o.state?.phase === "Steady"),
          60_000,
        );
        await r.s.shipCanary("2");
        await within(
          `${r.s.ns} at its first step`,
          r.rec.waitFor((o) => o.state?.phase === "Progressing" && o.weights[r.s.canary] === 10),
          60_000,
        );
      }),
    );
  });

  after(async () => {
    for (const r of rollouts) r.rec.close();
    if (!world.c?.cp.apiServerRunning()) await world.c?.cp.startApiServer().catch(() => undefined);
    await world.stop();
  });

  /** Shard → holder and leaseTransitions, as the shard Leases say now. */
  const shardLeases = async (): Promise<Map<number, { holder: string; transitions: number }>> => {
    const api = world.c.kc.makeApiClient(CoordinationV1Api);
    const list = await api.listNamespacedLease({ namespace: LEASE_NS });
    const out = new Map<number, { holder: string; transitions: number }>();
    for (const l of list.items) {
      const m = new RegExp(`^${FLEET}-shard-(\\d+)$`).exec(l.metadata?.name ?? "");
      if (m)
        out.set(Number(m[1]), {
          holder: l.spec?.holderIdentity ?? "",
          transitions: l.spec?.leaseTransitions ?? 0,
        });
    }
    return out;
  };

  /** Every shard held, by the three replicas, 3/3/2 (ceil(8 / 3) = 3 at most each). */
  const fairSplit = async (): Promise<boolean> => {
    const h = [...(await world.holders()).values()];
    const counts = replicas.map((r) => h.filter((id) => id === r.identity).length).sort();
    return h.length === SHARDS && JSON.stringify(counts) === JSON.stringify([2, 3, 3]);
  };

  const leaseCalls = async (r: Replica) => {
    const m = await scrape(r.d.port);
    const n = (verb: string) => value(m, "rolloutd_lease_requests_total", { verb }) ?? 0;
    return { list: n("list"), update: n("update"), watch: n("watch") };
  };

  /** Log lines of the fleet saying what a replica holds, or that it lost a Lease, after `since` (epoch ms). */
  const fleetChanges = (r: Replica, since: number) =>
    world
      .linesOf(r)
      .filter(
        (l) => (l.msg === "fleet: shards held" || l.msg === "fleet: lost a Lease") && lineTime(l) >= since,
      );

  void it(
    "a short outage: every replica keeps its shards and opens its Lease watch again",
    { timeout: 240_000 },
    async (t) => {
      const c = world.c;
      const leasesBefore = await shardLeases();
      const before = await Promise.all(replicas.map(leaseCalls));
      assert.ok(
        before.every((n) => n.watch > 0),
        `every replica watches its Leases: ${JSON.stringify(before)}`,
      );

      const killedAt = Date.now();
      await c.cp.killApiServer();
      await c.cp.startApiServer();
      t.diagnostic(`API server killed and back (/readyz 200) in ${Date.now() - killedAt} ms`);

      // Back: each replica renews again and opens a new watch (the old one died with the server).
      await eventually(
        "every replica renewed twice and watched again after the restart",
        async () =>
          (await Promise.all(replicas.map(leaseCalls))).every(
            (n, i) => n.update >= before[i]!.update + 2 && n.watch > before[i]!.watch,
          ),
        60_000,
        500,
      );
      // At rest on the new watch: lists come once per lease duration (a safety net), not once per renewal.
      const back = await Promise.all(replicas.map(leaseCalls));
      await eventually(
        "every replica renewed ten more times",
        async () =>
          (await Promise.all(replicas.map(leaseCalls))).every((n, i) => n.update >= back[i]!.update + 10),
        120_000,
        500,
      );
      const atRest = await Promise.all(replicas.map(leaseCalls));
      atRest.forEach((n, i) => {
        const lists = n.list - back[i]!.list;
        const renewals = n.update - back[i]!.update;
        assert.ok(
          lists * 3 <= renewals,
          `${replicas[i]!.identity}: ${lists} lists for ${renewals} renewals after the restart: ${JSON.stringify({ back, atRest })}`,
        );
      });

      // Nobody lost anything: the same holders, no transition counted, nothing lost or changed in the logs.
      assert.deepEqual(await shardLeases(), leasesBefore);
      for (const r of replicas)
        assert.deepEqual(
          fleetChanges(r, killedAt).map((l) => ({ msg: l.msg, lease: l.lease, shards: l.shards })),
          [],
          `${r.identity} kept what it held`,
        );
      for (const r of rollouts) assert.equal(await r.s.weights().then((w) => w[r.s.canary]), 10);
    },
  );

  void it(
    "a long outage: replicas stop acting as holders, write nothing, then re-split fairly and every abort lands",
    { timeout: 300_000 },
    async (t) => {
      const c = world.c;
      const versions = rollouts.map((r) => decisions(r.rec.observations));
      const killedAt = Date.now();
      await c.cp.killApiServer();
      // Every replica tells its controller it holds nothing while the server is still down.
      await eventually(
        "every replica dropped its shards while the API server is down",
        () =>
          replicas.every((r) =>
            fleetChanges(r, killedAt).some(
              (l) => l.msg === "fleet: shards held" && Array.isArray(l.shards) && l.shards.length === 0,
            ),
          ),
        LEASE_MS * 2,
        250,
      );
      assert.equal(c.cp.apiServerRunning(), false);
      for (const r of replicas) assert.equal(await readyz(r.d.port), 503, `${r.identity} /readyz while down`);
      // Down for longer than the lease duration: every Lease has expired as every replica sees it.
      await sleep(Math.max(0, killedAt + LEASE_MS + 5_000 - Date.now()));
      const startedAt = Date.now();
      await c.cp.startApiServer();
      t.diagnostic(
        `API server down for ${Date.now() - killedAt} ms (restart took ${Date.now() - startedAt} ms)`,
      );

      await eventually("the shards split 3/3/2 again", () => fairSplit(), 120_000, 500);
      // Nothing was written to a route since the kill: every rollout is where it was.
      assert.deepEqual(
        rollouts.map((r) => decisions(r.rec.observations)),
        versions,
      );
      for (const r of rollouts) assert.equal((await r.s.weights())[r.s.canary], 10);

      const annotatedAt = Date.now();
      await Promise.all(
        rollouts.map((r, k) =>
          mergePatch(c, "HTTPRoute", r.s.ns, r.s.route, {
            metadata: {
              annotations: { [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: `after outage ${k}` },
            },
          }),
        ),
      );
      const landed = await Promise.all(
        rollouts.map((r) =>
          within(
            `the abort of ${r.s.ns} (shard ${r.shard})`,
            r.rec.waitFor((o) => o.state?.phase === "Aborted" && o.weights[r.s.canary] === 0),
            60_000,
          ),
        ),
      );
      t.diagnostic(
        `aborts landed after the annotation, ms: ${landed.map((o) => o.at - annotatedAt).join(", ")}`,
      );
      const held = await world.holders();
      t.diagnostic(
        `shards after the outage: ${replicas
          .map(
            (r) =>
              `${r.identity}: ${[...held]
                .filter(([, id]) => id === r.identity)
                .map(([s]) => s)
                .join(",")}`,
          )
          .join("; ")}`,
      );
    },
  );
});
