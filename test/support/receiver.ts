/**
 * A notification receiver on 127.0.0.1 for tests: records every request
 * (path, headers, raw body) and answers as scripted per path; "hang" never
 * answers, as a receiver that is down behind a load balancer would. Also a
 * plain HTTP endpoint for any client under test (it counts connections, so
 * keep-alive can be checked).
 */
import http from "node:http";

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A receiver whose answer per path is scripted; "hang" never answers. */
export class Receiver {
  readonly got: Received[] = [];
  readonly script = new Map<string, Array<number | "hang">>();
  /** Paths that never answer. */
  readonly hanging = new Set<string>();
  /** The body answered per path; "ok" when none is set. */
  readonly bodies = new Map<string, string>();
  /** TCP connections accepted so far. */
  connections = 0;
  private server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const p = req.url ?? "/";
      this.got.push({ path: p, headers: req.headers, body });
      const answer = this.hanging.has(p) ? "hang" : (this.script.get(p)?.shift() ?? 200);
      if (answer === "hang") return;
      res.writeHead(answer, answer === 429 ? { "retry-after": "0" } : {}).end(this.bodies.get(p) ?? "ok");
    });
  });
  url = "";
  async start(): Promise<void> {
    this.server.on("connection", () => this.connections++);
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    const a = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${a.port}`;
  }
  on(p: string): Received[] {
    return this.got.filter((g) => g.path === p);
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}
