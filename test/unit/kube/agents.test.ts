/**
 * The daemon's plain HTTPS calls (Lease renewals, /readyz beats, discovery)
 * reuse keep-alive connections: without the pool each call opened a new TCP
 * connection and TLS handshake. Counted on a real local server.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { AgentPool } from "../../../src/kube/agents.ts";
import { apiServerReadyz } from "../../../src/kube/health.ts";

let server: http.Server;
let connections = 0;
let base = "";

before(async () => {
  server = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(req.url === "/readyz" ? "ok" : "{}");
  });
  server.on("connection", () => connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

function get(agent: http.Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/x`, { agent }, (res) => {
      res.resume();
      res.on("end", () => resolve());
    });
    req.on("error", reject);
    req.end();
  });
}

function kubeconfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: base, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return kc;
}

void describe("AgentPool", () => {
  void it("reuses one connection for sequential requests with the same TLS material", async () => {
    const pool = new AgentPool();
    const before = connections;
    for (let i = 0; i < 5; i++) await get(pool.agentFor("http:", {}));
    assert.equal(connections - before, 1);
    pool.close();
  });

  void it("makes a new agent when the TLS material changes", () => {
    const pool = new AgentPool();
    const a = pool.agentFor("https:", { ca: "A", cert: "C", key: "K" });
    assert.equal(pool.agentFor("https:", { ca: "A", cert: "C", key: "K" }), a);
    assert.ok(a instanceof https.Agent);
    const b = pool.agentFor("https:", { ca: "A", cert: "C2", key: "K" });
    assert.notEqual(b, a);
    assert.equal((b as https.Agent).options.cert, "C2");
    assert.equal((b as https.Agent).options.keepAlive, true);
    const c = pool.agentFor("https:", { ca: "A", cert: "C2", key: "K", rejectUnauthorized: false });
    assert.notEqual(c, b);
    // A rotated material that only moves bytes between fields is still a change.
    const d = pool.agentFor("https:", { ca: "AC", cert: "2", key: "K", rejectUnauthorized: false });
    assert.notEqual(d, c);
    pool.close();
  });

  void it("opens a new connection after close()", async () => {
    const pool = new AgentPool();
    const before = connections;
    await get(pool.agentFor("http:", {}));
    pool.close();
    await get(pool.agentFor("http:", {}));
    assert.equal(connections - before, 2);
    pool.close();
  });
});

void describe("apiServerReadyz", () => {
  void it("beats over one kept-alive connection when given a pool", async () => {
    const pool = new AgentPool();
    const probe = apiServerReadyz(kubeconfig(), 3_000, pool);
    const before = connections;
    for (let i = 0; i < 4; i++) assert.deepEqual(await probe(), { ok: true, detail: "ok" });
    assert.equal(connections - before, 1);
    pool.close();
  });

  void it("opened a connection per beat without one (what the pool saves)", async () => {
    const probe = apiServerReadyz(kubeconfig(), 3_000);
    const before = connections;
    for (let i = 0; i < 3; i++) assert.equal((await probe()).ok, true);
    assert.equal(connections - before, 3);
  });
});
