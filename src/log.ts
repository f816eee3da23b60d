/**
 * The one root logger. JSON lines by default (what log pipelines want);
 * human-readable when stdout is a terminal. Children per reconcile carry
 * policy and route, so every line can be filtered by rollout.
 */
import { pino, type Logger, type LevelWithSilent } from "pino";

export interface LogOptions {
  level?: LevelWithSilent;
  pretty?: boolean;
  /** Where JSON lines go; defaults to stdout. Tests pass a stream to assert on lines. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const options = {
    level: opts.level ?? "info",
    base: { app: "rolloutd", pid: process.pid },
    // Secrets never reach logs: kubeconfig credentials, Prometheus auth, bearer tokens.
    redact: {
      paths: [
        "*.token",
        "*.password",
        "*.bearerToken",
        "*.authorization",
        "*.headers.authorization",
        "*.headers.Authorization",
      ],
      censor: "[redacted]",
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (opts.pretty && !opts.destination) {
    return pino({
      ...options,
      transport: {
        target: "pino-pretty",
        options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname,app" },
      },
    });
  }
  return opts.destination ? pino(options, opts.destination as never) : pino(options);
}

export type { Logger };
