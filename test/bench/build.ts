/**
 * The daemon as the image runs it, for the bench and the profiler: the bundle `npm run bundle` makes, and the
 * flags the chart gives it.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";

/**
 * Builds the bundle into a folder of this run's own under dist/ (so `../../package.json` gives its version and
 * pino resolves from node_modules): worktrees may share one node_modules, and a run started elsewhere must not
 * rebuild what this run's daemons start from. The folder is removed when this process exits.
 */
export function buildBundle(root: string, name: string): string {
  const out = path.join(root, "dist", `${name}-${process.pid}`);
  rmSync(out, { recursive: true, force: true });
  process.on("exit", () => rmSync(out, { recursive: true, force: true }));
  const main = path.join(out, "rolloutd.mjs");
  const r = spawnSync("npm", ["run", "--silent", "bundle", "--", `--outfile=${main}`], {
    cwd: root,
    encoding: "utf8",
  });
  if (r.status !== 0 || !existsSync(main)) throw new Error(`npm run bundle failed:\n${r.stdout}${r.stderr}`);
  return main;
}

/** The V8 flags the chart gives the daemon (values.yaml `nodeOptions`): what production runs with. */
export function chartNodeOptions(root: string): string {
  const values = parseYaml(readFileSync(path.join(root, "charts", "rolloutd", "values.yaml"), "utf8")) as {
    nodeOptions?: unknown;
  };
  return typeof values.nodeOptions === "string" ? values.nodeOptions : "";
}
