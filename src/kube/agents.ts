/**
 * Keep-alive connections for the daemon's plain HTTPS calls to the API
 * server (Leases, /readyz, discovery). `KubeConfig.applyToHTTPSOptions`
 * hands back an agent without keep-alive, so every call would pay a new TCP
 * connection and TLS handshake (a few ms of CPU each, every few seconds,
 * forever). One pool per daemon keeps a few connections open and reuses
 * them, keyed by the TLS material the kubeconfig applied: when a rotated
 * client certificate or CA comes back from the kubeconfig (files re-read,
 * exec plugins), the old agent is closed and a new one made.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";

export class AgentPool {
  private current: { key: string; agent: http.Agent } | undefined;

  /** At most `maxSockets` connections to the server: the callers are few and small. */
  constructor(private readonly maxSockets = 4) {}

  /** The keep-alive agent for a request whose options the kubeconfig filled in. */
  agentFor(protocol: string, opts: https.RequestOptions): http.Agent {
    const key = createHash("sha256")
      .update(protocol)
      .update("\0")
      .update(material(opts.ca))
      .update("\0")
      .update(material(opts.cert))
      .update("\0")
      .update(material(opts.key))
      .update("\0")
      .update(String(opts.rejectUnauthorized ?? ""))
      .update("\0")
      .update(String(opts.servername ?? ""))
      .digest("hex");
    if (this.current?.key !== key) {
      this.current?.agent.destroy();
      const agent =
        protocol === "http:"
          ? new http.Agent({ keepAlive: true, maxSockets: this.maxSockets })
          : new https.Agent({
              keepAlive: true,
              maxSockets: this.maxSockets,
              ca: opts.ca,
              cert: opts.cert,
              key: opts.key,
              ...(opts.rejectUnauthorized !== undefined
                ? { rejectUnauthorized: opts.rejectUnauthorized }
                : {}),
              ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
            });
      this.current = { key, agent };
    }
    return this.current.agent;
  }

  /** Closes the pooled connections; a later request opens new ones. */
  close(): void {
    this.current?.agent.destroy();
    this.current = undefined;
  }
}

/** TLS material as text, for the pool's key. */
function material(v: unknown): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  if (Buffer.isBuffer(v)) return v.toString("latin1");
  if (Array.isArray(v)) return v.map(material).join("\0");
  return JSON.stringify(v) ?? "";
}
