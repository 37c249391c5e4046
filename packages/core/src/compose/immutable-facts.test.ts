import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { EventBus, eventBusViewOf } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { createControlSystem } from "./create-control-system";

// Published facts are immutable: a holder of the read-only views (or of the tag catalog) cannot
// forge a value, an event or a limit that the rest of the system then acts on or records.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 } },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
});
const admin = { id: "ada", roles: ["admin"] };

function build() {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const plc = new SimulatedPlc({ tags, clock, sources: { "chamber.pressure": { kind: "constant", value: 1 } } });
  const store = new MemoryStore({ clock });
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver: plc,
    store,
    clock,
    alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 1, interlock: true }],
  });
  return { clock, plc, store, system };
}

test("an observer cannot change the sample other observers, alarms and interlocks act on", async () => {
  const { clock, system } = build();
  const tripped: string[] = [];
  system.bus.on("interlock-trip", (event) => void tripped.push(event.alarmId));
  system.bus.on("alarm-raise", (event) => void tripped.push(event.alarmId));
  const failures: unknown[] = [];
  system.cvt.observe("chamber.pressure", (change) => {
    try {
      (change.sample as { value: unknown }).value = 9;
    } catch (error) {
      failures.push(error);
    }
    try {
      (change as { sample: unknown }).sample = { ...change.sample, value: 9 };
    } catch (error) {
      failures.push(error);
    }
  });
  const later: unknown[] = [];
  system.cvt.observeAll((change) => {
    if (change.sample.tag === "chamber.pressure") later.push(change.sample.value);
  });
  await system.start();
  await clock.advance(1_000);
  expect(failures.length).toBeGreaterThan(0);
  expect(failures.every((error) => error instanceof TypeError)).toBe(true);
  expect(later.every((value) => value === 1)).toBe(true);
  expect(system.read("chamber.pressure")?.value).toBe(1);
  expect(tripped).toEqual([]);
  await system.stop();
});

test("get() and snapshot() hand out frozen samples: changing one throws and changes nothing", async () => {
  const { clock, system } = build();
  await system.start();
  await clock.advance(1_000);
  const sample = system.cvt.get("chamber.pressure")!;
  expect(Object.isFrozen(sample) && Object.isFrozen(sample.quality)).toBe(true);
  expect(() => ((sample as { value: unknown }).value = 9)).toThrow(TypeError);
  expect(() => ((sample.quality as { severity: string }).severity = "bad")).toThrow(TypeError);
  const snapshot = system.cvt.snapshot();
  expect(() => ((snapshot[0] as { value: unknown }).value = 9)).toThrow(TypeError);
  snapshot.length = 0; // the array is the caller's own copy
  expect(system.cvt.snapshot()).toHaveLength(2);
  expect(system.cvt.value("chamber.pressure")).toBe(1);
  await system.stop();
});

test("the producer keeps its own sample object: the table freezes a copy", () => {
  const { system } = build();
  const mine = { tag: "chamber.pressure", value: 3, timestamp: 1, quality: { severity: "good" as const, code: 0 } };
  system.unchecked.cvt.update([mine], 1);
  expect(Object.isFrozen(mine)).toBe(false);
  mine.value = 4;
  expect(system.cvt.value("chamber.pressure")).toBe(3);
});

test("a bus handler cannot change what later handlers and the event recorder see", async () => {
  const { clock, store, system } = build();
  const forge = (event: object): void => {
    for (const key of ["startedBy", "status", "to", "recipe"]) {
      try {
        (event as Record<string, unknown>)[key] = "FORGED";
      } catch {
        // frozen: the expected outcome
      }
    }
    try {
      ((event as { startedBy?: { roles: string[] } }).startedBy?.roles ?? []).push("admin-forged");
    } catch {
      // frozen
    }
  };
  system.bus.on("process-start", forge);
  system.bus.on("process-end", forge);
  system.bus.on("machine-state-change", forge);
  const seen: unknown[] = [];
  system.bus.on("process-start", (event) => void seen.push(event.startedBy));
  await system.start();
  // A first scan: the interlock's state is known (a start before it is refused, review 15t).
  await clock.advance(1_000);
  const process = await system.startRecipe(admin, {
    name: "x",
    version: 1,
    steps: [{ set: { tag: "heater.setpoint", value: 5 } }],
  });
  await process.finished;
  await system.stop();
  await store.open([]);
  expect(seen).toEqual([{ id: "ada", roles: ["admin"] }]);
  const stored = await store.events.read(process.id);
  expect(JSON.stringify(stored)).not.toContain("FORGED");
  const start = stored.find((event) => event.type === "process-start");
  expect(start?.payload).toMatchObject({ startedBy: { id: "ada", roles: ["admin"] } });
});

test("the bus view hands each host handler a deep-frozen copy; the publisher's object and the system's handlers are left alone", async () => {
  const bus = new EventBus<{ thing: { nested: { list: number[] }; error: Error } }>();
  const view = eventBusViewOf(bus);
  const error = new Error("kept as is");
  const mine = { nested: { list: [1, 2] }, error };
  const received: { nested: { list: number[] }; error: Error }[] = [];
  let internal: { nested: { list: number[] } } | undefined;
  view.on("thing", (event) => void received.push(event));
  bus.on("thing", (event) => void (internal = event));
  const next = view.next("thing");
  await bus.publish("thing", mine);
  received.push(await next);
  expect(internal).toBe(mine);
  expect(received[0]).not.toBe(mine);
  expect(Object.isFrozen(received[1]!.nested)).toBe(true);
  expect(Object.isFrozen(received[0]!.nested.list)).toBe(true);
  expect(() => received[0]!.nested.list.push(3)).toThrow(TypeError);
  expect(received[0]!.error).toBe(error);
  expect(Object.isFrozen(mine.nested)).toBe(false);
});

test("tag definitions are deep-frozen: widening a range or changing nested parts throws, checks still hold", async () => {
  const { plc, system } = build();
  const tag = system.tags.get("heater.setpoint");
  expect(() => ((tag.range as { max: number }).max = 1e9)).toThrow(TypeError);
  expect(() => ((tag.logging as { mode: string }).mode = "none")).toThrow(TypeError);
  expect(tag.range?.max).toBe(400);
  await system.start();
  await expect(system.writeTag(admin, "heater.setpoint", 5_000)).rejects.toMatchObject({
    code: "KILN_OUT_OF_RANGE",
  });
  await expect(
    system.saveRecipe(admin, { name: "hot", version: 1, steps: [{ set: { tag: "heater.setpoint", value: 5_000 } }] }),
  ).rejects.toMatchObject({ code: expect.stringMatching(/^KILN_(VALIDATION|OUT_OF_RANGE)$/) });
  expect(plc.peek("heater.setpoint")).not.toBe(5_000);
  await system.stop();
});

test("defineTags copies its input: the host changing its own definition object later changes nothing", () => {
  const range = { min: 0, max: 10 };
  const catalog = defineTags({ t: { dataType: "float64", access: "readwrite", range } });
  range.max = 1e9;
  expect(catalog.get("t").range?.max).toBe(10);
  expect(Object.isFrozen(range)).toBe(false);
});
