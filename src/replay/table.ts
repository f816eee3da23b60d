/**
 * The table of a rehearsal (simulate or replay): one row per analysis — when, which step, the analysis
 * verdict, the decision the daemon would record and why — then the outcome.
 */
import type { Timeline } from "./driver.ts";

const OUTCOME_TEXT = {
  promoted: "PROMOTED",
  rolledBack: "ROLLED BACK",
  incomplete: "NO DECISION",
} as const;

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + " ".repeat(width - text.length);
}

/** Seconds since the start, as +1m30s. */
export function relativeTime(start: number): (at: number) => string {
  return (at) => {
    const s = Math.round((at - start) / 1000);
    const m = Math.floor(s / 60);
    const h = Math.floor(m / 60);
    if (h > 0) return `+${h}h${m % 60}m${s % 60 ? `${s % 60}s` : ""}`;
    if (m > 0) return `+${m}m${s % 60 ? `${s % 60}s` : ""}`;
    return `+${s}s`;
  };
}

export function isoTime(at: number): string {
  return new Date(at).toISOString().replace(/\.000Z$/, "Z");
}

export function renderTable(t: Timeline, steps: readonly number[], time: (at: number) => string): string {
  const rows: string[][] = [["#", "at", "step", "weight", "analysis", "decision", "why"]];
  for (const f of t.frames) {
    rows.push([
      String(f.index + 1),
      time(f.at),
      `${f.stepIndex + 1}/${steps.length}`,
      `${f.canaryWeight}%`,
      f.report === undefined ? "—" : f.early ? `${f.report.verdict} (in-step)` : f.report.verdict,
      f.reason,
      f.report?.summary ?? f.message,
    ]);
  }
  const widths = rows[0]!.slice(0, -1).map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r.map((cell, i) => (i < widths.length ? pad(cell, widths[i]!) : cell)).join("  "),
  );
  lines.push("");
  if (t.quietEvaluations > 0) {
    lines.push(`(${t.quietEvaluations} in-step evaluations found no breach and changed nothing; not listed)`);
  }
  lines.push(`${OUTCOME_TEXT[t.outcome]}: ${t.ending}`);
  return `${lines.join("\n")}\n`;
}
