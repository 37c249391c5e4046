import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15t, H3: the start/reset permissive read `alarm.active`, and an alarm with no
// usable sample is inactive (bad quality neither activates nor clears it). A start right after
// `system.start()`, before the first scan, or with the interlock's tag bad, was accepted and
// wrote to the PLC. Fail-safe (IEC 61511): an interlock whose state is unknown is not permissive.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});

const FAULTED = { kiln: "error", packml: "aborted" } as const;
const RESET = { kiln: "reset", packml: "clear" } as const;
const HEAT: RecipeInput = {
  name: "heat",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 300 } }, { wait: { durationMs: 5000 } }],
};

function build(model: "kiln" | "packml") {
  const pressure = { value: 1 };
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { model, safeState: [{ tag: "heater.setpoint", value: 0 }] },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
  });
  const scans = async (count: number): Promise<void> => {
    for (let tick = 0; tick < count; tick++) await parts.clock.advance(50);
  };
  const heaterWrites = (): unknown[] =>
    parts.plc.writes.filter((entry) => entry.tag === "heater.setpoint").map((entry) => entry.value);
  return { ...parts, pressure, scans, heaterWrites };
}

describe("an interlock whose state is unknown is not permissive (review 15t, H3)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a start before the first scan is refused, named, audited denied; accepted after a good in-limit scan`, async () => {
      const parts = build(model);
      const { system } = parts;
      await system.start();
      const refused = system.startRecipe(engineer, HEAT);
      await expect(refused).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: {
          stage: "guard",
          interlocks: ["chamber.pressure:HIHI"],
          holds: [{ id: "chamber.pressure:HIHI", reason: "state unknown: no sample yet" }],
        },
      });
      await expect(refused).rejects.toThrow(/state unknown: no sample yet/);
      expect(parts.heaterWrites()).toEqual([]);
      await parts.scans(2);
      const process = await system.startRecipe(engineer, HEAT);
      await parts.scans(2);
      expect(parts.heaterWrites()).toEqual([300]);
      await system.abortProcess(admin, "done");
      await process.finished;
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === "recipe.start").map((entry) => entry.outcome)).toEqual([
        "denied",
        "allowed",
      ]);
    });

    test(`${model} (the example): a start while the interlock's tag is bad is refused; health() names it while it lasts`, async () => {
      const parts = build(model);
      const { system } = parts;
      parts.plc.faults.badQuality.add("chamber.pressure");
      await system.start();
      await parts.scans(4);
      await expect(system.startRecipe(engineer, HEAT)).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: {
          interlocks: ["chamber.pressure:HIHI"],
          holds: [{ reason: expect.stringMatching(/^bad quality: /) }],
        },
      });
      expect(parts.heaterWrites()).toEqual([]);
      const named = (): string[] =>
        system
          .health()
          .problems.filter((problem) => problem.includes("interlock chamber.pressure:HIHI not permissive"));
      expect(named()).toEqual([expect.stringContaining("bad quality")]);
      parts.plc.faults.badQuality.delete("chamber.pressure");
      await parts.scans(2);
      expect(named()).toEqual([]);
      const process = await system.startRecipe(engineer, HEAT);
      await system.abortProcess(admin, "done");
      await process.finished;
      await system.stop();
    });

    test(`${model} (sibling): a trip is not reset while the interlock's tag is bad, though the last good value was in limit`, async () => {
      const parts = build(model);
      const { system } = parts;
      await system.start();
      await parts.scans(2);
      parts.pressure.value = 25;
      await parts.scans(4);
      expect(system.machineState).toBe(FAULTED[model]);
      parts.pressure.value = 1;
      await parts.scans(2);
      parts.plc.faults.badQuality.add("chamber.pressure");
      await parts.scans(2);
      await expect(system.sendMachineCommand(admin, RESET[model])).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: {
          stage: "guard",
          holds: [{ id: "chamber.pressure:HIHI", reason: expect.stringMatching(/^bad quality/) }],
        },
      });
      expect(system.machineState).toBe(FAULTED[model]);
      parts.plc.faults.badQuality.delete("chamber.pressure");
      await parts.scans(2);
      await system.sendMachineCommand(admin, RESET[model]);
      expect(system.machineState).not.toBe(FAULTED[model]);
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === `machine.${RESET[model]}`).map((entry) => entry.outcome)).toEqual(
        ["denied", "allowed"],
      );
    });
  }
});
