/**
 * Kubernetes Events on the policy's route, so `kubectl describe` tells the
 * story of a rollout. Repeats of the same reason and message within a short
 * time are folded into one Event with a count, as kubectl users expect,
 * rather than flooding the namespace.
 */
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type CoreV1Event } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { Clock } from "../clock.ts";
import { toKubeError } from "./errors.ts";

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
}

export interface EventSink {
  record(obj: InvolvedObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void>;
}

export const COMPONENT = "rolloutd";

export class KubeEventRecorder implements EventSink {
  private readonly recent = new Map<string, { name: string; count: number; at: number }>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly host = process.env.HOSTNAME ?? "rolloutd",
  ) {}

  async record(
    obj: InvolvedObject,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    const nowDate = new Date(this.clock.now());
    const now = nowDate.toISOString();
    const msg = message.length > 1000 ? `${message.slice(0, 997)}...` : message;
    // Keyed by UID when known: a route deleted and re-created under the same name is another object, and its
    // Events must not be folded into the deleted one's.
    const key = `${obj.namespace}/${obj.kind}/${obj.name}/${obj.uid ?? ""}/${type}/${reason}/${msg}`;
    const prev = this.recent.get(key);
    try {
      if (prev && this.clock.now() - prev.at < 10 * 60_000) {
        prev.count++;
        prev.at = this.clock.now();
        await this.core.patchNamespacedEvent(
          { name: prev.name, namespace: obj.namespace, body: { count: prev.count, lastTimestamp: now } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        return;
      }
      const name = `${obj.name}.${this.clock.now().toString(16)}${Math.floor(Math.random() * 0xfff).toString(16)}`;
      const event: CoreV1Event = {
        metadata: { name, namespace: obj.namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          namespace: obj.namespace,
          name: obj.name,
          uid: obj.uid,
        },
        type,
        reason,
        message: msg,
        source: { component: COMPONENT, host: this.host },
        reportingComponent: COMPONENT,
        reportingInstance: this.host,
        firstTimestamp: nowDate,
        lastTimestamp: nowDate,
        count: 1,
      };
      await this.core.createNamespacedEvent({ namespace: obj.namespace, body: event });
      this.recent.set(key, { name, count: 1, at: this.clock.now() });
      if (this.recent.size > 5000) this.recent.delete(this.recent.keys().next().value!);
    } catch (err) {
      // An Event is a courtesy; losing one must never fail a rollout decision.
      this.log.warn({ err: toKubeError(err, "create Event").message, reason }, "could not record Event");
    }
  }
}
