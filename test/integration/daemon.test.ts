/**
 * The daemon process itself: it starts against a real API server, reports
 * ready once its watches are synced, serves metrics, stops cleanly on
 * SIGTERM — and every kind of bad start ends in one clear message, not a
 * stack trace or a hang.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { kubeconfig } from "../controlplane/controlplane.ts";
import { freePort } from "../controlplane/process.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { runCli, startDaemon } from "../support/daemon.ts";
import { appMeshVirtualRouter } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";
import { ANNOTATIONS } from "../../src/contract.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

/**
 * `npm run bundle` (what the image runs, see the Dockerfile) into a folder of this run's own under dist/, where
 * `../../package.json` is the package's and pino resolves from node_modules as it does in the image.
 */
function bundle(): string {
  const out = path.join(ROOT, "dist", `test-${process.pid}`, "rolloutd.mjs");
  const r = spawnSync("npm", ["run", "--silent", "bundle", "--", `--outfile=${out}`], {
    cwd: ROOT,
    encoding: "utf8",
  });
  assert.ok(r.status === 0 && existsSync(out), `npm run bundle:\n${r.stdout}${r.stderr}`);
  return out;
}

/** Runs `rolloutd <args>` to completion; returns exit code, output and how long it took. */
function rolloutd(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000) {
  return runCli(args, { env, timeoutMs });
}

/** The human messages in the output: the msg of JSON log lines, other lines as they are. */
function messages(out: string): string {
  return out
    .split("\n")
    .map((l) => {
      try {
        return (JSON.parse(l) as { msg: string }).msg;
      } catch {
        return l;
      }
    })
    .join("\n");
}

void describe("rolloutd run", () => {
  let c: Cluster;
  let dir: string;
  before(async () => {
    c = await startCluster();
    dir = mkdtempSync(path.join(tmpdir(), "rolloutd-daemon-test-"));
  });
  after(async () => {
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    rmSync(path.join(ROOT, "dist", `test-${process.pid}`), { recursive: true, force: true });
  });

  void it("becomes ready against a real API server, serves metrics, and exits 0 on SIGTERM within seconds", async () => {
    const d = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir: path.join(dir, "none") });
    const health = await fetch(`http://127.0.0.1:${d.port}/healthz`);
    assert.equal(health.status, 200);
    const ready = await fetch(`http://127.0.0.1:${d.port}/readyz`);
    assert.equal(ready.status, 200);
    assert.match(await ready.text(), /ok: 0 policies/);
    const metrics = await (await fetch(`http://127.0.0.1:${d.port}/metrics`)).text();
    assert.match(metrics, /^rolloutd_process_resident_memory_bytes \d+/m);
    assert.match(metrics, /^rolloutd_rollouts\{phase="Steady"\} 0/m);
    const lines = d.lines();
    assert.ok(
      lines.every((l) => typeof l.level === "string" && typeof l.msg === "string"),
      "every log line is JSON with level and msg",
    );
    assert.ok(
      lines.some((l) => l.msg === "connected to the Kubernetes API server" && l.version === "v1.34.4"),
    );
    const started = Date.now();
    assert.equal(await d.stop(), 0);
    assert.ok(Date.now() - started < 5000, `stopped in ${Date.now() - started} ms`);
    assert.ok(d.lines().some((l) => l.msg === "stopped"));
    await d.dispose();
  });

  void it("the bundle the image runs is the daemon: it adopts a route, steps it and lands an abort", async () => {
    const entry = bundle();
    const version = spawnSync(process.execPath, [entry, "version"], { encoding: "utf8" });
    assert.match(
      version.stdout,
      /^rolloutd \d+\.\d+\.\d+$/m,
      "the bundle finds package.json for its version",
    );
    // Node holds the bundle's source (V8 keeps it for lazy compilation) at two bytes a character if one character
    // is not ASCII, and one byte otherwise: 3.3 MB of RSS.
    const source = readFileSync(entry, "utf8");
    const wide = /[\u0080-\u{10ffff}]/u.exec(source);
    assert.equal(
      wide,
      null,
      `a character above U+007F in the bundle: ${JSON.stringify(source.slice((wide?.index ?? 0) - 60, (wide?.index ?? 0) + 20))}`,
    );
    // An ES import of node:http reads its lazy WebSocket export, which loads Node's own undici (src/bundle/http.cts).
    assert.doesNotMatch(
      source,
      /(?:\bfrom|\bimport)\s*["'](?:node:)?http["']/,
      "the bundle imports node:http as ESM",
    );
    const policiesDir = mkdtempSync(path.join(dir, "bundle-policies-"));
    const d = await startDaemon({ kubeconfig: c.cp.kubeconfigPath, policiesDir, entry: [entry] });
    const s = new Scenario(c, appMeshVirtualRouter, "bundled", policiesDir);
    try {
      // The process runs the bundle, not the sources.
      assert.ok(readFileSync(`/proc/${d.pid}/cmdline`, "utf8").split("\0").includes(entry));
      const ui = await fetch(`http://127.0.0.1:${d.port}/ui`);
      assert.equal(ui.status, 200);
      assert.match(
        await ui.text(),
        /<title>rolloutd \u2014 rollouts<\/title>[\s\S]*new EventSource/,
        "the bundle serves the live page",
      );
      await s.given();
      s.writePolicy({ steps: [10, 100], interval: "1h" });
      await s.until("adopted", (st) => st.phase === "Steady");
      await s.shipCanary("2");
      await s.until("step 1", (st, w) => st.phase === "Progressing" && w[s.canary] === 10);
      await s.annotateTarget({ [ANNOTATIONS.abort]: "true", [ANNOTATIONS.abortReason]: "bundled" });
      const st = await s.until("aborted", (x, w) => x.phase === "Aborted" && w[s.canary] === 0);
      assert.equal(st.abort?.reason, "bundled");
      assert.ok(
        d.lines().some((l) => l.msg === "connected to the Kubernetes API server"),
        "the bundle logs through pino, loaded from node_modules",
      );
    } finally {
      s.close();
      assert.equal(await d.stop(), 0);
      await d.dispose();
    }
  });

  void it("without any cluster configuration: one message that says what to do", async () => {
    const r = await rolloutd(["run", "--log-format=json"], {
      KUBECONFIG: "",
      HOME: dir,
      KUBERNETES_SERVICE_HOST: "",
    });
    assert.equal(r.code, 1);
    assert.match(r.out, /no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG/);
    assert.doesNotMatch(r.out, /\n\s+at /, "no stack trace");
  });

  void it("with an unreachable API server: names the server and the cause, and does not hang", async () => {
    const port = await freePort();
    const file = path.join(dir, "unreachable.kubeconfig");
    writeFileSync(file, kubeconfig(`https://127.0.0.1:${port}`, c.cp.caData, "token"));
    const r = await rolloutd(["run", `--kubeconfig=${file}`, "--log-format=json"]);
    assert.equal(r.code, 1);
    assert.match(
      r.out,
      new RegExp(`cannot reach the Kubernetes API server at https://127.0.0.1:${port}: .*ECONNREFUSED`),
    );
    assert.doesNotMatch(r.out, /\n\s+at /);
  });

  void it("with a metrics port in use: says which port and how to choose another", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await rolloutd([
        "run",
        `--kubeconfig=${c.cp.kubeconfigPath}`,
        `--metrics-port=${port}`,
        "--metrics-host=127.0.0.1",
        "--log-format=json",
      ]);
      assert.equal(r.code, 1);
      assert.match(r.out, new RegExp(`port ${port} on 127.0.0.1 is already in use: pass --metrics-port`));
    } finally {
      blocker.close();
    }
  });

  void it("with a context that is not in the kubeconfig: lists the ones that are", async () => {
    const r = await rolloutd([
      "run",
      `--kubeconfig=${c.cp.kubeconfigPath}`,
      "--context=prod",
      "--log-format=json",
    ]);
    assert.equal(r.code, 1);
    assert.match(messages(r.out), /context "prod" not found in .* \(have: local\)/);
  });
});
