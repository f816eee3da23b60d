/**
 * The README's first command: `npm start` with no cluster configured brings
 * up the sandbox and runs the demo. Run to completion here (the sandbox
 * exits after the demo when ROLLOUTD_SANDBOX_EXIT=1).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { it } from "node:test";

function cacheBase(): string {
  return (
    process.env.ROLLOUTD_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "rolloutd")
  );
}

const START = fileURLToPath(new URL("../sandbox/start.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

void it("npm start without a cluster: sandbox, promotions on measured values, a rollback for a measured reason, an abort", async () => {
  const home = mkdtempSync(path.join(tmpdir(), "rolloutd-home-"));
  try {
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", START], {
        cwd: ROOT,
        // No kubeconfig anywhere: HOME has no .kube, KUBECONFIG is unset.
        env: {
          ...process.env,
          HOME: home,
          KUBECONFIG: "",
          KUBERNETES_SERVICE_HOST: "",
          ROLLOUTD_SANDBOX_EXIT: "1",
          // The control-plane binaries stay where this machine cached them (the cache is under HOME otherwise).
          ROLLOUTD_CACHE_DIR: cacheBase(),
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let text = "";
      child.stdout.on("data", (d: Buffer) => (text += d.toString()));
      child.stderr.on("data", (d: Buffer) => (text += d.toString()));
      const timer = setTimeout(() => child.kill("SIGTERM"), 300_000);
      child.on("close", (c) => {
        clearTimeout(timer);
        resolve({ code: c, out: text });
      });
    });
    const tail = out.split("\n").slice(-30).join("\n");
    assert.equal(code, 0, tail);
    assert.match(out, /no Kubernetes cluster configured/);
    assert.match(out, /demo\/frontend was promoted on measured values: p99-latency [\d.]+ ms ≤ 500 ms/);
    assert.match(out, /rolled back for a measured reason: p99-latency [\d.]+ ms > 500 ms/);
    assert.match(
      out,
      /demo\/payments\s+Aborted\s+payments-v1=100 payments-v2=0\s+aborted: payment errors \(sandbox demo\)/,
    );
    assert.match(out, /demo\/checkout\s+Promoted\s+checkout-v1=0 checkout-v2=90 legacy=10/);
    // A header stage on the GRPCRoute, and a blue/green preview then switch on an HTTPRoute.
    assert.match(out, /demo\/search\s+Progressing\s.*\(stage: header x-canary=always → search-v2\)/);
    assert.match(out, /demo\/storefront\s+Progressing\s.*\(stage: header x-preview=yes → storefront-v2\)/);
    assert.match(out, /demo\/storefront\s+Promoted\s+storefront-v1=0 storefront-v2=\d+/);
    assert.match(out, /demo finished/);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
