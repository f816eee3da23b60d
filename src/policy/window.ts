/**
 * The optional `window` of a policy: a cron expression (node-cron syntax, 5 or
 * 6 fields) naming the minutes in which steps may advance, e.g.
 * "* 9-17 * * 1-5" = weekdays 09:00–17:59.
 *
 * Resolution is one minute: an instant is inside the window when its minute
 * matches. A 6-field expression's seconds field is accepted (node-cron syntax)
 * but cannot narrow a minute, since every valid seconds field allows at least
 * one second of each minute.
 *
 * Without a time zone the window is evaluated in UTC, not in the daemon's
 * local zone: the same policy must mean the same thing on every replica.
 *
 * Matching is node-cron's own. node-cron does not export its TimeMatcher, but
 * its public `ScheduledTask.match(date)` is exactly that matcher (time zone,
 * L, W, #, names included). We create an unstarted task (no timer is armed)
 * and destroy it at once so node-cron's task registry does not keep it.
 */
import { createTask, parse, validate, validateDetailed } from "node-cron";

/** How far `nextOpen` looks ahead by default: a weekly window always opens within 8 days. */
export const MAX_WINDOW_SEARCH_MS = 8 * 24 * 3_600_000;

const MINUTE_MS = 60_000;

/** Why `expression` is not a valid node-cron expression, or undefined when it is. */
export function cronExpressionError(expression: string): string | undefined {
  let detail;
  try {
    detail = validateDetailed(expression);
    if (detail.valid && !validate(expression)) return "invalid expression";
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  if (detail.valid) return undefined;
  const first = detail.errors[0];
  if (!first) return "invalid expression";
  if (first.field === "expression" || first.message.includes("impossible")) return first.message;
  return `${first.field} field ${JSON.stringify(first.value ?? "")} is invalid`;
}

/** True when `Intl` knows the IANA zone (or offset) name. */
export function isValidTimeZone(timeZone: string): boolean {
  if (timeZone.trim() === "") return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
    return true;
  } catch {
    return false;
  }
}

export class CronWindow {
  readonly expression: string;
  readonly timeZone: string;
  readonly #match: (date: Date) => boolean;
  /** Smallest second and minute the expression allows: probes inside a minute / an hour. */
  readonly #firstSecond: number;
  readonly #firstMinute: number;
  readonly #minutes: readonly number[];
  readonly #minuteOfHour: Intl.DateTimeFormat;

  /** Throws a RangeError when the expression or the time zone is invalid. */
  constructor(expression: string, timeZone = "UTC") {
    const error = cronExpressionError(expression);
    if (error !== undefined)
      throw new RangeError(`invalid cron expression ${JSON.stringify(expression)}: ${error}`);
    if (!isValidTimeZone(timeZone)) throw new RangeError(`unknown time zone ${JSON.stringify(timeZone)}`);
    this.expression = expression;
    this.timeZone = timeZone;

    const task = createTask(expression, () => undefined, { timezone: timeZone });
    void task.destroy();
    this.#match = (date) => task.match(date);

    const fields = parse(expression);
    this.#minutes = [...fields.minute].sort((a, b) => a - b);
    this.#firstMinute = this.#minutes[0] ?? 0;
    this.#firstSecond = Math.min(...fields.second);
    this.#minuteOfHour = new Intl.DateTimeFormat("en-US", { timeZone, minute: "numeric" });
  }

  /** Is the minute containing `at` inside the window? */
  contains(at: Date | number): boolean {
    return this.#matchMinute(minuteStart(toMs(at)));
  }

  /**
   * The first instant ≥ `from` inside the window: `from` itself when it is
   * inside, else the start of the next matching minute. Null when the window
   * does not open within `maxSearchMs` (default 8 days).
   */
  nextOpen(from: Date | number, maxSearchMs = MAX_WINDOW_SEARCH_MS): number | null {
    const fromMs = toMs(from);
    if (this.contains(fromMs)) return fromMs;
    const limit = fromMs + maxSearchMs;
    let minute = minuteStart(fromMs) + MINUTE_MS;
    while (minute <= limit) {
      // Hour, day, month and weekday are constant within a local hour: probe
      // the hour once at its first allowed minute and skip it if it cannot match.
      const localMinute = this.#localMinute(minute);
      const hourStart = minute - localMinute * MINUTE_MS;
      if (!this.#matchMinute(hourStart + this.#firstMinute * MINUTE_MS)) {
        minute = hourStart + 60 * MINUTE_MS;
        continue;
      }
      for (const m of this.#minutes) {
        if (m < localMinute) continue;
        const candidate = hourStart + m * MINUTE_MS;
        if (candidate > limit) return null;
        if (this.#matchMinute(candidate)) return candidate;
      }
      minute = hourStart + 60 * MINUTE_MS;
    }
    return null;
  }

  #matchMinute(minuteStartMs: number): boolean {
    return this.#match(new Date(minuteStartMs + this.#firstSecond * 1_000));
  }

  #localMinute(ms: number): number {
    const part = this.#minuteOfHour.formatToParts(new Date(ms)).find((p) => p.type === "minute");
    return part === undefined ? 0 : Number(part.value);
  }
}

/** The window of a policy, or undefined when it has none (always open). */
export function policyWindow(policy: { window?: string; windowTimeZone?: string }): CronWindow | undefined {
  return policy.window === undefined ? undefined : new CronWindow(policy.window, policy.windowTimeZone);
}

function toMs(at: Date | number): number {
  return typeof at === "number" ? at : at.getTime();
}

function minuteStart(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}
