/**
 * The API connection is pooled: @kubernetes/client-node 2.x would build a new
 * undici Agent (a new TCP + TLS connection) for every request and every
 * watch; loadKubeConfig makes them share one per TLS configuration.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { HttpMethod, KubeConfig, RequestContext } from "@kubernetes/client-node";
import { loadKubeConfig } from "../../../src/kube/client.ts";

const kubeconfigYaml = (server: string, token: string) =>
  [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: c",
    "  cluster:",
    `    server: ${server}`,
    // Not a real certificate: only compared, never used for a handshake here.
    `    certificate-authority-data: ${Buffer.from("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").toString("base64")}`,
    "users:",
    "- name: u",
    "  user:",
    `    token: ${token}`,
    "contexts:",
    "- name: x",
    "  context: { cluster: c, user: u }",
    "current-context: x",
    "",
  ].join("\n");

async function dispatcherOf(kc: KubeConfig, url: string): Promise<{ dispatcher: unknown; auth: string }> {
  const ctx = new RequestContext(url, HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  return { dispatcher: ctx.getDispatcher(), auth: ctx.getHeaders().Authorization ?? "" };
}

void describe("loadKubeConfig", () => {
  void it("gives every request the same connection pool, while still authenticating each one", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "rolloutd-kc-"));
    try {
      const file = path.join(dir, "kubeconfig");
      writeFileSync(file, kubeconfigYaml("https://127.0.0.1:6443", "t0ken"));
      const kc = loadKubeConfig({ kubeconfig: file });
      const a = await dispatcherOf(kc, "https://127.0.0.1:6443/api/v1/namespaces");
      const b = await dispatcherOf(kc, "https://127.0.0.1:6443/apis/apps/v1/deployments?watch=true");
      assert.ok(a.dispatcher, "a TLS dispatcher is set");
      assert.equal(a.dispatcher, b.dispatcher, "one pool for API calls and watches");
      assert.equal(a.auth, "Bearer t0ken");
      assert.equal(b.auth, "Bearer t0ken");

      // Without it, the library builds a new one per request: the behaviour this guards against.
      const plain = new KubeConfig();
      plain.loadFromFile(file);
      const c = await dispatcherOf(plain, "https://127.0.0.1:6443/api");
      const d = await dispatcherOf(plain, "https://127.0.0.1:6443/api");
      assert.notEqual(c.dispatcher, d.dispatcher);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
