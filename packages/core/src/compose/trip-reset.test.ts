import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import { VALVE_LOOP, admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15u: a trip could be reset while its interlock was still active (the guard
// was on `start` only), and a failed safe-state write left health().problems empty.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "chamber.temp": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

const FAULTED = { kiln: "error", packml: "aborted" } as const;
/** The command that resets a trip: Kiln `reset` (`error` → `idle`), PackML `clear` (`aborted` → `clearing`). */
const RESET = { kiln: "reset", packml: "clear" } as const;

async function build(model: "kiln" | "packml", options: { failSafeState?: boolean } = {}) {
  const pressure = { value: 1 };
  const temp = { value: 1 };
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value, "chamber.temp": () => temp.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { model, safeState: [{ tag: "heater.setpoint", value: 0 }] },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
      { tag: "chamber.temp", kind: "HIHI", setpoint: 20, priority: 1, message: "Overtemp", interlock: true },
    ],
  });
  const fail = { safeState: options.failSafeState === true };
  const write = parts.plc.write.bind(parts.plc);
  parts.plc.write = async (tag, value, signal) => {
    if (fail.safeState && tag.name === "heater.setpoint" && value === 0) throw new Error("device refused the write");
    return write(tag, value, signal);
  };
  // The heater is on: a refused safe write leaves it there (the device reads back 150, not 0; fix15s).
  if (fail.safeState) parts.plc.set("heater.setpoint", 150);
  await parts.system.start();
  await parts.clock.advance(100);
  const scans = async (count: number): Promise<void> => {
    for (let tick = 0; tick < count; tick++) await parts.clock.advance(50);
  };
  return { ...parts, pressure, temp, fail, scans };
}

describe("a trip is not reset while its interlock is active (review 15u)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): ${RESET[model]} is refused while the interlock is active, named, and audited denied`, async () => {
      const parts = await build(model);
      const { system } = parts;
      parts.pressure.value = 25;
      await parts.scans(4);
      expect(system.machineState).toBe(FAULTED[model]);
      const refused = system.sendMachineCommand(admin, RESET[model]);
      await expect(refused).rejects.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: { command: RESET[model], stage: "guard", interlocks: [expect.stringContaining("chamber.pressure")] },
      });
      await expect(refused).rejects.toThrow(/chamber\.pressure/);
      expect(system.machineState).toBe(FAULTED[model]);
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === `machine.${RESET[model]}`)).toMatchObject([
        { outcome: "denied" },
      ]);
    });

    test(`${model} (sibling): once the condition clears the reset is accepted; two active interlocks are both named`, async () => {
      const parts = await build(model);
      const { system } = parts;
      parts.pressure.value = 25;
      parts.temp.value = 25;
      await parts.scans(4);
      await expect(system.sendMachineCommand(admin, RESET[model])).rejects.toMatchObject({
        details: { interlocks: [expect.stringContaining("chamber.pressure"), expect.stringContaining("chamber.temp")] },
      });
      parts.pressure.value = 1;
      await parts.scans(2);
      await expect(system.sendMachineCommand(admin, RESET[model])).rejects.toMatchObject({
        details: { interlocks: [expect.stringContaining("chamber.temp")] },
      });
      parts.temp.value = 1;
      await parts.scans(2);
      await system.sendMachineCommand(admin, RESET[model]);
      // PackML: `clear` leads through `clearing` to `stopped`, then `reset` (also interlocked) to `idle`.
      if (model === "packml") {
        await system.sendMachineCommand(admin, "stateComplete");
        await system.sendMachineCommand(admin, "reset");
        await system.sendMachineCommand(admin, "stateComplete");
      }
      expect(system.machineState).toBe("idle");
      // The machine runs a process again.
      const process = await system.startRecipe(engineer, VALVE_LOOP);
      await system.abortProcess(admin, "done");
      await process.finished;
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === `machine.${RESET[model]}`).map((entry) => entry.outcome)).toEqual(
        ["denied", "denied", "allowed"],
      );
    });
  }
});

describe("a failed safe-state write is named by health() until the device confirms the safe value (review 15u, fix15s)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model} (the example): a trip whose safe-state write fails; health().problems names the tag and reason`, async () => {
      const parts = await build(model, { failSafeState: true });
      const { system } = parts;
      parts.pressure.value = 25;
      await parts.scans(4);
      expect(system.machineState).toBe(FAULTED[model]);
      const named = (): string[] =>
        system.health().problems.filter((problem) => problem.includes("safe-state write of heater.setpoint failed"));
      expect(named()).toHaveLength(1);
      expect(named()[0]).toContain("device refused the write");
      expect(system.health().status).toBe("degraded");
      // Still named later, and after the condition clears, and after the trip is reset: the device
      // still reads back 150 (before fix15s the reset cleared it).
      parts.pressure.value = 1;
      await parts.scans(20);
      expect(named()).toHaveLength(1);
      await system.sendMachineCommand(admin, RESET[model]);
      await parts.scans(4);
      expect(named()).toHaveLength(1);
      // Until the device reads back the safe value (good, newer than the failure).
      parts.plc.set("heater.setpoint", 0);
      await parts.scans(4);
      expect(named()).toHaveLength(0);
      await system.stop();
    });

    test(`${model} (sibling): an operator abort whose safe-state write fails is named too`, async () => {
      const parts = await build(model, { failSafeState: true });
      const { system } = parts;
      const process = await system.startRecipe(engineer, VALVE_LOOP);
      await parts.scans(2);
      await system.abortProcess(admin, "operator stop");
      await process.finished;
      expect(
        system.health().problems.filter((problem) => problem.includes("safe-state write of heater.setpoint failed")),
      ).toHaveLength(1);
      await system.stop();
    });

    test(`${model} (sibling): a later trip whose safe-state write succeeds clears it without a reset`, async () => {
      const parts = await build(model, { failSafeState: true });
      const { system } = parts;
      const named = (): string[] =>
        system.health().problems.filter((problem) => problem.includes("safe-state write of heater.setpoint failed"));
      parts.pressure.value = 25;
      await parts.scans(4);
      expect(named()).toHaveLength(1);
      parts.pressure.value = 1;
      await parts.scans(4);
      parts.fail.safeState = false;
      parts.pressure.value = 25;
      await parts.scans(4);
      expect(parts.plc.writes.filter((write) => write.tag === "heater.setpoint")).toHaveLength(1);
      expect(named()).toHaveLength(0);
      expect(system.machineState).toBe(FAULTED[model]);
      await system.stop();
    });
  }
});
