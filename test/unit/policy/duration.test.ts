import { test } from "node:test";
import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "../../../src/policy/duration.ts";

void test("parses Go-style durations to milliseconds", () => {
  const cases: [string, number][] = [
    ["500ms", 500],
    ["30s", 30_000],
    ["1m", 60_000],
    ["1m30s", 90_000],
    ["2h", 7_200_000],
    ["1h2m3s4ms", 3_723_004],
    ["1.5h", 5_400_000],
    ["0.7s", 700],
    [".5s", 500],
    [" 10s ", 10_000],
  ];
  for (const [text, ms] of cases) assert.deepEqual(parseDuration(text), { ok: true, ms }, text);
});

void test("rejects garbage with a reason", () => {
  assert.deepEqual(parseDuration("abc"), {
    ok: false,
    error: 'invalid duration "abc": not a duration (use a number with a unit: 500ms, 30s, 1m30s, 2h)',
  });
  assert.deepEqual(parseDuration("30"), {
    ok: false,
    error: 'invalid duration "30": a unit is required (use a number with a unit: 500ms, 30s, 1m30s, 2h)',
  });
  assert.deepEqual(parseDuration("1d"), {
    ok: false,
    error:
      'invalid duration "1d": there is no day unit, use h (e.g. 24h) (use a number with a unit: 500ms, 30s, 1m30s, 2h)',
  });
  assert.deepEqual(parseDuration("1.5ms"), {
    ok: false,
    error: 'invalid duration "1.5ms": finer than one millisecond',
  });
  for (const bad of ["", "s", "1m 30s", "10us", "1e3s", "1m-", "--1s", "1s1"]) {
    assert.equal(parseDuration(bad).ok, false, bad);
  }
});

void test("negatives and zero are refused unless the caller allows them", () => {
  assert.deepEqual(parseDuration("-1m"), { ok: false, error: 'duration must not be negative (got "-1m")' });
  assert.deepEqual(parseDuration("-1m", { allowNegative: true }), { ok: true, ms: -60_000 });
  assert.deepEqual(parseDuration("0s"), {
    ok: false,
    error: 'duration must be greater than zero (got "0s")',
  });
  assert.deepEqual(parseDuration("0", { allowZero: true }), { ok: true, ms: 0 });
  assert.deepEqual(parseDuration("0m0s", { allowZero: true }), { ok: true, ms: 0 });
});

void test("min and max bounds", () => {
  assert.deepEqual(parseDuration("500ms", { min: 1_000 }), {
    ok: false,
    error: 'duration must be at least 1s (got "500ms")',
  });
  assert.deepEqual(parseDuration("25h", { max: 86_400_000 }), {
    ok: false,
    error: 'duration must be at most 24h (got "25h")',
  });
  assert.deepEqual(parseDuration("1s", { min: 1_000 }), { ok: true, ms: 1_000 });
});

void test("formatDuration writes what parseDuration reads back", () => {
  assert.equal(formatDuration(90_000), "1m30s");
  assert.equal(formatDuration(500), "500ms");
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(3_723_004), "1h2m3s4ms");
  assert.equal(formatDuration(-60_000), "-1m");
  for (const ms of [1, 999, 1_000, 61_000, 3_600_000, 86_400_000, 123_456_789]) {
    assert.deepEqual(parseDuration(formatDuration(ms)), { ok: true, ms });
  }
});
