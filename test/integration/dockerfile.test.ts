/**
 * The Dockerfile cannot be built here (no container engine), so this checks
 * what can be checked: it is replayed on the file system. The build stage's
 * context is copied as its COPY lines say (minus .dockerignore), `npm run
 * build` runs there, every path the later stages COPY --from it exists, the
 * final image's layout is assembled from its COPY lines, and its ENTRYPOINT
 * (the package's bin) starts from that layout. The compiled code may import
 * only production dependencies, since the image has nothing else.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOCKERFILE = path.join(ROOT, "Dockerfile");
const PKG = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  version: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
};

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  from: string;
  steps: Instruction[];
}

/** Dockerfile → stages, with line continuations joined and comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, " ").split("\n");
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [, op = "", args = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const OP = op.toUpperCase();
    if (OP === "FROM") {
      const [, image = "", name] = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(args) ?? [];
      stages.push({ name: name ?? String(stages.length), from: image, steps: [] });
      continue;
    }
    const stage = stages.at(-1);
    assert.ok(stage, `${OP} before FROM`);
    stage.steps.push({ op: OP, args });
  }
  return stages;
}

/** COPY [--from=x] [--chown=..] src... dest (shell form; the JSON form is not used here). */
function parseCopy(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const rest = words.filter((w) => !w.startsWith("--"));
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  return { from, sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

function dockerignored(rel: string): boolean {
  const patterns = existsSync(path.join(ROOT, ".dockerignore"))
    ? readFileSync(path.join(ROOT, ".dockerignore"), "utf8")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#"))
    : [];
  return patterns.some((p) => {
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}(/.*)?$`);
    return re.test(rel);
  });
}

/** Where an absolute image path of a stage lives in our replay. */
const inRoot = (root: string, p: string) => path.join(root, p);

/** Bare module specifiers imported by the compiled JavaScript. */
function importedPackages(dir: string): Set<string> {
  const out = new Set<string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.m?js$/.test(entry.name)) continue;
    const text = readFileSync(path.join(entry.parentPath, entry.name), "utf8");
    // Also mid-line: a minified bundle puts its import statements one after another on a line.
    const statements = /(?:^|;)\s*(?:import|export)\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"']+)["']/gm;
    const dynamic = /\b(?:import|require)\(\s*["']([^"']+)["']\s*\)/g;
    for (const m of [...text.matchAll(statements), ...text.matchAll(dynamic)]) {
      const spec = m[1]!;
      if (spec.startsWith(".") || spec.startsWith("node:") || builtinModules.includes(spec)) continue;
      out.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
    }
  }
  return out;
}

const present = existsSync(DOCKERFILE);

void describe("Dockerfile", { skip: present ? false : "no Dockerfile yet" }, () => {
  let work: string;
  let stages: Stage[];
  before(() => {
    stages = parseDockerfile(readFileSync(DOCKERFILE, "utf8"));
    work = mkdtempSync(path.join(tmpdir(), "rolloutd-dockerfile-"));
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  void it("builds on Node 24 in stages; the final stage runs as a non-root user", () => {
    assert.ok(stages.length >= 2, "multi-stage");
    for (const s of stages) assert.match(s.from, /node(js)?[:-]?24\b|nodejs24/, `stage ${s.name} on Node 24`);
    const final = stages.at(-1)!;
    const user = final.steps.filter((s) => s.op === "USER").at(-1)?.args;
    assert.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user} is not root`);
    assert.ok(!final.steps.some((s) => s.op === "RUN"), "no RUN in the final stage (no shell needed)");
  });

  void it("every path COPYed from the build context exists and is not excluded by .dockerignore", () => {
    for (const s of stages) {
      for (const step of s.steps.filter((x) => x.op === "COPY")) {
        const copy = parseCopy(step.args);
        if (copy.from) continue;
        for (const src of copy.sources) {
          assert.ok(existsSync(path.join(ROOT, src)), `COPY ${src}: exists in the repository`);
          assert.ok(!dockerignored(src.replace(/\/$/, "")), `COPY ${src}: not excluded by .dockerignore`);
        }
      }
    }
  });

  void it(
    "after npm run build, every path the later stages COPY from the build stage exists, the compiled code imports only production dependencies, and the ENTRYPOINT runs the package's bin from the image's layout",
    { timeout: 240_000 },
    () => {
      const byName = new Map(stages.map((s) => [s.name, s]));
      const final = stages.at(-1)!;
      /** stage name → its replayed root file system */
      const roots = new Map<string, string>();

      // Replay the stages that build: context COPYs, `npm ci` as our node_modules, `npm run <script>` for real.
      for (const s of stages.slice(0, -1)) {
        const root = path.join(work, `stage-${s.name}`);
        roots.set(s.name, root);
        let wd = "/";
        for (const step of s.steps) {
          if (step.op === "WORKDIR") wd = path.posix.resolve(wd, step.args);
          else if (step.op === "COPY") {
            const copy = parseCopy(step.args);
            assert.equal(copy.from, undefined, "build stages copy only from the context");
            const dest = path.posix.resolve(wd, copy.dest);
            for (const src of copy.sources) {
              const target = copy.dest.endsWith("/") ? path.posix.join(dest, path.basename(src)) : dest;
              cpSync(path.join(ROOT, src), inRoot(root, target), { recursive: true });
            }
          } else if (step.op === "RUN") {
            if (/^npm ci\b/.test(step.args)) {
              mkdirSync(inRoot(root, wd), { recursive: true });
              symlinkSync(path.join(ROOT, "node_modules"), inRoot(root, path.posix.join(wd, "node_modules")));
              continue;
            }
            const script = /^npm run (\S+)$/.exec(step.args)?.[1];
            assert.ok(script, `RUN ${step.args}: only npm ci and npm run are replayed`);
            const res = spawnSync("npm", ["run", script], {
              cwd: inRoot(root, wd),
              encoding: "utf8",
              // The node that runs this test (24) first on PATH, as in the node:24 image.
              env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}` },
            });
            assert.equal(
              res.status,
              0,
              `npm run ${script} in stage ${s.name}:\n${res.stdout}\n${res.stderr}`,
            );
          }
        }
      }

      // Assemble the final image from its COPY lines.
      const image = path.join(work, "image");
      let wd = "/";
      const copiedFromBuild: string[] = [];
      for (const step of final.steps) {
        if (step.op === "WORKDIR") wd = path.posix.resolve(wd, step.args);
        if (step.op !== "COPY") continue;
        const copy = parseCopy(step.args);
        const dest = path.posix.resolve(wd, copy.dest);
        for (const src of copy.sources) {
          const target = copy.dest.endsWith("/") ? path.posix.join(dest, path.basename(src)) : dest;
          mkdirSync(path.dirname(inRoot(image, target)), { recursive: true });
          if (!copy.from) {
            cpSync(path.join(ROOT, src), inRoot(image, target), { recursive: true });
            continue;
          }
          const from = byName.get(copy.from);
          assert.ok(from, `COPY --from=${copy.from}: a stage of this Dockerfile`);
          const origin = inRoot(roots.get(copy.from)!, src);
          assert.ok(existsSync(origin), `COPY --from=${copy.from} ${src}: exists after the stage ran`);
          if (path.basename(src) === "node_modules") {
            assert.ok(
              from.steps.some((x) => x.op === "RUN" && /^npm ci\b.*--omit=dev/.test(x.args)),
              `stage ${copy.from} installs production dependencies only`,
            );
            symlinkSync(path.join(ROOT, "node_modules"), inRoot(image, target));
          } else {
            cpSync(origin, inRoot(image, target), { recursive: true, dereference: true });
            copiedFromBuild.push(target);
          }
        }
      }
      const appDir = inRoot(image, wd);
      assert.ok(copiedFromBuild.length > 0, "the final stage copies the compiled code from a build stage");

      // The image has production dependencies only: the compiled code must not need anything else.
      const imported = importedPackages(path.join(appDir, path.dirname(PKG.bin.rolloutd!)));
      // The bundle holds its dependencies except pino (see the Dockerfile), so the scan must see pino.
      assert.ok(imported.has("pino"), `the scan sees the code's imports: ${[...imported].join(", ")}`);
      for (const name of imported)
        assert.ok(
          name in PKG.dependencies,
          `compiled code imports ${name}, which is not a production dependency`,
        );

      // ENTRYPOINT ["<node>", "<the package's bin>"], relative to the final WORKDIR.
      const entry = JSON.parse(final.steps.filter((s) => s.op === "ENTRYPOINT").at(-1)!.args) as string[];
      assert.match(entry[0]!, /\/node$/, "exec form, starting node directly (no shell)");
      assert.equal(path.posix.resolve(wd, entry[1]!), path.posix.resolve(wd, PKG.bin.rolloutd!));
      assert.ok(existsSync(path.join(appDir, PKG.bin.rolloutd!)), `${PKG.bin.rolloutd} is in the image`);

      const run = (args: string[]) =>
        spawnSync(process.execPath, [entry[1]!, ...args], {
          cwd: appDir,
          encoding: "utf8",
          env: { PATH: "" },
        });
      const version = run(["version"]);
      assert.equal(version.status, 0, version.stderr);
      assert.equal(
        version.stdout.trim(),
        `rolloutd ${PKG.version}`,
        "package.json is where the code looks for it",
      );
      const cmd = final.steps.filter((s) => s.op === "CMD").at(-1);
      if (cmd) {
        const args = JSON.parse(cmd.args) as string[];
        const help = run([args[0]!, "--help"]);
        assert.equal(help.status, 0, help.stderr);
        for (const flag of args.slice(1).map((a) => a.split("=")[0]!))
          assert.ok(help.stdout.includes(flag), `CMD flag ${flag} is known to \`rolloutd ${args[0]}\``);
      }
    },
  );
});
