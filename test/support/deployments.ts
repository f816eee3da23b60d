/**
 * Deployments as users have them, not the one-container Deployment of
 * cluster.ts: a native sidecar (an init container with `restartPolicy:
 * Always`), several containers with probes, quantities, env from the
 * downward API and Secrets, volumes, security contexts, spread constraints, a
 * rolling-update strategy in percent, and the newest pod fields the control
 * plane here serves. Their pod templates are what a revision hashes, so they
 * are the objects on which a typed client's model and the JSON as served can
 * part ways.
 */
import type { KObject } from "../../src/kube/kinds.ts";

/**
 * Feature gates for the API server, so that it keeps (instead of dropping)
 * the alpha pod fields of its version (v1.34): env from a file
 * (`fileKeyRef`), per-exit-code restart rules, a hostname override, a
 * container's stop signal.
 */
export const NEWEST_POD_FIELD_GATES =
  "--feature-gates=EnvFiles=true,ContainerRestartRules=true,HostnameOverride=true,ContainerStopSignals=true";

/**
 * The date-time fields a pod template may carry: its ObjectMeta's. The API
 * server keeps what a manifest sets there (a template made from a Pod's
 * metadata as `kubectl get pod -o yaml --show-managed-fields` prints it).
 * `null` (what `kubectl create --dry-run -o yaml` writes) is dropped by the server.
 */
export const TEMPLATE_TIMESTAMPS = {
  creationTimestamp: { creationTimestamp: "2025-03-04T05:06:07Z" },
  managedFields: {
    managedFields: [
      {
        manager: "kubectl-client-side-apply",
        operation: "Update",
        apiVersion: "v1",
        time: "2025-03-04T05:06:07Z",
        fieldsType: "FieldsV1",
        fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:app": {} } } },
      },
    ],
  },
  deletionTimestamp: { deletionTimestamp: "2025-03-04T05:06:07Z" },
} as const;

export interface RealisticOptions {
  /** More of the pod template's metadata (TEMPLATE_TIMESTAMPS). */
  templateMetadata?: Record<string, unknown>;
  /** With the alpha fields NEWEST_POD_FIELD_GATES lets the server keep. */
  alphaFields?: boolean;
}

/** A Deployment of a web service with a mesh sidecar and a log shipper; `version` is in the app's image. */
export function realisticDeployment(
  ns: string,
  name: string,
  version: string,
  opts: RealisticOptions = {},
): KObject {
  const alpha = opts.alphaFields === true;
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name,
      namespace: ns,
      labels: { app: name, "app.kubernetes.io/part-of": "shop" },
      annotations: { "example.com/owner": "team-checkout" },
    },
    spec: {
      replicas: 3,
      revisionHistoryLimit: 5,
      progressDeadlineSeconds: 600,
      minReadySeconds: 5,
      selector: { matchLabels: { app: name } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: "25%", maxUnavailable: 0 } },
      template: {
        metadata: {
          labels: { app: name, tier: "web" },
          annotations: {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9090",
            "kubectl.kubernetes.io/default-container": "app",
          },
          ...opts.templateMetadata,
        },
        spec: {
          ...(alpha ? { os: { name: "linux" }, hostnameOverride: `${name}-pod` } : {}),
          serviceAccountName: name,
          hostUsers: false,
          // Pod-level resources (beta, on by default in v1.34).
          resources: { requests: { cpu: "1", memory: "2Gi" }, limits: { cpu: "3", memory: "3Gi" } },
          initContainers: [
            {
              name: "mesh-proxy",
              image: "envoyproxy/envoy:v1.31.2",
              restartPolicy: "Always",
              args: ["--config-path", "/etc/envoy/envoy.yaml"],
              ports: [{ containerPort: 15001, name: "proxy" }],
              startupProbe: {
                httpGet: { path: "/ready", port: 15021 },
                periodSeconds: 1,
                failureThreshold: 30,
              },
              readinessProbe: { httpGet: { path: "/ready", port: 15021 }, periodSeconds: 5 },
              resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
              volumeMounts: [{ name: "envoy-config", mountPath: "/etc/envoy", readOnly: true }],
            },
          ],
          containers: [
            {
              name: "app",
              image: `example.com/${name}:${version}`,
              imagePullPolicy: "IfNotPresent",
              ports: [
                { containerPort: 8080, name: "http" },
                { containerPort: 9090, name: "metrics" },
              ],
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
                { name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
                {
                  name: "GOMAXPROCS",
                  valueFrom: { resourceFieldRef: { resource: "limits.cpu", divisor: "1" } },
                },
                { name: "LOG_LEVEL", value: "info" },
                ...(alpha
                  ? [
                      {
                        name: "BUILD",
                        valueFrom: { fileKeyRef: { volumeName: "scratch", path: "b.env", key: "B" } },
                      },
                    ]
                  : []),
              ],
              envFrom: [{ configMapRef: { name: `${name}-env`, optional: true } }],
              resources: {
                requests: { cpu: "500m", memory: "1Gi", "ephemeral-storage": "1Gi" },
                limits: { cpu: "2", memory: "1Gi", "ephemeral-storage": "2Gi" },
              },
              resizePolicy: [
                { resourceName: "cpu", restartPolicy: "NotRequired" },
                { resourceName: "memory", restartPolicy: "RestartContainer" },
              ],
              livenessProbe: {
                httpGet: { path: "/healthz", port: "http", httpHeaders: [{ name: "X-Probe", value: "1" }] },
                initialDelaySeconds: 10,
                timeoutSeconds: 2,
                failureThreshold: 3,
              },
              readinessProbe: { grpc: { port: 9091, service: "readiness" }, periodSeconds: 3 },
              startupProbe: { tcpSocket: { port: 8080 }, failureThreshold: 30, periodSeconds: 2 },
              lifecycle: {
                preStop: { sleep: { seconds: 5 } },
                ...(alpha ? { stopSignal: "SIGTERM" } : {}),
              },
              securityContext: {
                runAsNonRoot: true,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ["ALL"] },
                seccompProfile: { type: "RuntimeDefault" },
              },
              volumeMounts: [
                { name: "config", mountPath: "/etc/app", readOnly: true },
                { name: "scratch", mountPath: "/tmp" },
              ],
              ...(alpha
                ? {
                    restartPolicy: "Never",
                    restartPolicyRules: [{ action: "Restart", exitCodes: { operator: "In", values: [42] } }],
                  }
                : {}),
            },
            {
              name: "log-shipper",
              image: "fluent/fluent-bit:3.1",
              args: ["-c", "/fluent-bit/etc/fluent-bit.conf"],
              resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "128Mi" } },
              volumeMounts: [{ name: "scratch", mountPath: "/var/log/app", readOnly: true }],
            },
          ],
          volumes: [
            {
              name: "config",
              configMap: {
                name: `${name}-config`,
                defaultMode: 0o444,
                items: [{ key: "app.yaml", path: "app.yaml" }],
              },
            },
            { name: "envoy-config", configMap: { name: "envoy" } },
            { name: "scratch", emptyDir: { sizeLimit: "500Mi" } },
          ],
          securityContext: {
            fsGroup: 2000,
            runAsUser: 1000,
            runAsGroup: 3000,
            supplementalGroups: [4000],
            fsGroupChangePolicy: "OnRootMismatch",
          },
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: "topology.kubernetes.io/zone",
              whenUnsatisfiable: "ScheduleAnyway",
              labelSelector: { matchLabels: { app: name } },
              matchLabelKeys: ["pod-template-hash"],
            },
          ],
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                {
                  weight: 100,
                  podAffinityTerm: {
                    topologyKey: "kubernetes.io/hostname",
                    labelSelector: { matchLabels: { app: name } },
                  },
                },
              ],
            },
          },
          tolerations: [{ key: "dedicated", operator: "Equal", value: "web", effect: "NoSchedule" }],
          terminationGracePeriodSeconds: 45,
          priorityClassName: "system-cluster-critical",
        },
      },
    },
  };
}
