import { scaleLinear, type ScaleLinear } from "d3-scale";
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

/**
 * A communication outage, drawn on every chart in the `PLC link` lane above the plot and as a
 * dashed outline (no fill: the recipe step shading under it stays visible) across the plot.
 */
export interface ReportOutage {
  readonly start: number;
  readonly end: number;
  /** The text on the chart, e.g. `PLC link down 3.62 s`; compute it once and pass the same text everywhere. */
  readonly label: string;
}

/** A span a valve was open. */
export interface ReportPulse {
  readonly start: number;
  readonly end: number;
  /** False draws it as uncertain (grey): some sample of it was not of good quality. */
  readonly good: boolean;
}

/** One row of the valve chart. */
export interface ReportPulseLane {
  /** The tag, e.g. `valve.tma`. */
  readonly label: string;
  /** Chooses the colour, as a phase kind: `tma`, `h2o`, or anything else. */
  readonly kind: string;
  readonly pulses: readonly ReportPulse[];
}

/**
 * A chart of on/off signals (valve states) as pulses on the run's time axis, one lane each, with
 * one pulse optionally marked and labelled (the worst-timed one).
 */
export interface ReportPulseChart {
  /** Used in element ids; letters, digits and `-`. */
  readonly id: string;
  readonly title: string;
  readonly lanes: readonly ReportPulseLane[];
  /** The pulse to point at: a ring around `[start, end]` in lane `lane` (an index) and a labelled callout. */
  readonly highlight?: {
    readonly lane: number;
    readonly start: number;
    readonly end: number;
    readonly label: string;
  };
}

/** A table under the charts (alarms, breaker events...). */
export interface ReportTable {
  /** The section's element id is `table-<id>`; letters, digits and `-`. */
  readonly id?: string;
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Shown instead of an empty table. */
  readonly empty?: string;
  /** Indexes of rows to highlight (class `highlight`), e.g. the cycle of the worst pulse. */
  readonly highlightRows?: readonly number[];
  /** A line under the table. */
  readonly note?: string;
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
  /** The valve chart, drawn under the trend charts on the same time axis. */
  readonly pulseChart?: ReportPulseChart;
  readonly phases: readonly ReportPhase[];
  /** Communication outages, drawn on every chart. @default none */
  readonly outages?: readonly ReportOutage[];
  readonly markers: readonly ReportMarker[];
  readonly summary: readonly ReportSummaryItem[];
  readonly tables?: readonly ReportTable[];
  /** Shown as JSON, collapsed (a `<details>` element) under the tables. */
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
const HEIGHT = 300;
/** Two lanes above each plot: the recipe step, and the PLC link (outages). */
const LANE = { height: 10, steps: 4, link: 18 };
const MARGIN = { top: 36, right: 110, bottom: 34, left: 64 };
const PLOT_WIDTH = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;
/** The valve chart: a callout row, then one lane per valve. */
const PULSE = { callout: 20, lane: 30, gap: 8 };

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
 * phases shaded behind the traces and in a `step` lane above each plot, communication outages in
 * a `PLC link` lane under it and outlined across the plot, alarm and link markers, the valve
 * chart ({@link ReportPulseChart}), the summary, tables, and the recipe as JSON (collapsed).
 * Traces break where their samples' quality is not good (`data-gaps` counts those spans).
 *
 * A small inline script runs on load: it records how many charts have a visible trace in
 * `body[data-charts-drawn]`, and on every element marked `data-check` (the lanes' steps and
 * outages, the worst-pulse ring) writes what the browser laid out into `data-laid-out`:
 * `left,top,width,height,visible,hits` (page pixels; `visible` 1 when its computed style shows
 * it; `hits` how many of 9 points spread over it (a 3×3 grid at ¼, ½, ¾) hit the element itself
 * rather than something drawn over it: 0 means fully covered), and in `data-covered-by` what
 * covers the points that missed: each distinct `tag.class` once, `|`-separated (an element
 * without a class by its parent's class, so a marker's line reads `line.marker marker-alarm`).
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
  const pulseChart = data.pulseChart ? renderPulseChart(data.pulseChart, data) : "";
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
<p class="legend">${legend}<span class="key"><span class="swatch outage"></span>PLC link down (own lane, outlined across the plot)</span><span class="key"><span class="swatch band"></span>min/max per bucket</span><span class="key"><span class="swatch uncertain-key"></span>quality not good (trace broken)</span></p>
${charts}
${pulseChart}
</section>
${tables}
<section class="recipe"><h2>Recipe</h2>${parameters}<details><summary>Definition (JSON)</summary><pre>${escapeHtml(JSON.stringify(data.recipe, null, 2))}</pre></details></section>
</main>
<script>${MEASURE_SCRIPT}</script>
</body>
</html>
`;
}

function renderChart(chart: ReportChart, data: RunReportData): string {
  const { from, to } = data.range;
  const x = timeScale(from, to);
  const values: number[] = [];
  for (const series of chart.series) for (const point of series.points) values.push(point.v);
  for (const bucket of chart.band?.buckets ?? []) values.push(bucket.min, bucket.max);
  for (const limit of chart.limits ?? []) values.push(limit.value);
  const y = valueScale(values);
  const primary = chart.series.find((series) => series.role === "primary");
  const gaps = primary ? qualityGaps(primary.qualityPoints ?? primary.points, to) : [];

  const parts: string[] = [];
  parts.push(`<rect class="plot" x="${MARGIN.left}" y="${MARGIN.top}" width="${PLOT_WIDTH}" height="${PLOT_HEIGHT}"/>`);
  parts.push(...phaseShading(chart.id, data, x, MARGIN.top, PLOT_HEIGHT));
  parts.push(...lanes(chart.id, data, x));
  parts.push(axes(chart, from, to, x, y));
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
  parts.push(...outageOutlines(data, x, MARGIN.top, PLOT_HEIGHT));
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
  parts.push(...markers(chart.id, data, x, MARGIN.top, PLOT_HEIGHT));
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

/** The recipe steps shaded behind a plot, full height. */
function phaseShading(
  chartId: string,
  data: RunReportData,
  x: (t: number) => number,
  top: number,
  height: number,
): string[] {
  const { from, to } = data.range;
  return data.phases
    .filter((phase) => phase.end >= from && phase.start <= to)
    .map((phase) => {
      const left = x(phase.start);
      const width = Math.max(0.5, x(phase.end) - left);
      const kind = cssToken(phase.kind);
      return `<rect class="phase phase-${kind}" data-check="${cssToken(chartId)}-plot-${kind}" x="${fixed(left)}" y="${top}" width="${fixed(width)}" height="${height}"><title>${escapeHtml(phase.label)} (${seconds(phase.start - from)}–${seconds(phase.end - from)})</title></rect>`;
    });
}

/**
 * The two lanes above a plot: `step` (each recipe step, coloured by kind) and `PLC link` (each
 * outage). Separate lanes, so an outage never hides the step it overlaps (the purge hold).
 */
function lanes(chartId: string, data: RunReportData, x: (t: number) => number): string[] {
  const { from, to } = data.range;
  const id = cssToken(chartId);
  const parts = [
    `<text class="lane-label" x="${MARGIN.left - 6}" y="${LANE.steps + LANE.height - 1}">step</text>`,
    `<text class="lane-label" x="${MARGIN.left - 6}" y="${LANE.link + LANE.height - 1}">PLC link</text>`,
    `<rect class="lane" x="${MARGIN.left}" y="${LANE.steps}" width="${PLOT_WIDTH}" height="${LANE.height}"/>`,
    `<rect class="lane" x="${MARGIN.left}" y="${LANE.link}" width="${PLOT_WIDTH}" height="${LANE.height}"/>`,
  ];
  for (const phase of data.phases) {
    if (phase.end < from || phase.start > to) continue;
    const left = x(phase.start);
    const kind = cssToken(phase.kind);
    parts.push(
      `<rect class="lane-phase phase-${kind}" data-check="${id}-step-${kind}" x="${fixed(left)}" y="${LANE.steps}" width="${fixed(Math.max(1, x(phase.end) - left))}" height="${LANE.height}"><title>${escapeHtml(phase.label)} (${seconds(phase.start - from)}–${seconds(phase.end - from)})</title></rect>`,
    );
  }
  for (const outage of data.outages ?? []) {
    if (outage.end < from || outage.start > to) continue;
    const left = x(outage.start);
    parts.push(
      `<rect class="lane-outage" data-check="${id}-link-outage" x="${fixed(left)}" y="${LANE.link}" width="${fixed(Math.max(2, x(outage.end) - left))}" height="${LANE.height}"><title>${escapeHtml(outage.label)} (${seconds(outage.start - from)}–${seconds(outage.end - from)})</title></rect>`,
    );
  }
  return parts;
}

/** Each outage across a plot: a dashed outline without fill, and its label when `labelled`. */
function outageOutlines(
  data: RunReportData,
  x: (t: number) => number,
  top: number,
  height: number,
  labelled = true,
): string[] {
  const { from, to } = data.range;
  return (data.outages ?? [])
    .filter((outage) => outage.end >= from && outage.start <= to)
    .flatMap((outage) => {
      const left = x(outage.start);
      return [
        `<rect class="outage" x="${fixed(left)}" y="${top}" width="${fixed(Math.max(2, x(outage.end) - left))}" height="${height}"><title>${escapeHtml(outage.label)}</title></rect>`,
        ...(labelled
          ? [`<text class="outage-label" x="${fixed(left + 4)}" y="${top + 14}">${escapeHtml(outage.label)}</text>`]
          : []),
      ];
    });
}

/** The vertical markers that belong on chart `chartId`. */
function markers(
  chartId: string,
  data: RunReportData,
  x: (t: number) => number,
  top: number,
  height: number,
): string[] {
  const { from, to } = data.range;
  return data.markers
    .filter((marker) => (marker.chartId === undefined || marker.chartId === chartId) && marker.at >= from)
    .filter((marker) => marker.at <= to)
    .map((marker) => {
      const left = fixed(x(marker.at));
      return `<g class="marker marker-${marker.kind}"><line x1="${left}" x2="${left}" y1="${top}" y2="${top + height}"/><path d="M${left} ${top} l-4 -7 h8 z"/><title>${escapeHtml(marker.label)} at ${seconds(marker.at - from)}</title></g>`;
    });
}

/**
 * The valve chart: one lane per valve with its open spans as bars on the run's time axis, the
 * step and link lanes above, and the highlighted pulse ringed and labelled in a callout row.
 */
function renderPulseChart(chart: ReportPulseChart, data: RunReportData): string {
  const { from, to } = data.range;
  const x = timeScale(from, to);
  const top = MARGIN.top + PULSE.callout;
  const laneTop = (index: number): number => top + index * (PULSE.lane + PULSE.gap);
  const plotHeight = chart.lanes.length * (PULSE.lane + PULSE.gap) - PULSE.gap;
  const height = top + Math.max(plotHeight, 0) + MARGIN.bottom;
  const parts: string[] = [];
  parts.push(...lanes(chart.id, data, x));
  let pulses = 0;
  chart.lanes.forEach((lane, index) => {
    const laneY = laneTop(index);
    parts.push(
      `<rect class="valve-lane" x="${MARGIN.left}" y="${laneY}" width="${PLOT_WIDTH}" height="${PULSE.lane}"/>`,
      `<text class="lane-label" x="${MARGIN.left - 6}" y="${laneY + PULSE.lane / 2 + 4}">${escapeHtml(lane.label)}</text>`,
    );
    for (const pulse of lane.pulses) {
      if (pulse.end < from || pulse.start > to) continue;
      pulses++;
      const left = x(pulse.start);
      parts.push(
        `<rect class="pulse ${pulse.good ? `pulse-${cssToken(lane.kind)}` : "pulse-uncertain"}" x="${fixed(left)}" y="${laneY + 3}" width="${fixed(Math.max(1.5, x(pulse.end) - left))}" height="${PULSE.lane - 6}"><title>${escapeHtml(lane.label)} open ${seconds(pulse.start - from)}–${seconds(pulse.end - from)} (${Math.round(pulse.end - pulse.start)} ms as logged${pulse.good ? "" : ", quality not good"})</title></rect>`,
      );
    }
  });
  parts.push(...outageOutlines(data, x, top, plotHeight, false));
  const highlight = chart.highlight;
  if (highlight && chart.lanes[highlight.lane] && highlight.end >= from && highlight.start <= to) {
    const laneY = laneTop(highlight.lane);
    const left = x(highlight.start);
    const width = Math.max(2, x(highlight.end) - left);
    const centre = left + width / 2;
    // The ring is wider than the pulse, so a 2-pixel pulse on a long run is still easy to find.
    const ring = { x: Math.min(left, centre - 6), width: Math.max(width, 12) };
    // Right of the leader when the label fits there (about 6.5 px per character at 11 px bold), else left of it.
    const textWidth = highlight.label.length * 6.5;
    const anchor = centre + 6 + textWidth <= WIDTH || centre - 6 - textWidth < 0 ? "start" : "end";
    const labelX = anchor === "end" ? centre - 6 : centre + 6;
    parts.push(
      `<g class="worst-pulse" data-lane="${highlight.lane}"><line class="worst-pulse-leader" x1="${fixed(centre)}" x2="${fixed(centre)}" y1="${MARGIN.top + 6}" y2="${laneY}"/><rect class="worst-pulse-ring" data-check="worst-pulse" x="${fixed(ring.x - 2)}" y="${laneY}" width="${fixed(ring.width + 4)}" height="${PULSE.lane}" rx="3"><title>${escapeHtml(highlight.label)}</title></rect><text class="worst-pulse-label" text-anchor="${anchor}" x="${fixed(labelX)}" y="${MARGIN.top + 12}">${escapeHtml(highlight.label)}</text></g>`,
    );
  }
  parts.push(xAxis(from, to, x, top + plotHeight, height));
  return `<figure class="chart-figure" id="chart-${cssToken(chart.id)}">
<figcaption>${escapeHtml(chart.title)} ${chart.lanes.map((lane) => `<span class="key"><span class="swatch pulse-${cssToken(lane.kind)}"></span>${escapeHtml(lane.label)} open</span>`).join("")}<span class="key"><span class="swatch pulse-uncertain"></span>quality not good</span></figcaption>
<svg class="pulse-chart" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${escapeHtml(chart.title)}" data-chart="${escapeHtml(chart.id)}" data-pulses="${pulses}">
${parts.join("\n")}
</svg>
</figure>`;
}

/** The time axis under a plot whose bottom edge is at `bottom`, in an SVG `height` high. */
function xAxis(from: number, to: number, x: (t: number) => number, bottom: number, height: number): string {
  const parts: string[] = [];
  for (const second of scaleLinear()
    .domain([0, (to - from) / 1_000])
    .ticks(10)) {
    const left = fixed(x(from + second * 1_000));
    parts.push(
      `<line class="tick-mark" x1="${left}" x2="${left}" y1="${bottom}" y2="${bottom + 4}"/>`,
      `<text class="tick tick-x" x="${left}" y="${bottom + 17}">${formatValue(second)} s</text>`,
    );
  }
  parts.push(
    `<text class="axis-label" x="${MARGIN.left + PLOT_WIDTH / 2}" y="${height - 2}">time since start of run</text>`,
  );
  return parts.join("\n");
}

function axes(
  chart: ReportChart,
  from: number,
  to: number,
  x: (t: number) => number,
  y: ScaleLinear<number, number>,
): string {
  const parts: string[] = [];
  for (const value of y.ticks(5)) {
    const top = fixed(y(value));
    parts.push(
      `<line class="grid" x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_WIDTH}" y1="${top}" y2="${top}"/>`,
      `<text class="tick tick-y" x="${MARGIN.left - 6}" y="${top}" dy="4">${formatValue(value)}</text>`,
    );
  }
  parts.push(
    xAxis(from, to, x, MARGIN.top + PLOT_HEIGHT, HEIGHT),
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

/** The run's time axis: epoch ms onto the plot's width, clamped to the run (d3-scale). */
function timeScale(from: number, to: number): ScaleLinear<number, number> {
  return scaleLinear()
    .domain([from, Math.max(to, from + 1)])
    .range([MARGIN.left, MARGIN.left + PLOT_WIDTH])
    .clamp(true);
}

/** A value axis padded by 6% with round ends (d3-scale's `nice`), never empty. */
function valueScale(values: readonly number[]): ScaleLinear<number, number> {
  const finite = values.filter(Number.isFinite);
  let low = finite.length === 0 ? 0 : Math.min(...finite);
  let high = finite.length === 0 ? 1 : Math.max(...finite);
  if (high - low < 1e-9) {
    low -= 0.5;
    high += 0.5;
  }
  const pad = (high - low) * 0.06;
  return scaleLinear()
    .domain([low - pad, high + pad])
    .nice(5)
    .range([MARGIN.top + PLOT_HEIGHT, MARGIN.top]);
}

function renderTable(table: ReportTable): string {
  const head = table.columns.map((column) => `<th scope="col">${escapeHtml(column)}</th>`).join("");
  const highlighted = new Set(table.highlightRows ?? []);
  const body = table.rows
    .map(
      (row, index) =>
        `<tr${highlighted.has(index) ? ' class="highlight"' : ""}>${row.map((cell) => `<td>${escapeHtml(cell)}</td>`).join("")}</tr>`,
    )
    .join("\n");
  const content =
    table.rows.length === 0
      ? `<p class="empty">${escapeHtml(table.empty ?? "none")}</p>`
      : `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  const note = table.note ? `<p class="note">${escapeHtml(table.note)}</p>` : "";
  const id = table.id === undefined ? "" : ` id="table-${cssToken(table.id)}"`;
  return `<section class="table"${id}><h2>${escapeHtml(table.title)}</h2>${content}${note}</section>`;
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
  var scrolled = [window.scrollX, window.scrollY];
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
  document.querySelectorAll("[data-check]").forEach(function (element) {
    element.scrollIntoView({ block: "center", inline: "center" });
    var box = element.getBoundingClientRect();
    var style = getComputedStyle(element);
    var visible = style.visibility === "visible" && style.display !== "none" && Number(style.opacity) > 0 ? 1 : 0;
    var hits = 0;
    var covers = [];
    [0.25, 0.5, 0.75].forEach(function (fx) {
      [0.25, 0.5, 0.75].forEach(function (fy) {
        var hit = document.elementFromPoint(box.left + box.width * fx, box.top + box.height * fy);
        if (hit !== null && (hit === element || element.contains(hit))) hits++;
        else {
          // A marker's line and arrow have no class of their own: named by their group's.
          var named = hit !== null && hit.getAttribute("class") === null ? hit.parentElement : hit;
          var cover = hit === null ? "nothing" : hit.tagName + "." + (named && named.getAttribute("class"));
          if (covers.indexOf(cover) < 0) covers.push(cover);
        }
      });
    });
    var cover = covers.join("|");
    var page = [box.left + window.scrollX, box.top + window.scrollY, box.width, box.height].map(function (value) {
      return value.toFixed(1);
    });
    element.setAttribute("data-laid-out", page.concat([visible, hits]).join(","));
    if (cover !== "") element.setAttribute("data-covered-by", cover);
  });
  window.scrollTo(scrolled[0], scrolled[1]);
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
.lane { fill: #f7f8fa; stroke: var(--line); stroke-width: 0.5; }
.lane-label { font-size: 10px; fill: var(--muted); text-anchor: end; }
.lane-phase { stroke: #0003; stroke-width: 0.4; }
.lane-outage { fill: #b3261e; stroke: #7a1a14; stroke-width: 0.6; }
.outage { fill: none; stroke: #b3261e; stroke-width: 1.4; stroke-dasharray: 5 3; }
.swatch.outage { background: #b3261e; }
.outage-label { font-size: 11px; fill: #b3261e; font-weight: 600; }
.swatch.uncertain-key { background: #fff; border: 1.5px solid #b3261e; border-radius: 50%; width: 10px; }
.valve-lane { fill: #fafbfc; stroke: var(--line); }
.pulse { stroke: none; }
.pulse-tma { fill: #1f5fbf; } .pulse-h2o { fill: #2e8b57; } .pulse-uncertain { fill: #9aa3ae; }
.swatch.pulse-tma { background: #1f5fbf; } .swatch.pulse-h2o { background: #2e8b57; } .swatch.pulse-uncertain { background: #9aa3ae; }
.worst-pulse-ring { fill: #b3261e; fill-opacity: 0.12; stroke: #b3261e; stroke-width: 2; }
.worst-pulse-leader { stroke: #b3261e; stroke-width: 1; stroke-dasharray: 2 2; }
.worst-pulse-label { font-size: 11px; fill: #b3261e; font-weight: 600; }
svg.pulse-chart { width: 100%; height: auto; display: block; }
tr.highlight td { background: #fdecea; }
details > summary { cursor: pointer; color: var(--muted); margin: 10px 0 6px; }
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
