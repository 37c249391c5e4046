import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { Clock } from "../ports/clock";
import { createControlSystem } from "./create-control-system";
import { SIMULATED_START, simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({ "seq.counter": { dataType: "uint32" } });

for (const stepMs of [-60_000, 3_600_000]) {
  test(`a host wall-clock step of ${stepMs} ms: scans go on at the period, values stay fresh, the step is reported once`, async () => {
    const { clock, system } = simulatedSystem({
      tags,
      sources: { "seq.counter": { kind: "counter" } },
      scanGroups: { default: { periodMs: 50 } },
    });
    const steps: KilnEvents["clock-step"][] = [];
    system.bus.on("clock-step", (event) => void steps.push(event));
    await system.start();
    await clock.advance(1_000);
    const cyclesBefore = system.health().acquisition.groups[0]!.cycles;
    clock.stepWall(stepMs);
    await clock.advance(3_000);
    const sample = system.read("seq.counter");
    expect(sample?.quality.severity).toBe("good");
    const group = system.health().acquisition.groups[0]!;
    expect(group.cycles - cyclesBefore).toBe(60);
    expect(group.skippedCycles).toBe(0);
    expect(group.periodError.max).toBeLessThan(50);
    expect(steps).toHaveLength(1);
    expect(Math.abs(steps[0]!.stepMs - stepMs)).toBeLessThanOrEqual(50);
    expect(system.health().problems.some((problem) => problem.includes("host wall clock stepped"))).toBe(true);
    await system.stop();
  });
}

test("a PLC whose clock steps back 1 h: every changed value is kept, restamped on receipt, and stays fresh", async () => {
  const clock = new SimulatedClock({ start: SIMULATED_START });
  // The PLC stamps its samples with its own clock, an hour behind ours from t = 1 s.
  let plcOffset = 0;
  const plcClock: Clock = {
    now: () => clock.now() + plcOffset,
    setTimeout: (callback, delayMs) => clock.setTimeout(callback, delayMs),
    clearTimeout: (handle) => clock.clearTimeout(handle),
    sleep: (delayMs, signal) => clock.sleep(delayMs, signal),
  };
  const plc = new SimulatedPlc({ tags, clock: plcClock, sources: { "seq.counter": { kind: "counter" } } });
  const store = new MemoryStore({ clock });
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: plc,
    store,
    clock,
    scanGroups: { default: { periodMs: 50 } },
  });
  await system.start();
  await clock.advance(1_000);
  plcOffset = -3_600_000;
  await clock.advance(1_000);
  expect(system.read("seq.counter")?.quality.severity).toBe("good");
  const rows = await store.samples.readSamples({ tag: "seq.counter", from: 0, to: clock.now() + 1 });
  await system.stop();
  const values = rows.map((row) => row.value as number);
  expect(new Set(values).size).toBe(values.length);
  expect(values.length).toBeGreaterThanOrEqual(40);
  const afterStep = rows.filter((row) => row.quality.reason?.includes("did not advance"));
  expect(afterStep.length).toBeGreaterThanOrEqual(19);
  expect(afterStep.every((row) => row.quality.severity === "good")).toBe(true);
});
