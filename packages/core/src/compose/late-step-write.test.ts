import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15e (LOW, earlier): a step write that timed out (the driver's write timeout,
// 500 ms here) failed the process and its safe state was written at once, while the driver's own
// call was still on its way: it landed after the safe state and undid it (heater.setpoint back at
// 40 on a faulted machine). A write given up at its timeout now keeps its tag busy until the
// driver's call settles (at most one more write timeout), so the tag's next write, the safe
// state's, lands after it.

const HEAT: RecipeInput = {
  name: "heat",
  version: 1,
  steps: [{ set: { tag: "heater.setpoint", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

describe("a write that timed out but still lands does not land after the safe state (review 15e)", () => {
  test("(the example) a step write lands after its timeout: the safe state's write of its tag follows it", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "heater.setpoint", value: 40 }, { timeoutMs: 500 });
    const { system } = parts;
    const process = await system.startRecipe(engineer, HEAT);
    await parts.scans(14);
    // The safe state's other tag is written at once; heater.setpoint waits for the late write,
    // and the machine is faulted once the safe state is written.
    expect(parts.values("valve.h2o")).toEqual([false]);
    expect(parts.values("heater.setpoint")).toEqual([]);
    parts.release();
    await parts.scans(2);
    expect(parts.values("heater.setpoint")).toEqual([40, 0]);
    expect(system.machineState).toBe("error");
    expect(await process.finished).toMatchObject({ status: "failed" });
    await system.stop();
  });

  test("(sibling) a manual write that timed out and still lands: a trip's safe state of its tag follows it", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "heater.setpoint", value: 40 }, { timeoutMs: 500 });
    const { system } = parts;
    await expect(Promise.all([system.writeTag(admin, "heater.setpoint", 40), parts.scans(12)])).rejects.toMatchObject({
      code: "KILN_TIMEOUT",
    });
    const faulted = system.sendMachineCommand(admin, "fault");
    await parts.scans(2);
    expect(parts.values("heater.setpoint")).toEqual([]);
    parts.release();
    await parts.scans(2);
    expect(await faulted).toBe("error");
    expect(parts.values("heater.setpoint")).toEqual([40, 0]);
    await system.stop();
  });

  test("(sibling) a driver call that never settles holds the safe state of its tag at most one more write timeout", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "heater.setpoint", value: 40 }, { timeoutMs: 500 });
    const { system } = parts;
    await system.startRecipe(engineer, HEAT);
    await parts.scans(14);
    expect(parts.values("heater.setpoint")).toEqual([]);
    await parts.scans(12);
    expect(parts.values("heater.setpoint")).toEqual([0]);
    parts.release();
    await system.stop();
  });
});
