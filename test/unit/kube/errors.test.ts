/**
 * A Status the API server (or something in front of it) answers with, read
 * through both ways the daemon talks to it: KubeLeaseApi's plain requests,
 * against a plain local HTTP endpoint, and client-node's ApiException through
 * toKubeError. Both must give the same small error: status, reason, and a
 * message naming the request. A status of 600 or more is not HTTP and must
 * say so, not pass for a network error or a server error.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ApiException, KubeConfig } from "@kubernetes/client-node";
import { FIELD_MANAGER } from "../../../src/contract.ts";
import { KubeLeaseApi, type LeaseRecord } from "../../../src/fleet/lease.ts";
import { KubeApiError, toKubeError } from "../../../src/kube/errors.ts";
import { Receiver } from "../../support/receiver.ts";

const NS = "rolloutd-system";
const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;
const RECORD: LeaseRecord = { holderIdentity: "a", leaseDurationSeconds: 15, leaseTransitions: 0 };

/** A Status as the API server writes it (apimachinery's metav1.Status). */
function status(code: number, message: string, reason?: string): string {
  return JSON.stringify({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    ...(reason !== undefined ? { reason } : {}),
    details: { name: "rd-member-0", group: "coordination.k8s.io", kind: "leases" },
    code,
  });
}

interface Case {
  title: string;
  /** The Lease API call that meets the answer, and what it is named in errors. */
  call: "create" | "update" | "list";
  code: number;
  body: string;
  want: { status: number; reason: string; message: string };
}

const CASES: Case[] = [
  {
    title: "404 NotFound",
    call: "update",
    code: 404,
    body: status(404, 'leases.coordination.k8s.io "rd-member-0" not found', "NotFound"),
    want: {
      status: 404,
      reason: "NotFound",
      message: `update Lease ${NS}/rd-member-0: 404 NotFound leases.coordination.k8s.io "rd-member-0" not found`,
    },
  },
  {
    title: "409 Conflict on an update",
    call: "update",
    code: 409,
    body: status(
      409,
      'Operation cannot be fulfilled on leases.coordination.k8s.io "rd-member-0": the object has been modified; please apply your changes to the latest version and try again',
      "Conflict",
    ),
    want: {
      status: 409,
      reason: "Conflict",
      message: `update Lease ${NS}/rd-member-0: 409 Conflict Operation cannot be fulfilled on leases.coordination.k8s.io "rd-member-0": the object has been modified; please apply your changes to the latest version and try again`,
    },
  },
  {
    title: "409 AlreadyExists on a create",
    call: "create",
    code: 409,
    body: status(409, 'leases.coordination.k8s.io "rd-member-0" already exists', "AlreadyExists"),
    want: {
      status: 409,
      reason: "AlreadyExists",
      message: `create Lease ${NS}/rd-member-0: 409 AlreadyExists leases.coordination.k8s.io "rd-member-0" already exists`,
    },
  },
  {
    title: "500 with a Status that has no reason",
    call: "update",
    code: 500,
    body: status(500, "etcdserver: request timed out"),
    want: {
      status: 500,
      reason: "",
      message: `update Lease ${NS}/rd-member-0: 500  etcdserver: request timed out`,
    },
  },
  {
    title: "502 from a proxy, with a body that is not JSON",
    call: "list",
    code: 502,
    body: "<html><body>Bad Gateway</body></html>",
    want: {
      status: 502,
      reason: "",
      message: `list Leases in ${NS}: 502  <html><body>Bad Gateway</body></html>`,
    },
  },
  {
    title: "404 with a JSON body that is null",
    call: "update",
    code: 404,
    body: "null",
    want: { status: 404, reason: "", message: `update Lease ${NS}/rd-member-0: 404` },
  },
  {
    title: "600, which is not an HTTP status, with a Status body",
    call: "update",
    code: 600,
    body: status(600, "the object has been modified", "Conflict"),
    want: {
      status: 600,
      reason: "NotHTTP",
      message: `update Lease ${NS}/rd-member-0: answered with status 600, which is not an HTTP status (Conflict the object has been modified)`,
    },
  },
  {
    title: "799 with no body",
    call: "list",
    code: 799,
    body: "",
    want: {
      status: 799,
      reason: "NotHTTP",
      message: `list Leases in ${NS}: answered with status 799, which is not an HTTP status`,
    },
  },
];

const endpoint = new Receiver();
before(() => endpoint.start());
after(() => endpoint.close());

function kubeconfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // Plain HTTP is refused by the kubeconfig unless TLS checks are off.
    clusters: [{ name: "c", server: endpoint.url, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return kc;
}

/** The path each call sends, so the endpoint can be told what to answer there. */
const PATHS = {
  create: `${LEASES}?fieldManager=${FIELD_MANAGER}`,
  update: `${LEASES}/rd-member-0?fieldManager=${FIELD_MANAGER}`,
  list: `${LEASES}?labelSelector=${encodeURIComponent("rolloutd.dev/fleet=fleet-a")}`,
};

/** How the Lease API names each call in its errors. */
const WHAT = {
  create: `create Lease ${NS}/rd-member-0`,
  update: `update Lease ${NS}/rd-member-0`,
  list: `list Leases in ${NS}`,
};

/** The error `c`'s call rejects with when the endpoint answers `c.code` and `c.body` once. */
async function leaseError(c: Case): Promise<unknown> {
  endpoint.script.set(PATHS[c.call], [c.code]);
  endpoint.bodies.set(PATHS[c.call], c.body);
  const api = new KubeLeaseApi(kubeconfig(), NS, "fleet-a", 5_000);
  try {
    const call =
      c.call === "create"
        ? api.create("rd-member-0", RECORD)
        : c.call === "update"
          ? api.update("rd-member-0", "41", RECORD)
          : api.list();
    return await call.then(
      (res) => assert.fail(`answered: ${JSON.stringify(res)}`),
      (e: unknown) => e,
    );
  } finally {
    api.close();
  }
}

function fields(err: unknown): { status: number; reason: string; message: string } {
  assert.ok(err instanceof KubeApiError, String(err));
  return { status: err.status, reason: err.reason, message: err.message };
}

// A call that never settles fails its test instead of hanging the run.
const T = { timeout: 20_000 };

void describe("a Status answer reads the same through the Lease API and toKubeError", () => {
  for (const c of CASES) {
    void it(c.title, T, async () => {
      const viaLease = fields(await leaseError(c));
      assert.equal(endpoint.on(PATHS[c.call]).length > 0, true, "the request reached the endpoint");
      assert.deepEqual(viaLease, c.want);
      // client-node hands the body over as text, as it was answered.
      const thrown = new ApiException(c.code, "Unknown API Status Code!", c.body, {
        authorization: "Bearer t",
      });
      const viaClient = fields(toKubeError(thrown, WHAT[c.call]));
      assert.deepEqual(viaClient, c.want);
      // Nothing of the response headers leaks into the message.
      assert.doesNotMatch(viaClient.message, /Bearer|HTTP-Code/);
    });
  }

  void it("keeps isConflict and isNotFound to the HTTP statuses", () => {
    const at = (code: number) => toKubeError(new ApiException(code, "", "", {}), "x") as KubeApiError;
    assert.equal(at(409).isConflict, true);
    assert.equal(at(404).isNotFound, true);
    assert.equal(at(609).isConflict, false);
    assert.equal(at(604).isNotFound, false);
  });
});
