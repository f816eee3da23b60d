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

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const say = (line: string) => console.log(`\x1b[36msandbox ▸\x1b[0m ${line}`);

/** Example policies, copied with demo-sized intervals and without time windows. */
export function sandboxPolicies(
  srcDir: string,
  dstDir: string,
  overrides: { prometheusUrl?: string },
): string[] {
  rmSync(dstDir, { recursive: true, force: true });
  mkdirSync(dstDir, { recursive: true });
  const names: string[] = [];
  for (const f of readdirSync(srcDir).filter((f) => /\.ya?ml$/.test(f))) {
    const doc = parseDocument(readFileSync(path.join(srcDir, f), "utf8"));
    doc.setIn(["spec", "interval"], "3s");
    doc.deleteIn(["spec", "window"]);
    doc.deleteIn(["spec", "windowTimeZone"]);
    if (doc.hasIn(["spec", "analysis"])) {
      if (overrides.prometheusUrl)
        doc.setIn(["spec", "analysis", "prometheus", "url"], overrides.prometheusUrl);
      else doc.deleteIn(["spec", "analysis"]);
    }
    writeFileSync(path.join(dstDir, f), doc.toString());
    names.push(`${String(doc.getIn(["metadata", "namespace"]))}/${String(doc.getIn(["metadata", "name"]))}`);
  }
  return names;
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

  const policiesDir = path.join(sandboxDir, "policies");
  const keys = sandboxPolicies(path.join(ROOT, "policies"), policiesDir, {});
  say(`policies: ${keys.join(", ")} (copies of ./policies with 3 s intervals, no time windows)`);

  const log = createLogger({ level: "info", pretty: process.stdout.isTTY === true });
  const daemon = await startDaemon(
    { kubeconfig: kubeconfigPath, policiesDir, metricsPort: 0, metricsHost: "127.0.0.1" },
    log,
  );
  say(`daemon running; metrics at http://127.0.0.1:${daemon.port}/metrics`);

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("stopping the daemon and the sandbox…");
    await demo.stop();
    await daemon.stop();
    await cluster.stop();
    say("bye");
    process.exit(code);
  };
  process.once("SIGINT", () => void stop(0));
  process.once("SIGTERM", () => void stop(0));

  const demo = runSandboxDemo(cluster, say);
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
