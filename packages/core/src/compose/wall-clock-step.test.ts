import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { simulatedSystem } from "../../test/support/simulated-system";

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
