/**
 * `npm start`: runs rolloutd against the configured cluster, or — when no
 * cluster is configured — brings up a local sandbox (kube-apiserver and etcd
 * on loopback, our traffic CRDs, a Gateway API status stand-in) and runs the
 * daemon against it with the example policies, driving a short demo: new
 * canary revisions are shipped, rollouts step and are promoted, and one is
 * aborted by annotation.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { startDaemon } from "../../src/daemon.ts";
import { kubeconfigSource } from "../../src/kube/client.ts";
import { createLogger } from "../../src/log.ts";
import { runSandboxDemo } from "./demo.ts";
import { startTraffic } from "./traffic.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const say = (line: string) => console.log(`\x1b[36msandbox ▸\x1b[0m ${line}`);

/**
 * Example policies, copied with demo-sized intervals and without time windows.
 * Analysis stays where the sandbox can feed it (provider `app`: its test
 * backends export those series) and points at the sandbox's Prometheus.
 */
export function sandboxPolicies(
  srcDir: string,
  dstDir: string,
  overrides: { prometheusUrl?: string },
): string[] {
  rmSync(dstDir, { recursive: true, force: true });
  mkdirSync(dstDir, { recursive: true });
  const notes: string[] = [];
  for (const f of readdirSync(srcDir).filter((f) => /\.ya?ml$/.test(f))) {
    const doc = parseDocument(readFileSync(path.join(srcDir, f), "utf8"));
    const key = `${String(doc.getIn(["metadata", "namespace"]))}/${String(doc.getIn(["metadata", "name"]))}`;
    doc.setIn(["spec", "interval"], "3s");
    doc.deleteIn(["spec", "window"]);
    doc.deleteIn(["spec", "windowTimeZone"]);
    let note = "3 s steps";
    if (doc.hasIn(["spec", "analysis"])) {
      if (overrides.prometheusUrl && doc.getIn(["spec", "analysis", "provider"]) === "app") {
        doc.setIn(["spec", "interval"], "4s");
        doc.setIn(["spec", "analysis", "prometheus", "url"], overrides.prometheusUrl);
        // A few dozen requests per second at 5 % cannot reach production-sized minimums in 4 s.
        doc.setIn(["spec", "analysis", "minRequests"], 10);
        note = "4 s steps, Prometheus analysis on live test traffic";
      } else {
        doc.deleteIn(["spec", "analysis"]);
        note = `3 s steps, analysis left out (${overrides.prometheusUrl ? "its provider's metrics need a real mesh" : "no Prometheus"})`;
      }
    }
    writeFileSync(path.join(dstDir, f), doc.toString());
    notes.push(`${key}: ${note}`);
  }
  return notes;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const explicit = args.some((a) => a.startsWith("--kubeconfig"));
  if (explicit || kubeconfigSource()) {
    // A cluster is configured: this is simply `rolloutd run`.
    say(
      `cluster configured (${explicit ? "--kubeconfig" : kubeconfigSource()}): running the daemon against it with ./policies`,
    );
    const { buildProgram } = await import("../../src/cli/program.ts");
    await buildProgram().parseAsync(["node", "rolloutd", "run", ...args]);
    return;
  }

  say("no Kubernetes cluster configured (no --kubeconfig, KUBECONFIG or ~/.kube/config)");
  say("starting a local sandbox: kube-apiserver and etcd on loopback (built from Go modules on first run)…");
  const { startCluster } = await import("../support/cluster.ts");
  const cluster = await startCluster();
  const sandboxDir = path.join(ROOT, ".sandbox");
  mkdirSync(sandboxDir, { recursive: true });
  const kubeconfigPath = path.join(sandboxDir, "kubeconfig");
  writeFileSync(kubeconfigPath, cluster.cp.kubeconfigYaml, { mode: 0o600 });
  say(`API server ${cluster.cp.server}; kubeconfig written to .sandbox/kubeconfig`);
  say(`  try, in another terminal:  KUBECONFIG=.sandbox/kubeconfig npm run rolloutd -- status -A`);

  const traffic = await startTraffic(cluster, say);
  const policiesDir = path.join(sandboxDir, "policies");
  const notes = sandboxPolicies(path.join(ROOT, "policies"), policiesDir, {
    prometheusUrl: traffic?.prometheusUrl,
  });
  say("policies (copies of ./policies in .sandbox/policies):");
  for (const n of notes) say(`  ${n}`);

  const log = createLogger({ level: "info", pretty: process.stdout.isTTY === true });
  const daemon = await startDaemon(
    {
      kubeconfig: kubeconfigPath,
      policiesDir,
      metricsPort: 0,
      metricsHost: "127.0.0.1",
      minWindowSeconds: 4,
    },
    log,
  );
  say(
    `daemon running; live page at http://127.0.0.1:${daemon.port}/ui, metrics at http://127.0.0.1:${daemon.port}/metrics`,
  );

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("stopping the daemon and the sandbox…");
    await demo.stop();
    await daemon.stop();
    await traffic?.stop();
    await cluster.stop();
    say("bye");
    process.exit(code);
  };
  process.once("SIGINT", () => void stop(0));
  process.once("SIGTERM", () => void stop(0));

  const demo = runSandboxDemo(cluster, say, traffic);
  const outcome = await demo.done;
  say(
    outcome.ok
      ? "demo finished: everything above happened on a real API server."
      : `demo failed: ${outcome.detail}`,
  );
  if (process.env.ROLLOUTD_SANDBOX_EXIT === "1") return stop(outcome.ok ? 0 : 1);
  say("the sandbox keeps running; press Ctrl-C to stop it");
}

main().catch((err: unknown) => {
  console.error(`npm start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
