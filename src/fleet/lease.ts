/**
 * The Lease API seam (coordination.k8s.io/v1) the fleet is built on: list,
 * watch, create and update, every update guarded by the resourceVersion it
 * was based on, so two replicas can never both believe they took one Lease.
 *
 * Times are written as MicroTime with exactly six fractional digits. The API
 * server parses MicroTime with a microsecond layout and refuses anything else;
 * @kubernetes/client-node serializes a plain `Date` with `toISOString()`
 * (milliseconds), so we format the string ourselves and never hand it a Date
 * (nor to the client: the requests below are plain JSON).
 * Nobody judges expiry by these times anyway (see fleet.ts): they are for
 * people reading `kubectl get lease -o yaml`.
 */
import type { KubeConfig, V1Lease } from "@kubernetes/client-node";
import { FIELD_MANAGER } from "../contract.ts";
import { AgentPool } from "../kube/agents.ts";
import { KubeApiError, statusError, toKubeError } from "../kube/errors.ts";
import { idleWatch } from "../kube/informer.ts";
import { kubeRequest, NoAnswerError, type KubeResponse } from "../kube/request.ts";

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

export type LeaseEvent = "ADDED" | "MODIFIED" | "DELETED";

/** A running watch on the fleet's Leases. */
export interface LeaseWatch {
  stop(): void;
}

export interface LeaseApi {
  /** Every Lease of the fleet (by label) in the namespace. */
  list(): Promise<ObservedLease[]>;
  /**
   * Streams the fleet's Leases: every current one first (as ADDED), then
   * each change as it happens. `done` is called once when the stream ends,
   * whatever the reason (the server closes watches after a while). Without
   * it the fleet lists every round, as client-go does. `exclude` names a
   * Lease not to be told about (our own member Lease: its renewals are ours).
   */
  watch?(
    onEvent: (type: LeaseEvent, lease: ObservedLease) => void,
    done: (err?: unknown) => void,
    exclude?: string,
  ): Promise<LeaseWatch>;
  /** Creates the Lease; throws a 409 KubeApiError when it exists. */
  create(name: string, record: LeaseRecord): Promise<ObservedLease>;
  /** Replaces the Lease's spec, guarded by `resourceVersion`; throws a 409 KubeApiError on a conflict. */
  update(name: string, resourceVersion: string, record: LeaseRecord): Promise<ObservedLease>;
  /** Closes pooled connections, if any. */
  close?(): void;
}

/** `api`, telling `count` of every request it makes (the daemon counts them in /metrics). */
export function countedLeaseApi(
  api: LeaseApi,
  count: (verb: "list" | "create" | "update" | "watch") => void,
): LeaseApi {
  const counted: LeaseApi = {
    list: () => (count("list"), api.list()),
    create: (name, record) => (count("create"), api.create(name, record)),
    update: (name, rv, record) => (count("update"), api.update(name, rv, record)),
    ...(api.close ? { close: () => api.close!() } : {}),
  };
  if (api.watch) {
    const watch = api.watch.bind(api);
    counted.watch = (onEvent, done, exclude) => (count("watch"), watch(onEvent, done, exclude));
  }
  return counted;
}

/** RFC 3339 with exactly six fractional digits, UTC: what the API server accepts for a MicroTime. */
export function microTime(epochMs: number): string {
  const iso = new Date(Math.floor(epochMs)).toISOString(); // 2026-11-30T09:24:28.123Z
  const micros = Math.floor((epochMs - Math.floor(epochMs)) * 1000);
  return `${iso.slice(0, -1)}${String(micros).padStart(3, "0")}Z`;
}

/** The label every fleet Lease carries, so one list finds them all and nothing else. */
export const FLEET_LABEL = "rolloutd.dev/fleet";

/**
 * Leases over plain HTTPS with one keep-alive connection pool, in one
 * namespace. A replica renews every Lease it holds every retry period, so
 * this is most of what it does at rest: @kubernetes/client-node's typed
 * calls (serializer, fetch, web streams, a dispatcher per call) cost about
 * twice the CPU of the request itself. Credentials are applied per request
 * by the kubeconfig, as the client does (tokens and exec plugins rotate).
 */
export class KubeLeaseApi implements LeaseApi {
  private readonly base: string;

  constructor(
    private readonly kc: KubeConfig,
    private readonly namespace: string,
    private readonly fleet: string,
    private readonly timeoutMs = 10_000,
    /** Keep-alive connections, shared with the daemon's other plain calls (health, discovery). */
    private readonly agents = new AgentPool(),
  ) {
    this.base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  }

  async list(): Promise<ObservedLease[]> {
    const selector = encodeURIComponent(`${FLEET_LABEL}=${this.fleet}`);
    const res = (await this.request(
      "GET",
      `${this.base}?labelSelector=${selector}`,
      undefined,
      `list Leases in ${this.namespace}`,
    )) as { items?: V1Lease[] };
    return (res.items ?? []).map(observed);
  }

  async watch(
    onEvent: (type: LeaseEvent, lease: ObservedLease) => void,
    done: (err?: unknown) => void,
    exclude?: string,
  ): Promise<LeaseWatch> {
    const what = `watch Leases in ${this.namespace}`;
    let ended = false;
    // Filled in once the stream is open; `end` may run before that.
    const open: { controller?: AbortController } = {};
    const end = (err?: unknown) => {
      if (ended) return;
      ended = true;
      open.controller?.abort();
      done(err === undefined || err === null ? undefined : toKubeError(err, what));
    };
    const controller = await idleWatch(this.kc).watch(
      this.base,
      // No resourceVersion: the server sends every current Lease first, so nothing between a list and this is missed.
      {
        labelSelector: `${FLEET_LABEL}=${this.fleet}`,
        allowWatchBookmarks: true,
        ...(exclude !== undefined ? { fieldSelector: `metadata.name!=${exclude}` } : {}),
      },
      (phase: string, obj: unknown) => {
        if (phase === "ADDED" || phase === "MODIFIED" || phase === "DELETED")
          onEvent(phase, observed(obj as V1Lease));
        // An ERROR event (410 Gone and the like) ends this stream; the fleet lists and watches again.
        else if (phase === "ERROR") {
          const st = obj as { code?: number; reason?: string; message?: string };
          end(new KubeApiError(st.code ?? 0, st.reason ?? "", `${what}: ${st.message ?? "error event"}`));
        }
      },
      (err: unknown) => end(err),
    );
    open.controller = controller;
    if (ended) controller.abort();
    return {
      stop: () => {
        ended = true;
        controller.abort();
      },
    };
  }

  async create(name: string, record: LeaseRecord): Promise<ObservedLease> {
    const body = this.lease(name, record);
    return observed(
      (await this.request(
        "POST",
        `${this.base}?fieldManager=${FIELD_MANAGER}`,
        body,
        `create Lease ${this.namespace}/${name}`,
      )) as V1Lease,
    );
  }

  async update(name: string, resourceVersion: string, record: LeaseRecord): Promise<ObservedLease> {
    const body = this.lease(name, record, resourceVersion);
    return observed(
      (await this.request(
        "PUT",
        `${this.base}/${encodeURIComponent(name)}?fieldManager=${FIELD_MANAGER}`,
        body,
        `update Lease ${this.namespace}/${name}`,
      )) as V1Lease,
    );
  }

  private lease(name: string, record: LeaseRecord, resourceVersion?: string): object {
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name,
        namespace: this.namespace,
        labels: { [FLEET_LABEL]: this.fleet },
        ...(resourceVersion !== undefined ? { resourceVersion } : {}),
      },
      // MicroTimes are strings we formatted (microTime), written as they are.
      spec: {
        holderIdentity: record.holderIdentity,
        leaseDurationSeconds: record.leaseDurationSeconds,
        leaseTransitions: record.leaseTransitions,
        ...(record.acquireTime !== undefined ? { acquireTime: record.acquireTime } : {}),
        ...(record.renewTime !== undefined ? { renewTime: record.renewTime } : {}),
      },
    };
  }

  private async request(
    method: string,
    path: string,
    body: object | undefined,
    what: string,
  ): Promise<unknown> {
    let res: KubeResponse;
    try {
      res = await kubeRequest(this.kc, this.agents, {
        method,
        path,
        ...(body !== undefined ? { body } : {}),
        accept: "application/json",
        timeoutMs: this.timeoutMs,
      });
    } catch (err) {
      // Named by `what`, from what the kubeconfig or Node threw: status 0, its code as the reason.
      if (err instanceof NoAnswerError && err.stage === "server")
        throw new KubeApiError(0, "NoServer", `${what}: ${err.detail}`);
      throw toKubeError(err instanceof NoAnswerError ? err.cause : err, what);
    }
    // A failure reads as it does through the client (toKubeError): one statusError for both.
    if (res.status < 200 || res.status >= 300) throw statusError(res.status, res.text, what);
    try {
      return res.text ? JSON.parse(res.text) : {};
    } catch {
      return { message: res.text.slice(0, 300) };
    }
  }

  /** Closes the pooled connections. */
  close(): void {
    this.agents.close();
  }
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
