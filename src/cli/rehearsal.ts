/**
 * What `rolloutd simulate` and `rolloutd replay` share: reading one policy from a file, and writing the
 * outcome as a table and, when asked, an SVG picture.
 */
import { readFile, writeFile } from "node:fs/promises";

import { parsePolicyFile } from "../policy/load.ts";
import type { RolloutPolicy } from "../policy/types.ts";
import { exitCodeOf, type Timeline } from "../replay/driver.ts";
import { renderSvg } from "../replay/svg.ts";
import { renderTable } from "../replay/table.ts";

export interface Out {
  write(s: string): void;
}

/** Exit code for input that cannot be used (policy or metrics file): distinct from the outcomes 0/1/2. */
export const EXIT_INVALID = 3;

export class InputError extends Error {
  override readonly name = "InputError";
}

/** The one policy a file holds (or the one named `name`, as name or namespace/name). Throws InputError. */
export async function readPolicy(file: string, name?: string): Promise<RolloutPolicy> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new InputError(`${file}: cannot read (${err instanceof Error ? err.message : String(err)})`);
  }
  const result = parsePolicyFile(file, text);
  if (result.errors.length > 0) throw new InputError(result.errors.map((e) => e.format()).join("\n"));
  const found =
    name === undefined ? result.policies : result.policies.filter((p) => p.name === name || p.key === name);
  if (found.length === 0) {
    throw new InputError(
      name === undefined ? `${file}: no RolloutPolicy in the file` : `${file}: no policy named ${name}`,
    );
  }
  if (found.length > 1) {
    throw new InputError(
      `${file} holds ${found.length} policies (${found.map((p) => p.key).join(", ")}): choose one with --policy`,
    );
  }
  return found[0]!;
}

export async function finish(
  t: Timeline,
  policy: RolloutPolicy,
  time: (at: number) => string,
  out: Out,
  svgFile: string | undefined,
  title: string,
  /** Labels under the decision markers; default `time`. */
  svgTime: (at: number) => string = time,
): Promise<number> {
  out.write(`${title}\n`);
  out.write(renderTable(t, policy.steps, time));
  if (svgFile !== undefined) {
    await writeFile(svgFile, renderSvg(t, title, svgTime));
    out.write(`picture: ${svgFile}\n`);
  }
  return exitCodeOf(t.outcome);
}
