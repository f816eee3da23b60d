import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Command } from "commander";
import { buildProgram } from "../../../src/cli/program.ts";

/** Parses `rolloutd run <args>` without running it; returns the error text commander would print. */
function runError(args: string[]): string | undefined {
  const program = buildProgram();
  let err = "";
  const quiet = (c: Command) => {
    c.exitOverride().configureOutput({ writeErr: (s) => (err += s), writeOut: () => {} });
    c.commands.forEach(quiet);
  };
  quiet(program);
  const run = program.commands.find((c) => c.name() === "run")!;
  run.action(() => {});
  try {
    program.parse(["node", "rolloutd", "run", ...args]);
  } catch {
    return err;
  }
  return undefined;
}

void describe("rolloutd run: numbers on the command line", () => {
  void it("refuses what is not a whole number in range, naming the option", () => {
    for (const [args, option] of [
      [["--workers", "abc"], "--workers"],
      [["--workers", "0"], "--workers"],
      [["--workers", "1.5"], "--workers"],
      [["--workers", ""], "--workers"],
      [["--shards", "0"], "--shards"],
      [["--shards", "1e9"], "--shards"],
      [["--lease-duration", "abc"], "--lease-duration"],
      [["--retry-period", "0"], "--retry-period"],
      [["--metrics-port", "70000"], "--metrics-port"],
    ] as const) {
      const err = runError([...args]);
      assert.ok(err, `${args.join(" ")} accepted`);
      assert.match(err, new RegExp(`${option}.*(whole number|number of seconds|port number)`), err);
    }
  });

  void it("accepts sane values", () => {
    assert.equal(
      runError(["--workers", "16", "--shards", "32", "--lease-duration", "15", "--retry-period", "0.5"]),
      undefined,
    );
  });
});
