/**
 * Reading the daemon's /metrics for the benchmark: the Prometheus text
 * format, histograms (with differences between two scrapes, so a phase is
 * measured on its own), quantiles estimated from buckets the way PromQL's
 * histogram_quantile() does, and percentiles of raw samples.
 */
import https from "node:https";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

export async function scrape(port: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/**
 * The API server's own /metrics (with the control plane's admin token), to tell its request latency from the
 * daemons'. Only the series named `only` are kept: the whole text is several MB.
 */
export function scrapeApiServer(server: string, token: string, ca: string, only: string): Promise<Sample[]> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      `${server}/metrics`,
      { ca, headers: { Authorization: `Bearer ${token}` } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          if (res.statusCode !== 200)
            return reject(new Error(`API server /metrics answered ${res.statusCode}`));
          resolve(
            parseMetrics(
              text
                .split("\n")
                .filter((l) => l.startsWith(only))
                .join("\n"),
            ),
          );
        });
      },
    );
    req.on("error", reject);
  });
}

/** The value of one series (labels must match those given); undefined when absent. */
export function value(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

export interface Histogram {
  /** Cumulative counts by upper bound, ascending; the last bound is +Inf. */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

/** A histogram summed over every series matching `labels` (e.g. all phases, or one). */
export function histogram(samples: Sample[], name: string, labels: Record<string, string> = {}): Histogram {
  const match = (s: Sample) => Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  const byLe = new Map<number, number>();
  let sum = 0;
  let count = 0;
  for (const s of samples) {
    if (!match(s)) continue;
    if (s.name === `${name}_bucket`) {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      byLe.set(le, (byLe.get(le) ?? 0) + s.value);
    } else if (s.name === `${name}_sum`) sum += s.value;
    else if (s.name === `${name}_count`) count += s.value;
  }
  const buckets = [...byLe].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c }));
  return { buckets, sum, count };
}

/** b − a: what was observed between two scrapes. */
export function since(a: Histogram, b: Histogram): Histogram {
  const before = new Map(a.buckets.map((x) => [x.le, x.count]));
  return {
    buckets: b.buckets.map((x) => ({ le: x.le, count: x.count - (before.get(x.le) ?? 0) })),
    sum: b.sum - a.sum,
    count: b.count - a.count,
  };
}

/**
 * The q-quantile estimated from buckets with linear interpolation inside the
 * bucket (histogram_quantile semantics). In the +Inf bucket the answer is only
 * "above the highest finite bound", returned as `{ value: bound, above: true }`.
 */
export function quantile(h: Histogram, q: number): { value: number; above: boolean } | undefined {
  const total = h.buckets.at(-1)?.count ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return { value: prevLe, above: true };
      const inBucket = b.count - prevCount;
      const frac = inBucket > 0 ? (rank - prevCount) / inBucket : 1;
      return { value: prevLe + (b.le - prevLe) * frac, above: false };
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return { value: prevLe, above: true };
}

/** Share of observations at or below `le` (one of the bucket bounds). */
export function fractionAtMost(h: Histogram, le: number): number | undefined {
  const total = h.buckets.at(-1)?.count ?? 0;
  const b = h.buckets.find((x) => x.le === le);
  return total > 0 && b ? b.count / total : undefined;
}

/** Nearest-rank percentile of raw samples. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Several histograms of one metric (e.g. one per replica) as one. */
export function merge(hs: Histogram[]): Histogram {
  const byLe = new Map<number, number>();
  for (const h of hs) for (const b of h.buckets) byLe.set(b.le, (byLe.get(b.le) ?? 0) + b.count);
  return {
    buckets: [...byLe].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count })),
    sum: hs.reduce((a, h) => a + h.sum, 0),
    count: hs.reduce((a, h) => a + h.count, 0),
  };
}
