/**
 * One plain request to the API server with the kubeconfig's credentials, for
 * the daemon's hand-written calls (Lease renewals, /readyz beats, discovery).
 * They skip @kubernetes/client-node's typed API on purpose: see KubeLeaseApi.
 * This does the part they share — the server's URL, credentials applied per
 * request (tokens and exec plugins rotate), the pool's keep-alive connection,
 * a deadline, the body — and leaves what a status means to each caller.
 */
import http from "node:http";
import https from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import type { AgentPool } from "./agents.ts";

export interface KubeRequest {
  method: string;
  /** Path and query, appended to the kubeconfig's server URL (a path prefix there is kept, as the client keeps it). */
  path: string;
  /** Sent as JSON, with its Content-Length. */
  body?: object;
  /** The Accept header; none when absent. */
  accept?: string;
  /** The request is destroyed when its connection is silent this long. */
  timeoutMs: number;
  /** Keep about this many bytes of the body (whole chunks until reached); the rest is read and dropped. */
  maxBody?: number;
}

export interface KubeResponse {
  status: number;
  /** The body as UTF-8 text ("" when empty). */
  text: string;
}

/**
 * The request got no status: the kubeconfig names no server, its credentials
 * could not be applied, or the connection failed or stayed silent past the
 * deadline. `cause` is what the kubeconfig or Node threw (its `code` kept).
 */
export class NoAnswerError extends Error {
  override name = "NoAnswerError";
  constructor(
    /** The request, as "GET /readyz". */
    readonly request: string,
    readonly stage: "server" | "credentials" | "connection",
    /** What went wrong, without the request's name. */
    readonly detail: string,
    cause?: unknown,
  ) {
    super(`${request}: ${detail}`, { cause });
  }
}

/**
 * Sends `req` and resolves with any status the server answers with; rejects
 * only with a NoAnswerError. Over `agents`' keep-alive connections when given,
 * else over the agent the kubeconfig makes (a new connection each time).
 */
export async function kubeRequest(
  kc: KubeConfig,
  agents: AgentPool | undefined,
  req: KubeRequest,
): Promise<KubeResponse> {
  const name = `${req.method} ${req.path}`;
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new NoAnswerError(name, "server", "no API server in the kubeconfig");
  const url = new URL(server.replace(/\/$/, "") + req.path);
  const text = req.body === undefined ? undefined : JSON.stringify(req.body);
  const opts: https.RequestOptions = {
    method: req.method,
    headers: {
      ...(req.accept !== undefined ? { Accept: req.accept } : {}),
      ...(text !== undefined
        ? { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) }
        : {}),
    },
  };
  try {
    await kc.applyToHTTPSOptions(opts);
  } catch (err) {
    throw new NoAnswerError(name, "credentials", `credentials: ${message(err)}`, err);
  }
  if (agents) opts.agent = agents.agentFor(url.protocol, opts);
  return new Promise((resolve, reject) => {
    const failed = (err: Error) => reject(new NoAnswerError(name, "connection", err.message, err));
    const transport = url.protocol === "http:" ? http : https;
    const request = transport.request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on("data", (c: Buffer) => {
        if (req.maxBody !== undefined && kept >= req.maxBody) return;
        chunks.push(c);
        kept += c.length;
      });
      res.on("error", failed);
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
      );
    });
    request.setTimeout(req.timeoutMs, () =>
      request.destroy(new Error(`no answer within ${req.timeoutMs} ms`)),
    );
    request.on("error", failed);
    request.end(text);
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
