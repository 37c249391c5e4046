import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { KilnValidationError } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { MemoryStore } from "@kiln/core";
import { PrometheusMetrics } from "@kiln/observability/prometheus";
import { ALD_REPORT_FILE, runAldDemo, type AldDemoOptions } from "../src/ald-demo";
import { aldTags } from "../src/ald-reactor-plc";
import type { AldDemoSummary } from "../src/ald-summary";
import { formatOutage } from "../src/run-analysis";
import { shortDemo } from "./support/short-demo";

let outRoot: string;

beforeAll(async () => {
  outRoot = await mkdtemp(path.join(tmpdir(), "kiln-ald-demo-test-"));
});

afterAll(async () => {
  await rm(outRoot, { recursive: true, force: true });
});

/**
 * The report's pressure comes from the history port: the trend drawn is the store's M4
 * downsample (the same as MemoryStore computes from the raw samples, and far fewer points than
 * them), and the per-cycle table holds each cycle's min/max/mean of the good samples, computed
 * here from the raw samples.
 */
async function expectPressureFromHistory(summary: AldDemoSummary, html: string, points: number): Promise<void> {
  const { samples, trend, cycles, range } = summary.pressure;
  expect(samples.length).toBeGreaterThan(2 * points + 1);
  const memory = new MemoryStore();
  await memory.open(aldTags.list());
  await memory.samples.writeBatch(samples);
  const expectedTrend = await memory.history.downsample("chamber.pressure", {
    start: range.from,
    end: range.to,
    points,
  });
  expect(trend).toEqual(expectedTrend);
  const chart = html.slice(
    html.indexOf('data-chart="pressure"'),
    html.indexOf("</svg>", html.indexOf('data-chart="pressure"')),
  );
  const drawn = [...chart.matchAll(/<polyline class="trace trace-primary" points="([^"]*)"/g)].flatMap((match) =>
    match[1]!.split(" "),
  );
  // holdMs adds at most one point per drawn sample (plus one at the end).
  expect(drawn.length).toBeGreaterThan(0);
  expect(drawn.length).toBeLessThanOrEqual(2 * trend.length + 1);
  expect(drawn.length).toBeLessThan(samples.length); // raw samples would draw one point each at least

  expect(cycles.map((cycle) => cycle.cycle)).toEqual([1, 2, 3]);
  const table = html.slice(html.indexOf("Chamber pressure per cycle"));
  const rows = [...table.slice(0, table.indexOf("</table>")).matchAll(/<tr><td>(.*?)<\/td><\/tr>/g)].map((match) =>
    match[1]!.split("</td><td>"),
  );
  expect(rows.length).toBe(3);
  cycles.forEach((cycle, index) => {
    const values = samples
      .filter((sample) => sample.timestamp >= cycle.start && sample.timestamp < cycle.end)
      .filter((sample) => sample.quality.severity === "good" && typeof sample.value === "number")
      .map((sample) => sample.value as number);
    expect(values.length).toBeGreaterThan(0);
    const minimum = Math.min(...values);
    const maximum = Math.max(...values);
    const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
    expect(cycle.minimum).toMatchObject({ value: minimum, quality: { severity: "good" } });
    expect(cycle.maximum).toMatchObject({ value: maximum, quality: { severity: "good" } });
    expect(cycle.average.value as number).toBeCloseTo(mean, 9);
    expect(rows[index]!.slice(3)).toEqual([minimum.toFixed(3), maximum.toFixed(3), mean.toFixed(3), "good"]);
  });
  // Cycles follow the recipe: each starts with its TMA pulse, in order, without overlap.
  for (let index = 1; index < cycles.length; index++) {
    expect(cycles[index]!.start).toBeGreaterThanOrEqual(cycles[index - 1]!.end);
  }
}

function count(text: string, fragment: string): number {
  return text.split(fragment).length - 1;
}

// End to end on loopback: a real OPC UA server (SignAndEncrypt), the OPC UA driver, the
// PostgreSQL store on embedded PGlite, and the recipe executor, shortened to 3 cycles.
// The demo runs in real time against an OPC UA server it starts (certificates, sessions,
// recipe timing): about 10-20 s each on an idle machine, more when the machine is shared.
describe("the ALD demo, shortened to 3 cycles", { timeout: 120_000 }, () => {
  test("runs every cycle on the OPC UA PLC, logs every sample to the store, acknowledges its alarms, and writes the report", async () => {
    const outDir = path.join(outRoot, "normal");
    // HI at 0.9 mbar sits below the 1 mbar TMA plateau, so TMA pulses raise it.
    // 16 trend points (3 columns): fewer than the samples, so the drawn line must be the downsample.
    // The metrics `npm run demo -- --metrics` serves: a Prometheus registry, scraped at the end.
    const metrics = new PrometheusMetrics({ labels: { machine: "ald-1" } });
    const summary = await runAldDemo({ ...shortDemo, outDir, alarms: { hiMbar: 0.9 }, trendPoints: 16, metrics });

    // What `ok` is made of first, so a failure names the part that failed (seen once under load: ok false).
    expect(summary.process.status).toBe("completed");
    expect(summary.cycles).toEqual({ planned: 3, completed: 3, countedByPlc: 3 });
    expect(summary.pulses).toEqual({ tma: 3, h2o: 3 });
    expect(summary.pulseTiming.count).toBe(6);

    const { samples } = summary;
    expect(samples.in).toBeGreaterThan(20);
    expect(samples).toMatchObject({ out: samples.in, stored: samples.in, dropped: 0, lost: 0 });
    expect(summary).toMatchObject({ ok: true, mode: "normal", store: "pglite" });
    const scrape = await metrics.registry.metrics();
    expect(scrape).toContain(`kiln_samples_in_total{machine="ald-1"} ${samples.in}\n`);
    expect(scrape).toContain(`kiln_samples_logged_total{machine="ald-1"} ${samples.out}\n`);
    expect(scrape).toContain('kiln_samples_dropped_total{machine="ald-1"} 0\n');
    expect(scrape).toMatch(/^kiln_scan_period_error_seconds_count\{group="fast",machine="ald-1"\} [1-9]/m);
    // No sample is uncertain or bad for a communication or type fault. The only quality allowed
    // is staleness: on a loaded machine a 50 ms scan can fall more than 3 periods behind (seen as
    // 6 "stale: no update within 150 ms" markers in 2 of 5 runs at load 13 on 2 cores), and
    // marking those values uncertain is the correct behaviour, not a fault of the run.
    expect(samples.notGood).toBe(samples.stale);

    expect(summary.alarms.raised).toBeGreaterThanOrEqual(1);
    expect(summary.alarms.acknowledged).toBe(summary.alarms.raised);
    expect(summary.alarms.interlockTrips).toBe(0);
    for (const raise of summary.alarms.raises) {
      expect(raise.alarmId).toBe("chamber.pressure:HI");
      expect(raise.value as number).toBeGreaterThan(0.9);
      expect(raise.acknowledgedAt).toBeGreaterThanOrEqual(raise.at);
    }
    // The alarm table's rows come from the store's alarm history: the same raises and
    // acknowledgements the bus carried, with who acknowledged, and each one cleared.
    expect(summary.alarms.occurrences.map((occurrence) => [occurrence.alarmId, occurrence.raisedAt])).toEqual(
      summary.alarms.raises.map((raise) => [raise.alarmId, raise.at]),
    );
    summary.alarms.occurrences.forEach((occurrence, index) => {
      expect(occurrence).toMatchObject({
        tag: "chamber.pressure",
        kind: "HI",
        priority: 2,
        raisedTo: "unacknowledged",
        acknowledgedAt: summary.alarms.raises[index]!.acknowledgedAt,
        acknowledgedBy: "demo-operator",
      });
      expect(occurrence.clearedAt).toBeGreaterThan(occurrence.raisedAt);
    });
    // The worst pulse is the one behind the timing statistics' max; the timeline has every cycle.
    expect(summary.worstPulse!.errorMs).toBe(summary.pulseTiming.max);
    expect(summary.timeline.map((row) => row.steps.map((step) => step.kind))).toEqual(
      Array.from({ length: 3 }, () => ["tma", "purge", "h2o", "purge"]),
    );
    expect(summary.link).toMatchObject({ lost: 0, restored: 0, outages: [], downtimeMs: 0 });

    expect(summary.reportFile).toBe(path.join(outDir, ALD_REPORT_FILE));
    const html = await readFile(summary.reportFile, "utf8");
    expect(count(html, '<svg class="chart"')).toBe(2);
    expect(count(html, '<polyline class="trace trace-primary"')).toBeGreaterThanOrEqual(2);
    // Every TMA pulse is shaded on both charts.
    expect(count(html, 'class="phase phase-tma"')).toBe(2 * 3);
    expect(count(html, 'class="marker marker-alarm"')).toBe(summary.alarms.raised);
    expect(html).toContain('data-gaps="0"');
    expect(html).not.toMatch(/https?:\/\//);
    await expectPressureFromHistory(summary, html, 16);
  });

  test("fault mode: the PLC's server stops and restarts mid-run; the recipe waits, recovers, and no logged sample is lost", async () => {
    const outDir = path.join(outRoot, "fault");
    const summary = await runAldDemo({ ...shortDemo, outDir, fault: true });

    expect(summary).toMatchObject({ ok: true, mode: "fault" });
    expect(summary.process.status).toBe("completed");
    expect(summary.cycles).toEqual({ planned: 3, completed: 3, countedByPlc: 3 });
    expect(summary.fault!.restartedAt).toBeGreaterThan(summary.fault!.stoppedAt);
    expect(summary.link).toMatchObject({ lost: 1, restored: 1 });
    // One outage, from the lose to the restore event, starting no earlier than the server stop
    // and ending after the restart; the downtime is its length.
    expect(summary.link.outages).toHaveLength(1);
    const [outage] = summary.link.outages;
    expect(outage!.restored).toBe(true);
    expect(outage!.start).toBeGreaterThanOrEqual(summary.fault!.stoppedAt);
    expect(outage!.end).toBeGreaterThan(summary.fault!.restartedAt);
    expect(summary.link.downtimeMs).toBe(outage!.durationMs);
    expect(summary.link.qualityChanges).toBeGreaterThan(0);

    const { samples } = summary;
    expect(samples.notGood).toBeGreaterThan(0); // the outage is in the store as uncertain samples
    expect(samples).toMatchObject({ out: samples.in, stored: samples.in, dropped: 0, lost: 0 });

    const html = await readFile(summary.reportFile, "utf8");
    expect(html).toContain('data-chart="pressure" data-gaps="1"');
    expect(count(html, 'class="marker marker-link-lost"')).toBe(2); // once per chart
    expect(count(html, 'class="marker marker-link-restored"')).toBe(2);
    expect(html).toContain(`PLC link down ${formatOutage(outage!.durationMs)}`);
    expect(html).not.toContain("no communication");
  });

  test("the HIHI interlock trips the recipe on overpressure: aborted, nothing after the first pulse", async () => {
    const outDir = path.join(outRoot, "interlock");
    // HIHI at 0.9 mbar sits below the 1 mbar TMA plateau: the first TMA pulse trips it. The pulse
    // is long here (600 ms): with shortDemo's 120 ms the pressure stays above 0.9 mbar for about
    // 80 ms, one or two 50 ms scans, and under load (the physics loop and the scans late) the
    // first pulse could pass unseen and the second trip it (seen once: cycles.completed 1). An
    // interlock in Kiln acts on what it scans; a transient shorter than the scan is the PLC's to catch.
    const summary = await runAldDemo({
      ...shortDemo,
      timing: { ...shortDemo.timing, pulseMs: 600 },
      outDir,
      alarms: { hiMbar: 0.5, hihiMbar: 0.9 },
    });

    expect(summary.ok).toBe(false);
    expect(summary.process.status).toBe("aborted");
    expect(summary.alarms.interlockTrips).toBe(1);
    expect(summary.alarms.raises.map((raise) => raise.alarmId)).toContain("chamber.pressure:HIHI");
    expect(summary.cycles.completed).toBe(0);
    expect(summary.pulses).toEqual({ tma: 1, h2o: 0 });
    const html = await readFile(summary.reportFile, "utf8");
    expect(count(html, 'class="marker marker-interlock"')).toBe(2);
  });

  test("bad options are rejected with KILN_VALIDATION naming the field", async () => {
    const paths = async (options: AldDemoOptions): Promise<string[]> => {
      const error = await runAldDemo(options).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: "KILN_VALIDATION" });
      return (error as KilnValidationError).issues.map((issue) => issue.path);
    };
    expect(await paths({ cycles: 1 })).toEqual(["cycles"]);
    expect(await paths({ alarms: { hiMbar: 2, hihiMbar: 1 } })).toEqual(["alarms.hihiMbar"]);
    expect(await paths({ timing: { pulseMs: 1 } })).toEqual(["timing.pulseMs"]);
  });
});
