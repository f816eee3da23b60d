/**
 * The live page in a real browser: Debian's Chromium, headless, driven by
 * playwright-core, opens /ui on the real daemon before anything happens and
 * must show, without a reload, a rollout stepping (weights, step, the check
 * values against their bounds, the charts) and an abort with its reason.
 * The page notes when each state arrived; the test compares that with the
 * state's own `updatedAt` as written to the cluster (one machine, one clock):
 * each must arrive within a second. A screenshot is kept in
 * test/artifacts/ui.png ($ROLLOUTD_ARTIFACTS overrides the folder).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { ANNOTATIONS, type RolloutState } from "../../src/contract.ts";
import { startCluster, type Cluster } from "../support/cluster.ts";
import { startDaemon, type DaemonProcess } from "../support/daemon.ts";
import { startFaultyPrometheus, type FaultyPrometheus } from "../support/faults.ts";
import { appMeshVirtualRouter } from "../support/routes.ts";
import { Scenario } from "../support/scenario.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.ROLLOUTD_ARTIFACTS ?? fileURLToPath(new URL("../artifacts/", import.meta.url));

interface Arrival {
  at: number;
  updatedAt: number;
  phase: string;
}

void describe("the live page, in a real browser", () => {
  let c: Cluster;
  let daemon: DaemonProcess;
  let prom: FaultyPrometheus;
  let browser: Browser;
  let page: Page;
  let policiesDir: string;
  let s: Scenario;

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `Chromium is missing at ${CHROMIUM}: apt-get install chromium (.ci/run does)`,
    );
    c = await startCluster();
    prom = await startFaultyPrometheus();
    prom.lie(120);
    policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-ui-"));
    daemon = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir,
      extraArgs: ["--analysis-min-window=1"],
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    page = await browser.newPage({ viewport: { width: 1400, height: 560 } });
  });

  after(async () => {
    s?.close();
    await browser?.close();
    await prom?.close();
    await daemon?.stop();
    await daemon?.dispose();
    await c?.stop();
    if (policiesDir) rmSync(policiesDir, { recursive: true, force: true });
  });

  const row = (policy: string, field: string) =>
    page.locator(`tr[data-policy="${policy}"] [data-field="${field}"]`);

  /** How long after it was written the page received the state written at `st.updatedAt` (one machine, one clock). */
  const lateness = async (policy: string, st: RolloutState): Promise<number> => {
    const arrivals = await page.evaluate(
      () =>
        (globalThis as unknown as { __rolloutd: { arrivals: Array<Arrival & { policy: string }> } })
          .__rolloutd.arrivals,
    );
    const a = arrivals.find((x) => x.policy === policy && x.updatedAt === st.updatedAt);
    assert.ok(a, `the page received the state written at ${st.updatedAt}`);
    return a.at - st.updatedAt;
  };

  void it("shows a rollout stepping and an abort within a second, live, and keeps a screenshot", async () => {
    s = new Scenario(c, appMeshVirtualRouter, "ui-live", policiesDir);
    await s.given();
    s.writePolicy({
      steps: [10, 30, 60, 100],
      interval: "3s",
      extra: [
        "  analysis:",
        `    prometheus: { url: "${prom.url}", timeout: 5s }`,
        "    checks:",
        "      - { name: p99-latency, query: 'vector(0)', max: 500 }",
      ].join("\n"),
    });
    const policy = `${s.ns}/${s.route}`;
    await s.until("adopted", (st) => st.phase === "Steady");

    await page.goto(`http://127.0.0.1:${daemon.port}/ui`);
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    await row(policy, "phase").getByText("Steady").waitFor({ timeout: 10_000 });

    await s.shipCanary("2");
    const step1 = await s.until("step 1", (st) => st.phase === "Progressing" && st.stepIndex === 0);
    await row(policy, "step").getByText("1/4").waitFor({ timeout: 5_000 });
    const late1 = await lateness(policy, step1);

    prom.lie(180);
    const step2 = await s.until("step 2", (st) => st.stepIndex === 1, 30_000);
    await row(policy, "step").getByText("2/4").waitFor({ timeout: 5_000 });
    const late2 = await lateness(policy, step2);
    assert.match(await row(policy, "weights").innerText(), /web-v1 70 \/ web-v2 30/);
    assert.match(await row(policy, "checks").innerText(), /p99-latency = 1[28]0 \(≤ 500\) ✓/);

    prom.lie(240);
    const step3 = await s.until("step 3", (st) => st.stepIndex === 2, 30_000);
    await row(policy, "step").getByText("3/4").waitFor({ timeout: 5_000 });
    const late3 = await lateness(policy, step3);
    // Step 2's analysis ran about 3 s after the answer changed to 240.
    assert.match(await row(policy, "checks").innerText(), /p99-latency = 240 \(≤ 500\) ✓/);

    await s.annotateTarget({
      [ANNOTATIONS.abort]: "true",
      [ANNOTATIONS.abortReason]: "INC-77 (dave): p99 spikes <img src=x onerror=alert(1)>",
    });
    const aborted = await s.until("aborted", (st, w) => st.phase === "Aborted" && w[s.canary] === 0);
    await row(policy, "phase").getByText("Aborted").waitFor({ timeout: 5_000 });
    const lateAbort = await lateness(policy, aborted);
    process.stderr.write(
      `# page behind the cluster: step 1 ${late1} ms, step 2 ${late2} ms, step 3 ${late3} ms, abort ${lateAbort} ms\n`,
    );
    for (const [what, ms] of [
      ["step 1", late1],
      ["step 2", late2],
      ["abort", lateAbort],
    ] as const)
      assert.ok(ms >= 0 && ms < 1000, `${what} reached the page ${ms} ms after it was written`);

    assert.equal(
      await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker),
      42,
      "no reload",
    );
    assert.match(await row(policy, "weights").innerText(), /web-v1 100 \/ web-v2 0/);
    // Operator text is shown as text, never parsed as HTML.
    assert.match(
      await row(policy, "why").innerText(),
      /aborted: INC-77 \(dave\): p99 spikes <img src=x onerror=alert\(1\)>/,
    );
    assert.equal(await page.locator("img").count(), 0);
    const detail = page.locator(`section.detail[data-policy="${policy}"]`);
    const timeline = await detail.locator('[data-field="timeline"]').innerText();
    for (const reason of ["Adopted", "RolloutStarted", "StepAdvanced", "Aborted"])
      assert.match(timeline, new RegExp(reason));
    assert.match(timeline, /INC-77 \(dave\)/);
    // The weight chart has a line; the metric chart draws its bound and both measured values.
    assert.equal(await detail.locator("svg path").count(), 2);
    assert.equal(await detail.locator('svg line[data-bound="500"]').count(), 1);
    // Weights 0, 10, 30, 60, 0; two analyses passed (the first at 120 or 180, the second at 180).
    assert.equal(await detail.locator("figure").first().locator("svg circle").count(), 5);
    assert.equal(await detail.locator("figure").nth(1).locator("svg circle").count(), 2);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, "ui.png");
    await page.screenshot({ path: shot, fullPage: true });
    process.stderr.write(`# screenshot: ${shot}\n`);
  });
});
