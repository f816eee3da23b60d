/**
 * The Lease API seam (coordination.k8s.io/v1) the fleet is built on: list,
 * create and update, every update guarded by the resourceVersion it was
 * based on, so two replicas can never both believe they took one Lease.
 *
 * Times are written as MicroTime with exactly six fractional digits. The API
 * server parses MicroTime with a microsecond layout and refuses anything else;
 * @kubernetes/client-node serializes a plain `Date` with `toISOString()`
 * (milliseconds), so we format the string ourselves and never hand it a Date.
 * Nobody judges expiry by these times anyway (see fleet.ts): they are for
 * people reading `kubectl get lease -o yaml`.
 */
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { FIELD_MANAGER } from "../contract.ts";
import { toKubeError } from "../kube/errors.ts";

/** What a Lease says, as client-go's LeaderElectionRecord. */
export interface LeaseRecord {
  /** "" when released. */
  holderIdentity: string;
  leaseDurationSeconds: number;
  /** MicroTime strings, as written. */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
}

export interface ObservedLease {
  name: string;
  resourceVersion: string;
  record: LeaseRecord;
}

export interface LeaseApi {
  /** Every Lease of the fleet (by label) in the namespace. */
  list(): Promise<ObservedLease[]>;
  /** Creates the Lease; throws a 409 KubeApiError when it exists. */
  create(name: string, record: LeaseRecord): Promise<ObservedLease>;
  /** Replaces the Lease's spec, guarded by `resourceVersion`; throws a 409 KubeApiError on a conflict. */
  update(name: string, resourceVersion: string, record: LeaseRecord): Promise<ObservedLease>;
}

/** RFC 3339 with exactly six fractional digits, UTC: what the API server accepts for a MicroTime. */
export function microTime(epochMs: number): string {
  const iso = new Date(Math.floor(epochMs)).toISOString(); // 2026-11-30T09:24:28.123Z
  const micros = Math.floor((epochMs - Math.floor(epochMs)) * 1000);
  return `${iso.slice(0, -1)}${String(micros).padStart(3, "0")}Z`;
}

/** The label every fleet Lease carries, so one list finds them all and nothing else. */
export const FLEET_LABEL = "rolloutd.dev/fleet";

/** Leases through @kubernetes/client-node, in one namespace. */
export class KubeLeaseApi implements LeaseApi {
  private readonly api: CoordinationV1Api;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly fleet: string,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  async list(): Promise<ObservedLease[]> {
    try {
      const res = await this.api.listNamespacedLease({
        namespace: this.namespace,
        labelSelector: `${FLEET_LABEL}=${this.fleet}`,
      });
      return res.items.map(observed);
    } catch (err) {
      throw toKubeError(err, `list Leases in ${this.namespace}`);
    }
  }

  async create(name: string, record: LeaseRecord): Promise<ObservedLease> {
    try {
      const res = await this.api.createNamespacedLease({
        namespace: this.namespace,
        fieldManager: FIELD_MANAGER,
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace: this.namespace, labels: { [FLEET_LABEL]: this.fleet } },
          spec: toSpec(record),
        },
      });
      return observed(res);
    } catch (err) {
      throw toKubeError(err, `create Lease ${this.namespace}/${name}`);
    }
  }

  async update(name: string, resourceVersion: string, record: LeaseRecord): Promise<ObservedLease> {
    try {
      const res = await this.api.replaceNamespacedLease({
        name,
        namespace: this.namespace,
        fieldManager: FIELD_MANAGER,
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: {
            name,
            namespace: this.namespace,
            resourceVersion,
            labels: { [FLEET_LABEL]: this.fleet },
          },
          spec: toSpec(record),
        },
      });
      return observed(res);
    } catch (err) {
      throw toKubeError(err, `update Lease ${this.namespace}/${name}`);
    }
  }
}

function toSpec(r: LeaseRecord): V1Lease["spec"] {
  return {
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    leaseTransitions: r.leaseTransitions,
    // MicroTime as a preformatted string: the client's Date serializer would send milliseconds.
    ...(r.acquireTime !== undefined ? { acquireTime: r.acquireTime as unknown as Date } : {}),
    ...(r.renewTime !== undefined ? { renewTime: r.renewTime as unknown as Date } : {}),
  };
}

/** A MicroTime as the client hands it back: a string, or a Date if a future client parses it. */
function timeText(v: unknown): string | undefined {
  if (v instanceof Date) return v.toISOString();
  return typeof v === "string" ? v : undefined;
}

function observed(l: V1Lease): ObservedLease {
  const s = l.spec ?? {};
  const acquireTime = timeText(s.acquireTime);
  const renewTime = timeText(s.renewTime);
  return {
    name: l.metadata?.name ?? "",
    resourceVersion: l.metadata?.resourceVersion ?? "",
    record: {
      holderIdentity: s.holderIdentity ?? "",
      leaseDurationSeconds: s.leaseDurationSeconds ?? 0,
      leaseTransitions: s.leaseTransitions ?? 0,
      ...(acquireTime !== undefined ? { acquireTime } : {}),
      ...(renewTime !== undefined ? { renewTime } : {}),
    },
  };
}
