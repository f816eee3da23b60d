/**
 * Is the API server answering, storage included? Watches alone cannot tell:
 * with etcd frozen they stay open and silent, and with the server gone they
 * back off for up to half a minute after it is back. So the daemon asks the
 * server's own /readyz (which checks etcd) on a slow beat while all is well
 * and a fast one while it is not, and says when it answered again so failed
 * watches reconnect at once. A write the server just answered (the fleet
 * renews its member Lease every retry period) says as much as /readyz does,
 * so while those keep coming the beat asks nothing: at rest it costs no
 * request at all.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { AgentPool } from "./agents.ts";
import { kubeRequest, NoAnswerError, type KubeResponse } from "./request.ts";

export interface HealthProbe {
  /** Resolves with ok/detail; never rejects. */
  (): Promise<{ ok: boolean; detail: string }>;
}

/**
 * GET {server}/readyz with the kubeconfig's credentials, bounded by `timeoutMs`,
 * over `agents`' keep-alive connections when given (else a new connection each time).
 */
export function apiServerReadyz(kc: KubeConfig, timeoutMs = 3_000, agents?: AgentPool): HealthProbe {
  return async () => {
    let res: KubeResponse;
    try {
      // Room for every check's line; a long body from something else answering is not kept.
      res = await kubeRequest(kc, agents, { method: "GET", path: "/readyz", timeoutMs, maxBody: 2000 });
    } catch (err) {
      return { ok: false, detail: err instanceof NoAnswerError ? err.detail : String(err) };
    }
    const ok = res.status === 200;
    const failed = res.text
      .split("\n")
      .filter((l) => l.startsWith("[-]"))
      .join(", ");
    return { ok, detail: ok ? "ok" : `/readyz ${res.status}${failed ? `: ${failed}` : ""}` };
  };
}

export interface ApiHealthOptions {
  /** Beat while healthy. */
  intervalMs?: number;
  /** Beat while unhealthy, so recovery is noticed within about this long. */
  unhealthyIntervalMs?: number;
  /** The server answers again after not answering since `downSince` (the `now` clock). */
  onRecovered?: (downSince: number) => void;
}

export class ApiHealth {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** When the server last stopped answering; undefined while healthy. */
  private downSince: number | undefined;
  private lastDetail = "ok";
  /** When a write was last seen answered (the `now` clock). */
  private witnessedAt: number | undefined;

  constructor(
    private readonly probe: HealthProbe,
    private readonly now: () => number,
    private readonly opts: ApiHealthOptions = {},
  ) {}

  start(): void {
    this.schedule(0);
  }

  /** undefined while healthy; else since when, and why. */
  get down(): { since: number; detail: string } | undefined {
    return this.downSince === undefined ? undefined : { since: this.downSince, detail: this.lastDetail };
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.beat(), ms);
    this.timer.unref();
  }

  /** The server just answered a write (storage included): the next healthy beat need not ask. */
  witness(): void {
    this.witnessedAt = this.now();
  }

  private async beat(): Promise<void> {
    const interval = this.opts.intervalMs ?? 5_000;
    const sinceWitness = this.witnessedAt === undefined ? Infinity : this.now() - this.witnessedAt;
    if (this.downSince === undefined && sinceWitness >= 0 && sinceWitness < interval) {
      this.schedule(interval - sinceWitness);
      return;
    }
    const r = await this.probe();
    if (this.stopped) return;
    this.lastDetail = r.detail;
    if (!r.ok) {
      this.downSince ??= this.now();
    } else if (this.downSince !== undefined) {
      const since = this.downSince;
      this.downSince = undefined;
      this.opts.onRecovered?.(since);
    }
    this.schedule(r.ok ? interval : (this.opts.unhealthyIntervalMs ?? 500));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
