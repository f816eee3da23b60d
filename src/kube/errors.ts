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

/** The reason and message of a Status body, as text or parsed; anything else reads as an empty Status. */
function statusBody(body: unknown): StatusBody {
  let parsed = body;
  if (typeof body === "string") {
    if (body === "") return {};
    try {
      parsed = JSON.parse(body);
    } catch {
      return { message: body.slice(0, 300) };
    }
  }
  // JSON `null`, a number or a string: no Status in it.
  if (!parsed || typeof parsed !== "object") return {};
  const { reason, message } = parsed as { reason?: unknown; message?: unknown };
  return {
    ...(typeof reason === "string" ? { reason } : {}),
    ...(typeof message === "string" ? { message } : {}),
  };
}

/**
 * The error for a request `what` that the server answered with a non-2xx
 * `status` and `body` (a Status, as text or parsed). One place, so a failure
 * reads the same through the client's ApiException (toKubeError) and our plain
 * requests (KubeLeaseApi). A status of 600 or more is no HTTP status: something
 * between us and the API server (a proxy) is broken, so it says that rather
 * than pass for a server error; the Status reason is kept in the message only.
 */
export function statusError(status: number, body: unknown, what: string): KubeApiError {
  const st = statusBody(body);
  const detail = `${st.reason ?? ""} ${st.message ?? ""}`.trim();
  if (status >= 600)
    return new KubeApiError(
      status,
      "NotHTTP",
      `${what}: answered with status ${status}, which is not an HTTP status${detail ? ` (${detail})` : ""}`,
    );
  return new KubeApiError(
    status,
    st.reason ?? "",
    `${what}: ${status} ${st.reason ?? ""} ${st.message ?? ""}`.trim(),
  );
}

/** Maps anything thrown by a client call to a KubeApiError (or returns it unchanged if not an API error). */
export function toKubeError(err: unknown, what: string): Error {
  if (err instanceof KubeApiError) return err;
  const e = err as { code?: unknown; body?: unknown; message?: string; cause?: { code?: string } };
  // A numeric code is the status the server answered with (client-node's ApiException).
  if (typeof e?.code === "number" && e.code >= 100) return statusError(e.code, e.body, what);
  const code = e?.cause?.code ?? (e as { code?: string })?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return new KubeApiError(
    0,
    typeof code === "string" ? code : "NetworkError",
    `${what}: ${msg}${typeof code === "string" && !msg.includes(code) ? ` (${code})` : ""}`,
  );
}
