/**
 * Builds the helm CLI from the pinned wrapper module in ./go (helm.sh/helm/v3
 * as a `tool`), once per machine, cached outside the repo the same way as the
 * control plane (test/controlplane/build.ts), and runs it.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ensureGoBinaries, type GoBinariesSpec } from "../controlplane/build.ts";

const GO_MODULE_DIR = fileURLToPath(new URL("./go/", import.meta.url));

/** The pinned versions, read from go.mod, so the binary reports them and lints against the right Kubernetes. */
export function pinnedVersions(): { helm: string; k8sMinor: string } {
  const mod = readFileSync(new URL("./go/go.mod", import.meta.url), "utf8");
  const helm = /helm\.sh\/helm\/v3 (v[0-9.]+)/.exec(mod)?.[1];
  const clientGo = /k8s\.io\/client-go v0\.([0-9]+)\./.exec(mod)?.[1];
  if (!helm || !clientGo)
    throw new Error("test/helm/go/go.mod must require helm.sh/helm/v3 and k8s.io/client-go");
  return { helm, k8sMinor: clientGo };
}

function spec(): GoBinariesSpec<"helm"> {
  const { helm, k8sMinor } = pinnedVersions();
  // As helm's Makefile stamps a release: its version, and the Kubernetes version of its client-go for lint and template.
  const x = [
    `helm.sh/helm/v3/internal/version.version=${helm}`,
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
    `helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8sMinor}`,
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
    `helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8sMinor}`,
  ];
  return {
    what: `helm ${helm}`,
    moduleDir: GO_MODULE_DIR,
    binaries: { helm: "helm.sh/helm/v3/cmd/helm" },
    cacheName: "helm",
    ldflags: ["-s -w", ...x.map((v) => `-X ${v}`)].join(" "),
  };
}

export async function ensureHelm(log?: (line: string) => void): Promise<string> {
  return (await ensureGoBinaries(spec(), log)).helm;
}

export interface HelmResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs helm with its state (config, cache, data) in `home`, never the user's own. */
export function runHelm(helm: string, args: string[], home: string, timeoutMs = 60_000): Promise<HelmResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(helm, args, {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: home,
        HELM_CONFIG_HOME: `${home}/config`,
        HELM_CACHE_HOME: `${home}/cache`,
        HELM_DATA_HOME: `${home}/data`,
        // No cluster: template and lint work offline.
        KUBECONFIG: `${home}/no-kubeconfig`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

// `npx tsx test/helm/build.ts` builds ahead of time and prints where helm is.
if (import.meta.url === `file://${process.argv[1]}`) {
  ensureHelm().then(
    (helm) => console.log(helm),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
