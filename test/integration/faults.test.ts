/**
 * The fault injectors that the end-to-end tests of "an abort always lands" stand on, each shown to do what
 * it says on the real parts: the API server killed and restarted on the same port (the clients made before
 * the kill work again, etcd data intact), etcd frozen (the API server hangs on storage until thawed), and a
 * Prometheus that hangs, answers late, lies or passes through to a real one — observed from a plain fetch
 * and from the daemon's own Prometheus client.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { PrometheusClient } from "../../src/analysis/prometheus.ts";
import { startPrometheus, type PrometheusHandle } from "../controlplane/prometheus.ts";
import { createNamespace, eventually, startCluster, type Cluster } from "../support/cluster.ts";
import { abortable, startFaultyPrometheus, type FaultyPrometheus } from "../support/faults.ts";

/** The names of all namespaces, through the given cluster's long-lived client. */
async function namespaces(c: Cluster, signal = AbortSignal.timeout(10_000)): Promise<string[]> {
  const list = await c.core.listNamespace({}, abortable(signal));
  return list.items.map((n) => n.metadata!.name!).sort();
}

// Every test has a timeout: a fault injector that fails to release a request must fail the test, not stall it.

/** True if `err` is what fetch/undici throw when the request's signal aborted. */
function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

void describe("control-plane faults", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ crds: false });
  });
  after(async () => {
    await c?.stop();
  });

  void it(
    "kills the API server and restarts it on the same port; clients made before work again",
    { timeout: 120_000 },
    async (t) => {
      await createNamespace(c, "before-kill");
      assert.ok((await namespaces(c)).includes("before-kill"));
      await assert.rejects(c.cp.startApiServer(), /already running/);

      for (let round = 1; round <= 2; round++) {
        await c.cp.killApiServer();
        assert.equal(c.cp.apiServerRunning(), false);
        // Nothing listens there now: refused at once, not a timeout.
        const down = Date.now();
        await assert.rejects(namespaces(c, AbortSignal.timeout(5_000)), (err) => !isAbort(err));
        assert.ok(Date.now() - down < 4_000, "a request to a killed API server is refused, not hung");

        const started = Date.now();
        await c.cp.startApiServer();
        t.diagnostic(`round ${round}: restart to /readyz 200 took ${Date.now() - started} ms`);
        assert.equal(c.cp.apiServerRunning(), true);

        // Same client object, same kubeconfig: same port, same certificate, same token, etcd data intact.
        const names = await namespaces(c);
        assert.ok(names.includes("before-kill"), `namespaces after restart: ${names.join(", ")}`);
        await createNamespace(c, `after-restart-${round}`);
        assert.ok((await namespaces(c)).includes(`after-restart-${round}`));
      }
      assert.equal(readFileSync(path.join(c.cp.dir, "certs", "apiserver.crt"), "utf8"), c.cp.caData);
    },
  );

  void it(
    "freezes etcd: reads and writes hang until thawed, then complete",
    { timeout: 60_000 },
    async (t) => {
      await c.cp.freezeEtcd();
      let thawed = false;
      try {
        const t0 = Date.now();
        await assert.rejects(
          c.core.readNamespace({ name: "default" }, abortable(AbortSignal.timeout(2_000))),
          isAbort,
        );
        const waited = Date.now() - t0;
        assert.ok(waited >= 1_900, `the read gave up after ${waited} ms, not on its own 2 s signal`);
        await assert.rejects(
          c.core.createNamespace(
            { body: { metadata: { name: "while-frozen" } } },
            abortable(AbortSignal.timeout(1_000)),
          ),
          isAbort,
        );

        // A request sent while frozen and left waiting completes once etcd runs again.
        const pending = c.core.readNamespace({ name: "before-kill" }, abortable(AbortSignal.timeout(30_000)));
        let settled = false;
        void pending.then(
          () => (settled = true),
          () => (settled = true),
        );
        await new Promise((r) => setTimeout(r, 1_000));
        assert.equal(settled, false, "a read answered while etcd was frozen");

        const thawAt = Date.now();
        await c.cp.thawEtcd();
        thawed = true;
        const ns = await pending;
        assert.equal(ns.metadata?.name, "before-kill");
        t.diagnostic(`the waiting read completed ${Date.now() - thawAt} ms after thaw`);
      } finally {
        if (!thawed) await c.cp.thawEtcd();
      }
      await createNamespace(c, "after-thaw");
      assert.ok((await namespaces(c)).includes("after-thaw"));
    },
  );
});

/** POSTs a form query the way src/analysis/prometheus.ts does. */
function postQuery(base: string, query: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${base}/api/v1/query`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ query, time: "1700000000.5" }).toString(),
    signal,
  });
}

void describe("faulty Prometheus", () => {
  let real: PrometheusHandle;
  let p: FaultyPrometheus;
  before(async () => {
    real = await startPrometheus();
  });
  after(async () => {
    await p?.close();
    await real?.stop();
  });

  void it(
    "lies: a fixed value, NaN, no data or bogus text, in Prometheus' JSON format",
    { timeout: 10_000 },
    async () => {
      p = await startFaultyPrometheus();
      p.lie(42);
      const res = await postQuery(p.url, "up");
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), {
        status: "success",
        data: { resultType: "vector", result: [{ metric: {}, value: [1700000000.5, "42"] }] },
      });
      p.lie(Number.NaN);
      assert.deepEqual(((await (await postQuery(p.url, "q2")).json()) as any).data.result[0].value, [
        1700000000.5,
        "NaN",
      ]);
      p.lie(null);
      assert.deepEqual(((await (await postQuery(p.url, "q3")).json()) as any).data.result, []);
      p.lie("not-a-number");
      assert.equal(
        ((await (await postQuery(p.url, "q4")).json()) as any).data.result[0].value[1],
        "not-a-number",
      );
      assert.deepEqual(p.queries, ["up", "q2", "q3", "q4"]);
      assert.deepEqual([p.received, p.answered, p.open, p.abandoned], [4, 4, 0, 0]);
    },
  );

  void it(
    "hangs: the request stays open until the client gives up, and counts as abandoned",
    { timeout: 10_000 },
    async () => {
      const [received, answered, abandoned] = [p.received, p.answered, p.abandoned];
      p.hang();
      const ac = new AbortController();
      const req = postQuery(p.url, "hung", ac.signal);
      await eventually("one open request", () => p.open === 1, 5_000, 10);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(p.open, 1, "still open after 500 ms");
      assert.equal(p.answered, answered);
      ac.abort();
      await assert.rejects(req, isAbort);
      await eventually("the hung request closed", () => p.open === 0, 5_000, 10);
      assert.deepEqual([p.received, p.answered, p.abandoned], [received + 1, answered, abandoned + 1]);
    },
  );

  void it(
    "is slow: answers after the delay with the last lie, open in the meantime",
    { timeout: 10_000 },
    async () => {
      p.lie(7);
      p.slow(600);
      const t0 = Date.now();
      const req = postQuery(p.url, "slow");
      await eventually("one open request", () => p.open === 1, 5_000, 10);
      const res = await req;
      const body = (await res.json()) as any;
      assert.ok(Date.now() - t0 >= 590, `answered after ${Date.now() - t0} ms`);
      assert.equal(body.data.result[0].value[1], "7");
      await eventually("closed", () => p.open === 0, 5_000, 10);
    },
  );

  void it("proxies /api/v1/query to a real Prometheus, errors included", { timeout: 10_000 }, async () => {
    p.proxy(real.url);
    const res = await postQuery(p.url, "vector(6) * 7");
    assert.equal(res.status, 200);
    const body = (await res.json()) as any;
    assert.equal(body.status, "success");
    assert.equal(body.data.resultType, "vector");
    assert.equal(body.data.result[0].value[1], "42");
    assert.equal(body.data.result[0].value[0], 1700000000.5);
    // A PromQL parse error is Prometheus' own answer, passed through.
    const bad = await postQuery(p.url, "sum(");
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).errorType, "bad_data");
    // slow() after proxy delays the proxied answer.
    p.slow(300);
    assert.deepEqual(p.mode, { kind: "slow", ms: 300, then: { kind: "proxy", upstream: real.url } });
    const t0 = Date.now();
    const late = (await (await postQuery(p.url, "vector(1)")).json()) as any;
    assert.ok(Date.now() - t0 >= 290);
    assert.equal(late.data.result[0].value[1], "1");
  });

  void it(
    "is what the daemon's Prometheus client sees: a value, and a timeout that abandons the request",
    { timeout: 10_000 },
    async () => {
      const client = new PrometheusClient({ url: p.url, timeoutMs: 400 });
      try {
        p.lie(0.25);
        assert.deepEqual(await client.query("rate(x[1m])"), { kind: "value", value: 0.25 });
        p.lie(null);
        assert.deepEqual(await client.query("rate(x[1m])"), { kind: "noData" });
        const abandoned = p.abandoned;
        p.hang();
        const outcome = await client.query("rate(x[1m])");
        assert.equal(outcome.kind, "error");
        assert.equal(outcome.kind === "error" && outcome.error.code, "timeout");
        await eventually("the timed-out query closed", () => p.open === 0, 5_000, 10);
        assert.equal(p.abandoned, abandoned + 1);
      } finally {
        client.close();
      }
    },
  );

  void it("close() ends hung connections, so a test never waits on them", { timeout: 10_000 }, async () => {
    p.hang();
    const req = postQuery(p.url, "hung-at-close");
    // Handled from now on: it rejects while close() is awaited.
    const failed = assert.rejects(req, /fetch failed/);
    await eventually("one open request", () => p.open === 1, 5_000, 10);
    const t0 = Date.now();
    await p.close();
    await failed;
    assert.ok(Date.now() - t0 < 1_000, `close took ${Date.now() - t0} ms`);
    assert.equal(p.open, 0);
    await assert.rejects(postQuery(p.url, "after-close"));
  });
});
