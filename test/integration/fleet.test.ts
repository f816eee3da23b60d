/**
 * A fleet of three replicas on one real control plane (PRODUCT §5: "a dead
 * replica's rollouts resume within one lease duration; zero lost aborts").
 *
 * 32 rollouts over the four route families. One replica starts alone and
 * takes every shard; two more join and the shards are split fairly. Then a
 * seeded chaos schedule SIGKILLs replicas that hold shards, SIGSTOPs one for
 * twice the lease duration, and replaces one by SIGTERM as a rolling update
 * would, while canaries ship and aborts are annotated during failovers. A
 * watch per weights object records every version. Counted at the end: lost
 * aborts, double or skipped steps, invalid weights (all must be 0); writes a
 * frozen replica decided after waking and before re-acquiring a shard (0);
 * and the failover time of every shard of a killed replica (reported).
 *
 * Lease timings are shortened (3 s / 2 s / 0.5 s, the same proportions as
 * client-go's 15 / 10 / 2) so the run fits in a test.
 * Replay a schedule with ROLLOUTD_CHAOS_SEED=<seed printed as "# seed">.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { ANNOTATIONS } from "../../src/contract.ts";
import { shardOf } from "../../src/fleet/shards.ts";
import { eventually, mergePatch } from "../support/cluster.ts";
import { lineTime, mapLimit, seededRandom, shuffle, sleep } from "../support/chaos.ts";
import {
  decisions,
  appliedMismatches,
  canaryShare,
  invalidWeights,
  WeightsRecorder,
  type Observation,
} from "../support/recorder.ts";
import { FleetWorld, type Replica } from "../support/fleet.ts";
import { FAMILIES, stateOf } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

const STEPS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
const PER_FAMILY = 8;
/** Rollouts per family held at their first step (a 10-minute interval): more than the chaos can abort. */
const HELD_PER_FAMILY = 3;
/** At least this many aborts: every held rollout is aborted, by the chaos or at its end. */
const ABORTS = HELD_PER_FAMILY * 4;
const ABORT_MARGIN_STEPS = 3;
const FLEET = "chaos";
const LEASE_NS = "rolloutd-system";
const SHARDS = 8;
const LEASE_MS = 3_000;
const FLEET_ARGS = [
  `--shards=${SHARDS}`,
  `--lease-duration=${LEASE_MS / 1000}`,
  "--renew-deadline=2",
  "--retry-period=0.5",
];
const SEED = Number(process.env.ROLLOUTD_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

interface Rollout {
  s: Scenario;
  /** Held at its first step (a 10-minute interval), so an abort always has a candidate; each one is aborted. */
  long: boolean;
  rec: WeightsRecorder;
  started: boolean;
  abort?: {
    reason: string;
    stepIndex: number;
    sameObject: boolean;
    at: number;
    duringFailover: boolean;
    /** Annotated while its shard's holder was dead. */
    headless: boolean;
  };
}

void describe("a fleet of three replicas under SIGKILL, SIGSTOP and a rolling update", () => {
  const world = new FleetWorld(FLEET, LEASE_NS, FLEET_ARGS);
  const replicas = world.replicas;
  const rollouts: Rollout[] = [];

  before(() => world.start());

  after(async () => {
    for (const r of rollouts) r.rec.close();
    await world.stop();
  });

  const startReplica = () => world.startReplica();
  const linesOf = (r: Replica) => world.linesOf(r);
  const holders = () => world.holders();

  void it(
    "no lost abort, no double or skipped step, no invalid weight, no write by a replica that lost its lease",
    { timeout: 420_000 },
    async () => {
      const began = Date.now();
      const { c, policiesDir } = world;
      const rng = seededRandom(SEED);
      const pick = seededRandom(SEED ^ 0x5bd1e995);

      // Given: 32 rollouts' namespaces, routes and policies.
      const fams = FAMILIES.flatMap((fam) => Array.from({ length: PER_FAMILY }, (_, i) => ({ fam, i })));
      rollouts.push(
        ...(await mapLimit(fams, 8, async ({ fam, i }) => {
          const s = new Scenario(c, fam, `fl-${FAMILIES.indexOf(fam)}-${i}`, policiesDir);
          await s.given({ createRoute: false });
          await fam.create(c, s.ns, s.route, s.stable, s.canary);
          const rec = new WeightsRecorder(c, fam, s.ns, fam.weightsObjectName(s.route));
          await rec.start();
          const long = i < HELD_PER_FAMILY;
          s.writePolicy({ steps: STEPS, interval: long ? "10m" : "1s" });
          return { s, rec, started: false, long };
        })),
      );

      // A fleet of one takes every shard and adopts every route, with no fleet configuration beyond its name.
      const first = await startReplica();
      await eventually(
        "the first replica holds all 8 shards",
        async () => [...(await holders()).values()].filter((h) => h === first.identity).length === SHARDS,
        30_000,
      );
      await eventually(
        "every route adopted by the fleet of one",
        () => rollouts.every((r) => r.rec.latest()?.state?.phase === "Steady"),
        60_000,
      );
      // The API server took our MicroTimes (six fractional digits).
      const lease = await c.kc
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ namespace: LEASE_NS, name: "chaos-shard-0" });
      assert.equal(lease.spec?.holderIdentity, first.identity);
      assert.equal(lease.spec?.leaseDurationSeconds, 3);
      const renewed: unknown = lease.spec?.renewTime;
      assert.match(
        typeof renewed === "string" ? renewed : String(renewed),
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
        "renewTime as the API server stored it: a MicroTime",
      );

      // Two more join: the shards are split 3/3/2 and every one is held.
      await startReplica();
      await startReplica();
      await eventually(
        "shards split fairly over three replicas",
        async () => {
          const h = await holders();
          const counts = replicas.map((r) => [...h.values()].filter((x) => x === r.identity).length);
          return counts.every((n) => n >= 2 && n <= 3) && counts.reduce((a, b) => a + b, 0) === SHARDS;
        },
        30_000,
      );

      // When: the held rollouts start first (an abort always has a candidate), the others ship over the
      // first 20 s; chaos runs for about 45 s.
      const held = rollouts.filter((r) => r.long);
      await Promise.all(
        held.map(async (r) => {
          await r.s.shipCanary("2");
          await r.rec.waitFor((o) => o.state?.phase === "Progressing");
          r.started = true;
        }),
      );
      const shipAt = new Map<Rollout, number>();
      for (const r of shuffle(rollouts, rng)) shipAt.set(r, rng() * 20_000);
      const chaosStart = Date.now();
      const shipping = Promise.all(
        rollouts
          .filter((r) => !r.long)
          .map(async (r) => {
            await sleep(chaosStart + shipAt.get(r)! - Date.now());
            await r.s.shipCanary("2");
            r.started = true;
          }),
      );

      const kills: Array<{ at: number; identity: string; shards: number[] }> = [];
      const stops: Array<{ identity: string; r: Replica; stoppedAt: number; wokeAt: number }> = [];
      let abortsSkipped = 0;
      let abortCount = 0;
      const shardOfRollout = (r: Rollout) =>
        shardOf({ namespace: r.s.ns, target: { kind: r.s.fam.targetKind, name: r.s.route } }, SHARDS);
      /** Aborts one rollout in progress; during a failover, one whose shard has no live holder if there is one. */
      const abortOne = async (duringFailover: boolean, only?: Rollout, orphaned: number[] = []) => {
        const all = rollouts.filter((r) => {
          if (only && r !== only) return false;
          const st = r.rec.latest()?.state;
          return (
            r.started &&
            !r.abort &&
            st?.phase === "Progressing" &&
            st.stepIndex <= STEPS.length - 1 - ABORT_MARGIN_STEPS
          );
        });
        const headless = all.filter((r) => orphaned.includes(shardOfRollout(r)));
        const candidates = headless.length ? headless : all;
        const r = candidates[Math.floor(pick() * candidates.length)];
        if (!r) {
          abortsSkipped++;
          return;
        }
        const reason = `fleet chaos abort ${++abortCount}${duringFailover ? " (during a failover)" : ""}`;
        const fam = r.s.fam;
        const sameObject = fam.targetKind === fam.weightsKind;
        const before = sameObject ? undefined : await r.s.weightsObject();
        const annotated = await mergePatch(c, fam.targetKind, r.s.ns, r.s.route, {
          metadata: { annotations: { [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: reason } },
        });
        const state = stateOf(before ?? annotated);
        r.abort = {
          reason,
          stepIndex: state?.stepIndex ?? -1,
          sameObject,
          at: Date.now(),
          duringFailover,
          headless: headless.includes(r),
        };
      };

      const plan = shuffle(["kill", "kill", "kill", "kill", "stop", "stop", "term", "abort", "abort"], rng);
      const background: Array<Promise<void>> = [];
      for (const action of plan) {
        await sleep(2_000 + rng() * 3_000);
        const idle = replicas.filter((r) => r.alive && !r.busy);
        if (action === "kill") {
          const h = await holders();
          const holding = idle.filter((r) => [...h.values()].includes(r.identity));
          const victim = holding[Math.floor(pick() * holding.length)] ?? idle[0];
          if (!victim) continue;
          const shards = [...h].filter(([, id]) => id === victim.identity).map(([s]) => s);
          const at = Date.now();
          await world.kill(victim);
          kills.push({ at, identity: victim.identity, shards });
          // Aborts annotated while the dead replica's shards have no holder yet.
          await abortOne(true, undefined, shards);
          if (rng() < 0.5) await abortOne(true, undefined, shards);
          await sleep(500 + rng() * 1_500);
          await startReplica();
        } else if (action === "stop") {
          const victim = idle[Math.floor(pick() * idle.length)];
          if (!victim) continue;
          victim.busy = true;
          const frozen = [...(await holders())].filter(([, id]) => id === victim.identity).map(([x]) => x);
          background.push(
            (async () => {
              const stoppedAt = Date.now();
              await victim.d.proc.signal("SIGSTOP");
              await sleep(2 * LEASE_MS);
              await victim.d.proc.signal("SIGCONT");
              stops.push({ identity: victim.identity, r: victim, stoppedAt, wokeAt: Date.now() });
              victim.busy = false;
            })(),
          );
          await sleep(500);
          await abortOne(true, undefined, frozen);
        } else if (action === "term") {
          // A rolling update: the new Pod first, then the old one is told to stop and gives its Leases back.
          const victim = idle[Math.floor(pick() * idle.length)];
          if (!victim) continue;
          await startReplica();
          const code = await victim.d.stop();
          assert.equal(code, 0, `${victim.identity} exits 0 on SIGTERM`);
          victim.alive = false;
          victim.final = victim.d.lines();
        } else {
          await abortOne(false);
        }
      }
      await Promise.all(background);
      await shipping;
      // Every held rollout ends aborted: those the chaos did not abort are aborted now.
      for (const r of rollouts.filter((x) => x.long && !x.abort)) {
        await r.rec.waitFor((o) => o.state?.phase === "Progressing");
        await abortOne(false, r);
      }

      // Then: the fleet finishes every rollout.
      const terminal = (o: Observation | undefined) =>
        o?.state?.phase === "Promoted" || o?.state?.phase === "Aborted";
      await eventually(
        "every rollout Promoted or Aborted",
        () => rollouts.every((r) => terminal(r.rec.latest())),
        180_000,
        200,
      );
      // What rolloutd wrote: the gateway stand-in's status writes change the object too, and may land after this.
      const counts = rollouts.map((r) => decisions(r.rec.observations));
      await sleep(2_000);

      const problems: string[] = [];
      const policyOf = (r: Rollout) => `${r.s.ns}/${r.s.route}`;

      // Failover: from each kill to the moment another replica took each of the dead one's shards.
      const failovers: number[] = [];
      for (const k of kills) {
        for (const s of k.shards) {
          const ms = world.failover(s, k.at, k.identity);
          if (ms === undefined) problems.push(`shard ${s} of killed ${k.identity} was never taken over`);
          else failovers.push(ms);
        }
      }

      // A frozen replica must not decide a write after it wakes, before it has taken a shard again.
      let inFlightAtStop = 0;
      for (const st of stops) {
        const lines = linesOf(st.r);
        const retook = lines.find(
          (l) =>
            l.msg === "fleet: took a Lease" &&
            String(l.lease).startsWith(`${FLEET}-shard-`) &&
            lineTime(l) >= st.wokeAt,
        );
        const until = retook ? lineTime(retook) : Infinity;
        for (const l of lines) {
          const t = lineTime(l);
          if (t < st.stoppedAt || t >= until || typeof l.policy !== "string" || typeof l.reason !== "string")
            continue;
          if (typeof l.phase !== "string" || typeof l.step !== "number") continue;
          const r = rollouts.find((x) => policyOf(x) === l.policy);
          const o = r?.rec.observations.find(
            (x) => x.state !== undefined && x.state.phase === l.phase && x.state.stepIndex + 1 === l.step,
          );
          if (!o?.state) continue;
          if (o.state.updatedAt >= st.wokeAt)
            problems.push(
              `${st.identity} decided ${l.reason} for ${l.policy} after waking at ${st.wokeAt} and before re-acquiring a shard`,
            );
          else if (t >= st.wokeAt) inFlightAtStop++;
        }
      }

      // Every rollout's history, as in the restart test.
      let lostAborts = 0;
      let stepProblems = 0;
      let invalid = 0;
      rollouts.forEach((r, i) => {
        const { s, rec } = r;
        const fam = s.fam;
        const who = `${s.ns} (${fam.weightsKind})`;
        const obs = rec.observations;
        if (rec.gaps > 0) problems.push(`${who}: the record has ${rec.gaps} gap(s)`);
        if (decisions(obs) !== counts[i]) problems.push(`${who}: changed after every rollout was at rest`);
        for (const o of obs) {
          const bad = invalidWeights(fam, o.weights);
          if (bad) {
            invalid++;
            problems.push(`${who} rv ${o.resourceVersion}: ${bad}`);
          }
          for (const m of appliedMismatches(fam, o.object, o.state?.applied ?? []))
            problems.push(`${who} rv ${o.resourceVersion}: state.applied and weights disagree at ${m}`);
        }
        const shares = rec.history().map((w) => canaryShare(w, s.stable, s.canary));
        const collapsed = shares.filter((x, k) => k === 0 || x !== 0 || shares[k - 1] !== 0);
        const stepWrites: number[] = [];
        const seen = new Set<string>();
        for (const o of obs) {
          const st = o.state;
          if (!st || st.phase !== "Progressing" || st.weightsWrittenAt === undefined) continue;
          const key = `${st.stepIndex}@${st.weightsWrittenAt}`;
          if (seen.has(key)) continue;
          seen.add(key);
          stepWrites.push(st.stepIndex);
        }
        const st = obs.at(-1)!.state!;
        const final = obs.at(-1)!;
        if (r.abort) {
          if (
            st.phase !== "Aborted" ||
            st.abort?.reason !== r.abort.reason ||
            final.weights[s.canary] !== 0
          ) {
            lostAborts++;
            problems.push(
              `${who}: aborted (${r.abort.reason}) but ended ${st.phase}, reason ${JSON.stringify(st.abort?.reason)}, canary ${final.weights[s.canary]}`,
            );
          }
          const k = collapsed.length - 2;
          const ok =
            collapsed[0] === 0 &&
            collapsed.at(-1) === 0 &&
            k >= 0 &&
            JSON.stringify(collapsed.slice(1, -1)) === JSON.stringify(STEPS.slice(0, k));
          const slack = r.abort.sameObject ? 0 : 1;
          if (!ok || k < r.abort.stepIndex + 1 || k > r.abort.stepIndex + 1 + slack) {
            stepProblems++;
            problems.push(
              `${who}: annotated at step ${r.abort.stepIndex + 1}; history ${collapsed.join(",")} (${k} steps)`,
            );
          }
          if (JSON.stringify(stepWrites) !== JSON.stringify(STEPS.slice(0, k).map((_, x) => x))) {
            stepProblems++;
            problems.push(`${who}: step writes ${stepWrites.join(",")} for ${k} steps`);
          }
        } else {
          if (st.phase !== "Promoted") problems.push(`${who}: ended ${st.phase}, want Promoted`);
          if (
            JSON.stringify(collapsed) !== JSON.stringify([0, ...STEPS]) ||
            JSON.stringify(stepWrites) !== JSON.stringify(STEPS.map((_, x) => x))
          ) {
            stepProblems++;
            problems.push(
              `${who}: promoted history ${collapsed.join(",")}, step writes ${stepWrites.join(",")}`,
            );
          }
        }
      });

      const aborted = rollouts.filter((r) => r.abort);
      const abortMs = aborted.map((r) => {
        const seen = r.rec.observations.find(
          (o) => o.at >= r.abort!.at && o.state?.phase === "Aborted" && o.weights[r.s.canary] === 0,
        );
        return seen ? seen.at - r.abort!.at : NaN;
      });
      console.log(`# seed ${SEED} (replay: ROLLOUTD_CHAOS_SEED=${SEED})`);
      console.log(
        `# ${rollouts.length} rollouts; ${replicas.length} replica processes; ${kills.length} SIGKILLs of shard holders ` +
          `(${kills.map((k) => `${k.identity}: shards ${k.shards.join(",")}`).join("; ")}); ` +
          `${stops.length} SIGSTOPs of ${(2 * LEASE_MS) / 1000} s; 1 rolling replacement`,
      );
      console.log(
        `# aborts: ${aborted.length} (${aborted.filter((r) => r.abort!.duringFailover).length} during failovers, ` +
          `${abortsSkipped} slots without a candidate); lost ${lostAborts}; double or skipped steps ${stepProblems}; invalid weights ${invalid}`,
      );
      console.log(
        `# failover (kill → shard taken by another replica), ms: max ${Math.max(...failovers)}, ` +
          `all ${failovers.sort((a, b) => a - b).join(", ")} (lease ${LEASE_MS} ms)`,
      );
      const fmt = (pred: (r: Rollout) => boolean) =>
        aborted
          .map((r, k) => (pred(r) ? abortMs[k] : undefined))
          .filter((x) => x !== undefined)
          .join(", ");
      console.log(
        `# abort annotated → canary 0 seen, ms: on a shard whose holder was dead or frozen: ${fmt((r) => r.abort!.headless)}; ` +
          `others: ${fmt((r) => !r.abort!.headless)}`,
      );
      const refused = stops.map(
        (st) =>
          linesOf(st.r).filter(
            (l) => l.msg === "not reconciled: its shard is not held here now" && lineTime(l) >= st.wokeAt,
          ).length,
      );
      console.log(`# reconciles refused by the lease fence after waking from SIGSTOP: ${refused.join(", ")}`);
      console.log(`# writes in flight at a SIGSTOP, answered after waking: ${inFlightAtStop}`);
      console.log(
        `# wall time ${((Date.now() - began) / 1000).toFixed(1)} s (after the control plane started)`,
      );
      assert.deepEqual(problems, [], problems.join("\n"));
      assert.ok(kills.length >= 3, `kills: ${kills.length}`);
      assert.equal(stops.length, 2);
      assert.ok(aborted.length >= ABORTS, `aborts landed: ${aborted.length}/${ABORTS}`);
      assert.ok(
        aborted.filter((r) => r.abort!.duringFailover).length >= kills.length,
        "an abort during every failover",
      );
      assert.ok(failovers.length > 0, "some shard was failed over");
    },
  );
});
