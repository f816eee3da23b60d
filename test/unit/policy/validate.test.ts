import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validateCommand } from "../../../src/cli/validate.ts";

const policy = (name: string, steps = "[10, 50]") => `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: ${name} }
  stable: ${name}-v1
  canary: ${name}-v2
  steps: ${steps}
`;

async function run(path: string): Promise<{ code: number; lines: string[] }> {
  let text = "";
  const code = await validateCommand(path, { write: (s) => (text += s) });
  assert.ok(text.endsWith("\n"));
  return { code, lines: text.slice(0, -1).split("\n") };
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "rolloutd-validate-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void test("validate: the shipped examples pass with exit code 0", async () => {
  assert.deepEqual(await run("policies"), { code: 0, lines: ["5 policies valid, 0 errors in 5 files"] });
});

void test("validate: one line per problem, a summary, exit code 1", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "a.yaml"), `${policy("alpha")}---\n${policy("beta")}`);
  await writeFile(join(dir, "b.yml"), `${policy("gamma", "[25, 25]")}---\n${policy("delta")}`);
  assert.deepEqual(await run(dir), {
    code: 1,
    lines: [
      `${join(dir, "b.yml")}:8:15 spec.steps[1]: weights must increase (25 after 25)`,
      "3 policies valid, 1 error in 2 files",
    ],
  });
});

void test("validate: grammar of the summary, duplicates count as errors", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "a.yaml"), policy("alpha"));
  await writeFile(join(dir, "b.yaml"), policy("alpha"));
  await writeFile(join(dir, "c.yaml"), "spec: [\n");
  const { code, lines } = await run(dir);
  assert.equal(code, 1);
  assert.deepEqual(lines, [
    `${join(dir, "b.yaml")}:3:19 metadata.name: duplicate policy shop/alpha, first defined at ${join(dir, "a.yaml")}:1:1`,
    `${join(dir, "c.yaml")}:2:1 YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]`,
    "1 policy valid, 2 errors in 3 files",
  ]);
});

void test("validate: a single file can be checked", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "one.yaml");
  await writeFile(file, policy("alpha"));
  assert.deepEqual(await run(file), { code: 0, lines: ["1 policy valid, 0 errors in 1 file"] });
});

void test("validate: a missing or empty folder fails", async (t) => {
  const dir = await tempDir(t);
  assert.deepEqual(await run(dir), {
    code: 1,
    lines: [`${dir}: no *.yaml or *.yml policy files found`, "0 policies valid, 1 error in 0 files"],
  });
  const missing = await run(join(dir, "nope"));
  assert.equal(missing.code, 1);
  assert.match(
    missing.lines[0] ?? "",
    /nope: cannot read policy directory \(ENOENT: no such file or directory/,
  );
  assert.equal(missing.lines[1], "0 policies valid, 1 error in 0 files");
});
