import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { servedKind, servedVersion, type DiscoveryGet } from "../../../src/kube/discovery.ts";
import { KINDS } from "../../../src/kube/kinds.ts";

/** Discovery documents of a cluster: group → versions (preferred first) → plurals. */
function cluster(groups: Record<string, Record<string, string[]>>): DiscoveryGet {
  return (path) => {
    if (path === "/apis") {
      return Promise.resolve({
        groups: Object.entries(groups).map(([name, versions]) => ({
          name,
          versions: Object.keys(versions).map((version) => ({ version })),
          preferredVersion: { version: Object.keys(versions)[0] },
        })),
      });
    }
    const [, , group, version] = path.split("/");
    const plurals = groups[group!]?.[version!];
    return Promise.resolve(plurals ? { resources: plurals.map((name) => ({ name })) } : undefined);
  };
}

void describe("discovery: the version of a kind the cluster serves", () => {
  void it("AWS's CRDs: v1beta2", async () => {
    const get = cluster({
      "appmesh.k8s.aws": { v1beta2: ["gatewayroutes", "virtualservices", "virtualrouters"] },
    });
    assert.equal(await servedVersion(get, KINDS.GatewayRoute), "v1beta2");
    assert.equal((await servedKind(get, KINDS.GatewayRoute)).version, "v1beta2");
  });

  void it("the design document's GatewayRoute at v1beta1 beside AWS's v1beta2 routers", async () => {
    const get = cluster({
      "appmesh.k8s.aws": { v1beta2: ["virtualservices", "virtualrouters"], v1beta1: ["gatewayroutes"] },
    });
    assert.equal((await servedKind(get, KINDS.GatewayRoute)).version, "v1beta1");
    assert.equal((await servedKind(get, KINDS.VirtualRouter)).version, "v1beta2");
  });

  void it("the group's preferred version first when both serve the kind", async () => {
    const get = cluster({ "appmesh.k8s.aws": { v1beta1: ["gatewayroutes"], v1beta2: ["gatewayroutes"] } });
    assert.equal(await servedVersion(get, KINDS.GatewayRoute), "v1beta1");
  });

  void it("a version rolloutd does not speak is never chosen; nothing served: the declared kind", async () => {
    const get = cluster({ "appmesh.k8s.aws": { v1: ["gatewayroutes"] } });
    assert.equal(await servedVersion(get, KINDS.GatewayRoute), undefined);
    assert.equal((await servedKind(get, KINDS.GatewayRoute)).version, "v1beta2");
    assert.equal(await servedVersion(cluster({}), KINDS.GatewayRoute), undefined);
  });
});
