/**
 * `rolloutd simulate`: scripted metrics through the real gate and the real machine. Files are written to a
 * temp dir; the command runs in-process and its table, exit code and picture are checked.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { simulateCommand } from "../../../src/cli/simulate.ts";

const dir = mkdtempSync(join(tmpdir(), "rolloutd-simulate-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function policy(name: string, extra: string[] = []): string {
  return file(
    name,
    `apiVersion: rolloutd.dev/v1alpha1
kind: RolloutPolicy
metadata: { name: checkout, namespace: shop }
spec:
  target: { kind: HTTPRoute, name: checkout }
  stable: checkout-v1
  canary: checkout-v2
  steps: [10, 50, 100]
  interval: 1m
  holdLimit: { after: 3m }
  analysis:
    prometheus: { url: "http://prometheus:9090" }
    minRequests: 50
    failureLimit: 2
${extra.map((l) => `    ${l}\n`).join("")}    checks:
      - { name: p99-latency, template: latency-p99, max: 500 }
      - { name: p99-vs-stable, template: latency-p99, compare: stable, maxIncrease: { ratio: 0.2, absolute: 10 } }
      - { name: p99-judged, template: latency-p99, compare: stable, judge: mann-whitney }
`,
  );
}

/** The default cadence: checks also run every fifth of the 1 min interval, 12 s, during a step (in-step detection). */
const POLICY = policy("policy.yaml");
/** Checks only at each step's deadline. */
const DEADLINE_ONLY = policy("deadline-only.yaml", ["cadence: 0"]);

const SAME = "{ canary: [120, 125, 118, 122, 119, 121], stable: [119, 121, 118, 120, 122, 117] }";
const HEALTHY = `steps:
  - requests: 400
    checks: { p99-latency: 120, p99-vs-stable: { canary: 121, stable: 118 }, p99-judged: ${SAME} }
  - requests: [20, 900]
    checks: { p99-latency: [nodata, 130], p99-vs-stable: { canary: 131, stable: 125 }, p99-judged: ${SAME} }
  - requests: 2000
    checks: { p99-latency: 140, p99-vs-stable: { canary: 141, stable: 139 }, p99-judged: ${SAME} }
`;

class Capture {
  text = "";
  write(s: string): void {
    this.text += s;
  }
}

/** The decision column of the table, in order. */
function decisions(table: string): string[] {
  return table
    .split("\n")
    .filter((l) => /^\d+\s/.test(l))
    .map((l) => l.split(/\s{2,}/)[5] ?? "");
}

void describe("rolloutd simulate", () => {
  void it("a healthy script promotes (exit 0): one hold on too few requests, then the real machine's steps", async () => {
    const out = new Capture();
    const svg = join(dir, "healthy.svg");
    const code = await simulateCommand(POLICY, file("healthy.yaml", HEALTHY), { svg }, out);
    assert.equal(code, 0, out.text);
    assert.deepEqual(decisions(out.text), ["StepAdvanced", "AnalysisNotPassed", "StepAdvanced", "Promoted"]);
    assert.match(out.text, /20 requests < minRequests 50/);
    assert.match(out.text, /^PROMOTED: /m);
    const picture = readFileSync(svg, "utf8");
    assert.match(picture, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    // Self-contained: the SVG namespace is the only URL in it.
    assert.deepEqual(picture.match(/https?:\/\/[^"\s]+/g), ["http://www.w3.org/2000/svg"]);
    // One decision marker per analysis, one panel per check, the bound drawn for each.
    assert.equal(picture.match(/<circle cx="[\d.]+" cy="\d+" r="6"/g)?.length, 4);
    for (const name of ["p99-latency", "p99-vs-stable", "p99-judged"])
      assert.ok(picture.includes(`>${name}</text>`));
    assert.equal(picture.match(/stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6,3"/g)?.length, 2);
  });

  const REGRESSION = `steps:
  - requests: 400
    checks: { p99-latency: 120, p99-vs-stable: { canary: 121, stable: 118 }, p99-judged: ${SAME} }
  - requests: 900
    checks:
      p99-latency: [480, 490]
      p99-vs-stable: [{ canary: 480, stable: 120 }, { canary: 490, stable: 121 }]
      p99-judged: { canary: [470, 480, 475, 490, 485, 481], stable: [119, 121, 118, 120, 122, 117] }
`;

  void it("a regression only the canary shows is rolled back in-step, 24 s into step 2 (exit 1)", async () => {
    const out = new Capture();
    const code = await simulateCommand(POLICY, file("regression.yaml", REGRESSION), {}, out);
    assert.equal(code, 1, out.text);
    assert.deepEqual(decisions(out.text), ["StepAdvanced", "InStepBreach", "RolledBack"]);
    // In-step evaluations at the default cadence (12 s): the breach counts at +1m12s and +1m24s (failureLimit 2).
    assert.deepEqual(
      out.text
        .split("\n")
        .filter((l) => /^\d+\s/.test(l))
        .map((l) => l.split(/\s{2,}/)[1]),
      ["+1m", "+1m12s", "+1m24s"],
    );
    assert.match(out.text, /fail \(in-step\)/);
    assert.match(out.text, /p99-latency 480 ≤ 500/); // the absolute bound alone would have promoted
    assert.match(out.text, /p99-vs-stable 480 > 130 \(stable 120 \+20 % and \+10\)/);
    assert.match(out.text, /p99-judged canary worse than stable/);
    assert.match(out.text, /^ROLLED BACK: /m);
  });

  void it("with cadence 0 the same regression fails two step deadlines (exit 1)", async () => {
    const out = new Capture();
    const code = await simulateCommand(DEADLINE_ONLY, file("regression-0.yaml", REGRESSION), {}, out);
    assert.equal(code, 1, out.text);
    assert.deepEqual(decisions(out.text), ["StepAdvanced", "AnalysisNotPassed", "RolledBack"]);
    assert.match(out.text, /p99-vs-stable 490 > 131 \(stable 121 \+20 % and \+10\)/);
    assert.match(out.text, /^ROLLED BACK: .*analysis failed \(2\/2 consecutive\)/m);
  });

  void it("a hold ends at the policy's holdLimit (3 min): rolled back with the reason (exit 1)", async () => {
    const out = new Capture();
    const idle = `steps:
  - requests: [0, 0, 0, 0]
    checks: { p99-latency: nodata, p99-vs-stable: { canary: nodata, stable: 20 }, p99-judged: { canary: [], stable: [20, 21, 22] } }
`;
    const code = await simulateCommand(DEADLINE_ONLY, file("idle.yaml", idle), {}, out);
    assert.equal(code, 1, out.text);
    assert.deepEqual(decisions(out.text), [
      "AnalysisNotPassed",
      "AnalysisNotPassed",
      "AnalysisNotPassed",
      "RolledBack",
    ]);
    assert.match(out.text, /held at step 1 \(10%\) for 3 min/);
  });

  void it("a platform-wide incident (both sides slow) passes the relative checks; only the absolute one fails", async () => {
    const out = new Capture();
    const incident = "{ canary: [820, 830, 815, 826, 819, 821], stable: [819, 831, 818, 820, 822, 817] }";
    const script = `steps:
  - requests: 400
    checks: { p99-latency: 820, p99-vs-stable: { canary: 821, stable: 818 }, p99-judged: ${incident} }
`;
    const code = await simulateCommand(DEADLINE_ONLY, file("incident.yaml", script), {}, out);
    assert.match(out.text, /p99-vs-stable 821 ≤ 828/);
    assert.match(out.text, /p99-judged canary like stable/);
    assert.match(out.text, /p99-latency 820 > 500/);
    assert.equal(code, 2, "one failed analysis of two allowed, then the script ends: undecided");
    assert.match(out.text, /^NO DECISION: the script has 1 analysis for step 1/m);
  });

  void it("a policy without analysis advances on its interval, as the daemon's always-pass gate does (exit 0)", async () => {
    const bare = file(
      "bare.yaml",
      "apiVersion: rolloutd.dev/v1alpha1\nkind: RolloutPolicy\nmetadata: { name: bare }\nspec:\n" +
        "  target: { kind: VirtualRouter, name: bare }\n  stable: a\n  canary: b\n  steps: [50, 100]\n  interval: 30s\n",
    );
    const out = new Capture();
    const code = await simulateCommand(
      bare,
      file("bare-metrics.yaml", "steps:\n  - checks: {}\n  - checks: {}\n"),
      {},
      out,
    );
    assert.equal(code, 0, out.text);
    assert.deepEqual(decisions(out.text), ["StepAdvanced", "Promoted"]);
    assert.match(out.text, /\+30s .*no checks configured/);
  });

  void it("invalid scripts are refused with the place named (exit 3)", async () => {
    const cases: Array<[string, RegExp]> = [
      [
        "steps:\n  - requests: 1\n    checks: { p99-latncy: 1 }\n",
        /steps\[0\]\.checks\.p99-latncy: no such check/,
      ],
      [
        "steps:\n  - checks: { p99-latency: 1, p99-vs-stable: 1, p99-judged: 1 }\n",
        /steps\[0\]\.checks\.p99-vs-stable: this check needs \{ canary: value, stable: value \}/,
      ],
      [
        "steps:\n  - requests: 100\n    checks: { p99-latency: 1 }\n",
        /steps\[0\]\.checks: no value for check p99-vs-stable/,
      ],
      [
        "steps:\n  - requests: lots\n    checks: { p99-latency: 1, p99-vs-stable: { canary: 1, stable: 1 }, p99-judged: { canary: [1], stable: [1] } }\n",
        /steps\[0\]\.requests\[0\]: expected a number/,
      ],
      ["nothing: here\n", /expected a mapping with steps/],
    ];
    for (const [i, [text, message]] of cases.entries()) {
      const out = new Capture();
      const code = await simulateCommand(POLICY, file(`bad-${i}.yaml`, text), {}, out);
      assert.equal(code, 3, out.text);
      assert.match(out.text, message);
    }
  });
});
