/**
 * Live traffic for the sandbox's analysed policy (demo/frontend): two
 * prom-client backends, a real Prometheus scraping them every second, and
 * the weighted test gateway sending load by the HTTPRoute's current weights.
 */
import { startPrometheus, type PrometheusHandle } from "../controlplane/prometheus.ts";
import { startBackend, type TestBackend } from "../support/backend.ts";
import type { Cluster } from "../support/cluster.ts";
import { LoadGenerator, TestGateway } from "../support/gateway.ts";

export interface Traffic {
  prometheusUrl: string;
  backends: Record<"frontend-v1" | "frontend-v2", TestBackend>;
  /** Starts the gateway and load once the route exists. */
  follow(cluster: Cluster): Promise<void>;
  stop(): Promise<void>;
}

export async function startTraffic(
  _cluster: Cluster,
  say: (line: string) => void,
): Promise<Traffic | undefined> {
  const [v1, v2] = await Promise.all([
    startBackend("frontend-v1", "demo"),
    startBackend("frontend-v2", "demo"),
  ]);
  let prom: PrometheusHandle;
  try {
    prom = await startPrometheus({
      targets: [v1, v2].map((b) => ({ job: "frontend", url: b.metricsUrl })),
      scrapeIntervalSeconds: 1,
    });
  } catch (err) {
    say(
      `no Prometheus for the demo (${err instanceof Error ? err.message : String(err)}): analysis is left out`,
    );
    await Promise.all([v1.stop(), v2.stop()]);
    return undefined;
  }
  say(`Prometheus ${prom.url} scraping two test backends (frontend-v1, frontend-v2) every second`);
  let gateway: TestGateway | undefined;
  let load: LoadGenerator | undefined;
  return {
    prometheusUrl: prom.url,
    backends: { "frontend-v1": v1, "frontend-v2": v2 },
    follow: async (cluster) => {
      gateway = new TestGateway(cluster.kc, {
        kind: "HTTPRoute",
        namespace: "demo",
        name: "frontend",
        stable: v1,
        canary: v2,
      });
      await gateway.start();
      // Bounded: 60 requests/s for at most 15 minutes, loopback only.
      load = new LoadGenerator(gateway, { rps: 60, maxRequests: 60 * 900, maxDurationMs: 900_000 }).start();
      say("test gateway sends 60 requests/s to demo/frontend, split by the HTTPRoute's weights");
    },
    stop: async () => {
      load?.stop();
      gateway?.stop();
      await prom.stop();
      await Promise.all([v1.stop(), v2.stop()]);
    },
  };
}
