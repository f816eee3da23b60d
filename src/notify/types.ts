/**
 * What rolloutd tells people about a rollout, and where. A notification is a
 * decision already written to the cluster, described once; channels (Slack,
 * Microsoft Teams, a signed JSON webhook) only format it.
 */
import type { Phase, RecordedCheck } from "../contract.ts";

export const NOTIFICATION_KINDS = [
  "started",
  "stepFailed",
  "rolledBack",
  "aborted",
  "promoted",
  "stuck",
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export interface Notification {
  kind: NotificationKind;
  /**
   * Idempotency key: the same decision has the same key on every replica and
   * after a restart (it is derived from the policy, the revision, the Event
   * reason and the persisted state's updatedAt), so receivers can drop repeats.
   */
  key: string;
  policy: string;
  route: { kind: string; namespace: string; name: string };
  /** The Kubernetes Event reason of the decision (RolledBack, Aborted…), or "Stuck". */
  reason: string;
  /** The decision in words, as in the Event. */
  message: string;
  phase: Phase;
  /** 1-based; 0 when no step is active. */
  step: number;
  steps: number;
  canaryWeight: number;
  stable: string;
  canary: string;
  revision?: string;
  /** Who/why as the operator gave it in rolloutd.dev/abort-reason. */
  abort?: { reason: string; at: string };
  /** The measured values behind the decision, when it followed an analysis. */
  checks?: RecordedCheck[];
  /** When the decision was taken (the state's updatedAt), ISO 8601. */
  at: string;
}

export type ChannelType = "slack" | "teams" | "webhook";

/** A channel as configured: the URL (or the file holding it) and, for webhooks, the signing secret's file. */
export interface ChannelSpec {
  /** Shown in metrics and logs; never the URL (it is a secret for Slack and Teams). */
  name: string;
  type: ChannelType;
  url?: string;
  urlFile?: string;
  /** HMAC-SHA256 key for `webhook` channels, read from this file (trailing newline ignored). */
  secretFile?: string;
  /** Kinds sent; all when absent. */
  on?: NotificationKind[];
  /** Per-attempt timeout, ms. */
  timeoutMs?: number;
}

/** The one seam the controller sees: hand over and return at once; delivery happens elsewhere. */
export interface Notifier {
  notify(n: Notification, channels: readonly ChannelSpec[]): void;
  close(): Promise<void>;
}
