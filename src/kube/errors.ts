/**
 * ApiException from @kubernetes/client-node carries whole response bodies and
 * headers (and, for auth errors, sometimes tokens in them). We reduce every
 * API failure to this small error before it is logged or shown.
 */
export class KubeApiError extends Error {
  override name = "KubeApiError";
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
  get isConflict(): boolean {
    return this.status === 409;
  }
  get isNotFound(): boolean {
    return this.status === 404;
  }
  /** The object as patched would be invalid (schema, CEL, or the 256 KiB annotation limit). */
  get isInvalid(): boolean {
    return this.status === 422;
  }
}

interface StatusBody {
  message?: string;
  reason?: string;
}

/** Maps anything thrown by a client call to a KubeApiError (or returns it unchanged if not an API error). */
export function toKubeError(err: unknown, what: string): Error {
  if (err instanceof KubeApiError) return err;
  const e = err as { code?: unknown; body?: unknown; message?: string; cause?: { code?: string } };
  if (typeof e?.code === "number" && e.code >= 100 && e.code < 600) {
    let body: StatusBody = {};
    if (typeof e.body === "string") {
      try {
        body = JSON.parse(e.body) as StatusBody;
      } catch {
        body = { message: e.body.slice(0, 300) };
      }
    } else if (e.body && typeof e.body === "object") {
      body = e.body;
    }
    return new KubeApiError(
      e.code,
      body.reason ?? "",
      `${what}: ${e.code} ${body.reason ?? ""} ${body.message ?? ""}`.trim(),
    );
  }
  const code = e?.cause?.code ?? (e as { code?: string })?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return new KubeApiError(
    0,
    typeof code === "string" ? code : "NetworkError",
    `${what}: ${msg}${typeof code === "string" && !msg.includes(code) ? ` (${code})` : ""}`,
  );
}
