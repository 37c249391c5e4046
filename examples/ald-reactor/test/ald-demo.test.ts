import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { KilnValidationError } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ALD_REPORT_FILE, runAldDemo, type AldDemoOptions } from "../src/ald-demo";
import { shortDemo } from "./support/short-demo";

let outRoot: string;

beforeAll(async () => {
  outRoot = await mkdtemp(path.join(tmpdir(), "kiln-ald-demo-test-"));
});

afterAll(async () => {
  await rm(outRoot, { recursive: true, force: true });
});

function count(text: string, fragment: string): number {
  return text.split(fragment).length - 1;
}

// End to end on loopback: a real OPC UA server (SignAndEncrypt), the OPC UA driver, the
// PostgreSQL store on embedded PGlite, and the recipe executor, shortened to 3 cycles.
describe("the ALD demo, shortened to 3 cycles", () => {
  test("runs every cycle on the OPC UA PLC, logs every sample to the store, acknowledges its alarms, and writes the report", async () => {
    const outDir = path.join(outRoot, "normal");
    // HI at 0.9 mbar sits below the 1 mbar TMA plateau, so TMA pulses raise it.
    const summary = await runAldDemo({ ...shortDemo, outDir, alarms: { hiMbar: 0.9 } });

    expect(summary).toMatchObject({ ok: true, mode: "normal", store: "pglite" });
    expect(summary.process.status).toBe("completed");
    expect(summary.cycles).toEqual({ planned: 3, completed: 3, countedByPlc: 3 });
    expect(summary.pulses).toEqual({ tma: 3, h2o: 3 });
    expect(summary.pulseTiming.count).toBe(6);

    const { samples } = summary;
    expect(samples.in).toBeGreaterThan(20);
    expect(samples).toMatchObject({ out: samples.in, stored: samples.in, dropped: 0, lost: 0, notGood: 0 });

    expect(summary.alarms.raised).toBeGreaterThanOrEqual(1);
    expect(summary.alarms.acknowledged).toBe(summary.alarms.raised);
    expect(summary.alarms.interlockTrips).toBe(0);
    for (const raise of summary.alarms.raises) {
      expect(raise.alarmId).toBe("chamber.pressure:HI");
      expect(raise.value as number).toBeGreaterThan(0.9);
      expect(raise.acknowledgedAt).toBeGreaterThanOrEqual(raise.at);
    }
    expect(summary.link).toMatchObject({ lost: 0, restored: 0 });

    expect(summary.reportFile).toBe(path.join(outDir, ALD_REPORT_FILE));
    const html = await readFile(summary.reportFile, "utf8");
    expect(count(html, '<svg class="chart"')).toBe(2);
    expect(count(html, '<polyline class="trace trace-primary"')).toBeGreaterThanOrEqual(2);
    // Every TMA pulse is shaded on both charts.
    expect(count(html, 'class="phase phase-tma"')).toBe(2 * 3);
    expect(count(html, 'class="marker marker-alarm"')).toBe(summary.alarms.raised);
    expect(html).toContain('data-gaps="0"');
    expect(html).not.toMatch(/https?:\/\//);
  });

  test("fault mode: the PLC's server stops and restarts mid-run; the recipe waits, recovers, and no logged sample is lost", async () => {
    const outDir = path.join(outRoot, "fault");
    const summary = await runAldDemo({ ...shortDemo, outDir, fault: true });

    expect(summary).toMatchObject({ ok: true, mode: "fault" });
    expect(summary.process.status).toBe("completed");
    expect(summary.cycles).toEqual({ planned: 3, completed: 3, countedByPlc: 3 });
    expect(summary.fault!.restartedAt).toBeGreaterThan(summary.fault!.stoppedAt);
    expect(summary.link).toMatchObject({ lost: 1, restored: 1 });
    expect(summary.link.downtimeMs).toBeGreaterThan(0);
    expect(summary.link.qualityChanges).toBeGreaterThan(0);

    const { samples } = summary;
    expect(samples.notGood).toBeGreaterThan(0); // the outage is in the store as uncertain samples
    expect(samples).toMatchObject({ out: samples.in, stored: samples.in, dropped: 0, lost: 0 });

    const html = await readFile(summary.reportFile, "utf8");
    expect(html).toContain('data-chart="pressure" data-gaps="1"');
    expect(count(html, 'class="marker marker-link-lost"')).toBe(2); // once per chart
    expect(count(html, 'class="marker marker-link-restored"')).toBe(2);
    expect(html).toContain("no communication");
  });

  test("the HIHI interlock trips the recipe on overpressure: aborted, nothing after the first pulse", async () => {
    const outDir = path.join(outRoot, "interlock");
    // HIHI at 0.9 mbar sits below the 1 mbar TMA plateau: the first TMA pulse trips it.
    const summary = await runAldDemo({ ...shortDemo, outDir, alarms: { hiMbar: 0.5, hihiMbar: 0.9 } });

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
