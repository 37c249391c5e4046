import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import type { RecipeInput } from "../recipes/recipe-schema";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import { HeldProcessStore, VALVE_LOOP as LOOP, admin, engineer, settled } from "../../test/support/safety-harness";

// Adversarial review 15z: an interlock trip (or a manual fault / PackML abort) during a stop was
// dropped (H1); a trip while a finished process saved its end wrote no safe state and left the
// machine idle (H2); a manual stop answered only after the process record's final save (M4).

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

const HEAT: RecipeInput = { name: "heat", version: 1, steps: [{ set: { tag: "heater.setpoint", value: 300 } }] };

async function build(model: "kiln" | "packml", options: { slowSafeState?: boolean } = {}) {
  const pressure = { value: 1 };
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { model, safeState: [{ tag: "heater.setpoint", value: 0 }] },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
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
  return { ...parts, pressure, safeStateWrites };
}

async function turns(clock: { advance(ms: number): Promise<void> }): Promise<void> {
  for (let turn = 0; turn < 5; turn++) await clock.advance(0);
}

const FAULTED = { kiln: "error", packml: "aborted" } as const;

describe("a fault asked for during a stop escalates it (review 15z, H1)", () => {
  for (const [model, second] of [
    ["kiln", "trip"],
    ["kiln", "fault"],
    ["packml", "trip"],
    ["packml", "abort"],
  ] as const) {
    test(`${model}: stop, then ${second} while the safe state is being written: the machine ends faulted`, async () => {
      const parts = await build(model, { slowSafeState: true });
      const { system, clock } = parts;
      const process = await system.startRecipe(engineer, LOOP);
      await clock.advance(120);
      const stop = settled(system.sendMachineCommand(admin, "stop"));
      await clock.advance(20); // the safe-state write is under way
      if (second === "trip") parts.pressure.value = 25;
      const other = second === "trip" ? undefined : settled(system.sendMachineCommand(admin, second));
      for (let step = 0; step < 20; step++) await clock.advance(50);
      expect(stop).toMatchObject({ done: true });
      if (other !== undefined) expect(other).toMatchObject({ done: true, value: FAULTED[model] });
      expect(system.machineState).toBe(FAULTED[model]);
      expect(await process.finished).toMatchObject({ status: "aborted" });
      // No new process without a reset.
      parts.pressure.value = 1;
      await clock.advance(200);
      await expect(system.startRecipe(engineer, LOOP)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    });
  }

  test("sibling: a trip after the stop's machine reached idle (the record still saving) faults it", async () => {
    const parts = await build("kiln");
    const { system, clock, store } = parts;
    await system.startRecipe(engineer, LOOP);
    await clock.advance(120);
    store.hold("final");
    expect(await system.sendMachineCommand(admin, "stop")).toBe("idle");
    const writes = parts.safeStateWrites();
    parts.pressure.value = 25;
    await clock.advance(100);
    expect(system.machineState).toBe("error");
    expect(parts.safeStateWrites()).toBe(writes + 1);
    store.release();
    await clock.advance(100);
  });
});

describe("an interlock trip always writes the safe state and faults the machine (review 15z, H2)", () => {
  for (const model of ["kiln", "packml"] as const) {
    test(`${model}: a trip while the finished process saves its end`, async () => {
      const parts = await build(model);
      const { system, clock, store } = parts;
      store.hold("final");
      const process = await system.startRecipe(engineer, HEAT);
      const finished = settled(process.finished);
      await clock.advance(60); // the set ran; the process saves its end
      expect(finished.done).toBe(false);
      parts.pressure.value = 25;
      await clock.advance(100);
      expect(parts.safeStateWrites()).toBe(1);
      expect(system.machineState).toBe(FAULTED[model]);
      store.release();
      await clock.advance(100);
      expect(finished).toMatchObject({ done: true, value: { status: "completed", persisted: true } });
      const trail = await auditTrailAfterStop(parts);
      expect(trail.filter((entry) => entry.action === "machine.trip")).toMatchObject([
        { outcome: "allowed", newValue: { processId: process.id, safeState: [{ tag: "heater.setpoint", value: 0 }] } },
      ]);
    });

    test(`sibling, ${model}: a trip with no process writes the safe state and faults the machine`, async () => {
      const parts = await build(model);
      const { system, clock } = parts;
      parts.pressure.value = 25;
      await clock.advance(100);
      expect(parts.safeStateWrites()).toBe(1);
      expect(system.machineState).toBe(FAULTED[model]);
    });
  }

  test("sibling: an abort while the process saves after its last step ends it aborted, safe state written", async () => {
    const parts = await build("kiln");
    const { system, clock, store } = parts;
    const process = await system.startRecipe(engineer, HEAT);
    store.hold(); // the save after the last top-level step holds
    await clock.advance(60);
    const abort = settled(system.abortProcess(admin, process.id));
    await turns(clock);
    expect(parts.safeStateWrites()).toBe(1);
    expect(system.machineState).toBe("idle");
    store.release();
    await clock.advance(100);
    expect(abort).toMatchObject({ done: true, value: { status: "aborted" } });
  });
});

describe("a safety function answers once its effect is done, not after the record's save (review 15z, M4)", () => {
  for (const [model, command, end] of [
    ["kiln", "stop", "idle"],
    ["kiln", "fault", "error"],
    ["packml", "stop", "stopped"],
    ["packml", "abort", "aborted"],
  ] as const) {
    test(`${model}: ${command} on a frozen process table answers with the safe state written and the machine ${end}`, async () => {
      const parts = await build(model);
      const { system, clock, store } = parts;
      const process = await system.startRecipe(engineer, LOOP);
      await clock.advance(120);
      store.hold();
      const finished = settled(process.finished);
      const stop = settled(system.sendMachineCommand(admin, command));
      await turns(clock);
      expect(stop).toMatchObject({ done: true, value: end });
      expect(parts.safeStateWrites()).toBe(1);
      expect(system.machineState).toBe(end);
      // The record's save goes on: `finished` (and its `persisted`) waits for it.
      expect(finished.done).toBe(false);
      store.release();
      await clock.advance(100);
      expect(finished).toMatchObject({ done: true, value: { status: "aborted", persisted: true } });
    });
  }

  test("sibling: a trip on a frozen process table acts at once; stop() still waits for the record's save", async () => {
    const parts = await build("kiln");
    const { system, clock, store } = parts;
    const process = await system.startRecipe(engineer, LOOP);
    await clock.advance(120);
    store.hold();
    parts.pressure.value = 25;
    await clock.advance(60);
    expect(parts.safeStateWrites()).toBe(1);
    expect(system.machineState).toBe("error");
    const stopping = settled(system.stop());
    await turns(clock);
    expect(stopping.done).toBe(false);
    store.release();
    await clock.advance(100);
    expect(stopping.done).toBe(true);
    expect(await process.finished).toMatchObject({ status: "aborted", persisted: true });
  });
});

/** A MemoryStore whose recipe reads hold while held: a frozen recipe table. */
class HeldRecipeStore extends MemoryStore {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  constructor(options: ConstructorParameters<typeof MemoryStore>[0]) {
    super(options);
    const inner = this.recipes;
    const get = inner.get.bind(inner);
    (inner as { get: typeof get }).get = async (name, version) => {
      await this.#gate;
      return get(name, version);
    };
  }
}

describe("a cancelled start rejects at once, whatever it waits for (review 15z, M5)", () => {
  async function buildHeld() {
    const parts = simulatedSystem({
      tags,
      scanGroups: { fast: { periodMs: 50 } },
      machine: { model: "kiln", safeState: [{ tag: "heater.setpoint", value: 0 }] },
      store: (clock) => new HeldRecipeStore({ clock }),
    });
    await parts.system.start();
    await parts.clock.advance(100);
    return parts;
  }

  test("a start waiting on the recipe store (is its recipe saved?) is cancelled by a stop: KILN_ABORTED at once, recorded cancelled; a write queued behind it runs", async () => {
    const parts = await buildHeld();
    const { system, store, clock } = parts;
    store.hold();
    const start = settled(system.startRecipe(engineer, LOOP));
    const write = settled(system.writeTag(admin, "heater.setpoint", 5));
    await turns(clock);
    expect(await system.sendMachineCommand(admin, "stop")).toBe("idle");
    await turns(clock);
    expect(start).toMatchObject({ done: true, code: "KILN_ABORTED" });
    expect(write).toMatchObject({ done: true });
    store.release();
    await clock.advance(100);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "recipe.start")).toMatchObject([
      { outcome: "failed", reason: expect.stringContaining("KILN_ABORTED") },
    ]);
    expect(parts.plc.writes.filter((entry) => entry.tag === "valve.h2o")).toEqual([]);
  });

  test("sibling: startSavedRecipe waiting on the recipe store is cancelled by stop() of the system at once", async () => {
    const parts = await buildHeld();
    const { system, store, clock } = parts;
    await system.saveRecipe(admin, LOOP);
    store.hold();
    const start = settled(system.startSavedRecipe(engineer, "run", 1));
    await turns(clock);
    const stopping = settled(system.stop());
    await turns(clock);
    expect(start).toMatchObject({ done: true, code: "KILN_ABORTED" });
    store.release();
    await clock.advance(100);
    expect(stopping.done).toBe(true);
  });
});
