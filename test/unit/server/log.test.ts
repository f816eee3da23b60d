import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { it } from "node:test";
import { createLogger } from "../../../src/log.ts";

void it("logs JSON lines with level and msg, and redacts credentials wherever they appear", () => {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on("data", (d: Buffer) => chunks.push(d.toString()));
  const log = createLogger({ level: "info", destination: out });
  log.child({ policy: "shop/checkout", route: "HTTPRoute/shop/checkout" }).info(
    {
      request: { headers: { authorization: "Bearer s3cr3t" } },
      prometheus: { password: "hunter2", url: "http://p:9090" },
    },
    "querying",
  );
  log.debug("not at info level");
  const lines = chunks.join("").trim().split("\n");
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]!) as Record<string, any>;
  assert.equal(line.level, "info");
  assert.equal(line.msg, "querying");
  assert.equal(line.policy, "shop/checkout");
  assert.equal(line.route, "HTTPRoute/shop/checkout");
  assert.equal(line.request.headers.authorization, "[redacted]");
  assert.equal(line.prometheus.password, "[redacted]");
  assert.equal(line.prometheus.url, "http://p:9090");
  assert.doesNotMatch(lines[0]!, /s3cr3t|hunter2/);
});
