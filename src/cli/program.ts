import { Command, InvalidArgumentError, Option } from "commander";
import { runCommand } from "./run.ts";
import { validateCommand } from "./validate.ts";
import { VERSION } from "../version.ts";

const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError("must be a port number (0..65535)");
  return n;
};

const wholeSeconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a whole number of seconds ≥ 1");
  return n;
};

export function buildProgram(): Command {
  const program = new Command("rolloutd")
    .description(
      "Progressive delivery for Kubernetes: steps traffic from stable to canary, gated by Prometheus.",
    )
    .version(VERSION, "--version")
    .showHelpAfterError();

  program
    .command("run")
    .description("run the daemon: watch policies and routes, step weights, analyse, promote or roll back")
    .option("--kubeconfig <file>", "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    .option("--context <name>", "kubeconfig context to use")
    .option("--policies <dir>", "folder of RolloutPolicy YAML files, reloaded on change", "policies")
    .option(
      "--metrics-port <port>",
      "port for /healthz, /readyz and /metrics (0 picks a free one)",
      port,
      8080,
    )
    .option("--metrics-host <host>", "address to bind", "0.0.0.0")
    .option("--workers <n>", "policies reconciled concurrently", (v) => Number(v), 8)
    .option(
      "--analysis-min-window <seconds>",
      "smallest analysis window in whole seconds, about two scrape intervals (default 10)",
      wholeSeconds,
    )
    .addOption(
      new Option("--log-level <level>", "log level")
        .choices(["trace", "debug", "info", "warn", "error"])
        .default("info"),
    )
    .option("--log-format <format>", "json or pretty (default: pretty on a terminal)")
    .action(async (o: Record<string, string | number | undefined>) => {
      process.exitCode = await runCommand(o);
    });

  program
    .command("validate")
    .description("check policy files offline (no cluster needed); exit 1 on any problem")
    .argument("[dir]", "folder of policy files", "policies")
    .action(async (dir: string) => {
      process.exitCode = await validateCommand(dir, process.stdout);
    });

  program
    .command("version")
    .description("print the version")
    .action(() => {
      process.stdout.write(`rolloutd ${VERSION}\n`);
    });

  return program;
}
