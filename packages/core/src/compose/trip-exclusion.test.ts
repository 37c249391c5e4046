import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import { HeldProcessStore, VALVE_LOOP as LOOP, admin, engineer, settled } from "../../test/support/safety-harness";

// Adversarial review 15w: while a trip with no process wrote the safe state, a start began and ran
// on the machine about to be faulted (H1), enterMaintenance cleared the trip without a reset (M6);
// a stop during the trip closed the driver under it and lost its entry (H2); two trips in one scan
// recorded a false failure (M5).

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "chamber.temp": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

async function build(model: "kiln" | "packml", options: { slowSafeState?: boolean } = {}) {
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
    store: (clock) => new HeldProcessStore({ clock }),
  });
  const { plc, clock } = parts;
  if (options.slowSafeState === true) {
    // The safe-state write takes 300 ms (a slow fieldbus).
    const write = plc.write.bind(plc);
    plc.write = async (tag, value, signal) => {
      if (tag.name === "heater.setpoint" && value === 0) await clock.sleep(300);
      return write(tag, value, signal);
    };
  }
  await parts.system.start();
  await clock.advance(100);
  const safeStateWrites = (): number =>
    plc.writes.filter((write) => write.tag === "heater.setpoint" && write.value === 0).length;
  return { ...parts, pressure, temp, safeStateWrites };
}

const FAULTED = { kiln: "error", packml: "aborted" } as const;

/** Trips with no process (slow safe-state write), then lets the alarm clear: the trip is still writing. */
async function tripUnderWay(parts: Awaited<ReturnType<typeof build>>): Promise<void> {
  parts.pressure.value = 25;
  await parts.clock.advance(50);
  parts.pressure.value = 1;
  await parts.clock.advance(100);
  expect(parts.safeStateWrites()).toBe(0);
}

describe("no start begins while a trip acts (review 15w, H1)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model}: a start during a trip with no process is refused; nothing runs on the faulted machine`, async () => {
      const parts = await build(model, { slowSafeState: true });
      const { system, clock, plc } = parts;
      await tripUnderWay(parts);
      const start = settled(system.startRecipe(engineer, LOOP));
      for (let tick = 0; tick < 20; tick++) await clock.advance(50);
      expect(start).toMatchObject({ done: true, code: "KILN_INVALID_TRANSITION" });
      expect(plc.writes.filter((write) => write.tag === "valve.h2o")).toHaveLength(0);
      expect(parts.safeStateWrites()).toBe(1);
      expect(system.machineState).toBe(FAULTED[model]);
      // Once faulted, a start is refused by the machine's state until it is reset.
      await expect(system.startRecipe(engineer, LOOP)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === "machine.trip")).toMatchObject([{ outcome: "allowed" }]);
    });
  }
});

describe("no machine command slips in while a trip acts (review 15w, M6)", () => {
  test("kiln: enterMaintenance during a trip's safe-state write is refused; the trip faults the machine", async () => {
    const parts = await build("kiln", { slowSafeState: true });
    const { system, clock } = parts;
    await tripUnderWay(parts);
    const maintenance = settled(system.sendMachineCommand(admin, "enterMaintenance"));
    for (let tick = 0; tick < 10; tick++) await clock.advance(50);
    expect(maintenance).toMatchObject({ done: true, code: "KILN_INVALID_TRANSITION" });
    expect(system.machineState).toBe("error");
    await expect(system.startRecipe(engineer, LOOP)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
  });

  test("kiln: a trip that begins while enterMaintenance's entry is being written wins: not sent, the machine ends faulted (review 15v)", async () => {
    const parts = await build("kiln", { slowSafeState: true });
    const { system, clock } = parts;
    (parts.store as HeldProcessStore).auditDelayMs = 200;
    // Passes the tripping check while idle, then waits 200 ms for its entry; the trip starts meanwhile.
    const maintenance = settled(system.sendMachineCommand(admin, "enterMaintenance"));
    await clock.advance(10);
    parts.pressure.value = 25;
    await clock.advance(100);
    parts.pressure.value = 1;
    for (let tick = 0; tick < 20; tick++) await clock.advance(50);
    expect(maintenance).toMatchObject({ done: true, code: "KILN_INVALID_TRANSITION" });
    expect(system.machineState).toBe("error");
    expect(parts.safeStateWrites()).toBe(1);
    (parts.store as HeldProcessStore).auditDelayMs = 0;
    await expect(system.startRecipe(engineer, LOOP)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    // Its entry says it did not take effect: the allowed intent is followed by a :fail naming it.
    const trail = await auditTrailAfterStop(parts);
    const entries = trail.filter((entry) => entry.action === "machine.enterMaintenance");
    expect(entries.map((entry) => entry.outcome)).toEqual(["allowed", expect.stringMatching(/denied|failed/)]);
    expect(entries[1]!.refersTo).toBe(entries[0]!.id);
  });

  test("sibling, kiln: a stop during a trip's safe-state write is still a safety function: the machine ends faulted", async () => {
    const parts = await build("kiln", { slowSafeState: true });
    const { system, clock } = parts;
    await tripUnderWay(parts);
    const stop = settled(system.sendMachineCommand(admin, "stop"));
    for (let tick = 0; tick < 10; tick++) await clock.advance(50);
    expect(stop.code).not.toBe("KILN_FORBIDDEN");
    expect(system.machineState).toBe("error");
    expect(parts.safeStateWrites()).toBe(1);
  });
});

describe("a stop waits for a trip under way (review 15w, H2)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model}: system.stop() during a trip with no process: the safe state is written and the trip recorded`, async () => {
      const parts = await build(model, { slowSafeState: true });
      const { system, clock } = parts;
      parts.pressure.value = 25;
      await clock.advance(100);
      const stop = settled(system.stop());
      for (let tick = 0; tick < 40 && !stop.done; tick++) await clock.advance(50);
      expect(stop.done).toBe(true);
      expect(parts.safeStateWrites()).toBe(1);
      expect(system.machineState).toBe(FAULTED[model]);
      await parts.store.open(system.tags.list());
      const trail = await parts.store.audit.query({ from: 0, to: clock.now() + 1 });
      expect(trail.filter((entry) => entry.action === "machine.trip")).toMatchObject([{ outcome: "allowed" }]);
    });
  }
});

describe("two trips in one scan (review 15w, M5)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model}: both trips succeed; the second finds the machine faulted, not a failure`, async () => {
      const parts = await build(model);
      const { system, clock } = parts;
      parts.pressure.value = 25;
      parts.temp.value = 25;
      await clock.advance(100);
      expect(system.machineState).toBe(FAULTED[model]);
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === "machine.trip")).toMatchObject([
        { outcome: "allowed" },
        { outcome: "allowed" },
      ]);
    });
  }
});

describe("a halt during a new process's first save acts at once (review 15w, M3)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model}: a trip while the first save is frozen writes the safe state and faults the machine; no step runs`, async () => {
      const parts = await build(model);
      const { system, clock, store, plc } = parts;
      store.hold();
      const start = settled(system.startRecipe(engineer, LOOP));
      await clock.advance(50);
      parts.pressure.value = 25;
      await clock.advance(100);
      expect(parts.safeStateWrites()).toBe(1);
      expect(system.machineState).toBe(FAULTED[model]);
      store.release();
      for (let tick = 0; tick < 20; tick++) await clock.advance(50);
      expect(plc.writes.filter((write) => write.tag === "valve.h2o")).toHaveLength(0);
      expect(system.machineState).toBe(FAULTED[model]);
      expect(start.done).toBe(true);
      const process = start.value as { finished: Promise<{ status: string; stepsCompleted: number }> } | undefined;
      if (process !== undefined) {
        await expect(process.finished).resolves.toMatchObject({ status: "aborted", stepsCompleted: 0 });
      }
    });

    const fault = model === "kiln" ? "fault" : "abort";
    test(`sibling, ${model}: a manual ${fault} and a stop while the first save is frozen answer at once; the machine never begins`, async () => {
      for (const command of ["stop", fault]) {
        const parts = await build(model);
        const { system, clock, store, plc } = parts;
        store.hold();
        settled(system.startRecipe(engineer, LOOP));
        await clock.advance(50);
        const answer = settled(system.sendMachineCommand(admin, command));
        await clock.advance(100);
        expect(answer.done).toBe(true);
        expect(parts.safeStateWrites()).toBe(command === "stop" ? 0 : 1);
        store.release();
        for (let tick = 0; tick < 20; tick++) await clock.advance(50);
        expect(plc.writes.filter((write) => write.tag === "valve.h2o")).toHaveLength(0);
        expect(system.machineState).toBe(command === "stop" ? (model === "kiln" ? "idle" : "stopped") : FAULTED[model]);
      }
    });
  }
});

describe("a step write already sent lands before the safe state (review 15w, H4)", () => {
  const HEAT: RecipeInput = {
    name: "heat",
    version: 1,
    steps: [{ set: { tag: "heater.setpoint", value: 300 } }, { wait: { durationMs: 5000 } }],
  };
  for (const model of ["kiln", "packml"] as const) {
    for (const how of ["trip", "stop", "fault"] as const) {
      const title = how === "trip" ? "(the example)" : "(sibling)";
      test(`${model} ${title}: a ${how} while a step write is on the wire: the safe state is the last value written`, async () => {
        const parts = await build(model);
        const { system, clock, plc } = parts;
        const write = plc.write.bind(plc);
        // The step's request is on the wire (800 ms): the device applies it whatever the caller does.
        plc.write = async (tag, value, signal) => {
          if (tag.name === "heater.setpoint" && value === 300) {
            await clock.sleep(800);
            return write(tag, value);
          }
          return write(tag, value, signal);
        };
        await system.startRecipe(engineer, HEAT);
        await clock.advance(200);
        if (how === "trip") parts.pressure.value = 25;
        else void system.sendMachineCommand(admin, how === "stop" ? "stop" : model === "kiln" ? "fault" : "abort");
        for (let tick = 0; tick < 40; tick++) await clock.advance(50);
        const heater = plc.writes.filter((entry) => entry.tag === "heater.setpoint").map((entry) => entry.value);
        expect(heater.at(-1)).toBe(0);
        expect(heater).toContain(300);
      });
    }
  }
});
