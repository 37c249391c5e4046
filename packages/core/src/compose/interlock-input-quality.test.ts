import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { engineer } from "../../test/support/safety-harness";

// Adversarial review 15c, M4: an interlock input turning bad (or Kiln's stale marker) held new
// starts but left a running process running: the interlock could no longer see its condition,
// and nothing acted. It now trips the process to its safe state, as a value trip does, audited
// with a reason naming the tag and its quality.

const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

async function running(timeoutMs = 10_000) {
  const parts = await heldWriteSystem("kiln", { tag: "none", value: -1 }, { timeoutMs });
  await parts.scans(2);
  const from = parts.clock.now();
  const process = await parts.system.startRecipe(engineer, LONG);
  await parts.scans(2);
  expect(process.status).toBe("running");
  const trips = async () =>
    (await parts.system.history.audit.query({ from, to: parts.clock.now() + 1 })).filter(
      (entry) => entry.action === "machine.trip",
    );
  return { ...parts, process, trips };
}

describe("an interlock input that goes bad or stale trips a running process (review 15c, M4)", () => {
  test("(the example) bad quality: tripped to the safe state, machine faulted, one machine.trip naming the tag and its quality", async () => {
    const parts = await running();
    parts.plc.faults.badQuality.add("chamber.pressure");
    await parts.scans(6);
    expect(parts.system.machineState).toBe("error");
    expect(await parts.process.finished).toMatchObject({
      status: "aborted",
      reason: "interlock chamber.pressure:HIHI tripped: tag chamber.pressure bad quality: injected fault",
    });
    expect(parts.values("heater.setpoint")).toEqual([0]);
    expect(parts.values("valve.h2o")).toEqual([false]);
    const trips = await parts.trips();
    expect(trips).toHaveLength(1);
    expect(trips[0]).toMatchObject({
      outcome: "allowed",
      reason: "interlock chamber.pressure:HIHI tripped: tag chamber.pressure bad quality: injected fault",
    });
    await parts.system.stop();
  });

  test("(the example) Kiln's stale marker (the device stops answering reads): tripped, the reason names the tag and its quality", async () => {
    // A 100 ms device timeout: each hanging read gives up within a scan or two (staleness is swept then).
    const parts = await running(100);
    // Reads hang (the writes of the safe state still land): no update reaches the pressure.
    parts.plc.read = (_tags, signal) =>
      new Promise((_resolve, reject) => signal?.addEventListener("abort", () => reject(new Error("aborted"))));
    await parts.scans(8);
    expect(parts.system.machineState).toBe("error");
    expect(await parts.process.finished).toMatchObject({
      status: "aborted",
      reason:
        "interlock chamber.pressure:HIHI tripped: tag chamber.pressure uncertain quality: stale: no update within 150 ms",
    });
    expect(parts.values("heater.setpoint")).toEqual([0]);
    const trips = await parts.trips();
    expect(trips.map((entry) => entry.reason)).toEqual([
      "interlock chamber.pressure:HIHI tripped: tag chamber.pressure uncertain quality: stale: no update within 150 ms",
    ]);
    await parts.system.stop();
  });

  test("(sibling) with no process running a bad input trips nothing (it holds starts), and an input that recovers re-arms the trip", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "none", value: -1 }, { timeoutMs: 10_000 });
    await parts.scans(2);
    parts.plc.faults.badQuality.add("chamber.pressure");
    await parts.scans(4);
    expect(parts.system.machineState).toBe("idle");
    expect(parts.values("heater.setpoint")).toEqual([]);
    await expect(parts.system.startRecipe(engineer, LONG)).rejects.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
      details: { holds: [{ id: "chamber.pressure:HIHI", reason: "bad quality: injected fault" }] },
    });
    parts.plc.faults.badQuality.delete("chamber.pressure");
    await parts.scans(2);
    const process = await parts.system.startRecipe(engineer, LONG);
    await parts.scans(2);
    parts.plc.faults.badQuality.add("chamber.pressure");
    await parts.scans(2);
    expect(await process.finished).toMatchObject({ status: "aborted" });
    expect(parts.system.machineState).toBe("error");
    await parts.system.stop();
  });

  test("(sibling) an uncertain input that is not a last usable value does not trip a running process (its value is still evaluated)", async () => {
    const inaccurate = { on: false };
    const parts = await heldWriteSystem(
      "kiln",
      { tag: "none", value: -1 },
      {
        timeoutMs: 10_000,
        mapRead: (sample) =>
          sample.tag === "chamber.pressure" && inaccurate.on
            ? { ...sample, quality: { severity: "uncertain", code: 0x40000000, reason: "sensor not accurate" } }
            : sample,
      },
    );
    await parts.scans(2);
    const process = await parts.system.startRecipe(engineer, LONG);
    await parts.scans(2);
    inaccurate.on = true;
    await parts.scans(6);
    expect(process.status).toBe("running");
    expect(parts.system.machineState).toBe("processing");
    expect(parts.values("heater.setpoint")).toEqual([]);
    // ... and its value still trips the process once beyond the setpoint.
    await parts.trip();
    expect(await process.finished).toMatchObject({
      status: "aborted",
      reason: expect.stringContaining("interlock chamber.pressure:HIHI tripped at 25"),
    });
    await parts.system.stop();
  });
});
