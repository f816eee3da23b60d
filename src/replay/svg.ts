/**
 * The picture of a rehearsal (simulate or replay): one panel per check, its value at each analysis against
 * its bound(s) — for compare: stable checks the stable's value too — over time, with the steps as bands and
 * every decision marked. A self-contained SVG document: no scripts, no external fonts, images or styles.
 */
import type { CheckResult } from "../analysis/types.ts";
import type { Frame, Timeline } from "./driver.ts";

const WIDTH = 960;
const LEFT = 70;
const RIGHT = 20;
const HEADER = 56;
const PANEL = 150;
const GAP = 34;
const DECISIONS = 40;

const COLORS = {
  canary: "#1f5fbf",
  stable: "#7a7a7a",
  bound: "#c0392b",
  pass: "#2e8b57",
  hold: "#d4a017",
  fail: "#c0392b",
  promoted: "#1f5fbf",
  band: ["#f4f6fa", "#e9edf4"],
};

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

function label(v: number): string {
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 1e6)) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

function decisionColor(reason: string): string {
  switch (reason) {
    case "StepAdvanced":
      return COLORS.pass;
    case "Promoted":
      return COLORS.promoted;
    case "RolledBack":
      return COLORS.fail;
    default:
      return COLORS.hold;
  }
}

function valueOf(o: CheckResult["outcome"] | undefined): number | undefined {
  return o?.kind === "value" ? o.value : undefined;
}

/** Renders the timeline. `title` defaults to the policy and the outcome. */
export function renderSvg(t: Timeline, title?: string, time?: (at: number) => string): string {
  const frames = t.frames;
  const names: string[] = [];
  for (const f of frames)
    for (const c of f.report?.checks ?? []) if (!names.includes(c.name)) names.push(c.name);
  const height = HEADER + DECISIONS + names.length * (PANEL + GAP) + 20;
  const t0 = t.start;
  const last = Math.max(t0 + 1, ...frames.map((f) => f.at));
  const t1 = last + (last - t0) * 0.04; // room for the last markers
  const plotW = WIDTH - LEFT - RIGHT;
  const x = (at: number) => LEFT + ((at - t0) / (t1 - t0)) * plotW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`);
  const full = title ?? `${t.policy}: ${t.outcome}`;
  const heading = full.length > 110 ? `${full.slice(0, 109)}…` : full;
  out.push(`<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${escapeXml(heading)}</text>`);
  out.push(`<text x="${LEFT}" y="38" fill="#444">${escapeXml(t.ending.slice(0, 160))}</text>`);

  // Step bands over the whole height, labelled in the decision strip.
  const bandTop = HEADER;
  const bandH = height - HEADER - 10;
  const steps: Array<{ stepIndex: number; from: number; to: number; weight: number }> = [];
  for (const f of frames) {
    const last = steps[steps.length - 1];
    if (last !== undefined && last.stepIndex === f.stepIndex) last.to = f.at;
    else
      steps.push({
        stepIndex: f.stepIndex,
        from: Math.min(f.stepStartedAt, f.at),
        to: f.at,
        weight: f.canaryWeight,
      });
  }
  steps.forEach((s, i) => {
    const from = i === 0 ? t0 : s.from;
    out.push(
      `<rect x="${num(x(from))}" y="${bandTop}" width="${num(Math.max(1, x(s.to) - x(from)))}" height="${bandH}" fill="${COLORS.band[i % 2]}"/>`,
    );
    out.push(
      `<text x="${num(x(from) + 4)}" y="${bandTop + 12}" fill="#333">${escapeXml(`step ${s.stepIndex + 1} · ${s.weight}%`)}</text>`,
    );
  });

  // Decisions.
  for (const f of frames) {
    out.push(
      `<circle cx="${num(x(f.at))}" cy="${HEADER + 22}" r="6" fill="${decisionColor(f.reason)}"><title>${escapeXml(
        `#${f.index + 1} ${new Date(f.at).toISOString()} ${f.reason}: ${f.message}`,
      )}</title></circle>`,
    );
    if (time !== undefined) {
      out.push(
        `<text x="${num(x(f.at))}" y="${HEADER + 40}" text-anchor="middle" font-size="9" fill="#555">${escapeXml(time(f.at))}</text>`,
      );
    }
    out.push(
      `<line x1="${num(x(f.at))}" x2="${num(x(f.at))}" y1="${HEADER + 28}" y2="${height - 10}" stroke="${decisionColor(f.reason)}" stroke-width="0.6" stroke-dasharray="2,3"/>`,
    );
  }
  const legendY = HEADER + 26;
  const legend: Array<[string, string]> = [
    ["advanced", COLORS.pass],
    ["held / retried", COLORS.hold],
    ["rolled back", COLORS.fail],
    ["promoted", COLORS.promoted],
  ];
  legend.forEach(([text, color], i) => {
    const lx = WIDTH - RIGHT - 110 * (legend.length - i);
    out.push(`<circle cx="${lx}" cy="${legendY - 30}" r="4" fill="${color}"/>`);
    out.push(`<text x="${lx + 7}" y="${legendY - 26}">${escapeXml(text)}</text>`);
  });

  names.forEach((name, p) => {
    const top = HEADER + DECISIONS + p * (PANEL + GAP) + 14;
    const bottom = top + PANEL;
    const rows = frames.map((f) => ({ f, c: f.report?.checks.find((c) => c.name === name) }));
    const finite: number[] = [];
    for (const { c } of rows) {
      for (const v of [valueOf(c?.outcome), valueOf(c?.baseline), c?.min, c?.max]) {
        if (v !== undefined && Number.isFinite(v)) finite.push(v);
      }
    }
    let lo = finite.length > 0 ? Math.min(...finite) : 0;
    let hi = finite.length > 0 ? Math.max(...finite) : 1;
    if (lo === hi) {
      lo -= Math.abs(lo) * 0.1 + 1;
      hi += Math.abs(hi) * 0.1 + 1;
    }
    const pad = (hi - lo) * 0.1;
    lo -= pad;
    hi += pad;
    const y = (v: number) => {
      if (v === Number.POSITIVE_INFINITY) return top;
      if (v === Number.NEGATIVE_INFINITY) return bottom;
      return bottom - ((v - lo) / (hi - lo)) * PANEL;
    };
    out.push(`<text x="${LEFT}" y="${top - 4}" font-weight="bold">${escapeXml(name)}</text>`);
    out.push(`<rect x="${LEFT}" y="${top}" width="${plotW}" height="${PANEL}" fill="none" stroke="#999"/>`);
    for (const v of [lo + pad, (lo + hi) / 2, hi - pad]) {
      out.push(
        `<text x="${LEFT - 6}" y="${num(y(v) + 4)}" text-anchor="end" fill="#555">${escapeXml(label(v))}</text>`,
      );
      out.push(`<line x1="${LEFT}" x2="${LEFT + plotW}" y1="${num(y(v))}" y2="${num(y(v))}" stroke="#ddd"/>`);
    }
    // Bounds as steps (they may move with the stable's value).
    for (const key of ["max", "min"] as const) {
      const pts = rows
        .filter((r) => r.c?.[key] !== undefined)
        .map((r) => [x(r.f.at), y(r.c![key]!)] as const);
      if (pts.length > 0) {
        const d = pts.map(([px, py], i) => `${i === 0 ? "M" : "L"}${num(px)},${num(py)}`).join(" ");
        out.push(
          `<path d="${d}" fill="none" stroke="${COLORS.bound}" stroke-width="1.5" stroke-dasharray="6,3"/>`,
        );
        const [lx, ly] = pts[pts.length - 1]!;
        out.push(
          `<text x="${num(lx - 4)}" y="${num(ly - 4)}" text-anchor="end" fill="${COLORS.bound}">${key}</text>`,
        );
      }
    }
    // Stable (compare: stable) and canary values.
    for (const [which, color] of [
      ["baseline", COLORS.stable],
      ["outcome", COLORS.canary],
    ] as const) {
      const pts = rows
        .map((r) => ({ r, v: valueOf(r.c?.[which]) }))
        .filter((p): p is { r: (typeof rows)[number]; v: number } => p.v !== undefined);
      if (pts.length === 0) continue;
      const d = pts.map((p, i) => `${i === 0 ? "M" : "L"}${num(x(p.r.f.at))},${num(y(p.v))}`).join(" ");
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.8"/>`);
      for (const p of pts) {
        const verdict = p.r.c?.verdict;
        const fill = which === "baseline" ? color : verdict === "fail" ? COLORS.fail : color;
        out.push(
          `<circle cx="${num(x(p.r.f.at))}" cy="${num(y(p.v))}" r="3.5" fill="${fill}"><title>${escapeXml(
            `${which === "baseline" ? "stable" : "canary"} ${label(p.v)}: ${p.r.c?.reason ?? ""}`,
          )}</title></circle>`,
        );
      }
    }
    // Results that are not values: marked at the bottom of the panel.
    for (const { f, c } of rows) {
      if (c === undefined || c.outcome.kind === "value") continue;
      const text = c.outcome.kind === "noData" ? "no data" : c.outcome.kind === "nan" ? "NaN" : "error";
      out.push(
        `<text x="${num(x(f.at))}" y="${bottom - 4}" text-anchor="middle" fill="${COLORS.hold}">${escapeXml(text)}<title>${escapeXml(c.reason)}</title></text>`,
      );
    }
    if (rows.some((r) => r.c?.baseline !== undefined)) {
      out.push(
        `<text x="${LEFT + plotW}" y="${top - 4}" text-anchor="end" fill="${COLORS.stable}">grey: stable, blue: canary</text>`,
      );
    }
  });
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}

/** One line per frame for tables: what the analysis said and what the machine did. */
export function frameLine(f: Frame): string {
  return `${f.reason}: ${f.report?.summary ?? f.message}`;
}
