import { describe, expect, test } from "vitest";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin } from "../../test/support/safety-harness";

// Adversarial review 15c (LOW): a manual PackML abort with no process left the machine in
// `aborting` (an acting state nothing completed) and wrote no safe state. A manual stop, fault or
// abort with no process now writes the safe state, as a trip with no process does, and an acting
// state it enters completes.

describe("a manual stop, fault or abort with no process writes the safe state and reaches its end state (review 15c)", () => {
  test("(the example) PackML abort from stopped (its initial state): aborted, safe state written, audited once", async () => {
    const parts = await heldWriteSystem("packml", { tag: "none", value: -1 });
    await parts.scans(2);
    const from = parts.clock.now();
    expect(parts.system.machineState).toBe("stopped");
    expect(await parts.system.sendMachineCommand(admin, "abort")).toBe("aborted");
    expect(parts.system.machineState).toBe("aborted");
    expect(parts.values("heater.setpoint")).toEqual([0]);
    expect(parts.values("valve.h2o")).toEqual([false]);
    const entries = (await parts.system.history.audit.query({ from, to: parts.clock.now() + 1 })).filter(
      (entry) => entry.action === "machine.abort",
    );
    expect(entries.map((entry) => entry.outcome)).toEqual(["allowed"]);
    await parts.system.stop();
  });

  test("(sibling) Kiln fault from idle ends in error with the safe state written; the machine is then reset as after a trip", async () => {
    const kiln = await heldWriteSystem("kiln", { tag: "none", value: -1 });
    await kiln.scans(2);
    expect(await kiln.system.sendMachineCommand(admin, "fault")).toBe("error");
    expect(kiln.values("heater.setpoint")).toEqual([0]);
    expect(kiln.values("valve.h2o")).toEqual([false]);
    expect(await kiln.system.sendMachineCommand(admin, "reset")).toBe("idle");
    await kiln.system.stop();
  });
});
