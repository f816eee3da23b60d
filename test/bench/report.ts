/**
 * The benchmark's report: lines printed as they come and kept for the report
 * file, and the few number formats every phase uses.
 */
import { quantile, type Histogram } from "./metrics.ts";

export class Report {
  readonly lines: string[] = [];

  say(line = ""): void {
    console.log(line);
    this.lines.push(line);
  }
}

export const ms = (v: number): string => (v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`);
export const mb = (bytes: number | undefined): string =>
  bytes === undefined ? "?" : `${(bytes / 2 ** 20).toFixed(0)} MB`;
/** Seconds since a performance.now() instant. */
export const secs = (from: number): string => `${((performance.now() - from) / 1000).toFixed(1)} s`;
/** A quantile estimated from histogram buckets (seconds, shown in ms), "> bound" when in the +Inf bucket. */
export const est = (h: Histogram, q: number, unit = 1000): string => {
  const r = quantile(h, q);
  if (!r) return "n/a";
  return r.above ? `> ${ms(r.value * unit)}` : `≈ ${ms(r.value * unit)}`;
};
