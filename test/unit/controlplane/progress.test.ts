/**
 * The first-run build shows how far it is, as a fraction and a percentage
 * with an estimate of the time left (a real build: test/integration/buildprogress.test.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { progressLine } from "../../controlplane/build.ts";

void describe("control-plane build progress", () => {
  void it("says done/total, a percentage and, once there is something to go by, the time left", () => {
    assert.equal(
      progressLine("kube-apiserver (1 of 2)", 0, 1873, 0),
      "  kube-apiserver (1 of 2): 0/1873 packages (0 %), 0 s so far, estimating time left…",
    );
    assert.equal(
      progressLine("etcd", 468, 1872, 60_000),
      "  etcd: 468/1872 packages (25 %), 60 s so far, about 3 min left",
    );
    assert.equal(
      progressLine("etcd", 1872, 1872, 240_000),
      "  etcd: 1872/1872 packages (100 %), 4 min so far",
    );
    assert.equal(progressLine("etcd", 40, undefined, 12_000), "  etcd: 40 packages compiled, 12 s so far");
  });
});
