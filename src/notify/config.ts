/**
 * Where notifications go. Globally, a YAML file given to `rolloutd run
 * --notify-config <file>` (Helm: a ConfigMap), and per policy, `spec.notify`;
 * a policy's rollouts are sent to both. Secrets never sit in either: a
 * Slack or Teams URL is read from `urlFile`, a webhook's HMAC key from
 * `secretFile` (mounted Secrets), at each delivery, so rotation needs no
 * restart.
 *
 *   channels:
 *     - name: ops                       # metrics label; default: the type
 *       type: slack                     # slack | teams | webhook
 *       urlFile: /etc/rolloutd/notify/slack-url
 *       on: [rolledBack, aborted, stuck] # default: every kind
 *     - name: audit
 *       type: webhook
 *       url: https://audit.example.com/rolloutd
 *       secretFile: /etc/rolloutd/notify/hmac-key
 *       timeout: 5s
 *   stuckAfter: 1m                      # how long a problem lasts before it is `stuck` (default 1m)
 */
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { z } from "zod";
import { parseDuration } from "../policy/duration.ts";
import { NOTIFICATION_KINDS, type ChannelSpec } from "./types.ts";

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** One channel, as written in the global file or in a policy's `spec.notify`. */
export const channelSchema = z
  .strictObject({
    name: z
      .string()
      .regex(NAME, "must be a DNS label (lowercase letters, digits and '-'): it becomes a metric label")
      .max(63)
      .optional(),
    type: z.enum(["slack", "teams", "webhook"]),
    url: z
      .string()
      .refine((u) => /^https?:\/\//.test(u) && URL.canParse(u), "must be an http:// or https:// URL")
      .optional(),
    urlFile: z.string().min(1).optional(),
    secretFile: z.string().min(1).optional(),
    on: z.array(z.enum(NOTIFICATION_KINDS)).min(1).optional(),
    timeout: z
      .string()
      .transform((text, ctx) => {
        const d = parseDuration(text, { min: 100, max: 120_000 });
        if (!d.ok) {
          ctx.issues.push({ code: "custom", message: d.error, input: text });
          return z.NEVER;
        }
        return d.ms;
      })
      .optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.url === undefined) === (c.urlFile === undefined))
      ctx.addIssue({ code: "custom", path: ["url"], message: "set exactly one of url and urlFile" });
    if (c.secretFile !== undefined && c.type !== "webhook")
      ctx.addIssue({
        code: "custom",
        path: ["secretFile"],
        message: `${c.type} webhooks are not signed: secretFile is for type webhook (keep the ${c.type} URL itself in urlFile)`,
      });
  });

export type ChannelInput = z.output<typeof channelSchema>;

/** Channel specs with unique names; `prefix` keeps a policy's channels apart from the global ones. */
export function toChannels(input: readonly ChannelInput[], prefix = ""): ChannelSpec[] {
  const used = new Map<string, number>();
  return input.map((c) => {
    const base = c.name ?? c.type;
    const n = used.get(base) ?? 0;
    used.set(base, n + 1);
    const spec: ChannelSpec = { name: `${prefix}${n === 0 ? base : `${base}-${n + 1}`}`, type: c.type };
    if (c.url !== undefined) spec.url = c.url;
    if (c.urlFile !== undefined) spec.urlFile = c.urlFile;
    if (c.secretFile !== undefined) spec.secretFile = c.secretFile;
    if (c.on !== undefined) spec.on = c.on;
    if (c.timeout !== undefined) spec.timeoutMs = c.timeout;
    return spec;
  });
}

const fileSchema = z.strictObject({
  channels: z.array(channelSchema).default([]),
  stuckAfter: z
    .string()
    .transform((text, ctx) => {
      const d = parseDuration(text, { min: 1_000, max: 24 * 3_600_000 });
      if (!d.ok) {
        ctx.issues.push({ code: "custom", message: d.error, input: text });
        return z.NEVER;
      }
      return d.ms;
    })
    .optional(),
});

export interface NotifyConfig {
  channels: ChannelSpec[];
  /** How long a problem must last, with no decision, before it is a `stuck` notification. */
  stuckAfterMs?: number;
}

export class NotifyConfigError extends Error {
  override name = "NotifyConfigError";
}

/** Parses the global file; throws NotifyConfigError naming the file and the field. */
export function parseNotifyConfig(file: string, text: string): NotifyConfig {
  let data: unknown;
  try {
    data = parse(text) ?? {};
  } catch (err) {
    throw new NotifyConfigError(`${file}: not YAML: ${(err as Error).message}`);
  }
  const r = fileSchema.safeParse(data);
  if (!r.success) {
    const first = r.error.issues[0]!;
    throw new NotifyConfigError(`${file}: ${first.path.join(".") || "(root)"}: ${first.message}`);
  }
  const names = new Set<string>();
  for (const c of r.data.channels) {
    if (c.name === undefined) continue;
    if (names.has(c.name)) throw new NotifyConfigError(`${file}: channel name "${c.name}" is used twice`);
    names.add(c.name);
  }
  return {
    channels: toChannels(r.data.channels),
    ...(r.data.stuckAfter !== undefined ? { stuckAfterMs: r.data.stuckAfter } : {}),
  };
}

export async function loadNotifyConfig(file: string): Promise<NotifyConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new NotifyConfigError(`notify config ${file}: ${(err as Error).message}`);
  }
  return parseNotifyConfig(file, text);
}
