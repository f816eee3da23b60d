/**
 * A real Kubernetes control plane on loopback: etcd and kube-apiserver built
 * from pinned Go modules (see build.ts), each in a fresh temp directory on
 * random ports. The apiserver runs with RBAC, an admin identity (static
 * token in system:masters) and service-account token signing, so tests can
 * also act as a ServiceAccount through the TokenRequest API. There is no
 * kubelet and no controller-manager: tests write object status themselves.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { ensureControlPlaneBinaries } from "./build.ts";
import { freePort, guardDirectory, spawnSupervised, waitFor, type SupervisedProcess } from "./process.ts";

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  /** PEM of the apiserver's self-signed serving certificate, to trust it. */
  caData: string;
  adminToken: string;
  /** A kubeconfig file for the admin identity. */
  kubeconfigPath: string;
  kubeconfigYaml: string;
  dir: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  log?: (line: string) => void;
  /** Keep the directory after stop (debugging). */
  keep?: boolean;
  /** Parent for the temp directory. */
  baseDir?: string;
}

export async function startControlPlane(opts: StartOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const bins = await ensureControlPlaneBinaries(opts.log);
  const dir = mkdtempSync(path.join(opts.baseDir ?? tmpdir(), "rolloutd-cp-"));
  const guard = guardDirectory(dir);
  const procs: SupervisedProcess[] = [];

  const stop = async () => {
    // Reverse order: the apiserver first, so it does not spin on a vanished etcd.
    for (const p of [...procs].reverse()) await p.stop();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    await guard.release();
  };

  try {
    // A port can be taken between freePort() and bind(); a few attempts cover that race.
    let etcdUrl = "";
    for (let attempt = 1; ; attempt++) {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      etcdUrl = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const etcd = spawnSupervised(
        bins.etcd,
        [
          "--name=default",
          `--data-dir=${path.join(dir, `etcd-${attempt}`)}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=default=${peerUrl}`,
          "--listen-metrics-urls=",
          // A test cluster's data is thrown away; fsync would only make it slow.
          "--unsafe-no-fsync",
          "--log-level=warn",
        ],
        { name: "etcd", logFile: path.join(dir, "etcd.log") },
      );
      procs.push(etcd);
      try {
        await waitFor(
          "etcd",
          async () => {
            const res = await fetch(`${etcdUrl}/health`);
            return res.ok && ((await res.json()) as { health?: string }).health === "true";
          },
          {
            timeoutMs: 30_000,
            describe: () => etcd.logTail(),
            abortIf: () => (etcd.running() ? undefined : "exited"),
          },
        );
        break;
      } catch (err) {
        await etcd.stop();
        procs.pop();
        if (attempt >= 3 || !/address already in use/.test(etcd.logTail(50))) throw err;
      }
    }
    log(`etcd ready at ${etcdUrl}`);

    const adminToken = randomBytes(24).toString("hex");
    writeFileSync(path.join(dir, "tokens.csv"), `${adminToken},admin,admin,system:masters\n`, {
      mode: 0o600,
    });
    const { publicKey, privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
    writeFileSync(path.join(dir, "sa.pub"), publicKey);
    writeFileSync(path.join(dir, "sa.key"), privateKey, { mode: 0o600 });
    const certDir = path.join(dir, "certs");

    let server = "";
    let apiserver: SupervisedProcess | undefined;
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      server = `https://127.0.0.1:${port}`;
      apiserver = spawnSupervised(
        bins["kube-apiserver"],
        [
          `--etcd-servers=${etcdUrl}`,
          `--etcd-prefix=/registry-${attempt}`,
          `--secure-port=${port}`,
          "--bind-address=127.0.0.1",
          "--advertise-address=127.0.0.1",
          `--cert-dir=${certDir}`,
          `--token-auth-file=${path.join(dir, "tokens.csv")}`,
          "--authorization-mode=RBAC",
          "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
          `--service-account-key-file=${path.join(dir, "sa.pub")}`,
          `--service-account-signing-key-file=${path.join(dir, "sa.key")}`,
          "--service-cluster-ip-range=10.96.0.0/24",
          "--allow-privileged=false",
          "--profiling=false",
          "--v=0",
        ],
        { name: "kube-apiserver", logFile: path.join(dir, "kube-apiserver.log") },
      );
      procs.push(apiserver);
      const current = apiserver;
      try {
        await waitFor(
          "kube-apiserver",
          async () => (await getWithToken(`${server}/readyz`, adminToken, certDir)) === 200,
          {
            timeoutMs: 90_000,
            intervalMs: 250,
            describe: () => current.logTail(),
            abortIf: () => (current.running() ? undefined : "exited"),
          },
        );
        break;
      } catch (err) {
        await current.stop();
        procs.pop();
        if (attempt >= 3 || !/address already in use/.test(current.logTail(50))) throw err;
      }
    }
    log(`kube-apiserver ready at ${server}`);

    const caData = readFileSync(path.join(certDir, "apiserver.crt"), "utf8");
    const kubeconfigYaml = kubeconfig(server, caData, adminToken);
    const kubeconfigPath = path.join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfigYaml, { mode: 0o600 });
    return { server, caData, adminToken, kubeconfigPath, kubeconfigYaml, dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A kubeconfig for `token` against `server`; also used for ServiceAccount tokens in RBAC tests. */
export function kubeconfig(server: string, caData: string, token: string, namespace = "default"): string {
  const ca = Buffer.from(caData).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: local",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${ca}`,
    "users:",
    "- name: user",
    "  user:",
    `    token: ${token}`,
    "contexts:",
    "- name: local",
    "  context:",
    "    cluster: local",
    "    user: user",
    `    namespace: ${namespace}`,
    "current-context: local",
    "",
  ].join("\n");
}

function getWithToken(url: string, token: string, certDir: string): Promise<number> {
  const caFile = path.join(certDir, "apiserver.crt");
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      {
        headers: { Authorization: `Bearer ${token}` },
        ca: existsSync(caFile) ? readFileSync(caFile) : undefined,
        // Before the apiserver wrote its certificate there is nothing to trust yet.
        rejectUnauthorized: existsSync(caFile),
        timeout: 2000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}
