/**
 * Builds kube-apiserver and etcd from the pinned Go modules in ./go, once per
 * machine: the binaries are cached outside the repo under a key derived from
 * go.mod, go.sum and the Go version, so every later run starts in milliseconds.
 * The same machinery (ensureGoBinaries) builds other pinned Go tools the tests
 * need, such as helm (test/helm/build.ts), each from its own wrapper module.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gatewayApiCrdFiles } from "./crds.ts";

const GO_MODULE_DIR = fileURLToPath(new URL("./go/", import.meta.url));

/** The main packages we build, and the binary name each gets in the cache. */
const BINARIES = {
  "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
  etcd: "go.etcd.io/etcd/server/v3",
} as const;

export type BinaryName = keyof typeof BINARIES;
export type ControlPlaneBinaries = Record<BinaryName, string>;

export class ControlPlaneBuildError extends Error {
  override name = "ControlPlaneBuildError";
}

/** What to build from one pinned wrapper module, and where to cache it. */
export interface GoBinariesSpec<Name extends string> {
  /** For messages: "the local control plane (kube-apiserver, etcd)". */
  what: string;
  /** The wrapper module's directory (go.mod + go.sum). */
  moduleDir: string;
  /** Binary name in the cache → main package. */
  binaries: Record<Name, string>;
  /** Folder under the cache base: "controlplane", "helm". */
  cacheName: string;
  ldflags: string;
}

function goVersion(what: string): string {
  const res = spawnSync("go", ["env", "GOVERSION"], { encoding: "utf8" });
  if (res.error || res.status !== 0) {
    throw new ControlPlaneBuildError(
      `Go is needed once to build ${what} but \`go\` was not found ` +
        "on PATH. Install Go ≥ 1.24 (e.g. `apt-get install golang` or from go.dev) and run again.",
    );
  }
  return res.stdout.trim();
}

/** Where the binaries of `spec` are cached: a key over go.mod, go.sum, the Go version and the ldflags. */
export function goCacheDir<Name extends string>(spec: GoBinariesSpec<Name>): string {
  const base =
    process.env.ROLLOUTD_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "rolloutd");
  const key = createHash("sha256")
    .update(readFileSync(path.join(spec.moduleDir, "go.mod")))
    .update(readFileSync(path.join(spec.moduleDir, "go.sum")))
    .update(goVersion(spec.what))
    .update(JSON.stringify(spec.ldflags))
    .digest("hex")
    .slice(0, 16);
  return path.join(base, spec.cacheName, key);
}

function controlPlaneSpec(): GoBinariesSpec<BinaryName> {
  return {
    what: "the local control plane (kube-apiserver, etcd)",
    moduleDir: GO_MODULE_DIR,
    binaries: BINARIES,
    cacheName: "controlplane",
    ldflags: ldflags(),
  };
}

export function cacheDir(): string {
  return goCacheDir(controlPlaneSpec());
}

function cachedBinaries<Name extends string>(spec: GoBinariesSpec<Name>, dir: string): Record<Name, string> {
  const out = {} as Record<Name, string>;
  for (const name of Object.keys(spec.binaries) as Name[]) out[name] = path.join(dir, name);
  return out;
}

function allPresent(bins: Record<string, string>): boolean {
  return Object.values(bins).every((p) => existsSync(p) && statSync(p).size > 0);
}

/**
 * Returns the cached binaries, building them first when needed. Concurrent
 * callers (parallel test files, `npm start` beside `npm test`) wait for one
 * build through a lock directory instead of building twice.
 */
export async function ensureControlPlaneBinaries(
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<ControlPlaneBinaries> {
  return ensureGoBinaries(controlPlaneSpec(), log);
}

/** ensureControlPlaneBinaries for any pinned wrapper module. */
export async function ensureGoBinaries<Name extends string>(
  spec: GoBinariesSpec<Name>,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<Record<Name, string>> {
  const dir = goCacheDir(spec);
  const bins = cachedBinaries(spec, dir);
  if (allPresent(bins)) return bins;

  mkdirSync(path.dirname(dir), { recursive: true });
  const lock = `${dir}.lock`;
  const deadline = Date.now() + 40 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (allPresent(bins)) return bins;
      // A lock older than the longest plausible build was left by a killed build.
      if (Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 45 * 60_000)
        rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline)
        throw new ControlPlaneBuildError(`timed out waiting for another build (lock ${lock})`);
      log(`waiting for another build of ${spec.what} to finish (lock ${lock})`);
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
  try {
    if (allPresent(bins)) return bins;
    const staging = `${dir}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    log(`building ${spec.what} from Go modules into ${dir} (first run only; a few minutes on 2 cores)`);
    const started = Date.now();
    const all = Object.entries<string>(spec.binaries);
    for (const [i, [name, pkg]] of all.entries()) {
      const label = all.length > 1 ? `${name} (${i + 1} of ${all.length})` : name;
      await goBuild(spec, pkg, path.join(staging, name), label, log);
    }
    mkdirSync(dir, { recursive: true });
    for (const name of Object.keys(spec.binaries)) renameSync(path.join(staging, name), path.join(dir, name));
    rmSync(staging, { recursive: true, force: true });
    log(`${spec.what} built in ${Math.round((Date.now() - started) / 1000)} s`);
    return bins;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Version stamps, so `kubectl version` and our logs show the real version instead of v0.0.0-master. */
function ldflags(): string {
  const mod = readFileSync(path.join(GO_MODULE_DIR, "go.mod"), "utf8");
  const k8s = /k8s\.io\/kubernetes (v[0-9.]+)/.exec(mod)?.[1] ?? "v0.0.0";
  return `-s -w -X k8s.io/component-base/version.gitVersion=${k8s} -X k8s.io/client-go/pkg/version.gitVersion=${k8s}`;
}

const buildEnv = () => ({ ...process.env, CGO_ENABLED: "0", GOFLAGS: "-mod=readonly -buildvcs=false" });

/**
 * How many packages `go build` will compile for `pkg`: those `go list` calls
 * stale (not in the build cache). Resolving them also downloads the modules,
 * so this is the "resolving" phase. Undefined when go list fails: the build
 * then reports counts only, and its own error says what is wrong.
 */
function packagesToBuild(moduleDir: string, pkg: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const child = spawn("go", ["list", "-deps", "-f", "{{if .Stale}}x{{end}}", pkg], {
      cwd: moduleDir,
      env: buildEnv(),
      stdio: ["ignore", "pipe", "ignore"],
    });
    let n = 0;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) if (line === "x") n++;
    });
    child.on("error", () => resolve(undefined));
    child.on("close", (code) => resolve(code === 0 ? n : undefined));
  });
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
}

/**
 * "kube-apiserver: 412/1873 packages (22 %), 1 min 10 s so far, about 4 min left". The estimate is the
 * rate so far applied to what is left; it is given once there is something to go by (5 % and 5 s).
 */
export function progressLine(
  label: string,
  done: number,
  total: number | undefined,
  elapsedMs: number,
): string {
  if (total === undefined || total === 0)
    return `  ${label}: ${done} packages compiled, ${duration(elapsedMs)} so far`;
  const shown = Math.min(done, total);
  const pct = Math.floor((100 * shown) / total);
  const base = `  ${label}: ${shown}/${total} packages (${pct} %), ${duration(elapsedMs)} so far`;
  if (shown >= total) return base;
  if (shown < total * 0.05 || elapsedMs < 5_000) return `${base}, estimating time left…`;
  return `${base}, about ${duration((elapsedMs / shown) * (total - shown))} left`;
}

async function goBuild<Name extends string>(
  spec: GoBinariesSpec<Name>,
  pkg: string,
  out: string,
  label: string,
  log: (line: string) => void,
): Promise<void> {
  log(`  ${label}: resolving modules and counting packages to compile…`);
  const total = await packagesToBuild(spec.moduleDir, pkg);
  const started = Date.now();
  log(progressLine(label, 0, total, 0));
  return new Promise((resolve, reject) => {
    // -v prints each package as it is compiled: that is the progress we show.
    const child = spawn("go", ["build", "-v", "-trimpath", `-ldflags=${spec.ldflags}`, "-o", out, pkg], {
      cwd: spec.moduleDir,
      env: buildEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let compiled = 0;
    let lastReport = Date.now();
    let lastTenth = 0;
    const tail: string[] = [];
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > 30) tail.shift();
        if (!line.includes(" ") && !line.startsWith("#")) compiled++;
      }
      // Every 10 s, and at every tenth of the way.
      const tenth = total ? Math.floor((10 * compiled) / total) : 0;
      if (Date.now() - lastReport > 10_000 || (tenth > lastTenth && tenth < 10)) {
        lastReport = Date.now();
        lastTenth = tenth;
        log(progressLine(label, compiled, total, Date.now() - started));
      }
    });
    child.stdout.resume();
    child.on("error", (err) => reject(new ControlPlaneBuildError(`could not run go build: ${err.message}`)));
    child.on("close", (code) => {
      if (code === 0) {
        log(`  ${label}: done, ${compiled} packages in ${duration(Date.now() - started)}`);
        resolve();
      } else {
        reject(
          new ControlPlaneBuildError(
            `go build ${pkg} failed with exit code ${code}. Last output:\n${tail.join("\n")}\n` +
              "The Go module proxy must be reachable (GOPROXY) and Go ≥ 1.24 installed.",
          ),
        );
      }
    });
  });
}

// `npm run controlplane:build` builds ahead of time and prints where the binaries are; it also
// fetches the pinned upstream CRDs (crds.ts), so a fresh machine has everything before the tests.
if (import.meta.url === `file://${process.argv[1]}`) {
  Promise.resolve()
    .then(() => {
      console.log(`upstream CRDs: ${path.dirname(gatewayApiCrdFiles()[0]!)}`);
      return ensureControlPlaneBinaries();
    })
    .then(
      (bins) => console.log(JSON.stringify(bins, null, 2)),
      (err: unknown) => {
        console.error(err instanceof Error ? err.message : err);
        process.exit(1);
      },
    );
}
