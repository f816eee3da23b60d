/**
 * A real Kubernetes control plane on loopback: etcd and kube-apiserver built
 * from pinned Go modules (see build.ts), each in a fresh temp directory on
 * random ports. The apiserver runs with RBAC, an admin identity (static
 * token in system:masters) and service-account token signing, so tests can
 * also act as a ServiceAccount through the TokenRequest API. There is no
 * kubelet and no controller-manager: tests write object status themselves.
 *
 * Fault injection, for tests of what the daemon does while its cluster misbehaves: the apiserver can be
 * SIGKILLed and started again on the same port with the same certificate, tokens, keys and etcd data (so
 * clients built from the kubeconfig keep working once it is back), and etcd can be frozen with SIGSTOP so
 * that the apiserver hangs on every request that needs storage.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { ensureControlPlaneBinaries } from "./build.ts";
import {
  freePort,
  guardDirectory,
  processState,
  spawnSupervised,
  waitFor,
  type SupervisedProcess,
} from "./process.ts";

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
  /** SIGKILLs kube-apiserver (no graceful shutdown) and resolves once it has exited. etcd keeps running. */
  killApiServer(): Promise<void>;
  /**
   * Starts kube-apiserver again after killApiServer(), on the same port with the same serving certificate,
   * tokens, service-account keys and etcd data; resolves when /readyz answers 200. Throws if it is running.
   */
  startApiServer(opts?: { timeoutMs?: number }): Promise<void>;
  /** True while the current kube-apiserver process is alive. */
  apiServerRunning(): boolean;
  /**
   * SIGSTOPs etcd and resolves once the kernel reports it stopped: the apiserver then hangs on every request
   * that reads or writes storage. stop() thaws it first.
   */
  freezeEtcd(): Promise<void>;
  /** SIGCONTs etcd and resolves once it is no longer stopped. Idempotent. */
  thawEtcd(): Promise<void>;
}

export interface StartOptions {
  log?: (line: string) => void;
  /** Keep the directory after stop (debugging). */
  keep?: boolean;
  /** Parent for the temp directory. */
  baseDir?: string;
  /** More kube-apiserver flags, after ours (a later flag wins), kept across restarts. */
  apiServerArgs?: string[];
}

export async function startControlPlane(opts: StartOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const bins = await ensureControlPlaneBinaries(opts.log);
  const dir = mkdtempSync(path.join(opts.baseDir ?? tmpdir(), "rolloutd-cp-"));
  const guard = guardDirectory(dir);
  let etcd: SupervisedProcess | undefined;
  let apiserver: SupervisedProcess | undefined;
  let frozen = false;

  const thawEtcd = async () => {
    if (!etcd) return;
    const pid = await etcd.pid();
    if (await etcd.signal("SIGCONT")) await waitForState("etcd thawed", pid, (s) => s !== "T" && s !== "t");
    frozen = false;
  };

  const stop = async () => {
    // A stopped etcd would hold the apiserver's graceful shutdown; let it run again first.
    if (frozen) await thawEtcd();
    // Reverse order: the apiserver first, so it does not spin on a vanished etcd.
    for (const p of [apiserver, etcd]) if (p) await p.stop();
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
      const current = spawnSupervised(
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
      etcd = current;
      try {
        await waitFor(
          "etcd",
          async () => {
            const res = await fetch(`${etcdUrl}/health`);
            return res.ok && ((await res.json()) as { health?: string }).health === "true";
          },
          {
            timeoutMs: 30_000,
            describe: () => current.logTail(),
            abortIf: () => (current.running() ? undefined : "exited"),
          },
        );
        break;
      } catch (err) {
        await current.stop();
        etcd = undefined;
        if (attempt >= 3 || !/address already in use/.test(current.logTail(50))) throw err;
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

    // Everything a restart must repeat exactly: the port, the etcd prefix and every file the apiserver reads
    // (it keeps the self-signed certificate it wrote into certDir on the first start).
    const apiserverArgs = (port: number, etcdPrefix: string) => [
      `--etcd-servers=${etcdUrl}`,
      `--etcd-prefix=${etcdPrefix}`,
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
      ...(opts.apiServerArgs ?? []),
    ];
    const launchApiServer = async (args: string[], url: string, timeoutMs: number) => {
      const current = spawnSupervised(bins["kube-apiserver"], args, {
        name: "kube-apiserver",
        logFile: path.join(dir, "kube-apiserver.log"),
      });
      apiserver = current;
      try {
        await waitFor(
          "kube-apiserver",
          async () => (await getWithToken(`${url}/readyz`, adminToken, certDir)) === 200,
          {
            timeoutMs,
            intervalMs: 250,
            describe: () => current.logTail(),
            abortIf: () => (current.running() ? undefined : "exited"),
          },
        );
      } catch (err) {
        await current.stop();
        throw err;
      }
    };

    let server = "";
    let runArgs: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      server = `https://127.0.0.1:${port}`;
      runArgs = apiserverArgs(port, `/registry-${attempt}`);
      try {
        await launchApiServer(runArgs, server, 90_000);
        break;
      } catch (err) {
        const tail = apiserver?.logTail(50) ?? "";
        apiserver = undefined;
        if (attempt >= 3 || !/address already in use/.test(tail)) throw err;
      }
    }
    log(`kube-apiserver ready at ${server}`);

    const killApiServer = async () => {
      const current = apiserver;
      if (!current?.running()) throw new Error("killApiServer: kube-apiserver is not running");
      await current.signal("SIGKILL");
      await current.exited;
      log("kube-apiserver killed");
    };

    const startApiServer = async (startOpts: { timeoutMs?: number } = {}) => {
      if (apiserver?.running()) throw new Error("startApiServer: kube-apiserver is already running");
      const started = Date.now();
      const timeoutMs = startOpts.timeoutMs ?? 90_000;
      // Nothing else should take the port on loopback in the moment since the kill; if something did,
      // retry while it is held rather than move: clients only know this one.
      for (;;) {
        try {
          await launchApiServer(runArgs, server, Math.max(1, timeoutMs - (Date.now() - started)));
          break;
        } catch (err) {
          const tail = apiserver?.logTail(5) ?? "";
          if (!/address already in use/.test(tail) || Date.now() - started > timeoutMs) throw err;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      log(`kube-apiserver restarted at ${server} in ${Date.now() - started} ms`);
    };

    const freezeEtcd = async () => {
      const current = etcd!;
      const pid = await current.pid();
      if (!(await current.signal("SIGSTOP"))) throw new Error("freezeEtcd: etcd is not running");
      frozen = true;
      await waitForState("etcd frozen", pid, (s) => s === "T" || s === "t");
    };

    const caData = readFileSync(path.join(certDir, "apiserver.crt"), "utf8");
    const kubeconfigYaml = kubeconfig(server, caData, adminToken);
    const kubeconfigPath = path.join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfigYaml, { mode: 0o600 });
    return {
      server,
      caData,
      adminToken,
      kubeconfigPath,
      kubeconfigYaml,
      dir,
      stop,
      killApiServer,
      startApiServer,
      apiServerRunning: () => apiserver?.running() ?? false,
      freezeEtcd,
      thawEtcd,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits (briefly: signals are delivered at once) until the process's state letter satisfies `ok`. */
async function waitForState(what: string, pid: number, ok: (state: string) => boolean): Promise<void> {
  const state = () => processState(pid);
  await waitFor(what, () => Promise.resolve(ok(state() ?? "")), {
    timeoutMs: 5_000,
    intervalMs: 10,
    describe: () => `process ${pid} state ${state() ?? "gone"}`,
    abortIf: () => (state() === undefined ? `process ${pid} is gone` : undefined),
  });
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
