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
});
