/**
 * `rolloutd run`: starts the daemon and stops it cleanly on SIGTERM/SIGINT
 * (in-flight reconciles finish; nothing is left half-written, since every
 * write is one request).
 */
import { startDaemon } from "../daemon.ts";
import { KubeConfigError } from "../kube/client.ts";
import { createLogger } from "../log.ts";

export async function runCommand(o: Record<string, string | number | string[] | undefined>): Promise<number> {
  const pretty = o.logFormat ? o.logFormat === "pretty" : process.stdout.isTTY === true;
  const log = createLogger({ level: (o.logLevel as "info") ?? "info", pretty });
  let daemon;
  try {
    daemon = await startDaemon(
      {
        kubeconfig: o.kubeconfig as string | undefined,
        context: o.context as string | undefined,
        policiesDir: (o.policies as string) ?? "policies",
        metricsPort: (o.metricsPort as number) ?? 8080,
        metricsHost: o.metricsHost as string | undefined,
        workers: o.workers as number | undefined,
        minWindowSeconds: o.analysisMinWindow as number | undefined,
        namespaces: o.namespaces as string[] | undefined,
        fleet: {
          ...(o.fleet !== undefined ? { name: o.fleet as string } : {}),
          ...(o.shards !== undefined ? { shards: o.shards as number } : {}),
          ...(o.leaseNamespace !== undefined ? { namespace: o.leaseNamespace as string } : {}),
          ...(o.identity !== undefined ? { identity: o.identity as string } : {}),
          ...(o.leaseDuration !== undefined ? { leaseDurationMs: o.leaseDuration as number } : {}),
          ...(o.renewDeadline !== undefined ? { renewDeadlineMs: o.renewDeadline as number } : {}),
          ...(o.retryPeriod !== undefined ? { retryPeriodMs: o.retryPeriod as number } : {}),
        },
        notifyConfig: o.notifyConfig as string | undefined,
        ui: (o.ui as unknown) !== false,
      },
      log,
    );
  } catch (err) {
    log.fatal(
      { err: err instanceof KubeConfigError ? undefined : err },
      err instanceof Error ? err.message : String(err),
    );
    log.flush?.();
    return 1;
  }
  log.info("rolloutd running");
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log.warn({ signal }, "second signal: exiting now");
        process.exit(130);
      }
      stopping = true;
      log.info({ signal }, "shutting down");
      const force = setTimeout(() => {
        log.error("shutdown took longer than 8 s; exiting");
        process.exit(1);
      }, 8000);
      force.unref();
      daemon.stop().then(
        () => {
          log.info("stopped");
          resolve(0);
        },
        (err: unknown) => {
          log.error({ err }, "error while stopping");
          resolve(1);
        },
      );
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
