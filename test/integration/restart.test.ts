/**
 * Restart safety (PRODUCT §4): "the daemon can be killed at any instant and
 * resume where it was, without repeating or skipping a step, without losing
 * an abort".
 *
 * One real control plane, 24 rollouts over the four route families, each in
 * its own namespace. The daemon runs as a child process; a seeded chaos loop
 * SIGKILLs it at random moments and starts it again. Between kills, canaries
 * are shipped and about a third of the rollouts are aborted by annotation at
 * random moments — some while the daemon is down. A watch per weights object
 * records every version of it. A last daemon then runs until every rollout is
 * Promoted or Aborted, and the record must show: every abort honoured, every
 * other rollout promoted through each step exactly once and in order, valid
 * weights at every instant, and weights and persisted state never apart.
 *
 * Replay a schedule with ROLLOUTD_CHAOS_SEED=<seed printed as "# seed">.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { eventually, mergePatch } from "../support/cluster.ts";
import { firstLineAt, mapLimit, seededRandom, shuffle, sleep } from "../support/chaos.ts";
import {
  decisions,
  appliedMismatches,
  canaryShare,
  invalidWeights,
  WeightsRecorder,
  type Observation,
} from "../support/recorder.ts";
import { FAMILIES, stateOf, type RouteFamily } from "../support/routes.ts";
import type { Scenario } from "../support/scenario.ts";
import { startWorld, type World } from "../support/world.ts";

const STEPS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
const PER_FAMILY = 6;
const ABORTS = 8;
/** An abort only targets a rollout this many steps or more away from promotion, so it cannot race the end. */
const ABORT_MARGIN_STEPS = 3;
const SEED = Number(process.env.ROLLOUTD_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

const short = new Map<RouteFamily, string>([
  [FAMILIES[0]!, "gr"],
  [FAMILIES[1]!, "vr"],
  [FAMILIES[2]!, "http"],
  [FAMILIES[3]!, "grpc"],
]);

interface Rollout {
  s: Scenario;
  rec: WeightsRecorder;
  startCycle: number;
  startWhileDead: boolean;
  started: boolean;
  abort?: { reason: string; whileDead: boolean; stepIndex: number; sameObject: boolean; at: number };
}

interface Action {
  cycle: number;
  whileDead: boolean;
  /** Fraction of the cycle's alive time at which it runs (alive actions only). */
  at: number;
  run(): Promise<void>;
}

void describe("restart safety under SIGKILL", () => {
  let w: World;
  /** The daemon now running: the world's first, then each one started after a kill. */
  let daemon: DaemonProcess | undefined;
  const rollouts: Rollout[] = [];

  before(async () => {
    w = await startWorld();
  });

  after(async () => {
    for (const r of rollouts) r.rec.close();
    // The world stops the daemon it started; the ones started after a kill are ours (dispose is idempotent).
    await daemon?.dispose();
    await w?.stop();
  });

  void it(
    "resumes every rollout after each kill: no lost abort, no skipped or repeated step, weights and state agree",
    { timeout: 240_000 },
    async () => {
      const began = Date.now();
      const rng = seededRandom(SEED);
      // A second stream for choices that depend on what the cluster shows, so the schedule itself replays.
      const pick = seededRandom(SEED ^ 0x5bd1e995);
      const kills = 8 + Math.floor(rng() * 3);

      const { c, policiesDir } = w;
      daemon = w.daemon;
      // Given: 24 namespaces, each with both Deployments at v1, a route at 100 % stable, and a policy.
      // The route is made here, not by the Scenario (whose own watch of it would be a second one): the recorder
      // below is the record, with gap counting.
      // Each policy is written once its recorder is watching, so the record starts before the daemon's first write.
      const fams = FAMILIES.flatMap((fam) => Array.from({ length: PER_FAMILY }, (_, i) => ({ fam, i })));
      rollouts.push(
        ...(await mapLimit(fams, 8, async ({ fam, i }) => {
          const s = await w.scenario(fam, `rs-${short.get(fam)}-${i}`, { createRoute: false });
          await fam.create(c, s.ns, s.route, s.stable, s.canary);
          const rec = new WeightsRecorder(c, fam, s.ns, fam.weightsObjectName(s.route));
          await rec.start();
          s.writePolicy({ steps: STEPS, interval: "1s" });
          return { s, rec, startCycle: 0, startWhileDead: false, started: false };
        })),
      );
      await eventually(
        "every route adopted",
        () => rollouts.every((r) => r.rec.latest()?.state?.phase === "Steady"),
        60_000,
      );

      // The schedule, drawn up front from the seed: canaries ship over the first 60 % of the cycles,
      // aborts land in cycles 1..kills-2; about half of each happen while the daemon is down.
      const aliveMs = Array.from({ length: kills }, () => 200 + rng() * 2300);
      const startCycles = Math.ceil(kills * 0.6);
      const actions: Action[] = [];
      shuffle(rollouts, rng).forEach((r, j) => {
        r.startCycle = j % startCycles;
        r.startWhileDead = rng() < 0.4;
        actions.push({
          cycle: r.startCycle,
          whileDead: r.startWhileDead,
          at: rng(),
          run: async () => {
            await r.s.shipCanary("2");
            r.started = true;
          },
        });
      });
      let abortsSkipped = 0;
      for (let n = 0; n < ABORTS; n++) {
        const whileDead = n % 2 === 0;
        actions.push({
          cycle: 1 + Math.floor(rng() * (kills - 2)),
          whileDead,
          at: rng(),
          run: async () => {
            const candidates = rollouts.filter((r) => {
              const st = r.rec.latest()?.state;
              return (
                r.started &&
                !r.abort &&
                st?.phase === "Progressing" &&
                st.stepIndex <= STEPS.length - 1 - ABORT_MARGIN_STEPS
              );
            });
            const r = candidates[Math.floor(pick() * candidates.length)];
            if (!r) {
              abortsSkipped++;
              return;
            }
            const reason = `chaos abort ${n + 1} (daemon ${whileDead ? "down" : "up"})`;
            const fam = r.s.fam;
            // The step the rollout is at when the annotation lands: exact where the annotation and the
            // state share an object (the patch answers with both). For App Mesh as shipped (annotation on
            // the GatewayRoute, state on the VirtualRouter) read just before, so a step written meanwhile
            // may show one step later.
            const sameObject = fam.targetKind === fam.weightsKind;
            const before = sameObject ? undefined : await r.s.weightsObject();
            const annotated = await mergePatch(c, fam.targetKind, r.s.ns, r.s.route, {
              metadata: { annotations: { [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: reason } },
            });
            const at = Date.now();
            const state = stateOf(before ?? annotated);
            r.abort = { reason, whileDead, stepIndex: state?.stepIndex ?? -1, sameObject, at };
          },
        });
      }

      // When: kill the daemon at random moments, acting on the cluster while it is up and while it is down.
      interface Life {
        d: DaemonProcess;
        servingAt: number;
        endedAt?: number;
        watchedAt?: number;
        loadedAt?: number;
      }
      const life = (d: DaemonProcess): Life => ({
        d,
        servingAt: firstLineAt(d.lines(), (l) => l.msg.startsWith("serving /healthz"))!,
      });
      // Startup milestones, read from the log before it goes away with the process.
      const milestones = (l: Life) => {
        const lines = l.d.lines();
        l.watchedAt = firstLineAt(lines, (x) => x.msg === "watches started");
        l.loadedAt = firstLineAt(lines, (x) => x.msg === "policies loaded");
      };
      const lives: Life[] = [life(daemon)];
      for (let cycle = 0; cycle < kills; cycle++) {
        const t0 = Date.now();
        const alive = actions.filter((a) => a.cycle === cycle && !a.whileDead).sort((a, b) => a.at - b.at);
        for (const a of alive) {
          await sleep(t0 + a.at * aliveMs[cycle]! - Date.now());
          await a.run();
        }
        await sleep(t0 + aliveMs[cycle]! - Date.now());
        await daemon.kill();
        lives.at(-1)!.endedAt = Date.now();
        milestones(lives.at(-1)!);
        await daemon.dispose();
        for (const a of actions.filter((x) => x.cycle === cycle && x.whileDead)) await a.run();
        daemon = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir });
        lives.push(life(daemon));
      }

      // Then: the last daemon finishes every rollout.
      const terminal = (o: Observation | undefined) =>
        o?.state?.phase === "Promoted" || o?.state?.phase === "Aborted";
      await eventually(
        "every rollout Promoted or Aborted",
        () => rollouts.every((r) => terminal(r.rec.latest())),
        120_000,
        200,
      );
      // Nothing moves once every rollout is at rest: no extra step after a promotion or an abort.
      // What rolloutd wrote: the gateway stand-in's status writes change the object too, and may land after this.
      const counts = rollouts.map((r) => decisions(r.rec.observations));
      await sleep(2500);
      milestones(lives.at(-1)!);
      const code = await daemon.stop();
      assert.equal(code, 0, "the last daemon exits 0 on SIGTERM");

      // How fast each restarted daemon resumed: from its "serving" line to its first write a watch saw.
      const timings = lives.slice(1).map((l, k) => {
        const end = l.endedAt ?? Infinity;
        const firstWrite = Math.min(
          ...rollouts.map(
            (r) =>
              r.rec.observations.find(
                (o) => o.at >= l.servingAt && o.at <= end && (o.state?.updatedAt ?? 0) >= l.servingAt,
              )?.at ?? Infinity,
          ),
        );
        const rel = (t: number | undefined) => (t === undefined ? "?" : `+${t - l.servingAt}`);
        return (
          `# restart ${k + 1}: serving → first write seen ${Number.isFinite(firstWrite) ? `${firstWrite - l.servingAt} ms` : "none before the next kill"}` +
          ` (watches synced ${rel(l.watchedAt)} ms, policies loaded ${rel(l.loadedAt)} ms` +
          `${l.endedAt ? `, killed ${rel(l.endedAt)} ms` : ""})`
        );
      });

      const problems: string[] = [];
      rollouts.forEach((r, i) => {
        const { s, rec } = r;
        const fam = s.fam;
        const who = `${s.ns} (${fam.weightsKind})`;
        const obs = rec.observations;
        if (rec.gaps > 0) problems.push(`${who}: the record has ${rec.gaps} gap(s)`);
        if (decisions(obs) !== counts[i]) problems.push(`${who}: changed after every rollout was at rest`);
        for (const o of obs) {
          const bad = invalidWeights(fam, o.weights);
          if (bad) problems.push(`${who} rv ${o.resourceVersion}: ${bad}`);
          // Weights and the persisted state are written together: no version may show them apart.
          const applied = o.state?.applied;
          if (applied) {
            for (const m of appliedMismatches(fam, o.object, applied))
              problems.push(`${who} rv ${o.resourceVersion}: state.applied and weights disagree at ${m}`);
          }
        }
        const shares = rec.history().map((w) => canaryShare(w, s.stable, s.canary));
        // Repeated 0 % entries are the same "no canary" (HTTPRoute's default weight 1 becomes an explicit 100).
        const collapsed = shares.filter((x, k) => k === 0 || x !== 0 || shares[k - 1] !== 0);
        // Each step is written once: one weightsWrittenAt per step index, indices in order.
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
        const final = obs.at(-1)!;
        const st = final.state!;
        if (r.abort) {
          if (st.phase !== "Aborted")
            problems.push(`${who}: aborted (${r.abort.reason}) but ended ${st.phase}`);
          if (st.abort?.reason !== r.abort.reason)
            problems.push(`${who}: abort reason ${JSON.stringify(st.abort?.reason)}, want ${r.abort.reason}`);
          if (final.weights[s.canary] !== 0 || st.canary !== s.canary)
            problems.push(`${who}: aborted but canary weight is ${final.weights[s.canary]}`);
          const k = collapsed.length - 2;
          const ok =
            collapsed[0] === 0 &&
            collapsed.at(-1) === 0 &&
            k >= 0 &&
            JSON.stringify(collapsed.slice(1, -1)) === JSON.stringify(STEPS.slice(0, k));
          if (!ok)
            problems.push(`${who}: aborted history ${collapsed.join(",")} is not 0, a prefix of steps, 0`);
          // Not one step after the annotation, where the annotation is on the weights object (its
          // resourceVersion fences the daemon's writes) or the daemon was down; App Mesh as shipped may
          // finish one step write decided before the annotation arrived.
          const slack = r.abort.sameObject || r.abort.whileDead ? 0 : 1;
          if (k < r.abort.stepIndex + 1 || k > r.abort.stepIndex + 1 + slack)
            problems.push(
              `${who}: annotated at step ${r.abort.stepIndex + 1} (daemon ${r.abort.whileDead ? "down" : "up"}) but ${k} steps were written`,
            );
          if (JSON.stringify(stepWrites) !== JSON.stringify(STEPS.slice(0, k).map((_, x) => x)))
            problems.push(`${who}: step writes ${stepWrites.join(",")} for ${k} steps`);
        } else {
          if (st.phase !== "Promoted") problems.push(`${who}: ended ${st.phase}, want Promoted`);
          if (st.stable !== s.canary || st.canary !== s.stable)
            problems.push(`${who}: roles not swapped after promotion`);
          if (JSON.stringify(collapsed) !== JSON.stringify([0, ...STEPS]))
            problems.push(`${who}: promoted history ${collapsed.join(",")}, want 0,${STEPS.join(",")}`);
          if (JSON.stringify(stepWrites) !== JSON.stringify(STEPS.map((_, x) => x)))
            problems.push(`${who}: step writes ${stepWrites.join(",")}, want each step index once in order`);
          if (final.weights[s.stable] !== 0)
            problems.push(`${who}: promoted but the old stable still has ${final.weights[s.stable]}`);
        }
        // At the end, the persisted state and the route agree.
        if (!st.applied) problems.push(`${who}: no state.applied at the end`);
        for (const m of appliedMismatches(fam, final.object, st.applied ?? []))
          problems.push(`${who}: final state.applied and weights disagree at ${m}`);
      });

      const aborted = rollouts.filter((r) => r.abort);
      const abortedDown = aborted.filter((r) => r.abort!.whileDead).length;
      console.log(`# seed ${SEED} (replay: ROLLOUTD_CHAOS_SEED=${SEED})`);
      console.log(
        `# ${kills} kills; ${rollouts.length} rollouts; ${aborted.length} aborted (${abortedDown} while the daemon was down, ` +
          `${aborted.length - abortedDown} while up, ${abortsSkipped} abort slots without a candidate); ` +
          `${rollouts.filter((r) => r.startWhileDead).length} canaries shipped while down`,
      );
      for (const t of timings) console.log(t);
      // How long each abort took to show as canary 0: from the annotation while up; from the next
      // daemon's "serving" line when it was set while down.
      const abortMs = (up: boolean) =>
        aborted
          .filter((r) => r.abort!.whileDead !== up)
          .map((r) => {
            const next = lives.find((l) => l.servingAt >= r.abort!.at);
            const from = up ? r.abort!.at : (next?.servingAt ?? NaN);
            const seen = r.rec.observations.find(
              (o) => o.at >= r.abort!.at && o.state?.phase === "Aborted" && o.weights[r.s.canary] === 0,
            );
            if (!seen) return "never";
            // Set while up but written by the next daemon: the kill came first.
            const byNext = up && next !== undefined && seen.at >= next.servingAt;
            return `${seen.at - from}${byNext ? " (killed first; by the next daemon)" : ""}`;
          })
          .join(", ");
      console.log(`# abort set while up → canary 0 seen: ${abortMs(true)} ms`);
      console.log(
        `# abort set while down → canary 0 seen, from the next daemon's "serving": ${abortMs(false)} ms`,
      );
      console.log(
        `# wall time ${((Date.now() - began) / 1000).toFixed(1)} s (after the control plane started)`,
      );
      assert.deepEqual(problems, [], problems.join("\n"));
      assert.ok(aborted.length >= ABORTS - 2, `aborts landed: ${aborted.length}/${ABORTS}`);
      assert.ok(abortedDown >= 2, "some aborts were set while the daemon was down");
    },
  );
});
