/**
 * The sandbox demo: the objects the example policies name, then the events a
 * team and an on-call engineer would cause — new canary revisions, and one
 * abort by annotation — narrated as the persisted rollout state changes.
 */
import type { Traffic } from "./traffic.ts";
import {
  annotate,
  createNamespace,
  createObject,
  deployment,
  eventually,
  markRolledOut,
  shipRevision,
  type Cluster,
} from "../support/cluster.ts";
import {
  appMeshVirtualRouter,
  FakeGatewayStatus,
  grpcRoute,
  httpRoute,
  readWeightsObject,
  stateOf,
  weightedGatewayRoute,
  type RouteFamily,
} from "../support/routes.ts";
import { type RolloutState, describeState } from "../../src/contract.ts";

const NS = "demo";

interface DemoRoute {
  policy: string;
  route: string;
  family: RouteFamily;
  stable: string;
  canary: string;
  deployments: [string, string];
  /** What the demo does once the rollout runs. */
  ending: "promote" | "abort" | "promote-then-rollback";
}

const ROUTES: DemoRoute[] = [
  {
    policy: "checkout",
    route: "checkout",
    family: weightedGatewayRoute,
    stable: "checkout-v1",
    canary: "checkout-v2",
    deployments: ["checkout-v1", "checkout-v2"],
    ending: "promote",
  },
  {
    policy: "payments",
    route: "payments",
    family: appMeshVirtualRouter,
    stable: "payments-v1",
    canary: "payments-v2",
    deployments: ["payments-blue", "payments-green"],
    ending: "abort",
  },
  {
    policy: "frontend",
    route: "frontend",
    family: httpRoute,
    stable: "frontend-v1",
    canary: "frontend-v2",
    deployments: ["frontend-v1", "frontend-v2"],
    ending: "promote-then-rollback",
  },
  {
    policy: "storefront",
    route: "storefront",
    family: httpRoute,
    stable: "storefront-v1",
    canary: "storefront-v2",
    deployments: ["storefront-v1", "storefront-v2"],
    ending: "promote",
  },
  {
    policy: "search",
    route: "search",
    family: grpcRoute,
    stable: "search-v1",
    canary: "search-v2",
    deployments: ["search-v1", "search-v2"],
    ending: "promote",
  },
];

export interface Demo {
  done: Promise<{ ok: boolean; detail?: string }>;
  stop(): Promise<void>;
}

function describe(s: RolloutState, w: Record<string, number>): string {
  const weights = Object.entries(w)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  return `${s.phase.padEnd(11)} ${weights.padEnd(42)} ${describeState(s)}`;
}

export function runSandboxDemo(c: Cluster, say: (line: string) => void, traffic: Traffic | undefined): Demo {
  const gateway = new FakeGatewayStatus(c);
  let stopped = false;

  const done = (async () => {
    await gateway.start();
    await createNamespace(c, NS);
    for (const r of ROUTES) {
      for (const d of r.deployments) {
        await createObject(c, "Deployment", deployment(NS, d, "1"));
        await markRolledOut(c, NS, d);
      }
      await r.family.create(c, NS, r.route, r.stable, r.canary);
    }
    say(
      `created namespace ${NS}: Deployments, an App Mesh GatewayRoute (weighted), a GatewayRoute → VirtualService → VirtualRouter chain, two HTTPRoutes (one blue/green) and a GRPCRoute (with a header stage)`,
    );

    await traffic?.follow(c);

    // Narrate every change of each rollout's persisted state.
    const last = new Map<string, string>();
    const narrate = async () => {
      for (const r of ROUTES) {
        const obj = await readWeightsObject(c, r.family, NS, r.route).catch(() => undefined);
        const s = obj && stateOf(obj);
        if (!obj || !s) continue;
        const line = describe(s, r.family.weights(obj));
        if (last.get(r.policy) !== line) {
          last.set(r.policy, line);
          say(`${`${NS}/${r.policy}`.padEnd(14)} ${line}`);
        }
      }
    };
    const ticker = setInterval(() => void narrate().catch(() => {}), 250);
    try {
      const stateOfRoute = async (r: DemoRoute) => stateOf(await readWeightsObject(c, r.family, NS, r.route));
      for (const r of ROUTES)
        await eventually(
          `${r.policy} adopted`,
          async () => (await stateOfRoute(r))?.phase === "Steady",
          60_000,
        );

      say("a team ships a new version: every canary Deployment gets a new pod template (image :2)");
      for (const r of ROUTES) await shipRevision(c, NS, r.deployments[1], "2");

      const abort = ROUTES.find((r) => r.ending === "abort")!;
      await eventually(
        "payments at step 2",
        async () => ((await stateOfRoute(abort))?.stepIndex ?? -1) >= 1,
        60_000,
      );
      say(
        `on-call: kubectl annotate gatewayroute ${abort.route} -n ${NS} rolloutd.dev/abort=true rolloutd.dev/abort-reason="payment errors (sandbox demo)"`,
      );
      await annotate(c, abort.family.targetKind, NS, abort.route, {
        "rolloutd.dev/abort": "true",
        "rolloutd.dev/abort-reason": "payment errors (sandbox demo)",
      });

      for (const r of ROUTES) {
        const want = r.ending === "abort" ? "Aborted" : "Promoted";
        await eventually(`${r.policy} ${want}`, async () => (await stateOfRoute(r))?.phase === want, 180_000);
      }

      const analysed = ROUTES.find((r) => r.ending === "promote-then-rollback")!;
      if (traffic) {
        const promoted = await stateOfRoute(analysed);
        say(
          `${NS}/${analysed.policy} was promoted on measured values: ${promoted?.lastAnalysis?.summary ?? "?"}`,
        );
        say(`the next release of ${analysed.stable} (now the canary) is slow: its backend answers in 800 ms`);
        traffic.backends["frontend-v1"].setBehaviour({ latencyMs: 800 });
        await shipRevision(c, NS, analysed.deployments[0], "3");
        const rolledBack = await eventually(
          `${analysed.policy} RolledBack`,
          async () => {
            const s = await stateOfRoute(analysed);
            return s?.phase === "RolledBack" ? s : undefined;
          },
          180_000,
        );
        say(`rolled back for a measured reason: ${rolledBack.message}`);
      }
      await narrate();
      return { ok: true };
    } catch (err) {
      return { ok: stopped, detail: err instanceof Error ? err.message : String(err) };
    } finally {
      clearInterval(ticker);
    }
  })();

  return {
    done,
    stop: async () => {
      stopped = true;
      gateway.stop();
      await Promise.resolve();
    },
  };
}
