/**
 * Floor program: Node 24 renewing one Lease every 2 s (client-go's retry period, which rolloutd's fleet keeps)
 * the cheapest way Node can: node:https over one keep-alive connection, a bearer token, a JSON PUT carrying
 * the resourceVersion of the last answer. No client library, no logging, no metrics: the CPU any Node
 * controller spends to hold a Lease, below which rolloutd cannot go while it renews at that period.
 */
import https from "node:https";

const server = new URL(process.env["FLOOR_SERVER"] ?? "");
const token = process.env["FLOOR_TOKEN"] ?? "";
const ca = process.env["FLOOR_CA"] ?? "";
const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
const path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/floor";

function send(
  method: string,
  url: string,
  body: object,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(url, server),
      {
        method,
        agent,
        headers: {
          Authorization: `Bearer ${token}`,
          "Content-Type": "application/json",
          "Content-Length": text.length,
        },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (data += c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) as Record<string, unknown> }),
        );
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

/** RFC 3339 with microseconds, as the API server wants a MicroTime. */
const micro = () => new Date().toISOString().replace("Z", "000Z");

let lease: Record<string, unknown> = {
  apiVersion: "coordination.k8s.io/v1",
  kind: "Lease",
  metadata: { name: "floor", namespace: "default" },
  spec: { holderIdentity: "floor", leaseDurationSeconds: 15, acquireTime: micro(), renewTime: micro() },
};
const created = await send("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease);
if (created.status !== 201) throw new Error(`creating the Lease answered ${created.status}`);
lease = created.json;
setInterval(() => {
  (lease["spec"] as Record<string, unknown>)["renewTime"] = micro();
  void send("PUT", path, lease).then((r) => {
    if (r.status !== 200) throw new Error(`renewal answered ${r.status}`);
    lease = r.json;
  });
}, 2000);
