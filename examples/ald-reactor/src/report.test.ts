import type { AlarmHistoryEntry } from "@kiln/core/driver-kit";
import { describe, expect, test } from "vitest";
import { linkDownText } from "./ald-summary";
import { buildRunReport, escapeHtml, qualityGaps, type ReportPoint, type RunReportData } from "./report";
import {
  alarmOccurrences,
  cycleTimeline,
  formatOutage,
  linkOutages,
  valveSpans,
  worstPulse,
  type StepRecord,
} from "./run-analysis";

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

  test("breaks the trace where quality is not good and marks the uncertain sample", () => {
    const html = buildRunReport(report());
    expect(html).toContain('data-chart="pressure" data-gaps="1"');
    expect(html).toContain('data-chart="temperature" data-gaps="0"');
    // pressure: one trace before the gap and one after; temperature: one trace and a setpoint
    expect(count(html, 'class="trace trace-primary"')).toBe(3);
    expect(count(html, 'class="trace trace-reference"')).toBe(1);
    expect(count(html, '<circle class="uncertain"')).toBe(1);
  });

  test("draws each outage given, with its one label, in the PLC link lane of every chart and outlined across it", () => {
    const html = buildRunReport(
      report({ outages: [{ start: T0 + 4_000, end: T0 + 6_000, label: "PLC link down 2.00 s" }] }),
    );
    expect(count(html, 'class="lane-outage"')).toBe(2);
    expect(count(html, '<rect class="outage"')).toBe(2);
    // The only outage figure on the page is the one given: no per-chart figure from the samples.
    const figures = [...html.matchAll(/>([^<]*?\d+\.\d+ s)</g)]
      .map((match) => match[1]!)
      .filter((text) => /down|communication/.test(text));
    // Per chart: the label in the plot and the outline's tooltip.
    expect(figures).toEqual(Array.from({ length: 4 }, () => "PLC link down 2.00 s"));
    expect(count(html, ">PLC link down 2.00 s</text>")).toBe(2);
    expect(html).not.toContain("no communication");
    expect(buildRunReport(report())).not.toContain('class="lane-outage"');
  });

  test("puts the recipe steps and the outages in separate lanes above the plot, so neither hides the other", () => {
    const html = buildRunReport(
      report({
        phases: [{ start: T0 + 3_000, end: T0 + 7_000, kind: "hold", label: "purge hold" }],
        outages: [{ start: T0 + 4_000, end: T0 + 6_000, label: "PLC link down 2.00 s" }],
      }),
    );
    const box = (pattern: RegExp): { y: number; height: number } => {
      const match = pattern.exec(html)!;
      return { y: Number(/ y="([\d.]+)"/.exec(match[0])![1]), height: Number(/ height="([\d.]+)"/.exec(match[0])![1]) };
    };
    const hold = box(/<rect class="lane-phase phase-hold"[^>]*>/);
    const outage = box(/<rect class="lane-outage"[^>]*>/);
    expect(hold.height).toBeGreaterThan(0);
    expect(outage.height).toBeGreaterThan(0);
    expect(hold.y + hold.height <= outage.y || outage.y + outage.height <= hold.y).toBe(true);
    // Across the plot, the outage is an outline: the hold's shading stays under it, and the CSS gives it no fill.
    expect(html).toContain('<rect class="phase phase-hold"');
    expect(html).toMatch(/\.outage \{ fill: none;/);
  });

  test("draws the valve chart: one bar per open span, uncertain spans grey, the highlighted pulse ringed and labelled", () => {
    const html = buildRunReport(
      report({
        pulseChart: {
          id: "valves",
          title: "Valves",
          lanes: [
            {
              label: "valve.tma",
              kind: "tma",
              pulses: [
                { start: T0 + 100, end: T0 + 250, good: true },
                { start: T0 + 1_100, end: T0 + 1_275, good: true },
              ],
            },
            { label: "valve.h2o", kind: "h2o", pulses: [{ start: T0 + 600, end: T0 + 750, good: false }] },
          ],
          highlight: { lane: 0, start: T0 + 1_100, end: T0 + 1_275, label: "worst pulse timing: +25.0 ms <TMA>" },
        },
      }),
    );
    expect(html).toContain('<svg class="pulse-chart"');
    expect(html).toContain('data-chart="valves" data-pulses="3"');
    expect(count(html, 'class="pulse pulse-tma"')).toBe(2);
    expect(count(html, 'class="pulse pulse-uncertain"')).toBe(1);
    expect(count(html, '<g class="worst-pulse" data-lane="0">')).toBe(1);
    expect(html).toContain(">worst pulse timing: +25.0 ms &lt;TMA&gt;</text>");
    // The ring is around the second TMA bar: its x range contains the bar's.
    const bar = /<rect class="pulse pulse-tma" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/g;
    bar.exec(html);
    const second = bar.exec(html)!;
    const ring =
      /<rect class="worst-pulse-ring" data-check="worst-pulse" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/.exec(html)!;
    expect(Number(ring[1])).toBeLessThanOrEqual(Number(second[1]));
    expect(Number(ring[1]) + Number(ring[2])).toBeGreaterThanOrEqual(Number(second[1]) + Number(second[2]));
    // Not counted as a trend chart by the measuring script.
    expect(count(html, '<svg class="chart"')).toBe(2);
  });

  test("puts the worst-pulse label where it fits: right of the pulse, or left of it near the end of the run", () => {
    const label = (start: number): string => {
      const html = buildRunReport(
        report({
          pulseChart: {
            id: "valves",
            title: "Valves",
            lanes: [{ label: "valve.tma", kind: "tma", pulses: [{ start, end: start + 150, good: true }] }],
            highlight: { lane: 0, start, end: start + 150, label: "worst pulse timing: ".padEnd(90, "x") },
          },
        }),
      );
      return /<text class="worst-pulse-label" text-anchor="(\w+)"/.exec(html)![1]!;
    };
    expect(label(T0 + 1_000)).toBe("start");
    expect(label(T0 + 9_000)).toBe("end");
  });

  test("tables get their id, highlighted rows and note; the recipe is collapsed", () => {
    const html = buildRunReport(
      report({
        tables: [
          {
            id: "cycles",
            title: "Cycle timeline",
            columns: ["cycle"],
            rows: [["1"], ["2"]],
            highlightRows: [1],
            note: "n",
          },
        ],
      }),
    );
    expect(html).toContain('<section class="table" id="table-cycles"><h2>Cycle timeline</h2>');
    expect(html).toContain('<tr><td>1</td></tr>\n<tr class="highlight"><td>2</td></tr>');
    expect(html).toContain('<p class="note">n</p>');
    expect(html).toMatch(/<details><summary>Definition \(JSON\)<\/summary><pre>/);
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

/** A cycle's four steps from `start`, with the given errors (ms) on TMA pulse, purge, H2O pulse, purge. */
function cycle(
  start: number,
  errors: readonly [number, number, number, number],
  pulseMs = 150,
  purgeMs = 500,
): StepRecord[] {
  const kinds = [
    ["tma", "TMA pulse", pulseMs],
    ["purge", "purge", purgeMs],
    ["h2o", "H2O pulse", pulseMs],
    ["purge", "purge", purgeMs],
  ] as const;
  let at = start;
  return kinds.map(([kind, label, plannedMs], index) => {
    const actualMs = plannedMs + errors[index]!;
    const step: StepRecord = {
      path: `steps[2].loop[0].steps[${index}]`,
      kind,
      label,
      start: at,
      end: at + actualMs + 2,
      plannedMs,
      actualMs,
      errorMs: errors[index]!,
      outcome: "completed",
    };
    at = step.end;
    return step;
  });
}

const HEAT_UP: StepRecord = {
  path: "steps[0]",
  kind: "heat-up",
  label: "ramp",
  start: 0,
  end: 900,
  actualMs: 900,
  outcome: "completed",
};
const HOLD: StepRecord = {
  path: "steps[3]",
  kind: "hold",
  label: "purge hold",
  start: 10_000,
  end: 13_010,
  plannedMs: 3_000,
  actualMs: 3_010,
  errorMs: 10,
  outcome: "completed",
};

describe("linkOutages: the outage, computed once", () => {
  test("spans each plc-connection-lose to the next plc-connection-restore, whatever the order recorded", () => {
    expect(
      linkOutages(
        [
          { at: 5_000, type: "restore" }, // no loss before it: ignored
          { at: 20_000, type: "lose" },
          { at: 23_620, type: "restore" },
          { at: 10_000, type: "lose" },
          { at: 10_400, type: "lose" }, // a second report while down: the outage started at the first
          { at: 11_000, type: "restore" },
        ],
        30_000,
      ),
    ).toEqual([
      { start: 10_000, end: 11_000, durationMs: 1_000, restored: true },
      { start: 20_000, end: 23_620, durationMs: 3_620, restored: true },
    ]);
  });

  test("an outage open at the end of the run ends there, not restored", () => {
    expect(linkOutages([{ at: 1_000, type: "lose" }], 4_000)).toEqual([
      { start: 1_000, end: 4_000, durationMs: 3_000, restored: false },
    ]);
    expect(linkOutages([], 4_000)).toEqual([]);
  });

  test("one format for the figure: the summary text and the chart label carry the same number", () => {
    const [outage] = linkOutages(
      [
        { at: 1_000, type: "lose" },
        { at: 4_649, type: "restore" },
      ],
      9_000,
    );
    expect(formatOutage(outage!.durationMs)).toBe("3.65 s");
    expect(linkDownText([outage!])).toBe("PLC link down 3.65 s");
    expect(linkDownText([outage!, { ...outage!, durationMs: 500, restored: false }])).toBe(
      "PLC link down 3.65 s + 0.50 s (not restored by the end of the run)",
    );
  });
});

describe("worstPulse", () => {
  test("is the pulse with the largest timing error: the process result's max, located with its cycle", () => {
    const steps = [
      HEAT_UP,
      ...cycle(1_000, [3, 40, 9, 1]),
      ...cycle(3_000, [-30, 0, 25, 0]),
      HOLD,
      ...cycle(14_000, [4, 0, 2, 0]),
    ];
    const pulseErrors = steps.filter((step) => step.kind === "tma" || step.kind === "h2o").map((step) => step.errorMs!);
    const worst = worstPulse(steps)!;
    // Purges (40 ms) and the hold are not pulses; −30 ms is earlier but smaller than +25 (max is signed, as TimingStats.max).
    expect(worst.errorMs).toBe(Math.max(...pulseErrors));
    expect(worst.errorMs).toBe(25);
    expect(worst.step.kind).toBe("h2o");
    expect(worst.cycle).toBe(2);
    expect(worst.openAt).toBe(worst.step.end - 175);
  });

  test("takes the earliest of equal errors, skips unmeasured pulses, and is undefined without any", () => {
    const steps = [...cycle(1_000, [7, 0, 7, 0]), ...cycle(3_000, [7, 0, 1, 0])];
    expect(worstPulse(steps)!.step).toBe(steps[0]);
    const aborted = { ...steps[0]!, errorMs: undefined, outcome: "aborted" as const };
    expect(worstPulse([aborted])).toBeUndefined();
    expect(worstPulse([HEAT_UP, HOLD])).toBeUndefined();
  });
});

describe("cycleTimeline", () => {
  test("groups the steps from each TMA pulse up to the next one or the hold, with the largest deviation", () => {
    const first = cycle(1_000, [3, -12, 9, 1]);
    const second = cycle(3_000, [2, 0, 25, 0]);
    const third = cycle(14_000, [4, 0, 2, 0]);
    const rows = cycleTimeline([HEAT_UP, ...first, ...second, HOLD, ...third]);
    expect(rows.map((row) => row.cycle)).toEqual([1, 2, 3]);
    expect(rows[0]).toMatchObject({ start: 1_000, end: first[3]!.end, steps: first, worst: first[1] }); // |−12| is the largest
    expect(rows[1]!.worst).toBe(second[2]);
    expect(rows[2]!.steps).toEqual(third); // the hold ended cycle 2, it is in no cycle
  });

  test("keeps a cycle cut short (an aborted pulse) and puts nothing before the first TMA pulse in a cycle", () => {
    const aborted: StepRecord = { ...cycle(1_000, [0, 0, 0, 0])[0]!, outcome: "aborted", errorMs: undefined };
    const rows = cycleTimeline([HEAT_UP, aborted]);
    expect(rows).toEqual([{ cycle: 1, start: aborted.start, end: aborted.end, steps: [aborted] }]);
    expect(cycleTimeline([HEAT_UP, HOLD])).toEqual([]);
  });
});

describe("alarmOccurrences", () => {
  const entry = (
    at: number,
    cause: string,
    from: string,
    to: string,
    extra: Partial<AlarmHistoryEntry> = {},
  ): AlarmHistoryEntry => ({
    alarmId: "chamber.pressure:HI",
    tag: "chamber.pressure",
    kind: "HI",
    priority: 2,
    from,
    to,
    cause,
    at,
    ...extra,
  });

  test("pairs raise, acknowledge (with who) and clear, in either order", () => {
    const occurrences = alarmOccurrences([
      entry(100, "process-activate", "normal", "unacknowledged", { value: 1.25 }),
      entry(400, "acknowledge", "unacknowledged", "acknowledged", { principal: "demo-operator" }),
      entry(600, "process-clear", "acknowledged", "normal", { value: 1.0 }),
      entry(1_000, "process-activate", "normal", "unacknowledged", { value: 1.3 }),
      entry(1_100, "process-clear", "unacknowledged", "rtn-unacknowledged", { value: 1.0 }),
      entry(1_300, "acknowledge", "rtn-unacknowledged", "normal", { principal: "shift-lead" }),
      entry(1_400, "process-activate", "normal", "unacknowledged", {
        alarmId: "chamber.pressure:HIHI",
        kind: "HIHI",
        priority: 1,
        value: 2.1,
      }),
    ]);
    expect(occurrences).toEqual([
      {
        alarmId: "chamber.pressure:HI",
        tag: "chamber.pressure",
        kind: "HI",
        priority: 2,
        raisedAt: 100,
        raisedTo: "unacknowledged",
        value: 1.25,
        acknowledgedAt: 400,
        acknowledgedBy: "demo-operator",
        clearedAt: 600,
      },
      {
        alarmId: "chamber.pressure:HI",
        tag: "chamber.pressure",
        kind: "HI",
        priority: 2,
        raisedAt: 1_000,
        raisedTo: "unacknowledged",
        value: 1.3,
        clearedAt: 1_100,
        acknowledgedAt: 1_300,
        acknowledgedBy: "shift-lead",
      },
      {
        alarmId: "chamber.pressure:HIHI",
        tag: "chamber.pressure",
        kind: "HIHI",
        priority: 1,
        raisedAt: 1_400,
        raisedTo: "unacknowledged",
        value: 2.1,
      },
    ]);
  });

  test("keeps a transition with no raise in the range as its own occurrence, and skips other causes", () => {
    expect(
      alarmOccurrences([
        entry(50, "acknowledge", "unacknowledged", "acknowledged", { principal: "op" }),
        entry(60, "shelve", "acknowledged", "shelved", { principal: "op" }),
      ]),
    ).toEqual([
      {
        alarmId: "chamber.pressure:HI",
        tag: "chamber.pressure",
        kind: "HI",
        priority: 2,
        raisedAt: 50,
        raisedTo: "unacknowledged",
        acknowledgedAt: 50,
        acknowledgedBy: "op",
      },
    ]);
  });
});

describe("valveSpans", () => {
  test("spans from each open sample to the next closed one, or to the end; uncertain when any sample was not good", () => {
    expect(
      valveSpans(
        [
          { t: 0, open: false, good: true },
          { t: 100, open: true, good: true },
          { t: 250, open: false, good: true },
          { t: 400, open: true, good: true },
          { t: 450, open: true, good: false },
          { t: 560, open: false, good: true },
          { t: 900, open: true, good: true },
        ],
        1_000,
      ),
    ).toEqual([
      { start: 100, end: 250, good: true },
      { start: 400, end: 560, good: false },
      { start: 900, end: 1_000, good: true },
    ]);
  });
});
