/**
 * A policy folder at scale: bad files are refused cheaply with one located
 * error, and a reload reads only what changed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validateCommand } from "../../../src/cli/validate.ts";
import { loadPolicyDir, parsePolicyFile, type PolicyFileCache } from "../../../src/policy/load.ts";

const policy = (name: string, steps = "[10, 50]") => `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: ${name} }
  stable: ${name}-v1
  canary: ${name}-v2
  steps: ${steps}
`;

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "rolloutd-limits-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function validate(path: string): Promise<{ code: number; text: string; ms: number }> {
  let text = "";
  const t0 = performance.now();
  const code = await validateCommand(path, { write: (s) => (text += s) });
  return { code, text, ms: performance.now() - t0 };
}

void test("validate refuses a 20 MB file with one clear error, without reading it (file and folder)", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "huge.yaml");
    const fh = await open(file, "w");
    const chunk = `${"x: [".repeat(1000)}\n`.repeat(256); // 1 MB of nesting, the worst kind
    for (let i = 0; i < 20; i++) await fh.write(chunk);
    await fh.close();
    for (const path of [file, dir]) {
      const r = await validate(path);
      assert.equal(r.code, 1);
      assert.match(r.text, /huge\.yaml: file is 2\d{7} bytes, larger than the 1048576-byte limit/);
      assert.equal(r.text.split("\n").filter(Boolean).length, 2, r.text);
      console.log(`# validate ${path === file ? "file" : "folder"} with a 20 MB file: ${r.ms.toFixed(0)} ms`);
    }
  });
});

void test("a file of more than 1,000 documents is refused at the first document past the cap", () => {
  const text = Array.from({ length: 10_000 }, (_, i) => policy(`p${i}`)).join("---\n");
  const r = parsePolicyFile("policies/many.yaml", text.slice(0, 1_000_000));
  assert.equal(r.policies.length, 0);
  assert.deepEqual(
    r.errors.map((e) => e.format()),
    [
      `policies/many.yaml:${1000 * 8 + 1000}:1 more than 1000 YAML documents in one file; split it into several files`,
    ],
  );
  assert.deepEqual(r.opaqueFiles, ["policies/many.yaml"]);
  // 1,000 documents exactly are read.
  const ok = parsePolicyFile(
    "policies/ok.yaml",
    Array.from({ length: 1000 }, (_, i) => policy(`p${i}`)).join("---\n"),
  );
  assert.equal(ok.policies.length, 1000);
  assert.deepEqual(ok.errors, []);
});

void test("nesting deeper than 32 levels is refused with its line, in block and in flow style", () => {
  const block = `${policy("deep")}  extra:\n${Array.from({ length: 40 }, (_, i) => `${"  ".repeat(i + 2)}k${i}:`).join("\n")} 1\n`;
  const b = parsePolicyFile("policies/block.yaml", block);
  assert.equal(b.policies.length, 0);
  assert.equal(b.errors.length, 1);
  assert.match(b.errors[0]!.format(), /^policies\/block\.yaml:(\d+):\d+ nested deeper than 32 levels/);
  assert.ok(b.errors[0]!.line > 9, `line ${b.errors[0]!.line}`);
  const flow = `${policy("deep")}  extra: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`;
  const f = parsePolicyFile("policies/flow.yaml", flow);
  assert.deepEqual(
    f.errors.map((e) => e.format().replace(/:\d+ /, ": ")),
    ["policies/flow.yaml:9: nested deeper than 32 levels; a policy needs far fewer"],
  );
  // A real policy with a PromQL query full of braces is not affected.
  const promql = `${policy("q")}  analysis:
    prometheus: { url: "http://127.0.0.1:9090" }
    checks:
      - name: errors
        query: sum(rate(x{service="{{canary}}",code=~"5.."}[{{window}}])) / sum(rate(x{service="{{canary}}"}[{{window}}]))
        max: 0.01
`;
  assert.deepEqual(parsePolicyFile("policies/q.yaml", promql).errors, []);
});

void test("one file reports at most 50 problems and counts the rest", () => {
  const text = Array.from({ length: 200 }, (_, i) => policy(`p${i}`, "[50, 10]")).join("---\n");
  const r = parsePolicyFile("policies/bad.yaml", text);
  assert.equal(r.errors.length, 51);
  assert.equal(r.errors.at(-1)!.format(), "policies/bad.yaml: and 150 more problems in this file");
});

void test("with a cache, an unchanged file is not parsed again; a changed one is; `only` looks at nothing else", async () => {
  await withDir(async (dir) => {
    await writeFile(join(dir, "a.yaml"), policy("a"));
    await writeFile(join(dir, "b.yaml"), policy("b"));
    const cache: PolicyFileCache = new Map();
    const first = await loadPolicyDir(dir, { cache });
    assert.deepEqual(
      first.policies.map((p) => p.key),
      ["shop/a", "shop/b"],
    );
    const again = await loadPolicyDir(dir, { cache });
    // The very same objects: nothing was parsed.
    assert.equal(again.policies[0], first.policies[0]);
    assert.equal(again.policies[1], first.policies[1]);

    await writeFile(join(dir, "b.yaml"), policy("b", "[20, 60]"));
    const changed = await loadPolicyDir(dir, { cache });
    assert.equal(changed.policies[0], first.policies[0], "a.yaml was not parsed again");
    assert.notEqual(changed.policies[1], first.policies[1]);
    assert.deepEqual(changed.policies[1]!.steps, [20, 60]);

    // The watch said only c.yaml changed: a.yaml's edit is not even seen until a full rescan.
    await writeFile(join(dir, "a.yaml"), policy("a", "[30, 70]"));
    await writeFile(join(dir, "c.yaml"), policy("c"));
    const incremental = await loadPolicyDir(dir, { cache, only: new Set(["c.yaml"]) });
    assert.deepEqual(
      incremental.policies.map((p) => p.key),
      ["shop/a", "shop/b", "shop/c"],
    );
    assert.deepEqual(incremental.policies[0]!.steps, [10, 50]);
    const full = await loadPolicyDir(dir, { cache });
    assert.deepEqual(full.policies[0]!.steps, [30, 70]);

    // A deleted file leaves the cache on the next listing.
    await rm(join(dir, "b.yaml"));
    const gone = await loadPolicyDir(dir, { cache, only: new Set(["b.yaml"]) });
    assert.deepEqual(
      gone.policies.map((p) => p.key),
      ["shop/a", "shop/c"],
    );
    assert.deepEqual([...cache.keys()].sort(), ["a.yaml", "c.yaml"]);
  });
});
