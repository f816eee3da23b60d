/**
 * Every way a rollout can stop moving explains itself where operators look
 * (issue 13): a Warning Event on the route the policy names, keyed by that
 * object's UID, not only a log line. And a route deleted mid-rollout and
 * re-created does not silently take the revision under test as its
 * baseline: the rollout is recorded as interrupted and starts again.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { CoreV1Event } from "@kubernetes/client-node";
import { table } from "../../src/cli/status.ts";
import { KINDS } from "../../src/kube/kinds.ts";
import { eventually, jsonPatch } from "../support/cluster.ts";
import { httpRoute } from "../support/routes.ts";
import type { RolloutState } from "../../src/contract.ts";
import type { Scenario } from "../support/scenario.ts";
import { startWorld, type World } from "../support/world.ts";

void describe("stuck states explain themselves", { concurrency: true }, () => {
  let w: World;

  before(async () => {
    w = await startWorld();
  });

  after(async () => {
    await w?.stop();
  });

  const warning = (s: Scenario, reason: string): Promise<CoreV1Event> =>
    eventually(`${s.ns}: Warning ${reason}`, async () =>
      (await s.events()).find((e) => e.reason === reason && e.type === "Warning"),
    );

  void it("a policy whose route does not exist gets a RouteNotFound Warning naming it", async () => {
    const s = await w.scenario(httpRoute, "stuck-missing", { createRoute: false });
    s.writePolicy({ steps: [50, 100], interval: "1s" });
    const ev = await warning(s, "RouteNotFound");
    assert.match(ev.message ?? "", /HTTPRoute stuck-missing\/web not found; will retry when it changes/);
    assert.equal(ev.involvedObject.name, "web");
    assert.equal(ev.involvedObject.kind, "HTTPRoute");
  });

  void it("a route that no longer holds the pair gets a RouteInvalid Warning on that route, keyed by its UID", async () => {
    const s = await w.scenario(httpRoute, "stuck-pair");
    s.writePolicy({ steps: [50, 100], interval: "1h" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("step 1", (st) => st.phase === "Progressing");
    // Someone removes the canary's backendRef from the route.
    await jsonPatch(w.c, "HTTPRoute", s.ns, s.route, [{ op: "remove", path: "/spec/rules/1/backendRefs/1" }]);
    const ev = await warning(s, "RouteInvalid");
    assert.match(ev.message ?? "", /no rule whose backendRefs include both/);
    assert.equal(ev.involvedObject.uid, (await s.weightsObject()).metadata?.uid);
    // The persisted state says so too, and `rolloutd status` shows it instead of a step that no longer moves.
    const stuck = await s.until("state records why", (st) => st.stuck?.reason === "RouteInvalid");
    const line = table([{ namespace: s.ns, route: "httproute/web", state: stuck }], Date.now(), false).split(
      "\n",
    )[1]!;
    assert.match(line, /RouteInvalid: HTTPRoute stuck-pair\/web has no rule whose backendRefs include both/);
    // Put the canary back: the record clears, the rollout is where it was.
    await jsonPatch(w.c, "HTTPRoute", s.ns, s.route, [
      { op: "add", path: "/spec/rules/1/backendRefs/1", value: { name: s.canary, port: 80, weight: 50 } },
    ]);
    const back = await s.until("stuck cleared", (st) => st.stuck === undefined && st.phase === "Progressing");
    assert.equal(back.stepIndex, 0);
  });

  void it("a second policy on a managed route gets a PolicyConflict Warning naming the owner", async () => {
    const s = await w.scenario(httpRoute, "stuck-owner");
    s.writePolicy({ steps: [50, 100], interval: "1s" });
    await s.until("adopted", (st) => st.phase === "Steady");
    const second = s.policyYaml({ steps: [10, 100], interval: "1s" }).replace("name: web,", "name: zz-web,");
    writeFileSync(path.join(w.policiesDir, `${s.ns}-second.yaml`), second);
    const ev = await warning(s, "PolicyConflict");
    assert.match(ev.message ?? "", new RegExp(`policy ${s.ns}/web already manages HTTPRoute ${s.ns}/web`));
  });

  void it("a route deleted mid-rollout and re-created: the rollout is interrupted and starts again, not taken as the baseline", async () => {
    const s = await w.scenario(httpRoute, "stuck-deleted");
    s.writePolicy({ steps: [50, 100], interval: "1h" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    const running = await s.until("step 1", (st) => st.phase === "Progressing");
    const oldUid = (await s.weightsObject()).metadata?.uid;
    const k = KINDS.HTTPRoute;
    await w.c.custom.deleteNamespacedCustomObject({
      group: k.group,
      version: k.version,
      namespace: s.ns,
      plural: k.plural,
      name: s.route,
    });
    await warning(s, "RouteNotFound");
    // Re-created from its manifest: 100 % stable, no state.
    await httpRoute.create(w.c, s.ns, s.route, s.stable, s.canary);
    const again = await s.until(
      "the interrupted revision rolled out again",
      (st) => st.phase === "Progressing" && st.revision === running.revision,
    );
    assert.equal(again.stepIndex, 0, "from the first step");
    const ev = await warning(s, "RolloutInterrupted");
    assert.match(ev.message ?? "", /deleted during the rollout of web-v2 .* at step 1 \(50%\)/);
    const newUid = (await s.weightsObject()).metadata?.uid;
    assert.notEqual(newUid, oldUid);
    assert.equal(ev.involvedObject.uid, newUid, "the Event is on the new object, not the deleted one");
  });

  const whyLine = (s: Scenario, st: RolloutState): string =>
    table([{ namespace: s.ns, route: "httproute/web", state: st }], Date.now(), false).split("\n")[1]!;

  void it("parents that do not accept a step: RouteNotAccepted names the parent, status says so", async () => {
    const s = await w.scenario(httpRoute, "stuck-accept");
    w.gateway.holdNamespaces.add(s.ns);
    s.writePolicy({ steps: [50, 100], interval: "1s", extra: "  routeReadyTimeout: 1s" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    const ev = await warning(s, "RouteNotAccepted");
    assert.match(ev.message ?? "", /not accepted by every parent: Gateway stuck-accept\/gw/);
    const st = await s.until("state says why", (x) => x.acceptWarned === true);
    assert.match(whyLine(s, st), /not accepted by every parent/);
    w.gateway.holdNamespaces.delete(s.ns);
  });

  void it("weights changed by another writer: WeightsDrifted, paused, status says who changed what", async () => {
    const s = await w.scenario(httpRoute, "stuck-drift");
    s.writePolicy({ steps: [50, 100], interval: "1h" });
    await s.until("adopted", (st) => st.phase === "Steady");
    await s.shipCanary("2");
    await s.until("step 1", (st) => st.phase === "Progressing" && st.stepStartedAt !== undefined);
    await httpRoute.foreignWeights(w.c, s.ns, s.route, 70, 30);
    const ev = await warning(s, "WeightsDrifted");
    assert.match(ev.message ?? "", /weights changed by another writer/);
    const st = await s.until("paused by drift", (x) => x.phase === "Paused" && x.pausedBy === "drift");
    assert.match(whyLine(s, st), /Paused\(drift\).*weights changed by another writer/);
  });
});
