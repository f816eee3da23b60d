/**
 * Two ways the API server fails a running daemon that the kill tests do not cover, on the real parts:
 *
 * - **Watches expire.** The API server here ends every watch after 3–6 s (`--min-request-timeout=3`), serves
 *   watches from etcd rather than its cache (`--watch-cache=false`, so no bookmarks move a watch's
 *   resourceVersion along) and compacts etcd every 2 s. A watch that resumes from the resourceVersion of its
 *   last event, once other writes have moved etcd on and compaction passed it, gets 410 Gone and must list
 *   again. The daemon's `rolloutd_watch_lists_total` shows those lists; an abort annotated afterwards lands.
 * - **etcd freezes** (SIGSTOP) mid-rollout, with step writes due: requests hang instead of failing. The
 *   operator's abort hangs with them; after the thaw it lands, and the weights went through valid states only.
 *
 * Assertions are about where traffic ends up; durations are printed, with bounds only a broken daemon misses
 * (the API server's own request timeout is 60 s).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ANNOTATIONS } from "../../src/contract.ts";
import { annotate, createNamespace, eventually, type Cluster } from "../support/cluster.ts";
import { httpRoute } from "../support/routes.ts";
import { readyz } from "../support/daemon.ts";
import { startWorld, type World } from "../support/world.ts";
import { scrape, value } from "../bench/metrics.ts";

/** Lists made so far by the daemon's HTTPRoute watch. */
async function routeLists(port: number): Promise<number> {
  return value(await scrape(port), "rolloutd_watch_lists_total", { kind: "HTTPRoute" }) ?? 0;
}

/** Writes that move etcd's revision on without touching any kind the daemon watches. */
async function churn(c: Cluster, ns: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await c.core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: `churn-${Date.now()}-${i}` }, data: { i: String(i) } },
    });
  }
}

void describe("watches expiring and etcd frozen under a running daemon", () => {
  let w: World;
  let c: Cluster;

  before(async () => {
    w = await startWorld({
      apiServerArgs: ["--min-request-timeout=3", "--watch-cache=false", "--etcd-compaction-interval=2s"],
    });
    ({ c } = w);
  });

  after(async () => {
    await w?.stop();
  });

  void it("relists after its watch's resourceVersion was compacted away (410), and an abort still lands", async (t) => {
    const s = await w.scenario(httpRoute, "expiry");
    s.writePolicy({ steps: [10, 50, 100], interval: "1h" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("step 1", (st, wt) => st.phase === "Progressing" && wt[s.canary] === 10);

    await createNamespace(c, "expiry-churn");
    const listsBefore = await routeLists(w.daemon.port);
    // Nothing the daemon watches changes now, so its HTTPRoute watch keeps resuming from an old
    // resourceVersion; the churn carries etcd past it and compaction removes it.
    await eventually(
      "the HTTPRoute watch lists again after expiring",
      async () => {
        await churn(c, "expiry-churn", 5);
        return (await routeLists(w.daemon.port)) > listsBefore ? true : undefined;
      },
      90_000,
      500,
    );
    const failures = w.daemon
      .lines()
      .filter((l) => l.msg === "watch failed; restarting" && l.kind === "HTTPRoute");
    t.diagnostic(
      `HTTPRoute lists: ${listsBefore} before, ${await routeLists(w.daemon.port)} after the expiry; ` +
        `watch failures logged: ${failures.map((l) => String(l.err)).join(" | ") || "none"}`,
    );
    assert.equal(await readyz(w.daemon.port), 200);

    await s.annotateTarget({ [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: "after expiry" });
    const st = await s.until("aborted", (x, wt) => x.phase === "Aborted" && wt[s.canary] === 0, 30_000);
    assert.equal(st.abort?.reason, "after expiry");
    assert.deepEqual(await s.weights(), { [s.stable]: 100, [s.canary]: 0 });
  });

  void it("an abort sent while etcd is frozen lands after the thaw, through valid weights only", async (t) => {
    const s = await w.scenario(httpRoute, "frozen");
    const steps = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 100];
    s.writePolicy({ steps, interval: "2s" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("stepping", (st, wt) => st.phase === "Progressing" && (wt[s.canary] ?? 0) >= 10);

    await c.cp.freezeEtcd();
    let abortSent: Promise<unknown> | undefined;
    try {
      await eventually(
        "the daemon's /readyz turns 503 while etcd is frozen",
        async () => ((await readyz(w.daemon.port)) === 503 ? true : undefined),
        30_000,
        250,
      );
      // The operator's patch hangs in the API server like everything else; it is not awaited here.
      abortSent = annotate(c, "HTTPRoute", "frozen", s.route, {
        [ANNOTATIONS.abort]: "true",
        [ANNOTATIONS.abortReason]: "sent while frozen",
      });
      // Long enough for at least one step deadline to pass with its write hanging.
      await new Promise((r) => setTimeout(r, 5_000));
    } finally {
      await c.cp.thawEtcd();
    }
    const thawAt = performance.now();
    await abortSent;
    const st = await s.until("aborted", (x, wt) => x.phase === "Aborted" && wt[s.canary] === 0, 60_000);
    t.diagnostic(`abort landed ${(performance.now() - thawAt).toFixed(0)} ms after the thaw`);
    assert.equal(st.abort?.reason, "sent while frozen");
    await eventually(
      "/readyz 200 again",
      async () => ((await readyz(w.daemon.port)) === 200 ? true : undefined),
      30_000,
    );

    // Every state seen (the test's own watch expires too, so it may miss some, never invent one): weights in
    // the route's own units (the route starts at 1/0), never both 0; the canary's share only took the policy's
    // steps, never going back, until the abort's 0.
    const canary = s.history.map((h) => {
      const total = (h[s.stable] ?? 0) + (h[s.canary] ?? 0);
      assert.ok(total > 0, `both weights 0: ${JSON.stringify(h)}`);
      return Math.round((100 * (h[s.canary] ?? 0)) / total);
    });
    assert.equal(canary.at(-1), 0);
    const stepped = canary.slice(
      canary.findIndex((x) => x > 0),
      -1,
    );
    assert.ok(stepped.length > 0, `no step seen: ${canary.join(" → ")}`);
    for (const [i, x] of stepped.entries()) {
      assert.ok(steps.includes(x), `canary ${x} % is not a step: ${canary.join(" → ")}`);
      if (i > 0) assert.ok(x > stepped[i - 1]!, `went back or repeated: ${canary.join(" → ")}`);
    }
    t.diagnostic(`canary weights seen: ${canary.join(" → ")}`);
  });
});
