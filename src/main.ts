#!/usr/bin/env node
/**
 * The rolloutd command line. Each subcommand lives in src/cli/; this file
 * only parses arguments and maps failures to exit codes.
 */
import { buildProgram } from "./cli/program.ts";

const program = buildProgram();
program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`rolloutd: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
