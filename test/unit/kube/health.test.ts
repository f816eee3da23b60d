/**
 * The /readyz beat: says since when the API server stopped answering, and
 * tells when it answers again with that instant, so watches that said nothing
 * since then are re-opened (their connection may have died silently).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { ApiHealth } from "../../../src/kube/health.ts";

let now = 0;

async function advance(ms: number): Promise<void> {
  for (let done = 0; done < ms; done += 100) {
    now += 100;
    mock.timers.tick(100);
    for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
  }
}

void describe("ApiHealth", () => {
  beforeEach(() => {
    now = 1_000;
    mock.timers.enable({ apis: ["setTimeout"] });
  });
  afterEach(() => mock.timers.reset());

  void it("reports the outage's start when the server answers again, once, and nothing while it is healthy", async () => {
    let up = true;
    const recovered: number[] = [];
    const health = new ApiHealth(
      () => Promise.resolve(up ? { ok: true, detail: "ok" } : { ok: false, detail: "/readyz 503" }),
      () => now,
      { intervalMs: 5_000, unhealthyIntervalMs: 500, onRecovered: (since) => recovered.push(since) },
    );
    // Read through a function: TypeScript would keep the getter narrowed by the asserts below.
    const down = () => health.down;
    health.start();
    await advance(20_000);
    assert.deepEqual(recovered, []);
    assert.equal(down(), undefined);
    up = false;
    await advance(5_000);
    const since = down()?.since;
    assert.ok(since !== undefined && since > 20_000 && since <= 26_000, `down since ${since}`);
    assert.equal(down()?.detail, "/readyz 503");
    await advance(3_000);
    assert.equal(down()?.since, since, "the start of the outage does not move");
    up = true;
    await advance(1_000);
    assert.deepEqual(recovered, [since]);
    assert.equal(down(), undefined);
    await advance(20_000);
    assert.deepEqual(recovered, [since]);
    health.stop();
  });

  void it("asks nothing while writes keep being answered, and asks at once when they stop", async () => {
    let up = true;
    let probes = 0;
    const health = new ApiHealth(
      () => (
        probes++,
        Promise.resolve(up ? { ok: true, detail: "ok" } : { ok: false, detail: "/readyz 503" })
      ),
      () => now,
      { intervalMs: 5_000, unhealthyIntervalMs: 500 },
    );
    const down = () => health.down;
    health.start();
    // The fleet renews its member Lease every 2 s.
    const renew = async (ms: number) => {
      for (let t = 0; t < ms; t += 2_000) {
        health.witness();
        await advance(2_000);
      }
    };
    await advance(100);
    const first = probes;
    await renew(60_000);
    assert.equal(probes, first, "no /readyz while renewals come every 2 s");
    // The server goes away: renewals stop, and the beat asks within its interval.
    up = false;
    await advance(6_000);
    assert.ok(probes > first, "asked once renewals stopped");
    assert.equal(down()?.detail, "/readyz 503");
    health.stop();
  });
});
