/**
 * `rolloutd validate <dir>`: checks policy files without a cluster. Prints one
 * line per problem (file:line:column path: message) and a summary; exit code
 * 0 when everything is valid. Meant for CI on the repository that holds the
 * policies, so an empty or mistyped folder is an error, not a silent pass.
 */
import { stat, readFile } from "node:fs/promises";
import {
  loadPolicyDir,
  parsePolicyFile,
  POLICY_LIMITS,
  PolicyError,
  tooLarge,
  type PolicyFileResult,
} from "../policy/load.ts";
import type { PolicySchemaOptions } from "../policy/schema.ts";

export type ValidateOptions = PolicySchemaOptions;

/** `dir` may also name a single policy file. */
export async function validateCommand(
  dir: string,
  out: { write(s: string): void },
  opts: ValidateOptions = {},
): Promise<number> {
  const { result, files } = await load(dir, opts);
  const errors = [...result.errors];
  if (files === 0 && errors.length === 0) {
    errors.push(new PolicyError(dir, 0, 0, "", "no *.yaml or *.yml policy files found"));
  }
  for (const e of errors) out.write(`${e.format()}\n`);
  const n = result.policies.length;
  out.write(
    `${n} ${n === 1 ? "policy" : "policies"} valid, ${errors.length} ${errors.length === 1 ? "error" : "errors"} ` +
      `in ${files} ${files === 1 ? "file" : "files"}\n`,
  );
  return errors.length === 0 ? 0 : 1;
}

async function load(
  path: string,
  opts: ValidateOptions,
): Promise<{ result: PolicyFileResult; files: number }> {
  let isFile = false;
  let size = 0;
  try {
    const info = await stat(path);
    isFile = info.isFile();
    size = info.size;
  } catch {
    // Not there: loadPolicyDir reports it as an unreadable directory.
  }
  if (!isFile) {
    const result = await loadPolicyDir(path, opts);
    return { result, files: result.files.length };
  }
  // The daemon's caps, checked before reading: a 20 MB file is refused at once, not parsed.
  if (size > POLICY_LIMITS.maxFileBytes) {
    const error = tooLarge(path, size, POLICY_LIMITS.maxFileBytes);
    return { result: { policies: [], errors: [error], brokenKeys: [], opaqueFiles: [path] }, files: 1 };
  }
  try {
    return { result: parsePolicyFile(path, await readFile(path, "utf8"), opts), files: 1 };
  } catch (err) {
    const message = `cannot read file (${err instanceof Error ? err.message : String(err)})`;
    return {
      result: {
        policies: [],
        errors: [new PolicyError(path, 0, 0, "", message)],
        brokenKeys: [],
        opaqueFiles: [path],
      },
      files: 1,
    };
  }
}
