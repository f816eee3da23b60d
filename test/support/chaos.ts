/**
 * Test support for chaos and load runs: a seeded pseudo-random generator (so
 * a failing schedule can be replayed from the printed seed), bounded
 * concurrency for creating many objects, and reading timings out of the
 * daemon's JSON log lines.
 */
import type { LogLine } from "./daemon.ts";

/** mulberry32: a small, fast, seedable PRNG with good enough spread for schedules. Returns [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates with the given generator. */
export function shuffle<T>(items: readonly T[], rng: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Runs `fn` over `items` with at most `limit` in flight; results in input order; the first error rejects. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The epoch ms of a pino line (`time` is ISO 8601 in rolloutd's logger). */
export function lineTime(l: LogLine): number {
  const t = l.time;
  return typeof t === "number" ? t : Date.parse(String(t));
}

/** Epoch ms of the first line matching `pred`, if any. */
export function firstLineAt(lines: LogLine[], pred: (l: LogLine) => boolean): number | undefined {
  const l = lines.find(pred);
  return l ? lineTime(l) : undefined;
}
