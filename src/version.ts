import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** The package version, read once from package.json (two levels up in dist/, one in src/). */
function readVersion(): string {
  for (const p of ["../package.json", "../../package.json"]) {
    try {
      const pkg = require(p) as { name?: string; version?: string };
      if (pkg.name === "rolloutd" && pkg.version) return pkg.version;
    } catch {
      // try the next location
    }
  }
  return "0.0.0-unknown";
}

export const VERSION = readVersion();
