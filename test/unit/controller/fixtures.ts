/** The policy the controller's unit tests drive: shop/web on an App Mesh VirtualRouter, blue → green. */
import type { RolloutPolicy } from "../../../src/policy/types.ts";

export const SHOP_WEB: RolloutPolicy = {
  key: "shop/web",
  name: "web",
  namespace: "shop",
  target: { kind: "VirtualRouter", name: "web" },
  stable: "blue",
  canary: "green",
  deployments: {},
  steps: [10, 50, 100],
  intervalMs: 60_000,
  routeReadyTimeoutMs: 30_000,
  source: { file: "web.yaml", line: 1, column: 1 },
};
