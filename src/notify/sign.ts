/**
 * Signatures of the generic JSON webhook, so a receiver can check that a
 * request came from rolloutd and was not replayed:
 *
 *   X-Rolloutd-Timestamp: <unix seconds>
 *   X-Rolloutd-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *   Idempotency-Key:      <the notification's key, the same on every retry>
 *
 * A receiver recomputes the HMAC over the raw body bytes, compares in
 * constant time, rejects timestamps more than 5 minutes away from its clock,
 * and drops keys it has already processed. `verifySignature` is that check.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "x-rolloutd-signature";
export const TIMESTAMP_HEADER = "x-rolloutd-timestamp";
export const IDEMPOTENCY_HEADER = "idempotency-key";
export const DEFAULT_TOLERANCE_S = 300;

export function sign(secret: string, timestampS: number, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestampS}.${body}`).digest("hex")}`;
}

export function verifySignature(opts: {
  secret: string;
  body: string;
  timestamp: string | undefined;
  signature: string | undefined;
  nowS: number;
  toleranceS?: number;
}): { ok: true } | { ok: false; why: string } {
  const ts = Number(opts.timestamp);
  if (!opts.timestamp || !Number.isInteger(ts)) return { ok: false, why: "missing or malformed timestamp" };
  if (Math.abs(opts.nowS - ts) > (opts.toleranceS ?? DEFAULT_TOLERANCE_S))
    return { ok: false, why: "timestamp outside the tolerance (replay?)" };
  if (!opts.signature?.startsWith("v1=")) return { ok: false, why: "missing or unknown signature scheme" };
  const want = Buffer.from(sign(opts.secret, ts, opts.body));
  const got = Buffer.from(opts.signature);
  if (want.length !== got.length || !timingSafeEqual(want, got))
    return { ok: false, why: "signature mismatch" };
  return { ok: true };
}
