/**
 * /healthz (the process is alive and its event loop turns), /readyz (watches
 * synced and policies loaded: ready to act), /metrics, and the read-only
 * live page (/ui, src/ui/) unless it is turned off. Nothing here writes to
 * the cluster.
 */
import http from "node:http";
import type { Logger } from "pino";
import type { Registry } from "prom-client";

export interface Probe {
  ready(): { ok: boolean; detail: string };
}

/** More read-only pages on the same port; answers true when it handled the request. */
export interface Pages {
  handle(req: http.IncomingMessage, res: http.ServerResponse, path: string): boolean;
}

export class HttpServer {
  private server: http.Server | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly probe: Probe,
    private readonly log: Logger,
    private readonly pages?: Pages,
  ) {}

  /** Listens; rejects with a clear error when the port is taken. Returns the bound port. */
  listen(port: number, host = "0.0.0.0"): Promise<number> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        reject(
          err.code === "EADDRINUSE"
            ? new Error(
                `port ${port} on ${host} is already in use: pass --metrics-port with a free port (0 picks one)`,
              )
            : err,
        );
      });
      server.listen(port, host, () => {
        const addr = server.address();
        resolve(typeof addr === "object" && addr ? addr.port : port);
      });
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (path === "/healthz" || path === "/livez") {
        res.writeHead(200, { "Content-Type": "text/plain" }).end("ok\n");
      } else if (path === "/readyz") {
        const r = this.probe.ready();
        res.writeHead(r.ok ? 200 : 503, { "Content-Type": "text/plain" }).end(`${r.detail}\n`);
      } else if (path === "/metrics") {
        const body = await this.registry.metrics();
        res.writeHead(200, { "Content-Type": this.registry.contentType }).end(body);
      } else if (this.pages?.handle(req, res, path ?? "/")) {
        // answered by the page
      } else {
        res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
      }
    } catch (err) {
      this.log.error({ err }, "http handler failed");
      if (!res.headersSent) res.writeHead(500).end();
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
