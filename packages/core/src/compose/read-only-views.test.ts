import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { createControlSystem } from "./create-control-system";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 } },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
});

function build() {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const plc = new SimulatedPlc({ tags, clock, sources: { "chamber.pressure": { kind: "constant", value: 2 } } });
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver: plc,
    store: new MemoryStore({ clock }),
    clock,
    alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2, message: "high" }],
  });
  return { clock, system };
}

test("the public types have no mutators, and calling one at run time fails", () => {
  const { system } = build();
  // @ts-expect-error system.bus is an EventBusView: subscribe only
  expect(() => system.bus.publish("alarm-raise", {})).toThrow(TypeError);
  // @ts-expect-error no tap on the public bus
  expect(() => system.bus.tap(() => undefined)).toThrow(TypeError);
  // @ts-expect-error system.cvt is a CurrentValueView: reads and observers only
  expect(() => system.cvt.update([], 0)).toThrow(TypeError);
  // @ts-expect-error no degrade on the public table
  expect(() => system.cvt.degrade([], undefined, 0)).toThrow(TypeError);
  // @ts-expect-error no setStaleAfter on the public table
  expect(() => system.cvt.setStaleAfter("chamber.pressure", 1)).toThrow(TypeError);
  // @ts-expect-error no sweepStale on the public table
  expect(() => system.cvt.sweepStale(0)).toThrow(TypeError);
});

test("system.bus and system.cvt are separate read-only objects: no mutator is reachable, even by a cast", () => {
  const { system } = build();
  const bus = system.bus as unknown as Record<string, unknown>;
  const cvt = system.cvt as unknown as Record<string, unknown>;
  expect(Object.keys(bus).sort()).toEqual(["next", "on", "once"]);
  expect(Object.keys(cvt).sort()).toEqual(["get", "observe", "observeAll", "size", "snapshot", "value"]);
  for (const name of ["publish", "tap", "listenerCount"]) expect(name in bus).toBe(false);
  for (const name of ["update", "degrade", "setStaleAfter", "sweepStale"]) expect(name in cvt).toBe(false);
  expect(bus).not.toBe(system.unchecked.bus);
  expect(cvt).not.toBe(system.unchecked.cvt);
  expect(Object.isFrozen(bus) && Object.isFrozen(cvt)).toBe(true);
  expect(() => Object.assign(bus, { publish: () => undefined })).toThrow(TypeError);
});

test("the views forward to the real bus and table: subscribers see real events and values", async () => {
  const { clock, system } = build();
  const raised: string[] = [];
  const seen: number[] = [];
  system.bus.on("alarm-raise", (event) => void raised.push(event.alarmId));
  system.cvt.observe("chamber.pressure", (change) => void seen.push(Number(change.sample.value)));
  const next = system.bus.next("machine-state-change");
  await system.start();
  await clock.advance(1_000);
  expect(system.cvt.value("chamber.pressure")).toBe(2);
  expect(system.cvt.size).toBe(system.unchecked.cvt.size);
  expect(seen[0]).toBe(2);
  // Only the unchecked bus publishes; the view's subscribers receive it like any event.
  void system.unchecked.bus.publish("machine-state-change", {
    at: clock.now(),
    aggregateId: "ald-1",
    machineId: "ald-1",
    model: "kiln",
    from: "idle",
    to: "idle",
    command: "noop",
  });
  await expect(next).resolves.toMatchObject({ command: "noop" });
  expect(raised).toEqual([]);
  await system.stop();
});

test("system.history reads stored samples and alarm history through the store's port policies, and has no writer", async () => {
  const { clock, system } = build();
  await system.start();
  await clock.advance(3_000);
  const range = { from: 0, to: clock.now() + 1 };
  const samples = await system.history.samples.readSamples({ tag: "chamber.pressure", ...range });
  expect(samples.length).toBeGreaterThan(0);
  expect(await system.history.alarms.query(range)).toEqual([]);
  const health = system.health();
  expect(health.ports.history.successes).toBe(1);
  expect(health.ports.alarms.successes).toBeGreaterThanOrEqual(1);
  // retainedFrom (a reader too) is there when the store has it: the MemoryStore's horizon (#16 fix16b).
  expect(Object.keys(system.history.samples).sort()).toEqual(["readBuckets", "readSamples", "retainedFrom"]);
  expect(system.history.samples.retainedFrom?.()).toBe(system.unchecked.store.samples.retainedFrom?.());
  expect(Object.keys(system.history.alarms)).toEqual(["query"]);
  await system.stop();
  await expect(system.history.alarms.query(range)).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
});

test("system.history reads the audit trail, recipes and processes through their ports' policies; a hanging audit query times out and counts on the audit breaker", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 22) });
  const store = new MemoryStore({ clock });
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver: new SimulatedPlc({ tags, clock }),
    store,
    clock,
    storePolicies: {
      audit: { timeoutMs: 100, breaker: { failureThreshold: 1, recoveryTimeMs: 60_000 }, retry: { maxAttempts: 1 } },
    },
  });
  await system.start();
  const admin = { id: "root", roles: ["admin"] };
  await system.saveRecipe(admin, { name: "purge", version: 1, steps: [{ set: { tag: "valve.ald1", value: true } }] });
  const range = { from: 0, to: clock.now() + 1 };
  const audit = await system.history.audit.query(range);
  expect(audit.map((entry) => [entry.principal, entry.outcome])).toEqual([["root", "allowed"]]);
  expect((await system.history.recipes.list()).map((recipe) => recipe.name)).toEqual(["purge"]);
  expect(await system.history.recipes.get("purge", 1)).toMatchObject({ name: "purge", version: 1 });
  expect(await system.history.processes.list()).toEqual([]);
  expect(await system.history.processes.get("nope")).toBeUndefined();
  const health = system.health();
  expect(health.ports.recipes.successes).toBeGreaterThanOrEqual(3);
  expect(health.ports.processes.successes).toBeGreaterThanOrEqual(2);
  expect(Object.keys(system.history.audit)).toEqual(["query"]);
  expect(Object.keys(system.history.recipes).sort()).toEqual(["get", "list"]);

  store.audit.query = () => new Promise(() => undefined);
  const hung = system.history.audit.query(range).catch((error: unknown) => error);
  await clock.advance(100);
  expect(await hung).toMatchObject({ code: "KILN_TIMEOUT" });
  expect(system.health().ports.audit.state.state).toBe("open");
  await system.stop();
});
