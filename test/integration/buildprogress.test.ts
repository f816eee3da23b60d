/**
 * The first-run build's progress on a real (small) Go build through the
 * same machinery as the control plane's, with an empty build cache, so every
 * package it counts was really compiled: a fraction that reaches the whole.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { ensureGoBinaries } from "../controlplane/build.ts";

void describe("control-plane build progress, on a real Go build", () => {
  void it("a real Go build reports its fraction as it goes and reaches all of it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "rolloutd-gobuild-"));
    const saved = { cache: process.env.ROLLOUTD_CACHE_DIR, gocache: process.env.GOCACHE };
    try {
      const mod = path.join(dir, "mod");
      mkdirSync(mod);
      writeFileSync(path.join(mod, "go.mod"), "module example.com/hello\n\ngo 1.24\n");
      writeFileSync(path.join(mod, "go.sum"), "");
      writeFileSync(
        path.join(mod, "main.go"),
        'package main\n\nimport (\n\t"encoding/json"\n\t"fmt"\n)\n\nfunc main() { b, _ := json.Marshal(1); fmt.Println(string(b)) }\n',
      );
      process.env.ROLLOUTD_CACHE_DIR = path.join(dir, "cache");
      process.env.GOCACHE = path.join(dir, "gocache");
      const lines: string[] = [];
      const bins = await ensureGoBinaries(
        {
          what: "a test program",
          moduleDir: mod,
          binaries: { hello: "." },
          cacheName: "hello",
          ldflags: "-s -w",
        },
        (l) => lines.push(l),
      );
      process.stderr.write(lines.map((l) => `# ${l}\n`).join(""));
      assert.ok(bins.hello.endsWith("hello"));
      const fractions = lines
        .map((l) => /(\d+)\/(\d+) packages \((\d+) %\)/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [Number(m[1]), Number(m[2]), Number(m[3])] as const);
      assert.ok(fractions.length >= 2, `progress lines:\n${lines.join("\n")}`);
      const total = fractions[0]![1];
      assert.ok(total >= 10, `an empty cache compiles the standard library packages too (${total})`);
      assert.deepEqual(fractions[0], [0, total, 0]);
      for (const [done, t, pct] of fractions) {
        assert.equal(t, total);
        assert.equal(pct, Math.floor((100 * done) / total));
      }
      const done = lines.find((l) => l.includes("done,"));
      assert.match(done ?? "", new RegExp(`hello: done, ${total} packages in`));
    } finally {
      if (saved.cache === undefined) delete process.env.ROLLOUTD_CACHE_DIR;
      else process.env.ROLLOUTD_CACHE_DIR = saved.cache;
      if (saved.gocache === undefined) delete process.env.GOCACHE;
      else process.env.GOCACHE = saved.gocache;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
