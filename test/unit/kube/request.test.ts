/**
 * kubeRequest, the shared part of the daemon's plain calls to the API server
 * (Leases, /readyz, discovery), against a plain local HTTP endpoint: what it
 * sends, what it hands back, how it gives up on a silent server, and that it
 * rides the pool's kept-alive connection.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { AgentPool } from "../../../src/kube/agents.ts";
import { kubeRequest, NoAnswerError } from "../../../src/kube/request.ts";
import { Receiver, type Received } from "../../support/receiver.ts";

const endpoint = new Receiver();
const CONFLICT = JSON.stringify({
  kind: "Status",
  reason: "Conflict",
  message: "the object has been modified",
});

before(async () => {
  await endpoint.start();
  endpoint.hanging.add("/hang/readyz");
  endpoint.script.set("/conflict", [409]);
  endpoint.bodies.set("/conflict", CONFLICT);
  // 1 MB: the client reads it in chunks of at most 64 KiB.
  endpoint.bodies.set("/long", Array.from({ length: 1000 }, (_, i) => String(i % 10).repeat(1000)).join(""));
});

after(() => endpoint.close());

function kubeconfig(server = endpoint.url): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server, skipTLSVerify: true }],
    users: [{ name: "u", token: "secret-token" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return kc;
}

function last(): Received {
  const got = endpoint.got.at(-1);
  assert.ok(got, "the endpoint saw no request");
  return got;
}

/** The NoAnswerError `call` rejects with; fails if it resolves or rejects with anything else. */
async function noAnswer(call: Promise<unknown>): Promise<NoAnswerError> {
  const err = await call.then(
    (res) => assert.fail(`answered: ${JSON.stringify(res)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof NoAnswerError, String(err));
  return err;
}

// A call that never settles fails its test instead of hanging the run.
const T = { timeout: 20_000 };

void describe("kubeRequest", () => {
  void it(
    "sends the body as JSON with its Content-Length in bytes, and the kubeconfig's credentials",
    T,
    async () => {
      const pool = new AgentPool();
      // Multi-byte characters: a length counted in characters would cut the body short.
      const body = { metadata: { name: "café-☃" }, spec: { holderIdentity: "ü" } };
      const res = await kubeRequest(kubeconfig(), pool, {
        method: "PUT",
        path: "/apis/x?fieldManager=rolloutd",
        body,
        accept: "application/json",
        timeoutMs: 5_000,
      });
      const got = last();
      assert.equal(got.path, "/apis/x?fieldManager=rolloutd");
      assert.equal(got.headers["content-length"], String(Buffer.byteLength(JSON.stringify(body))));
      assert.equal(got.headers["transfer-encoding"], undefined);
      assert.equal(got.headers["content-type"], "application/json");
      assert.equal(got.headers.accept, "application/json");
      assert.equal(got.headers.authorization, "Bearer secret-token");
      assert.deepEqual(JSON.parse(got.body), body);
      assert.deepEqual(res, { status: 200, text: "ok" });
      pool.close();
    },
  );

  void it("sends no body, Content-Type or Accept when none is asked for", T, async () => {
    await kubeRequest(kubeconfig(), undefined, { method: "GET", path: "/readyz", timeoutMs: 5_000 });
    const got = last();
    assert.equal(got.body, "");
    assert.equal(got.headers["content-length"], undefined);
    assert.equal(got.headers["content-type"], undefined);
    assert.equal(got.headers.accept, undefined);
  });

  void it("hands back any status with its body, for the caller to judge", T, async () => {
    const res = await kubeRequest(kubeconfig(), undefined, {
      method: "POST",
      path: "/conflict",
      body: {},
      timeoutMs: 5_000,
    });
    assert.deepEqual(res, { status: 409, text: CONFLICT });
  });

  void it("keeps a path prefix in the kubeconfig's server URL", T, async () => {
    await kubeRequest(kubeconfig(`${endpoint.url}/k8s/clusters/c-1/`), undefined, {
      method: "GET",
      path: "/readyz",
      timeoutMs: 5_000,
    });
    assert.equal(last().path, "/k8s/clusters/c-1/readyz");
  });

  void it("keeps about maxBody bytes of a long body and still reuses the connection", T, async () => {
    const pool = new AgentPool();
    const kc = kubeconfig();
    const before = endpoint.connections;
    const res = await kubeRequest(kc, pool, {
      method: "GET",
      path: "/long",
      timeoutMs: 5_000,
      maxBody: 2000,
    });
    assert.equal(res.status, 200);
    assert.ok(res.text.length >= 2000 && res.text.length < 200_000, `kept ${res.text.length} bytes`);
    assert.ok(res.text.startsWith("0".repeat(1000) + "1".repeat(1000)), "kept the start of the body");
    // The rest was read to the end, so the connection is free for the next call.
    await kubeRequest(kc, pool, { method: "GET", path: "/after-long", timeoutMs: 5_000 });
    assert.equal(endpoint.connections - before, 1);
    pool.close();
  });

  void it("cuts a silent server at the timeout, with an error naming the request", T, async () => {
    const pool = new AgentPool();
    const err = await noAnswer(
      kubeRequest(kubeconfig(), pool, { method: "GET", path: "/hang/readyz", timeoutMs: 200 }),
    );
    assert.equal(err.message, "GET /hang/readyz: no answer within 200 ms");
    assert.equal(err.stage, "connection");
    assert.equal(err.detail, "no answer within 200 ms");
    assert.ok(err.cause instanceof Error);
    pool.close();
  });

  void it("names the request and keeps Node's error when the connection is refused", T, async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const err = await noAnswer(
      kubeRequest(kubeconfig(`http://127.0.0.1:${port}`), undefined, {
        method: "GET",
        path: "/apis",
        timeoutMs: 5_000,
      }),
    );
    assert.equal(err.stage, "connection");
    assert.match(err.message, /^GET \/apis: connect ECONNREFUSED/);
    assert.equal((err.cause as { code?: string }).code, "ECONNREFUSED");
  });

  void it("says so when the kubeconfig names no server", T, async () => {
    const err = await noAnswer(
      kubeRequest(new KubeConfig(), undefined, { method: "GET", path: "/readyz", timeoutMs: 5_000 }),
    );
    assert.equal(err.stage, "server");
    assert.equal(err.message, "GET /readyz: no API server in the kubeconfig");
  });

  void it("reuses one kept-alive connection across calls through the pool", T, async () => {
    const pool = new AgentPool();
    const kc = kubeconfig();
    const before = endpoint.connections;
    for (let i = 0; i < 4; i++) {
      const res = await kubeRequest(kc, pool, {
        method: "PUT",
        path: `/lease/${i}`,
        body: { i },
        timeoutMs: 5_000,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(last().body), { i });
    }
    assert.equal(endpoint.connections - before, 1);
    pool.close();
  });

  void it("opens a connection per call without a pool (what the pool saves)", T, async () => {
    const kc = kubeconfig();
    const before = endpoint.connections;
    for (let i = 0; i < 3; i++)
      await kubeRequest(kc, undefined, { method: "GET", path: "/x", timeoutMs: 5_000 });
    assert.equal(endpoint.connections - before, 3);
  });
});
