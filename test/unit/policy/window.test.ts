import { test } from "node:test";
import assert from "node:assert/strict";
import { getTasks } from "node-cron";
import {
  CronWindow,
  cronExpressionError,
  isValidTimeZone,
  MAX_WINDOW_SEARCH_MS,
  policyWindow,
} from "../../../src/policy/window.ts";

const utc = (iso: string) => Date.parse(iso);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

void test("validation uses node-cron's rules", () => {
  assert.equal(cronExpressionError("*/1 9-17 * * 1-5"), undefined);
  assert.equal(cronExpressionError("0 */5 9-17 * * mon-fri"), undefined, "6 fields and day names");
  assert.equal(cronExpressionError("61 * * * *"), 'minute field "61" is invalid');
  assert.equal(cronExpressionError("* * *"), "expected 5 or 6 fields but got 3");
  assert.equal(cronExpressionError("* * * * * * *"), "expected 5 or 6 fields but got 7");
  assert.equal(cronExpressionError("0 0 30 2 *"), "30 2 is an impossible day of month for the given month");
  assert.notEqual(cronExpressionError("a b c d e"), undefined);
});

void test("time zones are validated with Intl", () => {
  assert.equal(isValidTimeZone("Europe/Berlin"), true);
  assert.equal(isValidTimeZone("UTC"), true);
  assert.equal(isValidTimeZone("Mars/Olympus"), false);
  assert.equal(isValidTimeZone(""), false);
  assert.throws(() => new CronWindow("* * * * *", "Mars/Olympus"), /unknown time zone "Mars\/Olympus"/);
  assert.throws(() => new CronWindow("61 * * * *"), /invalid cron expression "61 \* \* \* \*"/);
});

void test("contains: weekday office hours in UTC (the default zone)", () => {
  const w = new CronWindow("* 9-17 * * 1-5");
  assert.equal(w.timeZone, "UTC");
  assert.equal(w.contains(utc("2025-01-06T09:00:00Z")), true, "Monday 09:00");
  assert.equal(w.contains(utc("2025-01-06T17:59:59.999Z")), true, "Monday 17:59:59.999");
  assert.equal(w.contains(utc("2025-01-06T18:00:00Z")), false, "Monday 18:00");
  assert.equal(w.contains(utc("2025-01-06T08:59:59Z")), false, "Monday 08:59:59");
  assert.equal(w.contains(new Date("2025-01-04T12:00:00Z")), false, "Saturday noon");
});

void test("contains: minute resolution, a 6-field seconds field does not narrow a minute", () => {
  const w = new CronWindow("30 */15 * * * *");
  assert.equal(w.contains(utc("2025-01-06T10:15:00Z")), true);
  assert.equal(w.contains(utc("2025-01-06T10:15:59Z")), true);
  assert.equal(w.contains(utc("2025-01-06T10:16:00Z")), false);
});

void test("contains: in a time zone, across a DST change", () => {
  const w = new CronWindow("* 9-17 * * 1-5", "Europe/Berlin");
  // Winter (UTC+1): 08:00Z is 09:00 in Berlin.
  assert.equal(w.contains(utc("2025-01-06T08:00:00Z")), true);
  assert.equal(w.contains(utc("2025-01-06T07:59:00Z")), false);
  // Summer (UTC+2): 07:00Z is 09:00 in Berlin.
  assert.equal(w.contains(utc("2025-07-07T07:00:00Z")), true);
  assert.equal(w.contains(utc("2025-07-07T06:59:00Z")), false);
});

void test("nextOpen returns the instant itself when inside", () => {
  const w = new CronWindow("* 9-17 * * 1-5");
  const t = utc("2025-01-06T10:20:30.500Z");
  assert.equal(w.nextOpen(t), t);
});

void test("nextOpen jumps over the weekend to Monday 09:00 in the window's zone", () => {
  const w = new CronWindow("*/1 9-17 * * 1-5", "Europe/Berlin");
  // Friday 18:30 in Berlin.
  assert.equal(iso(w.nextOpen(utc("2025-01-03T17:30:00Z"))), "2025-01-06T08:00:00.000Z");
  // Friday 17:59:30 in Berlin is inside.
  assert.equal(iso(w.nextOpen(utc("2025-01-03T16:59:30Z"))), "2025-01-03T16:59:30.000Z");
});

void test("nextOpen finds minute-level matches inside an hour and across a DST jump", () => {
  const quarter = new CronWindow("0,15,30,45 * * * *");
  assert.equal(iso(quarter.nextOpen(utc("2025-01-06T10:16:10Z"))), "2025-01-06T10:30:00.000Z");
  assert.equal(iso(quarter.nextOpen(utc("2025-01-06T10:46:00Z"))), "2025-01-06T11:00:00.000Z");
  // India is UTC+05:30: local hours do not start on UTC hours.
  const india = new CronWindow("5 9 * * *", "Asia/Kolkata");
  assert.equal(iso(india.nextOpen(utc("2025-01-06T00:00:00Z"))), "2025-01-06T03:35:00.000Z");
  // 2025-03-30: Berlin skips 02:00-02:59. The 03:00 window opens at 01:00Z.
  const berlin = new CronWindow("* 3 * * *", "Europe/Berlin");
  assert.equal(iso(berlin.nextOpen(utc("2025-03-29T23:00:00Z"))), "2025-03-30T01:00:00.000Z");
});

void test("nextOpen gives up after the search horizon", () => {
  const leapDay = new CronWindow("0 0 29 2 *");
  assert.equal(leapDay.nextOpen(utc("2025-01-01T00:00:00Z")), null);
  assert.equal(iso(leapDay.nextOpen(utc("2028-02-25T00:00:00Z"))), "2028-02-29T00:00:00.000Z");
  const daily = new CronWindow("0 12 * * *");
  assert.equal(daily.nextOpen(utc("2025-01-06T12:01:00Z"), 60 * 60_000), null);
  assert.equal(MAX_WINDOW_SEARCH_MS, 8 * 24 * 3_600_000);
});

void test("windows leave nothing behind in node-cron's task registry", () => {
  const before = getTasks().size;
  for (let i = 0; i < 50; i++) new CronWindow("* * * * *");
  assert.equal(getTasks().size, before);
});

void test("policyWindow: no window means always open", () => {
  assert.equal(policyWindow({}), undefined);
  const w = policyWindow({ window: "* 9 * * *", windowTimeZone: "America/New_York" });
  assert.ok(w);
  assert.equal(w.timeZone, "America/New_York");
  assert.equal(w.contains(utc("2025-01-06T14:30:00Z")), true);
});
