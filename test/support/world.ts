/**
 * The world most end-to-end suites start from: a real control plane with the
 * traffic CRDs, a stand-in gateway writing Gateway API parent status, a
 * policies folder, and the daemon as a process watching it. Scenarios made
 * through it are closed with it, so a suite's before/after is two lines.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startCluster, type Cluster } from "./cluster.ts";
import { startDaemon, type DaemonProcess } from "./daemon.ts";
import { FakeGatewayStatus, type RouteFamily } from "./routes.ts";
import { Scenario, type GivenOptions } from "./scenario.ts";

export interface World {
  c: Cluster;
  gateway: FakeGatewayStatus;
  daemon: DaemonProcess;
  policiesDir: string;
  /** Given: a namespace with both Deployments rolled out and (unless told otherwise) the route. */
  scenario(fam: RouteFamily, ns: string, opts?: GivenOptions): Promise<Scenario>;
  /** Stops everything; returns the daemon's exit code. */
  stop(): Promise<number | null>;
}

export async function startWorld(
  opts: { daemonArgs?: string[]; apiServerArgs?: string[] } = {},
): Promise<World> {
  const c = await startCluster(opts.apiServerArgs ? { apiServerArgs: opts.apiServerArgs } : {});
  const gateway = new FakeGatewayStatus(c);
  const policiesDir = mkdtempSync(path.join(tmpdir(), "rolloutd-policies-"));
  const scenarios: Scenario[] = [];
  let daemon: DaemonProcess | undefined;
  const stop = async (): Promise<number | null> => {
    for (const s of scenarios) s.close();
    gateway.stop();
    const code = (await daemon?.stop()) ?? null;
    await daemon?.dispose();
    await c.stop();
    rmSync(policiesDir, { recursive: true, force: true });
    return code;
  };
  try {
    await gateway.start();
    daemon = await startDaemon({
      kubeconfig: c.cp.kubeconfigPath,
      policiesDir,
      ...(opts.daemonArgs ? { extraArgs: opts.daemonArgs } : {}),
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    c,
    gateway,
    daemon,
    policiesDir,
    scenario: async (fam, ns, o) => {
      const s = new Scenario(c, fam, ns, policiesDir);
      scenarios.push(s);
      return s.given(o);
    },
    stop,
  };
}
