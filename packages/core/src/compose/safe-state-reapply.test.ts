import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, hostile, sleep } from "../../test/support/late-landing-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15p, H1: once a fault's safe-state write had failed, no stop, fault or abort
// could write the safe state again: the machine was already in `error`, the table refused them
// (KILN_INVALID_TRANSITION), and the only way out, a reset, cleared the health() line that named
// the failure. The docs promise "sending it again writes the safe state again".

const refused = (value: number) =>
  new KilnError("KILN_WRITE_REJECTED", `device refused ${value}`, { details: { sent: false } });

describe("a safe state that failed is written again when a stop, fault or abort is sent again (review 15p, H1)", () => {
  test("a fault again in `error` writes the safe value once the device answers; health() is clear after", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.writeTag(admin, "heater.setpoint", 200);
    let refuse = true;
    parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 && refuse ? refused(0) : false));
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(20);
    expect(system.health().problems.join("\n")).toMatch(/safe-state write of heater\.setpoint failed/);
    refuse = false;
    // Before: KILN_INVALID_TRANSITION (stage table), nothing written, the device stayed at 200.
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(parts.values("heater.setpoint")).toEqual([200, 0]);
    expect(system.health().problems.join("\n")).not.toMatch(/safe-state write/);
    // Audited allowed, as the command it is.
    const faults = parts.recorded.filter((entry) => entry.action === "machine.fault" && !entry.id.endsWith(":fail"));
    expect(faults.map((entry) => entry.outcome)).toEqual(["allowed", "allowed"]);
    // With nothing failed any more, the table decides again: a third fault is refused.
    await expect(system.sendMachineCommand(admin, "fault")).rejects.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
      details: { stage: "table" },
    });
    await system.stop();
  });

  test("(sibling) a stop in `error` that fails again is its own :fail and the line stays", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.writeTag(admin, "heater.setpoint", 200);
    parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 ? refused(0) : false));
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(await system.sendMachineCommand(admin, "stop")).toBe("error");
    await sleep(20);
    const fails = parts.recorded.filter((entry) => entry.id.endsWith(":fail"));
    expect(fails.map((entry) => entry.action)).toEqual(["machine.fault", "machine.stop"]);
    expect(fails[1]!.reason).toContain("KILN_WRITE_REJECTED");
    expect(system.health().problems.join("\n")).toMatch(/safe-state write of heater\.setpoint failed/);
    // Two calls of 0 reached the device, both refused; it still holds 200.
    expect(parts.values("heater.setpoint")).toEqual([200]);
    await system.stop();
  });

  // Review 15q, M2: the re-drive also ran in `maintenance`: a holder of machine.mode without
  // maintenance or write rights moved an output a technician had set.
  test("(15q M2) not in maintenance: a stop there is refused and the technician's value stays", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.writeTag(admin, "heater.setpoint", 200);
    parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 ? refused(0) : false));
    expect(await system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(await system.sendMachineCommand(admin, "enterMaintenance")).toBe("maintenance");
    parts.setHold(() => false);
    await system.writeTag(admin, "heater.setpoint", 300);
    await expect(system.sendMachineCommand(admin, "stop")).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    expect(parts.values("heater.setpoint")).toEqual([200, 300]);
    await system.stop();
  });

  test("the entry of a re-drive says so (newValue.safeStateAgain) and names the safe state it writes", async () => {
    const parts = await hostile();
    const { system } = parts;
    await system.writeTag(admin, "heater.setpoint", 200);
    parts.setHold((tag, value) => (tag === "heater.setpoint" && value === 0 ? refused(0) : false));
    await system.sendMachineCommand(admin, "fault");
    parts.setHold(() => false);
    await system.sendMachineCommand(admin, "stop");
    const stop = parts.recorded.find((entry) => entry.action === "machine.stop" && !entry.id.endsWith(":fail"));
    expect(stop).toMatchObject({ outcome: "allowed", newValue: { command: "stop", safeStateAgain: true } });
    // As a trip's entry does (adversarial review adv15r, L2).
    expect((stop?.newValue as { safeState?: unknown }).safeState).toEqual([
      { tag: "heater.setpoint", value: 0 },
      { tag: "valve.h2o", value: false },
    ]);
    await system.stop();
  });
});

// Review 15q, M1: a late step write of a tag outside the safe state (refused after its process was
// stopped) also switched the re-drive on: every later stop at rest was taken and wrote the safe
// state over manual values. Only a failed safe-state write does.
describe("a failed late step write does not make a stop at rest write the safe state (review 15q, M1)", () => {
  const STIR: RecipeInput = {
    name: "stir",
    version: 1,
    steps: [{ set: { tag: "stirrer.speed", value: 50 } }, { wait: { durationMs: 60_000 } }],
  };
  for (const model of ["kiln", "packml"] as const) {
    test(`${model}: refused as before, the manual value stays`, async () => {
      const parts = await heldWriteSystem(model, { tag: "stirrer.speed", value: 50 }, { failHeld: true });
      const { system } = parts;
      const process = await system.startRecipe(engineer, STIR);
      await parts.scans(2);
      await system.sendMachineCommand(admin, "stop");
      parts.release();
      await parts.scans(2);
      await process.finished;
      expect(system.health().problems.join("\n")).toMatch(/stirrer\.speed/);
      await system.writeTag(admin, "heater.setpoint", 150);
      const before = parts.values("heater.setpoint").length;
      await expect(system.sendMachineCommand(admin, "stop")).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
      expect(parts.values("heater.setpoint").slice(before)).toEqual([]);
      await system.stop();
    });
  }
});
