import { type SampleBucket } from "@kiln/core/driver-kit";

/** One charted sample: time (ms since epoch), value, and whether its quality was good. */
export interface ReportPoint {
  readonly t: number;
  readonly v: number;
  readonly good: boolean;
}

/** A line on a chart. */
export interface ReportSeries {
  readonly label: string;
  /** `primary` is the measured value (its quality drives the chart's gaps); `reference` a setpoint. */
  readonly role: "primary" | "reference";
  readonly points: readonly ReportPoint[];
  /** Draw as a step line (a setpoint holds its value until the next one). @default false */
  readonly step?: boolean;
  /**
   * For values logged on change (with a deadband): the value holds between samples, so the line
   * stays flat until `holdMs` before the next sample when they are further apart than twice
   * that, and the last value of a run of good samples holds until the next sample or the end
   * of the range. Use the tag's scan period. @default undefined (plain straight lines)
   */
  readonly holdMs?: number;
  /**
   * The samples whose quality drives the chart's gaps, when `points` are a downsample: M4 keeps
   * each column's value extremes, not its quality changes, so an uncertain stretch can be missing
   * from the drawn points. @default points
   */
  readonly qualityPoints?: readonly ReportPoint[];
}

/** A horizontal limit line (an alarm setpoint). */
export interface ReportLimit {
  readonly label: string;
  readonly value: number;
  readonly severity: "warning" | "danger";
}

/** One trend chart. */
export interface ReportChart {
  /** Used in element ids and to attach markers; letters, digits and `-`. */
  readonly id: string;
  readonly title: string;
  readonly unit: string;
  readonly series: readonly ReportSeries[];
  /** Min/max envelope of the primary series, from the store's downsampled buckets. */
  readonly band?: { readonly bucketMs: number; readonly buckets: readonly SampleBucket[] };
  readonly limits?: readonly ReportLimit[];
}

/** A time span shaded on every chart (a recipe step). */
export interface ReportPhase {
  readonly start: number;
  readonly end: number;
  /** Chooses the colour: `heat-up`, `condition`, `tma`, `h2o`, `purge`, `hold`, or anything else. */
  readonly kind: string;
  readonly label: string;
}

/** A moment marked by a vertical line. */
export interface ReportMarker {
  readonly at: number;
  readonly kind: "alarm" | "acknowledge" | "interlock" | "link-lost" | "link-restored";
  readonly label: string;
  /** Only on this chart. @default every chart */
  readonly chartId?: string;
}

/** A table under the charts (alarms, breaker events...). */
export interface ReportTable {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Shown instead of an empty table. */
  readonly empty?: string;
}

/** One line of the summary. `ok: false` highlights it. */
export interface ReportSummaryItem {
  readonly label: string;
  readonly value: string;
  readonly ok?: boolean;
}

/** Everything the run report shows. */
export interface RunReportData {
  readonly title: string;
  readonly subtitle?: string;
  /** The charted time range, ms since epoch. */
  readonly range: { readonly from: number; readonly to: number };
  readonly charts: readonly ReportChart[];
  readonly phases: readonly ReportPhase[];
  readonly markers: readonly ReportMarker[];
  readonly summary: readonly ReportSummaryItem[];
  readonly tables?: readonly ReportTable[];
  /** Shown as JSON. */
  readonly recipe: unknown;
  /** The run's parameter values, shown next to the recipe. */
  readonly parameters?: Readonly<Record<string, unknown>>;
  readonly notes?: readonly string[];
}

/** A span where the primary series' quality was not good: the communication gap. */
export interface QualityGap {
  readonly start: number;
  readonly end: number;
  /** Samples of non-good quality inside it. */
  readonly samples: number;
}

const WIDTH = 1000;
const HEIGHT = 280;
const MARGIN = { top: 16, right: 110, bottom: 34, left: 64 };
const PLOT_WIDTH = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;

const PHASE_LEGEND: readonly (readonly [string, string])[] = [
  ["heat-up", "heat-up"],
  ["condition", "wait for condition"],
  ["tma", "TMA pulse"],
  ["h2o", "H2O pulse"],
  ["purge", "purge"],
  ["hold", "purge hold"],
];

/**
 * The spans where `points` (in time order) were not of good quality: from the first non-good
 * sample to the next good one (or `until` when none follows).
 */
export function qualityGaps(points: readonly ReportPoint[], until: number): QualityGap[] {
  const gaps: QualityGap[] = [];
  let start: number | undefined;
  let samples = 0;
  for (const point of points) {
    if (!point.good) {
      start ??= point.t;
      samples++;
    } else if (start !== undefined) {
      gaps.push({ start, end: point.t, samples });
      start = undefined;
      samples = 0;
    }
  }
  if (start !== undefined) gaps.push({ start, end: Math.max(start, until), samples });
  return gaps;
}

/**
 * Builds the run report: one self-contained HTML page (inline CSS and SVG, no script or style
 * from anywhere else, no network) with a trend chart per {@link ReportChart}, the recipe's
 * phases shaded behind the traces, alarm and link markers, communication gaps hatched, the
 * summary, tables, and the recipe as JSON. A small inline script measures the drawn traces on
 * load and records how many charts have a visible trace in `body[data-charts-drawn]`.
 */
export function buildRunReport(data: RunReportData): string {
  const charts = data.charts.map((chart) => renderChart(chart, data)).join("\n");
  const summary = data.summary
    .map(
      (item) =>
        `<tr${item.ok === false ? ' class="bad"' : ""}><th scope="row">${escapeHtml(item.label)}</th><td>${escapeHtml(item.value)}</td></tr>`,
    )
    .join("\n");
  const tables = (data.tables ?? []).map(renderTable).join("\n");
  const notes = (data.notes ?? []).map((note) => `<p class="note">${escapeHtml(note)}</p>`).join("\n");
  const legend = PHASE_LEGEND.map(
    ([kind, label]) => `<span class="key"><span class="swatch phase-${kind}"></span>${escapeHtml(label)}</span>`,
  ).join("");
  const parameters = data.parameters
    ? `<h3>Run parameters</h3><pre>${escapeHtml(JSON.stringify(data.parameters, null, 2))}</pre>`
    : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(data.title)}</title>
<style>${STYLE}</style>
</head>
<body data-charts="${data.charts.length}" data-charts-drawn="pending">
<header>
<h1>${escapeHtml(data.title)}</h1>
${data.subtitle ? `<p class="subtitle">${escapeHtml(data.subtitle)}</p>` : ""}
</header>
<main>
<section class="summary"><h2>Summary</h2><table>${summary}</table>${notes}</section>
<section class="charts"><h2>Trends</h2>
<p class="legend">${legend}<span class="key"><span class="swatch gap"></span>no communication</span><span class="key"><span class="swatch band"></span>min/max per bucket</span></p>
${charts}
</section>
${tables}
<section class="recipe"><h2>Recipe</h2>${parameters}<h3>Definition</h3><pre>${escapeHtml(JSON.stringify(data.recipe, null, 2))}</pre></section>
</main>
<script>${MEASURE_SCRIPT}</script>
</body>
</html>
`;
}

function renderChart(chart: ReportChart, data: RunReportData): string {
  const { from, to } = data.range;
  const span = Math.max(1, to - from);
  const x = (t: number): number => MARGIN.left + ((Math.min(Math.max(t, from), to) - from) / span) * PLOT_WIDTH;
  const values: number[] = [];
  for (const series of chart.series) for (const point of series.points) values.push(point.v);
  for (const bucket of chart.band?.buckets ?? []) values.push(bucket.min, bucket.max);
  for (const limit of chart.limits ?? []) values.push(limit.value);
  const [low, high] = niceDomain(values);
  const y = (v: number): number => MARGIN.top + (1 - (v - low) / (high - low)) * PLOT_HEIGHT;
  const primary = chart.series.find((series) => series.role === "primary");
  const gaps = primary ? qualityGaps(primary.qualityPoints ?? primary.points, to) : [];

  const parts: string[] = [];
  parts.push(`<rect class="plot" x="${MARGIN.left}" y="${MARGIN.top}" width="${PLOT_WIDTH}" height="${PLOT_HEIGHT}"/>`);
  for (const phase of data.phases) {
    if (phase.end < from || phase.start > to) continue;
    const left = x(phase.start);
    const width = Math.max(0.5, x(phase.end) - left);
    parts.push(
      `<rect class="phase phase-${cssToken(phase.kind)}" x="${fixed(left)}" y="${MARGIN.top}" width="${fixed(width)}" height="${PLOT_HEIGHT}"><title>${escapeHtml(phase.label)} (${seconds(phase.start - from)}–${seconds(phase.end - from)})</title></rect>`,
    );
  }
  for (const gap of gaps) {
    const left = x(gap.start);
    parts.push(
      `<rect class="gap" x="${fixed(left)}" y="${MARGIN.top}" width="${fixed(Math.max(2, x(gap.end) - left))}" height="${PLOT_HEIGHT}"><title>no communication: quality not good for ${seconds(gap.end - gap.start)} (${gap.samples} samples)</title></rect>`,
      `<text class="gap-label" x="${fixed(left + 4)}" y="${MARGIN.top + 14}">no communication ${seconds(gap.end - gap.start)}</text>`,
    );
  }
  parts.push(axes(chart, from, to, low, high, x, y));
  if (chart.band) {
    const { bucketMs } = chart.band;
    for (const run of bucketRuns(chart.band.buckets, bucketMs)) {
      const upper = run.flatMap((bucket) => [
        `${fixed(x(bucket.start))},${fixed(y(bucket.max))}`,
        `${fixed(x(bucket.start + bucketMs))},${fixed(y(bucket.max))}`,
      ]);
      const lower = [...run]
        .reverse()
        .flatMap((bucket) => [
          `${fixed(x(bucket.start + bucketMs))},${fixed(y(bucket.min))}`,
          `${fixed(x(bucket.start))},${fixed(y(bucket.min))}`,
        ]);
      parts.push(`<polygon class="band" points="${[...upper, ...lower].join(" ")}"/>`);
    }
  }
  for (const limit of chart.limits ?? []) {
    const top = y(limit.value);
    parts.push(
      `<line class="limit limit-${limit.severity}" x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_WIDTH}" y1="${fixed(top)}" y2="${fixed(top)}"/>`,
      `<text class="limit-label limit-${limit.severity}" x="${MARGIN.left + PLOT_WIDTH + 6}" y="${fixed(top + 4)}">${escapeHtml(limit.label)}</text>`,
    );
  }
  for (const series of chart.series) {
    const segments =
      series.role === "primary" ? goodSegments(series.points, to) : [{ points: series.points, until: to }];
    for (const segment of segments) {
      if (segment.points.length === 0) continue;
      const shaped = series.step
        ? stepPoints(segment.points, segment.until)
        : series.holdMs !== undefined
          ? holdPoints(segment.points, segment.until, series.holdMs)
          : segment.points;
      const coordinates = shaped.map((point) => `${fixed(x(point.t))},${fixed(y(point.v))}`);
      if (coordinates.length === 1) coordinates.push(coordinates[0]!);
      parts.push(
        `<polyline class="trace trace-${series.role}" points="${coordinates.join(" ")}"><title>${escapeHtml(series.label)}</title></polyline>`,
      );
    }
    if (series.role === "primary") {
      for (const point of series.points) {
        if (point.good) continue;
        parts.push(
          `<circle class="uncertain" cx="${fixed(x(point.t))}" cy="${fixed(y(point.v))}" r="3.5"><title>quality not good at ${seconds(point.t - from)}: last usable value ${formatValue(point.v)} ${escapeHtml(chart.unit)}</title></circle>`,
        );
      }
    }
  }
  for (const marker of data.markers) {
    if (marker.chartId !== undefined && marker.chartId !== chart.id) continue;
    if (marker.at < from || marker.at > to) continue;
    const left = fixed(x(marker.at));
    parts.push(
      `<g class="marker marker-${marker.kind}"><line x1="${left}" x2="${left}" y1="${MARGIN.top}" y2="${MARGIN.top + PLOT_HEIGHT}"/><path d="M${left} ${MARGIN.top} l-4 -7 h8 z"/><title>${escapeHtml(marker.label)} at ${seconds(marker.at - from)}</title></g>`,
    );
  }
  const legend = chart.series
    .map(
      (series) =>
        `<span class="key"><span class="swatch trace-${series.role}"></span>${escapeHtml(series.label)}</span>`,
    )
    .join("");
  return `<figure class="chart-figure" id="chart-${cssToken(chart.id)}">
<figcaption>${escapeHtml(chart.title)} <span class="unit">(${escapeHtml(chart.unit)})</span> ${legend}</figcaption>
<svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${escapeHtml(chart.title)}" data-chart="${escapeHtml(chart.id)}" data-gaps="${gaps.length}">
${parts.join("\n")}
</svg>
</figure>`;
}

function axes(
  chart: ReportChart,
  from: number,
  to: number,
  low: number,
  high: number,
  x: (t: number) => number,
  y: (v: number) => number,
): string {
  const parts: string[] = [];
  for (const value of ticks(low, high, 5)) {
    const top = fixed(y(value));
    parts.push(
      `<line class="grid" x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_WIDTH}" y1="${top}" y2="${top}"/>`,
      `<text class="tick tick-y" x="${MARGIN.left - 6}" y="${top}" dy="4">${formatValue(value)}</text>`,
    );
  }
  const spanSeconds = (to - from) / 1_000;
  for (const second of ticks(0, spanSeconds, 10)) {
    const left = fixed(x(from + second * 1_000));
    parts.push(
      `<line class="tick-mark" x1="${left}" x2="${left}" y1="${MARGIN.top + PLOT_HEIGHT}" y2="${MARGIN.top + PLOT_HEIGHT + 4}"/>`,
      `<text class="tick tick-x" x="${left}" y="${MARGIN.top + PLOT_HEIGHT + 17}">${formatValue(second)} s</text>`,
    );
  }
  parts.push(
    `<text class="axis-label" x="${MARGIN.left + PLOT_WIDTH / 2}" y="${HEIGHT - 2}">time since start of run</text>`,
    `<text class="axis-label" transform="rotate(-90)" x="${-(MARGIN.top + PLOT_HEIGHT / 2)}" y="14">${escapeHtml(chart.unit)}</text>`,
  );
  return parts.join("\n");
}

/** Groups buckets into runs of adjacent ones: the band is not drawn across buckets the store omitted (no samples). */
function bucketRuns(buckets: readonly SampleBucket[], bucketMs: number): SampleBucket[][] {
  const runs: SampleBucket[][] = [];
  for (const bucket of buckets) {
    const run = runs.at(-1);
    const last = run?.at(-1);
    if (run && last && bucket.start - last.start <= bucketMs * 1.001) run.push(bucket);
    else runs.push([bucket]);
  }
  return runs;
}

/** Splits a series into runs of good samples, each valid until the next sample after it (or `end`). */
function goodSegments(points: readonly ReportPoint[], end: number): { points: ReportPoint[]; until: number }[] {
  const segments: { points: ReportPoint[]; until: number }[] = [];
  let current: ReportPoint[] = [];
  for (const point of points) {
    if (point.good) {
      current.push(point);
    } else if (current.length > 0) {
      segments.push({ points: current, until: point.t });
      current = [];
    }
  }
  if (current.length > 0) segments.push({ points: current, until: end });
  return segments;
}

/** A value logged on change holds until shortly before the next sample, and the last one until `until`. */
function holdPoints(points: readonly ReportPoint[], until: number, holdMs: number): ReportPoint[] {
  const result: ReportPoint[] = [];
  points.forEach((point, index) => {
    const previous = points[index - 1];
    if (previous && point.t - previous.t > 2 * holdMs) result.push({ ...previous, t: point.t - holdMs });
    result.push(point);
  });
  const last = points.at(-1);
  if (last && until > last.t) result.push({ ...last, t: until });
  return result;
}

/** A setpoint holds its value until the next one, and until `until` after the last one. */
function stepPoints(points: readonly ReportPoint[], until: number): ReportPoint[] {
  const result: ReportPoint[] = [];
  points.forEach((point, index) => {
    const previous = points[index - 1];
    if (previous) result.push({ ...point, v: previous.v });
    result.push(point);
  });
  const last = points.at(-1);
  if (last && until > last.t) result.push({ ...last, t: until });
  return result;
}

/** A padded domain with round ends, never empty. */
function niceDomain(values: readonly number[]): [number, number] {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  let low = Math.min(...finite);
  let high = Math.max(...finite);
  if (high - low < 1e-9) {
    low -= 0.5;
    high += 0.5;
  }
  const pad = (high - low) * 0.06;
  const step = niceStep((high - low + 2 * pad) / 5);
  return [Math.floor((low - pad) / step) * step, Math.ceil((high + pad) / step) * step];
}

function niceStep(raw: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  return (residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10) * magnitude;
}

/** About `count` round values from `low` to `high`. */
function ticks(low: number, high: number, count: number): number[] {
  if (!(high > low)) return [low];
  const step = niceStep((high - low) / count);
  const result: number[] = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    result.push(Number(value.toPrecision(12)));
  }
  return result;
}

function renderTable(table: ReportTable): string {
  const head = table.columns.map((column) => `<th scope="col">${escapeHtml(column)}</th>`).join("");
  const body = table.rows
    .map((row) => `<tr>${row.map((cell) => `<td>${escapeHtml(cell)}</td>`).join("")}</tr>`)
    .join("\n");
  const content =
    table.rows.length === 0
      ? `<p class="empty">${escapeHtml(table.empty ?? "none")}</p>`
      : `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  return `<section class="table"><h2>${escapeHtml(table.title)}</h2>${content}</section>`;
}

function formatValue(value: number): string {
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  return magnitude >= 100 ? value.toFixed(0) : magnitude >= 10 ? value.toFixed(1) : String(Number(value.toFixed(3)));
}

function seconds(ms: number): string {
  return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function fixed(value: number): string {
  return String(Math.round(value * 10) / 10);
}

function cssToken(value: string): string {
  return value.replace(/[^A-Za-z0-9-]/g, "-");
}

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (character) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[character]!,
  );
}

/** Runs in the browser: counts charts whose trace was really laid out (non-zero length and width). */
const MEASURE_SCRIPT = `
(function () {
  var drawn = 0;
  var lengths = [];
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var best = 0;
    svg.querySelectorAll("polyline.trace-primary").forEach(function (line) {
      var length = line.getTotalLength();
      var box = line.getBBox();
      if (length > 0 && box.width > 0) best = Math.max(best, length);
    });
    lengths.push(Math.round(best));
    if (best > 0) drawn++;
  });
  document.body.setAttribute("data-charts-drawn", String(drawn));
  document.body.setAttribute("data-trace-lengths", lengths.join(","));
})();
`;

const STYLE = `
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6575; --line: #d7dce3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #f5f7fa; }
header { padding: 18px 28px 8px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 22px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); }
.subtitle { margin: 4px 0 8px; color: var(--muted); }
main { padding: 14px 28px 40px; max-width: 1180px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin: 0 0 16px; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 14px 3px 0; vertical-align: top; font-variant-numeric: tabular-nums; }
.summary th { font-weight: 600; color: var(--muted); }
.summary tr.bad td, .summary tr.bad th { color: #b3261e; }
.table th { border-bottom: 1px solid var(--line); }
.note { color: var(--muted); margin: 8px 0 0; }
.empty { color: var(--muted); margin: 0; }
pre { background: #f0f2f5; padding: 10px 12px; border-radius: 6px; overflow: auto; max-height: 420px; font-size: 12px; }
figure { margin: 0 0 12px; }
figcaption { font-weight: 600; margin: 4px 0; }
figcaption .unit { color: var(--muted); font-weight: 400; }
svg.chart { width: 100%; height: auto; display: block; }
.legend { color: var(--muted); margin: 0 0 8px; }
.key { display: inline-flex; align-items: center; margin: 0 14px 0 0; font-weight: 400; font-size: 12px; color: var(--muted); }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 5px; border: 1px solid #0002; }
.plot { fill: #fff; stroke: var(--line); }
.grid { stroke: #e9ecf1; }
.tick { font-size: 11px; fill: var(--muted); }
.tick-y { text-anchor: end; }
.tick-x { text-anchor: middle; }
.tick-mark { stroke: var(--muted); }
.axis-label { font-size: 11px; fill: var(--muted); text-anchor: middle; }
.phase { stroke: none; }
.phase-heat-up { fill: #fde7c8; }
.phase-condition { fill: #e6e0f5; }
.phase-tma { fill: #cfe3fb; }
.phase-h2o { fill: #cdf0dc; }
.phase-purge { fill: #f3f4f6; }
.phase-hold { fill: #e9e2d6; }
.phase-set, .phase-other { fill: #eee; }
.swatch.phase-heat-up { background: #fde7c8; } .swatch.phase-condition { background: #e6e0f5; }
.swatch.phase-tma { background: #cfe3fb; } .swatch.phase-h2o { background: #cdf0dc; }
.swatch.phase-purge { background: #f3f4f6; } .swatch.phase-hold { background: #e9e2d6; }
.gap { fill: #b3261e; fill-opacity: 0.13; stroke: #b3261e; stroke-dasharray: 4 3; }
.swatch.gap { background: #b3261e33; }
.gap-label { font-size: 11px; fill: #b3261e; font-weight: 600; }
.band { fill: #1f5fbf; fill-opacity: 0.12; stroke: none; }
.swatch.band { background: #1f5fbf1f; }
.trace { fill: none; stroke-linejoin: round; stroke-linecap: round; }
.trace-primary { stroke: #1f5fbf; stroke-width: 1.6; }
.trace-reference { stroke: #c77700; stroke-width: 1.3; stroke-dasharray: 6 4; }
.swatch.trace-primary { background: #1f5fbf; } .swatch.trace-reference { background: #c77700; }
.uncertain { fill: #fff; stroke: #b3261e; stroke-width: 1.5; }
.limit { stroke-width: 1.2; stroke-dasharray: 3 3; }
.limit-warning { stroke: #d08400; fill: #d08400; }
.limit-danger { stroke: #b3261e; fill: #b3261e; }
.limit-label { font-size: 11px; stroke: none; }
.marker line { stroke-width: 1.2; }
.marker-alarm line { stroke: #d08400; } .marker-alarm path { fill: #d08400; }
.marker-interlock line { stroke: #b3261e; stroke-width: 2; } .marker-interlock path { fill: #b3261e; }
.marker-acknowledge line { stroke: #2e7d32; stroke-dasharray: 2 2; } .marker-acknowledge path { fill: #2e7d32; }
.marker-link-lost line { stroke: #b3261e; } .marker-link-lost path { fill: #b3261e; }
.marker-link-restored line { stroke: #2e7d32; } .marker-link-restored path { fill: #2e7d32; }
`;
