/**
 * Go-style durations ("500ms", "30s", "1m30s", "1.5h"), the notation Flagger,
 * Argo Rollouts and Prometheus users already write. Resolution is one
 * millisecond: units below it (ns, us) are refused rather than rounded, and
 * there is no "d" unit (Go has none either; write 24h).
 */

export type DurationResult = { ok: true; ms: number } | { ok: false; error: string };

export interface DurationOptions {
  /** Accept "0s" / "0". Default false: a zero interval or timeout is always a mistake in a policy. */
  allowZero?: boolean;
  /** Accept "-1m". Default false. */
  allowNegative?: boolean;
  /** Inclusive lower bound in ms (checked after the sign and zero rules). */
  min?: number;
  /** Inclusive upper bound in ms. */
  max?: number;
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * One `<number><unit>` term; the whole input must be a sequence of these. µ (for "µs", refused below) is written
 * as an escape: one character above U+007F in the bundle makes Node hold its whole source at two bytes a character.
 */
const TERM = /(\d+(?:\.\d*)?|\.\d+)([a-z\u00b5]+)/gy;

const HINT = "use a number with a unit: 500ms, 30s, 1m30s, 2h";

/** Parses a Go-style duration into milliseconds. Never throws. */
export function parseDuration(input: string, opts: DurationOptions = {}): DurationResult {
  const text = input.trim();
  const quoted = JSON.stringify(input);
  if (text === "" || text.length > 64) return { ok: false, error: `invalid duration ${quoted} (${HINT})` };

  let rest = text;
  let negative = false;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    negative = rest.startsWith("-");
    rest = rest.slice(1);
  }

  let ms: number;
  if (rest === "0") {
    ms = 0; // Go accepts a bare zero without a unit, and nothing else unitless.
  } else {
    ms = 0;
    TERM.lastIndex = 0;
    let consumed = 0;
    for (let m = TERM.exec(rest); m !== null; m = TERM.exec(rest)) {
      const [, num = "", unit = ""] = m;
      const unitMs = UNIT_MS[unit];
      if (unitMs === undefined) {
        const why = unit === "d" ? "there is no day unit, use h (e.g. 24h)" : `unknown unit "${unit}"`;
        return { ok: false, error: `invalid duration ${quoted}: ${why} (${HINT})` };
      }
      const term = termMs(num, unitMs);
      if (term === undefined) {
        return { ok: false, error: `invalid duration ${quoted}: finer than one millisecond` };
      }
      ms += term;
      consumed = TERM.lastIndex;
    }
    if (consumed !== rest.length || consumed === 0) {
      const why = /^\d+(\.\d+)?$/.test(rest) ? "a unit is required" : "not a duration";
      return { ok: false, error: `invalid duration ${quoted}: ${why} (${HINT})` };
    }
    if (!Number.isSafeInteger(ms)) return { ok: false, error: `invalid duration ${quoted}: too large` };
  }

  if (negative && ms !== 0) {
    if (!opts.allowNegative) return { ok: false, error: `duration must not be negative (got ${quoted})` };
    ms = -ms;
  }
  if (ms === 0 && !opts.allowZero)
    return { ok: false, error: `duration must be greater than zero (got ${quoted})` };
  if (opts.min !== undefined && ms < opts.min) {
    return { ok: false, error: `duration must be at least ${formatDuration(opts.min)} (got ${quoted})` };
  }
  if (opts.max !== undefined && ms > opts.max) {
    return { ok: false, error: `duration must be at most ${formatDuration(opts.max)} (got ${quoted})` };
  }
  return { ok: true, ms };
}

/** Exact decimal arithmetic: "0.7s" is 700 ms, not 699.9999. Undefined when not a whole number of ms. */
function termMs(num: string, unitMs: number): number | undefined {
  const [whole = "", frac = ""] = num.split(".");
  const wholeMs = (whole === "" ? 0 : Number(whole)) * unitMs;
  if (frac === "") return wholeMs;
  const scale = 10 ** frac.length;
  const fracScaled = Number(frac) * unitMs;
  if (!Number.isSafeInteger(fracScaled) || fracScaled % scale !== 0) return undefined;
  return wholeMs + fracScaled / scale;
}

/**
 * Formats milliseconds the way Prometheus and Go accept them back:
 * 90000 → "1m30s", 500 → "500ms", 0 → "0s". Negative values get a leading "-".
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`cannot format duration ${ms}`);
  if (ms === 0) return "0s";
  let rest = Math.abs(Math.round(ms));
  let out = ms < 0 ? "-" : "";
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
    ["ms", 1],
  ] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
