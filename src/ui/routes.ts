/**
 * The live page's HTTP side, served on the metrics port next to /metrics:
 *
 *   GET /ui             the page (one HTML document, inline CSS and script, no external asset)
 *   GET /ui/events      server-sent events: `snapshot` (all rollouts) on connect, then `rollout` and
 *                       `removed` as decisions are written
 *   GET /ui/rollouts    the same data as JSON
 *
 * Read-only: nothing here changes a rollout. A slow client is dropped
 * rather than buffered without bound.
 */
import type http from "node:http";
import type { RolloutBoard } from "./board.ts";
import { PAGE } from "./page.ts";

/** A client that cannot keep up with this much unsent data is disconnected. */
const MAX_BUFFERED = 1 << 20;
const HEARTBEAT_MS = 15_000;

export class UiRoutes {
  constructor(private readonly board: RolloutBoard) {}

  /** True when the request was for the page (and is answered). */
  handle(req: http.IncomingMessage, res: http.ServerResponse, path: string): boolean {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    if (path === "/ui" || path === "/ui/") {
      res
        .writeHead(200, {
          "Content-Type": "text/html; charset=utf-8",
          "Cache-Control": "no-store",
          // Nothing but the page's own inline code and its own event stream.
          "Content-Security-Policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
          "X-Content-Type-Options": "nosniff",
        })
        .end(PAGE);
      return true;
    }
    if (path === "/ui/rollouts") {
      res
        .writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" })
        .end(JSON.stringify(this.board.list()));
      return true;
    }
    if (path === "/ui/events") {
      this.stream(req, res);
      return true;
    }
    return false;
  }

  private stream(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    const send = (event: string, data: unknown) => {
      if (res.writableLength > MAX_BUFFERED) {
        res.destroy();
        return;
      }
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    res.write("retry: 1000\n\n");
    send("snapshot", this.board.list());
    const unsubscribe = this.board.subscribe((u) =>
      u.type === "rollout" ? send("rollout", u.card) : send("removed", { policy: u.policy }),
    );
    const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), HEARTBEAT_MS);
    heartbeat.unref();
    const done = () => {
      clearInterval(heartbeat);
      unsubscribe();
    };
    req.on("close", done);
    res.on("close", done);
  }
}
