import { describe, expect, test } from "vitest";
import { buildRunReport, escapeHtml, qualityGaps, type ReportPoint, type RunReportData } from "./report";

const T0 = Date.UTC(2026, 10, 22, 8, 0, 0);

/** A pulse train sampled every 50 ms for 10 s, with quality lost between 4 s and 6 s. */
function pressure(): ReportPoint[] {
  const points: ReportPoint[] = [];
  for (let t = 0; t <= 10_000; t += 50) {
    const outage = t >= 4_000 && t < 6_000;
    if (outage && t > 4_000) continue; // one uncertain sample at the loss, then nothing until recovery
    points.push({ t: T0 + t, v: t % 1_000 < 200 ? 1 : 0.2, good: !outage });
  }
  return points;
}

function report(overrides: Partial<RunReportData> = {}): RunReportData {
  return {
    title: "ALD run <test>",
    subtitle: "synthetic",
    range: { from: T0, to: T0 + 10_000 },
    charts: [
      {
        id: "pressure",
        title: "Chamber pressure",
        unit: "mbar",
        series: [{ label: "chamber.pressure", role: "primary", points: pressure(), holdMs: 50 }],
        band: {
          bucketMs: 1_000,
          // Two runs of adjacent buckets (the store omits empty ones): two band polygons.
          buckets: [0, 1, 2, 6, 7].map((index) => ({
            start: T0 + index * 1_000,
            min: 0.2,
            max: 1,
            avg: 0.4,
            first: 1,
            last: 0.2,
            count: 20,
          })),
        },
        limits: [
          { label: "HI 0.9", value: 0.9, severity: "warning" },
          { label: "HIHI 2", value: 2, severity: "danger" },
        ],
      },
      {
        id: "temperature",
        title: "Heater temperature",
        unit: "°C",
        series: [
          {
            label: "heater.temperature",
            role: "primary",
            points: [
              { t: T0, v: 180, good: true },
              { t: T0 + 2_000, v: 199, good: true },
            ],
            holdMs: 200,
          },
          {
            label: "heater.setpoint",
            role: "reference",
            points: [
              { t: T0, v: 180, good: true },
              { t: T0 + 500, v: 200, good: true },
            ],
            step: true,
          },
        ],
      },
    ],
    phases: [
      { start: T0 + 0, end: T0 + 200, kind: "tma", label: "TMA pulse" },
      { start: T0 + 200, end: T0 + 700, kind: "purge", label: "purge" },
      { start: T0 + 700, end: T0 + 900, kind: "h2o", label: "H2O pulse" },
    ],
    markers: [
      { at: T0 + 100, kind: "alarm", label: "chamber.pressure:HI raised", chartId: "pressure" },
      { at: T0 + 4_000, kind: "link-lost", label: "PLC link lost" },
      { at: T0 + 6_000, kind: "link-restored", label: "PLC link restored" },
    ],
    summary: [
      { label: "Cycles done", value: "10 of 10" },
      { label: "Samples lost", value: "1", ok: false },
    ],
    tables: [{ title: "Breaker events", columns: ["at", "breaker"], rows: [], empty: "No breaker changed state." }],
    recipe: { name: "ald", steps: [{ set: { tag: "x", value: "</pre><script>alert(1)</script>" } }] },
    parameters: { cycles: 10 },
    ...overrides,
  };
}

function count(text: string, fragment: string): number {
  return text.split(fragment).length - 1;
}

describe("buildRunReport", () => {
  test("is one self-contained HTML page: inline SVG and CSS, no external URL, script or stylesheet", () => {
    const html = buildRunReport(report());
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(html).toContain("<style>");
    expect(count(html, "<svg ")).toBe(2);
    expect(count(html, "</svg>")).toBe(2);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/\s(?:src|href)=/);
    expect(html).not.toMatch(/<link\b|@import|url\(/);
    expect(count(html, "<script>")).toBe(1); // only the inline measuring script
  });

  test("shades every phase on every chart, draws limits, markers and the min/max band", () => {
    const html = buildRunReport(report());
    expect(count(html, 'class="phase phase-')).toBe(3 * 2);
    expect(count(html, 'class="phase phase-tma"')).toBe(2);
    expect(count(html, 'class="limit limit-danger"')).toBe(1);
    // The alarm marker is on the pressure chart only; link markers on both.
    expect(count(html, 'class="marker marker-alarm"')).toBe(1);
    expect(count(html, 'class="marker marker-link-lost"')).toBe(2);
    expect(count(html, '<polygon class="band"')).toBe(2);
  });

  test("a downsampled trace takes its gaps from qualityPoints: a gap the trend's picks skipped is still hatched", () => {
    const all = pressure();
    const goodOnly = all.filter((point) => point.good);
    const base = report();
    const withTrend = (series: Partial<RunReportData["charts"][number]["series"][number]>): RunReportData => ({
      ...base,
      charts: base.charts.map((chart) =>
        chart.id === "pressure"
          ? { ...chart, series: [{ label: "chamber.pressure", role: "primary", points: goodOnly, ...series }] }
          : chart,
      ),
    });
    expect(buildRunReport(withTrend({}))).toContain('data-chart="pressure" data-gaps="0"');
    expect(buildRunReport(withTrend({ qualityPoints: all }))).toContain('data-chart="pressure" data-gaps="1"');
  });

  test("breaks the trace at the communication gap, hatches it and marks the uncertain sample", () => {
    const html = buildRunReport(report());
    expect(html).toContain('data-chart="pressure" data-gaps="1"');
    expect(html).toContain('data-chart="temperature" data-gaps="0"');
    // pressure: one trace before the gap and one after; temperature: one trace and a setpoint
    expect(count(html, 'class="trace trace-primary"')).toBe(3);
    expect(count(html, 'class="trace trace-reference"')).toBe(1);
    expect(count(html, '<circle class="uncertain"')).toBe(1);
    expect(html).toContain("no communication 2.00 s");
  });

  test("every trace has well-formed, finite coordinates inside the viewBox", () => {
    const html = buildRunReport(report());
    const polylines = [...html.matchAll(/<polyline class="trace[^"]*" points="([^"]+)"/g)].map((match) => match[1]!);
    expect(polylines.length).toBe(4);
    for (const points of polylines) {
      for (const pair of points.split(" ")) {
        const [x, y] = pair.split(",").map(Number);
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(1000);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(280);
      }
    }
  });

  test("escapes every text it is given", () => {
    const html = buildRunReport(report());
    expect(html).toContain("<title>ALD run &lt;test&gt;</title>");
    expect(html).not.toContain("<script>alert(1)</script>");
    expect(html).toContain("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain('<tr class="bad"><th scope="row">Samples lost</th>');
    expect(html).toContain("No breaker changed state.");
  });

  test("copes with charts that have no data", () => {
    const html = buildRunReport(
      report({
        charts: [{ id: "empty", title: "Nothing logged", unit: "mbar", series: [] }],
        phases: [],
        markers: [],
      }),
    );
    expect(count(html, "<svg ")).toBe(1);
    expect(html).not.toContain("NaN");
    expect(html).not.toContain("Infinity");
  });
});

describe("qualityGaps", () => {
  test("spans from the first non-good sample to the next good one, and to the end when none follows", () => {
    const points: ReportPoint[] = [
      { t: 0, v: 1, good: true },
      { t: 10, v: 1, good: false },
      { t: 20, v: 1, good: false },
      { t: 30, v: 1, good: true },
      { t: 40, v: 1, good: false },
    ];
    expect(qualityGaps(points, 100)).toEqual([
      { start: 10, end: 30, samples: 2 },
      { start: 40, end: 100, samples: 1 },
    ]);
    expect(qualityGaps(points.slice(0, 1), 100)).toEqual([]);
  });
});

describe("escapeHtml", () => {
  test("escapes the five HTML-significant characters", () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  });
});
