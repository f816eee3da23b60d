/**
 * `rolloutd simulate <policy.yaml> <metrics.yaml> [--svg out.svg]`: runs a policy's analysis step by step
 * against scripted metrics (src/replay/script.ts), offline, through the real gate and the real lifecycle
 * machine, and prints what the daemon would decide at each analysis and why. For policy authors' CI: the exit
 * code is 0 when the canary would be promoted, 1 when rolled back, 2 when the script ends first (still
 * holding), 3 when a file is invalid.
 */
import { readFile } from "node:fs/promises";

import { createAnalysisGateFactory } from "../analysis/analyzer.ts";
import { rehearse } from "../replay/driver.ts";
import { parseScript, ScriptError, ScriptSource, scriptedSpec } from "../replay/script.ts";
import { relativeTime } from "../replay/table.ts";
import { EXIT_INVALID, finish, InputError, readPolicy, type Out } from "./rehearsal.ts";

export interface SimulateOptions {
  svg?: string;
  policy?: string;
}

/** A fixed, readable origin for simulated time: nothing in a simulation depends on the wall clock. */
const ORIGIN = Date.UTC(2026, 0, 1);

export async function simulateCommand(
  policyFile: string,
  metricsFile: string,
  o: SimulateOptions,
  out: Out,
  err: Out = out,
): Promise<number> {
  try {
    const policy = await readPolicy(policyFile, o.policy);
    let text: string;
    try {
      text = await readFile(metricsFile, "utf8");
    } catch (e) {
      throw new InputError(`${metricsFile}: cannot read (${e instanceof Error ? e.message : String(e)})`);
    }
    const script = parseScript(text, policy, metricsFile);
    const source = new ScriptSource(script, policy.canary);
    // The daemon's own gate factory: a policy without checks gets the gate that always passes.
    const gates = createAnalysisGateFactory({ createSource: () => source, minWindowSeconds: 1 });
    const analysis = policy.analysis !== undefined ? scriptedSpec(policy.analysis) : undefined;
    const gate = gates.gateFor({ ...policy, ...(analysis !== undefined ? { analysis } : {}) });
    const timeline = await rehearse({
      policy,
      gate: gate ?? {
        analyze: () => Promise.reject(new InputError("the policy has no analysis to simulate")),
      },
      start: ORIGIN,
      beforeAnalysis: ({ stepIndex, attempt }) => source.at(stepIndex, attempt),
    });
    return await finish(
      timeline,
      policy,
      relativeTime(ORIGIN),
      out,
      o.svg,
      `simulate ${policy.key} (steps ${policy.steps.join(", ")}%, interval ${policy.intervalMs / 1000}s) with ${metricsFile}`,
    );
  } catch (e) {
    if (e instanceof InputError || e instanceof ScriptError) {
      err.write(`${e.message}\n`);
      return EXIT_INVALID;
    }
    throw e;
  }
}
