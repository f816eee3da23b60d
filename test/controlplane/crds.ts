/**
 * Where the upstream CRDs the tests install come from: the Gateway API CRDs
 * of the Go module pinned in ./crds (go.mod + go.sum), read from the Go module
 * cache. `go mod download` fetches the module on a fresh machine and checks it
 * against go.sum, so every test runs against exactly the published v1.6.1
 * files, never a copy of ours.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const CRD_MODULE_DIR = fileURLToPath(new URL("./crds/", import.meta.url));
export const GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api";

/** The Gateway API kinds the tests install, by the file that defines each (standard channel). */
export const GATEWAY_API_CRD_FILES = [
  "gateway.networking.k8s.io_gatewayclasses.yaml",
  "gateway.networking.k8s.io_gateways.yaml",
  "gateway.networking.k8s.io_httproutes.yaml",
  "gateway.networking.k8s.io_grpcroutes.yaml",
  "gateway.networking.k8s.io_referencegrants.yaml",
] as const;

export class CrdModuleError extends Error {
  override name = "CrdModuleError";
}

let cached: string | undefined;

/** The module's directory in the module cache, downloading (and verifying) it first when needed. */
export function gatewayApiModuleDir(): string {
  if (cached) return cached;
  const res = spawnSync("go", ["mod", "download", "-json", GATEWAY_API_MODULE], {
    cwd: CRD_MODULE_DIR,
    encoding: "utf8",
    env: { ...process.env, GOFLAGS: "-mod=readonly" },
  });
  if (res.error) {
    throw new CrdModuleError(
      `Go is needed to fetch the upstream Gateway API CRDs (${GATEWAY_API_MODULE}) but could not run: ${res.error.message}`,
    );
  }
  let info: { Dir?: string; Error?: string } = {};
  try {
    info = JSON.parse(res.stdout) as typeof info;
  } catch {
    // Reported below with stderr.
  }
  if (res.status !== 0 || !info.Dir) {
    throw new CrdModuleError(
      `go mod download ${GATEWAY_API_MODULE} failed in ${CRD_MODULE_DIR}: ${info.Error ?? res.stderr.trim()}. ` +
        "The Go module proxy must be reachable (GOPROXY).",
    );
  }
  cached = info.Dir;
  return cached;
}

/** Absolute paths of the upstream Gateway API CRD files the tests install. */
export function gatewayApiCrdFiles(): string[] {
  const dir = path.join(gatewayApiModuleDir(), "config", "crd", "standard");
  return GATEWAY_API_CRD_FILES.map((f) => path.join(dir, f));
}
