import { describe, expect, test } from "vitest";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin } from "../../test/support/safety-harness";

// Adversarial review 15r (older note): a tripped machine was taken to idle without the interlock
// check by enterMaintenance then exitMaintenance: the reset's guard (ADR 0042, 15u) was bypassed
// while the overpressure persisted. Leaving maintenance is interlocked like a reset.

describe("leaving maintenance is interlocked like a reset (review 15r)", () => {
  test("(the example) trip, enter maintenance, exit while the interlock is active: refused, naming it; machine stays in maintenance", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "none", value: -1 });
    const { system } = parts;
    await parts.trip();
    expect(system.machineState).toBe("error");
    await system.sendMachineCommand(admin, "enterMaintenance");
    await expect(system.sendMachineCommand(admin, "exitMaintenance")).rejects.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
      details: { stage: "guard", interlocks: ["chamber.pressure:HIHI"] },
    });
    expect(system.machineState).toBe("maintenance");
    // Sibling: once the condition has cleared, maintenance is left to idle.
    parts.pressure.value = 1;
    await parts.scans(6);
    expect(await system.sendMachineCommand(admin, "exitMaintenance")).toBe("idle");
    await system.stop();
  });

  test("(sibling) a stale interlock source also holds the exit from maintenance", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "none", value: -1 }, { scanGroup: { maxSourceAgeMs: 150 } });
    const { system, clock } = parts;
    await system.sendMachineCommand(admin, "enterMaintenance");
    const at = clock.now();
    const read = parts.plc.read.bind(parts.plc);
    parts.plc.read = async (tags, signal) =>
      (await read(tags, signal)).map((sample) =>
        sample.tag === "chamber.pressure" ? { ...sample, timestamp: at } : sample,
      );
    await parts.scans(10);
    await expect(system.sendMachineCommand(admin, "exitMaintenance")).rejects.toMatchObject({
      details: { holds: [{ reason: expect.stringMatching(/^stale: tag chamber\.pressure/) }] },
    });
    expect(system.machineState).toBe("maintenance");
    await system.stop();
  });
});
