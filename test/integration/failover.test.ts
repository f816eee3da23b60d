/**
 * Failover with the DEFAULT lease timings (client-go's 15 s lease, 10 s
 * renew deadline, 2 s retry; the flags are not given), on the real control
 * plane: fleet.test.ts shortens them to fit its chaos in a test, so this is
 * where the shipped numbers meet a real API server.
 *
 * Two replicas split the 8 shards; the one holding the most is SIGKILLed;
 * aborts are annotated at once on rollouts of its shards (pending: nobody
 * holds them) and on one of the survivor's. Then: the survivor takes every
 * shard of the dead one and every abort lands. Waits are on conditions with
 * generous deadlines; the measured failover and abort times are printed, not
 * asserted, except one lower bound a slow machine cannot break: the survivor
 * must not take a shard before the dead one's lease could have run out.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import { shardOf } from "../../src/fleet/shards.ts";
import { scrape, value } from "../bench/metrics.ts";
import { mapLimit } from "../support/chaos.ts";
import { eventually, mergePatch } from "../support/cluster.ts";
import { FleetWorld } from "../support/fleet.ts";
import { WeightsRecorder } from "../support/recorder.ts";
import { httpRoute } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

const SHARDS = 8;
const LEASE_MS = 15_000;
const RETRY_MS = 2_000;
const ROLLOUTS = 12;

void describe("failover with the default lease timings", () => {
  const world = new FleetWorld("failover", "rolloutd-system", [`--shards=${SHARDS}`]);
  const rollouts: Array<{ s: Scenario; rec: WeightsRecorder; shard: number }> = [];

  before(() => world.start());
  after(async () => {
    for (const r of rollouts) r.rec.close();
    await world.stop();
  });

  void it(
    "the survivor takes a SIGKILLed holder's shards after its lease runs out, and a pending abort lands",
    { timeout: 300_000 },
    async () => {
      const { c, policiesDir } = world;
      // Given: rollouts held at their first step (a 10-minute interval), over the 8 shards.
      rollouts.push(
        ...(await mapLimit(
          Array.from({ length: ROLLOUTS }, (_, i) => i),
          6,
          async (i) => {
            const s = new Scenario(c, httpRoute, `fo-${i}`, policiesDir);
            await s.given({ createRoute: false });
            await httpRoute.create(c, s.ns, s.route, s.stable, s.canary);
            const rec = new WeightsRecorder(c, httpRoute, s.ns, s.route);
            await rec.start();
            s.writePolicy({ steps: [10, 50, 100], interval: "10m" });
            const shard = shardOf({ namespace: s.ns, target: { kind: "HTTPRoute", name: s.route } }, SHARDS);
            return { s, rec, shard };
          },
        )),
      );
      const a = await world.startReplica();
      const b = await world.startReplica();
      await eventually(
        "two replicas hold four shards each",
        async () => {
          const h = [...(await world.holders()).values()];
          return [a, b].every((r) => h.filter((id) => id === r.identity).length === SHARDS / 2);
        },
        90_000,
      );
      await Promise.all(
        rollouts.map(async (r) => {
          await r.rec.waitFor((o) => o.state?.phase === "Steady");
          await r.s.shipCanary("2");
          await r.rec.waitFor((o) => o.state?.phase === "Progressing" && o.weights[r.s.canary] === 10);
        }),
      );

      // At rest the fleet hears the Leases on its watch: a round is one renewal, and a list comes only once per
      // lease duration (a safety net). Listing every round, as with a broken watch, would be one per renewal.
      const leaseCalls = async (r: typeof a) => {
        const m = await scrape(r.d.port);
        const n = (verb: string) => value(m, "rolloutd_lease_requests_total", { verb }) ?? 0;
        return { list: n("list"), update: n("update"), watch: n("watch") };
      };
      const before = await Promise.all([a, b].map(leaseCalls));
      assert.ok(
        before.every((n) => n.watch > 0),
        `both replicas watch their Leases: ${JSON.stringify(before)}`,
      );
      await eventually(
        "each replica renewed its member Lease six more times",
        async () =>
          (await Promise.all([a, b].map(leaseCalls))).every((n, i) => n.update >= before[i]!.update + 6),
        60_000,
      );
      const atRest = await Promise.all([a, b].map(leaseCalls));
      atRest.forEach((n, i) => {
        const lists = n.list - before[i]!.list;
        const renewals = n.update - before[i]!.update;
        assert.ok(
          lists * 3 <= renewals,
          `lists ${lists} for ${renewals} renewals: ${JSON.stringify({ before, atRest })}`,
        );
      });

      // When: the holder of the most rollouts is killed, and aborts are annotated at once.
      const count = async (r: typeof a) => {
        const mine = await world.shardsOf(r);
        return rollouts.filter((x) => mine.includes(x.shard)).length;
      };
      const [victim, survivor] = (await count(a)) >= (await count(b)) ? [a, b] : [b, a];
      const dead = await world.shardsOf(victim);
      const orphaned = rollouts.filter((r) => dead.includes(r.shard));
      const kept = rollouts.filter((r) => !dead.includes(r.shard));
      assert.ok(orphaned.length > 0 && kept.length > 0, "rollouts on both replicas' shards");
      const killedAt = Date.now();
      await world.kill(victim);
      const aborted = [...orphaned, kept[0]!];
      const annotatedAt = new Map<Scenario, number>();
      for (const [k, r] of aborted.entries()) {
        await mergePatch(c, "HTTPRoute", r.s.ns, r.s.route, {
          metadata: {
            annotations: { [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: `failover ${k}` },
          },
        });
        annotatedAt.set(r.s, Date.now());
      }

      // Then: every abort lands, and the survivor holds every shard.
      const landed = await Promise.all(
        aborted.map(async (r) =>
          Promise.race([
            r.rec.waitFor((o) => o.state?.phase === "Aborted" && o.weights[r.s.canary] === 0),
            new Promise<undefined>((res) => setTimeout(() => res(undefined), 120_000).unref()),
          ]),
        ),
      );
      const lost = aborted.filter((_, k) => landed[k] === undefined).map((r) => r.s.ns);
      assert.deepEqual(lost, [], "aborts that did not land within 120 s");
      await eventually(
        "the survivor holds all 8 shards",
        async () => [...(await world.holders()).values()].every((id) => id === survivor.identity),
        60_000,
      );
      const failovers = dead.map((s) => ({ s, ms: world.failover(s, killedAt, victim.identity) }));
      const abortMs = aborted.map((r, k) => landed[k]!.at - annotatedAt.get(r.s)!);
      console.log(
        `# killed ${victim.identity} holding shards ${dead.join(",")} (${orphaned.length} rollouts); ` +
          `failover (kill → shard Lease taken by ${survivor.identity}), ms: ${failovers.map((f) => `${f.s}: ${f.ms}`).join(", ")} ` +
          `(lease ${LEASE_MS} ms, retry ${RETRY_MS} ms)`,
      );
      console.log(
        `# abort annotated → Aborted with canary 0, ms: pending on the dead replica's shards ${abortMs.slice(0, -1).join(", ")}; ` +
          `on the survivor's ${abortMs.at(-1)}`,
      );
      for (const f of failovers) {
        assert.ok(f.ms !== undefined, `shard ${f.s} taken over`);
        // The dead replica renewed at most one retry period (and a round) before it died; its lease ran
        // on from there. Taking the shard earlier would let two replicas write at once.
        assert.ok(
          f.ms >= LEASE_MS - RETRY_MS - 1_000,
          `shard ${f.s} taken ${f.ms} ms after the kill, before the lease could have expired`,
        );
      }
    },
  );
});
