/**
 * Unit tests of OUR response classification and request building, against a tiny local HTTP server returning
 * canned Prometheus bodies. The real Prometheus is exercised in test/integration/prometheus.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { PrometheusClient, parseSampleValue } from "../../../src/analysis/prometheus.ts";
import type { QueryOutcome } from "../../../src/analysis/types.ts";
import type { PrometheusSpec } from "../../../src/policy/types.ts";
import { freeLoopbackPort } from "../../controlplane/prometheus.ts";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}
type Reply = (res: http.ServerResponse) => void;

function json(status: number, body: unknown): Reply {
  return (res) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
  };
}
const vector = (...values: [Record<string, string>, string][]): Reply =>
  json(200, {
    status: "success",
    data: {
      resultType: "vector",
      result: values.map(([metric, v]) => ({ metric, value: [1700000000.5, v] })),
    },
  });

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)),
  );
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

void describe("parseSampleValue", () => {
  void it("parses Prometheus float text, including the ones Number() gets wrong", () => {
    assert.equal(parseSampleValue("+Inf"), Infinity);
    assert.equal(parseSampleValue("Inf"), Infinity);
    assert.equal(parseSampleValue("-Inf"), -Infinity);
    assert.ok(Number.isNaN(parseSampleValue("NaN")));
    assert.equal(parseSampleValue("1e-3"), 0.001);
    assert.equal(parseSampleValue("-2.5E+10"), -2.5e10);
    assert.equal(parseSampleValue("42"), 42);
    for (const bad of ["", " 1", "0x10", "one", "1,5", null, 3])
      assert.equal(parseSampleValue(bad), undefined);
  });
});

void describe("PrometheusClient against canned responses", () => {
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      reply(res);
    });
  });
  let seen: Seen[] = [];
  let reply: Reply = vector();
  let port = 0;
  let dir = "";
  const clients: PrometheusClient[] = [];
  const client = (extra: Partial<PrometheusSpec> = {}, secretCacheMs = 0): PrometheusClient => {
    const c = new PrometheusClient(
      { url: `http://127.0.0.1:${port}/prom`, timeoutMs: 2000, ...extra },
      { secretCacheMs },
    );
    clients.push(c);
    return c;
  };
  async function outcome(r: Reply, c = client()): Promise<QueryOutcome> {
    reply = r;
    seen = [];
    return c.query("up", new Date(1_700_000_000_123));
  }
  function errorOf(o: QueryOutcome): { code: string; message: string } {
    if (o.kind !== "error") assert.fail(`expected an error, got ${JSON.stringify(o)}`);
    return o.error;
  }

  before(async () => {
    port = await listen(server);
    dir = mkdtempSync(join(tmpdir(), "rolloutd-prom-unit-"));
  });
  after(async () => {
    for (const c of clients) c.close();
    await close(server);
    rmSync(dir, { recursive: true, force: true });
  });

  void it("a cancelled query ends at once as an error coded cancelled, long before its timeout", async () => {
    // Never answers: the request stays open until the client gives up.
    reply = () => {};
    const controller = new AbortController();
    const pending = client({ timeoutMs: 60_000 }).query("up", new Date(), controller.signal);
    setTimeout(() => controller.abort(), 50);
    const o = await pending;
    assert.equal(errorOf(o).code, "cancelled");
  });

  void it("a cancelled range query ends at once as cancelled too, long before its timeout", async () => {
    reply = () => {};
    const controller = new AbortController();
    const range = { start: new Date(1_700_000_000_000), end: new Date(1_700_000_060_000), stepSeconds: 10 };
    const pending = client({ timeoutMs: 60_000 }).queryRange("up", range, controller.signal);
    setTimeout(() => controller.abort(), 50);
    const o = await pending;
    assert.equal(o.kind === "error" && o.error.code, "cancelled");
  });

  void it("POSTs a range query with start, end and step to <url>/api/v1/query_range", async () => {
    reply = json(200, {
      status: "success",
      data: { resultType: "matrix", result: [{ metric: {}, values: [[1_700_000_010, "2.5"]] }] },
    });
    seen = [];
    const range = { start: new Date(1_700_000_000_500), end: new Date(1_700_000_060_000), stepSeconds: 10 };
    assert.deepEqual(await client().queryRange("up", range), {
      kind: "series",
      points: [[1_700_000_010, 2.5]],
    });
    const s = seen[0]!;
    assert.equal(s.url, "/prom/api/v1/query_range");
    const form = new URLSearchParams(s.body);
    assert.deepEqual(
      [form.get("query"), form.get("start"), form.get("end"), form.get("step")],
      ["up", "1700000000.500", "1700000060.000", "10"],
    );
  });

  void it("POSTs a form with query and time to <url>/api/v1/query", async () => {
    assert.deepEqual(await outcome(vector([{}, "3"])), { kind: "value", value: 3 });
    const s = seen[0]!;
    assert.equal(s.method, "POST");
    assert.equal(s.url, "/prom/api/v1/query");
    assert.equal(s.headers["content-type"], "application/x-www-form-urlencoded");
    const form = new URLSearchParams(s.body);
    assert.equal(form.get("query"), "up");
    assert.equal(form.get("time"), "1700000000.123");
    assert.equal(s.headers.authorization, undefined);
  });

  void it("classifies values: plain, exponent, ±Inf are values, NaN is nan", async () => {
    assert.deepEqual(await outcome(vector([{ a: "b" }, "0.25"])), { kind: "value", value: 0.25 });
    assert.deepEqual(await outcome(vector([{}, "1e-3"])), { kind: "value", value: 0.001 });
    assert.deepEqual(await outcome(vector([{}, "+Inf"])), { kind: "value", value: Infinity });
    assert.deepEqual(await outcome(vector([{}, "-Inf"])), { kind: "value", value: -Infinity });
    assert.deepEqual(await outcome(vector([{}, "NaN"])), { kind: "nan" });
    const scalar = json(200, { status: "success", data: { resultType: "scalar", result: [1, "7"] } });
    assert.deepEqual(await outcome(scalar), { kind: "value", value: 7 });
  });

  void it("an empty vector is noData", async () => {
    assert.deepEqual(await outcome(vector()), { kind: "noData" });
  });

  void it("several series is multipleSeries, naming how many and the first label sets", async () => {
    const e = errorOf(await outcome(vector([{ pod: "a" }, "1"], [{ pod: "b" }, "2"])));
    assert.equal(e.code, "multipleSeries");
    assert.match(e.message, /2 series/);
    assert.match(e.message, /pod="a"/);
    assert.match(e.message, /pod="b"/);
  });

  void it("a Prometheus error body is prometheus with errorType and text", async () => {
    const body = {
      status: "error",
      errorType: "bad_data",
      error: 'invalid parameter "query": 1:5: parse error',
    };
    const e = errorOf(await outcome(json(400, body)));
    assert.equal(e.code, "prometheus");
    assert.match(e.message, /^bad_data: invalid parameter "query": 1:5: parse error/);
    assert.match(e.message, /HTTP 400/);
  });

  void it("HTTP 502 with an HTML body is http, body excerpt truncated", async () => {
    const html = `<html><body><h1>502 Bad Gateway</h1>${"x".repeat(5000)}</body></html>`;
    const e = errorOf(await outcome((res) => res.writeHead(502, { "content-type": "text/html" }).end(html)));
    assert.equal(e.code, "http");
    assert.match(e.message, /^HTTP 502 Bad Gateway: <html>/);
    assert.ok(e.message.length < 400, e.message);
  });

  void it("a 200 that is not JSON (a proxy page) is badResponse, truncated", async () => {
    const e = errorOf(
      await outcome((res) => res.writeHead(200).end(`<html>login ${"y".repeat(3000)}</html>`)),
    );
    assert.equal(e.code, "badResponse");
    assert.match(e.message, /not JSON: <html>login/);
    assert.ok(e.message.length < 400);
    assert.equal(errorOf(await outcome(json(200, { hello: 1 }))).code, "badResponse");
    assert.equal(errorOf(await outcome(vector([{}, "fast"]))).code, "badResponse");
    const matrix = json(200, { status: "success", data: { resultType: "matrix", result: [] } });
    assert.equal(errorOf(await outcome(matrix)).code, "badResponse");
  });

  void it("no answer within timeoutMs is timeout", async () => {
    const started = Date.now();
    const o = await outcome(() => undefined, client({ timeoutMs: 200 }));
    assert.equal(errorOf(o).code, "timeout");
    assert.ok(Date.now() - started < 1900, "the timeout, not the server, ended the call");
  });

  void it("connection refused on a closed port is unreachable", async () => {
    const closed = await freeLoopbackPort();
    const c = new PrometheusClient({ url: `http://127.0.0.1:${closed}`, timeoutMs: 2000 });
    clients.push(c);
    const e = errorOf(await c.query("up"));
    assert.equal(e.code, "unreachable");
    assert.match(e.message, /ECONNREFUSED/);
  });

  void it("sends the bearer token from its file and re-reads it when it rotates", async () => {
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, "tok-1\n");
    const c = client({ bearerTokenFile: tokenFile }, 0);
    await outcome(vector([{}, "1"]), c);
    assert.equal(seen[0]!.headers.authorization, "Bearer tok-1");
    writeFileSync(tokenFile, "tok-2");
    await outcome(vector([{}, "1"]), c);
    assert.equal(seen[0]!.headers.authorization, "Bearer tok-2");
  });

  void it("caches the token for secretCacheMs", async () => {
    const tokenFile = join(dir, "token-cached");
    writeFileSync(tokenFile, "a");
    const c = client({ bearerTokenFile: tokenFile }, 60_000);
    await outcome(vector([{}, "1"]), c);
    writeFileSync(tokenFile, "b");
    await outcome(vector([{}, "1"]), c);
    assert.equal(seen[0]!.headers.authorization, "Bearer a");
  });

  void it("a missing token file is unreachable without sending the request", async () => {
    const e = errorOf(await outcome(vector([{}, "1"]), client({ bearerTokenFile: join(dir, "nope") })));
    assert.equal(e.code, "unreachable");
    assert.match(e.message, /request not sent: .*nope/);
    assert.equal(seen.length, 0);
  });

  void it("sends basic auth with the password from its file", async () => {
    const pw = join(dir, "pw");
    writeFileSync(pw, "s3cret\n");
    await outcome(vector([{}, "1"]), client({ basicAuth: { username: "alice", passwordFile: pw } }));
    assert.equal(seen[0]!.headers.authorization, `Basic ${Buffer.from("alice:s3cret").toString("base64")}`);
  });
});

void describe("PrometheusClient over TLS", () => {
  const haveOpenssl = spawnSync("openssl", ["version"]).status === 0;
  let dir = "";
  let server: https.Server | undefined;
  let url = "";
  const clients: PrometheusClient[] = [];

  before(async () => {
    if (!haveOpenssl) return;
    dir = mkdtempSync(join(tmpdir(), "rolloutd-prom-tls-"));
    const r = spawnSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
    ]);
    assert.equal(r.status, 0, r.stderr.toString());
    server = https.createServer(
      { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) },
      (_req, res) => vector([{}, "5"])(res),
    );
    url = `https://127.0.0.1:${await listen(server)}`;
  });
  after(async () => {
    for (const c of clients) c.close();
    if (server !== undefined) await close(server);
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });
  const client = (extra: Partial<PrometheusSpec>): PrometheusClient => {
    const c = new PrometheusClient({ url, timeoutMs: 2000, ...extra });
    clients.push(c);
    return c;
  };

  void it(
    "rejects an unknown CA, trusts caFile, and skips verification when told",
    { skip: !haveOpenssl },
    async () => {
      const untrusted = await client({}).query("up");
      assert.equal(untrusted.kind === "error" && untrusted.error.code, "unreachable");
      assert.deepEqual(await client({ caFile: join(dir, "cert.pem") }).query("up"), {
        kind: "value",
        value: 5,
      });
      assert.deepEqual(await client({ insecureSkipVerify: true }).query("up"), { kind: "value", value: 5 });
    },
  );
});
