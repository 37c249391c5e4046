import { SimulatedClock } from "@kiln/core/testing";
import { describe, expect, test } from "vitest";
import { ProgressLine, formatProgress, type ProgressSnapshot } from "./progress-line";

const snapshot: ProgressSnapshot = {
  cycle: 12,
  cycles: 30,
  step: "TMA pulse",
  pressureMbar: 1.0214,
  temperatureC: 199.94,
  alarms: 2,
  link: "online",
  elapsedMs: 16_240,
};

function recorder(isTTY: boolean): { write(text: string): void; isTTY: boolean; text: string } {
  return {
    isTTY,
    text: "",
    write(text: string) {
      this.text += text;
    },
  };
}

describe("formatProgress", () => {
  test("shows the bar, cycle n of N, step, live values, alarms and link", () => {
    const line = formatProgress(snapshot, 10);
    expect(line).toMatch(/^\[####\.{6}\] {2}cycle 12\/30 {2}TMA pulse/);
    expect(line).toContain("1.021 mbar");
    expect(line).toContain("199.9 °C");
    expect(line).toContain("alarms 2");
    expect(line).toContain("link online");
    expect(line).toContain("16.2 s");
  });

  test("marks stale values and shows dashes before the first value", () => {
    expect(formatProgress({ ...snapshot, stale: true })).toContain("°C (stale)");
    const empty = formatProgress({ ...snapshot, cycle: 0, pressureMbar: undefined, temperatureC: undefined });
    expect(empty).toMatch(/^\[\.{24}\]/);
    expect(empty).toContain("  -    mbar");
  });
});

describe("ProgressLine", () => {
  test("on a terminal it redraws one line in place with \\r and ends it with a newline", async () => {
    const clock = new SimulatedClock();
    const output = recorder(true);
    let cycle = 0;
    const progress = new ProgressLine({ output, clock, redrawMs: 100, read: () => ({ ...snapshot, cycle }) });
    progress.start();
    cycle = 5;
    await clock.advance(300);
    progress.stop();
    expect(output.text.split("\r").length - 1).toBe(5); // start, 3 redraws, stop
    expect(output.text.split("\n")).toHaveLength(2);
    expect(output.text.endsWith("\n")).toBe(true);
    expect(output.text).toContain("cycle  5/30");
  });

  test("elsewhere it prints plain periodic lines, and notes go on lines of their own", async () => {
    const clock = new SimulatedClock();
    const output = recorder(false);
    const progress = new ProgressLine({ output, clock, lineMs: 2_000, read: () => snapshot });
    progress.start();
    await clock.advance(4_000);
    progress.note("PLC link lost");
    progress.stop();
    const lines = output.text.trimEnd().split("\n");
    expect(lines).toHaveLength(5); // start, 2 s, 4 s, the note, stop
    expect(lines[3]).toBe("PLC link lost");
    expect(output.text).not.toContain("\r");
  });

  test("a note on a terminal clears the line, prints above it and redraws", () => {
    const clock = new SimulatedClock();
    const output = recorder(true);
    const progress = new ProgressLine({ output, clock, read: () => snapshot });
    progress.start();
    progress.note("Fault: stopping the server");
    expect(output.text).toContain("\r\x1b[KFault: stopping the server\n\r[");
    progress.stop();
  });
});
