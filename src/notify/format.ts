/**
 * One notification, three shapes: Slack incoming webhooks take `{text}` (with
 * mrkdwn), Microsoft Teams (Workflows "when a Teams webhook request is
 * received", or a legacy incoming webhook) an Adaptive Card in a message
 * attachment, and the generic webhook the notification itself as JSON.
 */
import type { RecordedCheck } from "../contract.ts";
import type { ChannelType, Notification, NotificationKind } from "./types.ts";

const TITLES: Record<NotificationKind, string> = {
  started: "Rollout started",
  stepFailed: "Step failed",
  rolledBack: "Rolled back",
  aborted: "Aborted",
  promoted: "Promoted",
  stuck: "Rollout stuck",
};

const ICONS: Record<NotificationKind, string> = {
  started: "▶️",
  stepFailed: "⚠️",
  rolledBack: "⏪",
  aborted: "🛑",
  promoted: "✅",
  stuck: "⏸️",
};

export function title(n: Notification): string {
  return `${TITLES[n.kind]}: ${n.policy} (${n.route.kind} ${n.route.namespace}/${n.route.name})`;
}

function fmtValue(v: number | null): string {
  if (v === null) return "—";
  if (!Number.isFinite(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : String(Math.round(v * 10_000) / 10_000);
}

/** "p99-latency=612 > max 500 ✗": a check's value against its bounds. */
export function describeCheck(c: RecordedCheck): string {
  const bounds = [c.min !== undefined ? `min ${c.min}` : "", c.max !== undefined ? `max ${c.max}` : ""]
    .filter(Boolean)
    .join(", ");
  const value = c.outcome === "value" ? fmtValue(c.value) : c.outcome;
  const mark = c.verdict === "pass" ? "✓" : c.verdict === "fail" ? "✗" : "?";
  return `${c.name}=${value} (${bounds}) ${mark}`;
}

export function facts(n: Notification): Array<{ title: string; value: string }> {
  const out = [
    { title: "Phase", value: n.phase },
    { title: "Weights", value: `${n.stable} ${100 - n.canaryWeight} % / ${n.canary} ${n.canaryWeight} %` },
    { title: "Step", value: n.step > 0 ? `${n.step} of ${n.steps}` : "none" },
  ];
  if (n.revision) out.push({ title: "Revision", value: n.revision });
  if (n.abort) out.push({ title: "Who / why", value: n.abort.reason });
  if (n.checks?.length) out.push({ title: "Checks", value: n.checks.map(describeCheck).join("; ") });
  return out;
}

/** Slack's mrkdwn treats &, < and > specially. */
function slackEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function payload(type: ChannelType, n: Notification): unknown {
  switch (type) {
    case "slack":
      return {
        text: [
          `${ICONS[n.kind]} *${slackEscape(title(n))}*`,
          slackEscape(n.message),
          ...facts(n).map((f) => `• *${f.title}:* ${slackEscape(f.value)}`),
        ].join("\n"),
      };
    case "teams":
      return {
        type: "message",
        attachments: [
          {
            contentType: "application/vnd.microsoft.card.adaptive",
            contentUrl: null,
            content: {
              $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
              type: "AdaptiveCard",
              version: "1.4",
              body: [
                {
                  type: "TextBlock",
                  size: "Medium",
                  weight: "Bolder",
                  wrap: true,
                  text: `${ICONS[n.kind]} ${title(n)}`,
                },
                { type: "TextBlock", wrap: true, text: n.message },
                { type: "FactSet", facts: facts(n) },
              ],
            },
          },
        ],
      };
    case "webhook": {
      // `type` is the notification's kind (started, aborted…); `kind` names the document, as in Kubernetes.
      const { kind, ...rest } = n;
      return { apiVersion: "rolloutd.dev/v1alpha1", kind: "RolloutNotification", type: kind, ...rest };
    }
  }
}
