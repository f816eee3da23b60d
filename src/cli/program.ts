/**
 * The command line's grammar. Each command's module is imported when that
 * command runs, not before: the daemon (`run`) then never loads the offline
 * and kubectl-like commands' code (replay, SVG, tables, YAML output), which
 * would only sit in its heap.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import type { ControlVerb } from "./control.ts";
import type { ReplayOptions } from "./replay.ts";
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

/** A whole number in [min, max], with an error that says so (`--workers abc` is refused, not NaN). */
export const wholeNumber = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
  return n;
};

/** Seconds as a number (fractions allowed) in [min, max], returned in milliseconds. */
export const secondsToMs = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max)
    throw new InvalidArgumentError(`must be a number of seconds from ${min} to ${max}`);
  return Math.round(n * 1000);
};

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const namespaceList = (v: string) => {
  const list = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = list.find((ns) => ns.length > 63 || !DNS_LABEL.test(ns));
  if (bad !== undefined) throw new InvalidArgumentError(`"${bad}" is not a valid namespace name`);
  if (list.length === 0) throw new InvalidArgumentError("give at least one namespace");
  return list;
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
    .option("--workers <n>", "policies reconciled concurrently (1..256)", wholeNumber(1, 256), 32)
    .option(
      "--namespaces <list>",
      "comma-separated namespaces to watch and write in, for namespaced RBAC; policies elsewhere are refused (default: all)",
      namespaceList,
    )
    .option("--no-ui", "do not serve the read-only live page at /ui on the metrics port")
    .option(
      "--notify-config <file>",
      "YAML file of notification channels (Slack, Teams, signed webhooks) for every policy",
    )
    .option(
      "--analysis-min-window <seconds>",
      "smallest analysis window in whole seconds, about two scrape intervals (default 10)",
      wholeSeconds,
    )
    .option(
      "--shards <n>",
      "shards the policies are spread over, one Lease each; a replica takes at most shards / live replicas (1..256)",
      wholeNumber(1, 256),
      8,
    )
    .option(
      "--lease-namespace <ns>",
      "namespace of the fleet's Leases (default: $POD_NAMESPACE, else the kubeconfig context's, else default)",
      (v: string) => namespaceList(v)[0]!,
    )
    .option(
      "--fleet <name>",
      "name of the fleet: prefix of its Leases; replicas with the same name share the policies",
      (v: string) => {
        if (v.length > 40 || !DNS_LABEL.test(v))
          throw new InvalidArgumentError("must be a DNS label of at most 40 characters");
        return v;
      },
      "rolloutd",
    )
    .option(
      "--identity <id>",
      "this replica's name in the Leases (default: $POD_NAME, else host name + random suffix)",
    )
    .option(
      "--lease-duration <seconds>",
      "how long a silent holder keeps a Lease (default 15)",
      secondsToMs(1, 300),
    )
    .option(
      "--renew-deadline <seconds>",
      "a holder that could not renew for this long stops writing and lets go (default 10)",
      secondsToMs(0.5, 300),
    )
    .option(
      "--retry-period <seconds>",
      "how often Leases are renewed and looked at (default 2)",
      secondsToMs(0.1, 60),
    )
    .addOption(
      new Option("--log-level <level>", "log level")
        .choices(["trace", "debug", "info", "warn", "error"])
        .default("info"),
    )
    .option("--log-format <format>", "json or pretty (default: pretty on a terminal)")
    .action(async (o: Record<string, string | number | string[] | undefined>) => {
      process.exitCode = await (await import("./run.ts")).runCommand(o);
    });

  program
    .command("validate")
    .description("check policy files offline (no cluster needed); exit 1 on any problem")
    .argument("[dir]", "folder of policy files", "policies")
    .action(async (dir: string) => {
      process.exitCode = await (await import("./validate.ts")).validateCommand(dir, process.stdout);
    });

  program
    .command("simulate")
    .description(
      "run a policy's analysis step by step against scripted metrics, offline; exit 0 promoted, 1 rolled back, 2 undecided, 3 invalid input",
    )
    .argument("<policy>", "policy file")
    .argument("<metrics>", "scripted metrics file (see the README: steps → checks → values)")
    .option("--svg <file>", "also draw each check against its bound per step, decisions marked")
    .option("--policy <name>", "the policy to use when the file holds several")
    .action(async (policy: string, metrics: string, o: { svg?: string; policy?: string }) => {
      process.exitCode = await (
        await import("./simulate.ts")
      ).simulateCommand(policy, metrics, o, process.stdout, process.stderr);
    });

  program
    .command("replay")
    .description(
      "run a policy's analysis against Prometheus history as if a rollout started at --from; same table, picture and exit codes as simulate",
    )
    .argument("<policy>", "policy file")
    .option("--from <time>", "when the replayed rollout starts: ISO 8601 or Unix seconds")
    .option("--to <time>", "no analysis after this time")
    .option(
      "--rollout",
      "replay the latest rollout recorded in the route's Events (they expire after about an hour)",
    )
    .option(
      "--kubeconfig <file>",
      "with --rollout: kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)",
    )
    .option("--context <name>", "with --rollout: kubeconfig context to use")
    .option("--prometheus <url>", "Prometheus to ask (default: the policy's analysis.prometheus.url)")
    .option("--svg <file>", "also draw each check against its bound per step, decisions marked")
    .option("--policy <name>", "the policy to use when the file holds several")
    .option(
      "--analysis-min-window <seconds>",
      "smallest analysis window, as the daemon's option (default 10)",
      wholeSeconds,
    )
    .action(async (policy: string, o: ReplayOptions) => {
      process.exitCode = await (
        await import("./replay.ts")
      ).replayCommand(policy, o, process.stdout, process.stderr);
    });

  const kubeOptions = (c: Command) =>
    c
      .option("--kubeconfig <file>", "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
      .option("--context <name>", "kubeconfig context to use")
      .option("-n, --namespace <ns>", "namespace (default: the context's, else default)");

  kubeOptions(
    program
      .command("status")
      .description("show rollouts as recorded on the routes: phase, step, weights, last check values")
      .argument("[policy]", "only this policy (name or namespace/name)"),
  )
    .option("-A, --all-namespaces", "all namespaces")
    .addOption(
      new Option("-o, --output <format>", "output format")
        .choices(["table", "json", "yaml"])
        .default("table"),
    )
    .action(async (policy: string | undefined, o: Record<string, string | boolean | undefined>) => {
      process.exitCode = await (await import("./status.ts")).statusCommand(policy, o, process.stdout);
    });

  kubeOptions(
    program
      .command("explain")
      .description(
        "one rollout in words: where it is and why, its last analysis, every decision since it began",
      )
      .argument("<route>", "the policy's route as <kind>/<name>, e.g. httproute/frontend"),
  ).action(async (route: string, o: Record<string, string | undefined>) => {
    process.exitCode = await (await import("./explain.ts")).explainCommand(route, o, process.stdout);
  });

  const verbs: Array<[ControlVerb, string]> = [
    [
      "abort",
      "send all traffic to the stable backend now and stop the rollout (sets rolloutd.dev/abort=true)",
    ],
    ["pause", "hold the weights and stop analysing (sets rolloutd.dev/pause=true)"],
    ["resume", "continue a paused rollout; after drift, re-apply the current step"],
    ["retry", "clear an abort and start the rollout again from the first step"],
    ["promote", "skip the remaining steps and promote the canary to 100 %"],
  ];
  for (const [verb, description] of verbs) {
    const cmd = kubeOptions(
      program
        .command(verb)
        .description(description)
        .argument("<route>", "the policy's route as <kind>/<name>, e.g. httproute/frontend"),
    );
    if (verb === "abort") cmd.option("--reason <text>", "why, recorded in the rollout state and the Event");
    cmd.action(async (route: string, o: Record<string, string | undefined>) => {
      process.exitCode = await (await import("./control.ts")).controlCommand(verb, route, o, process.stdout);
    });
  }

  program
    .command("version")
    .description("print the version")
    .action(() => {
      process.stdout.write(`rolloutd ${VERSION}\n`);
    });

  return program;
}
