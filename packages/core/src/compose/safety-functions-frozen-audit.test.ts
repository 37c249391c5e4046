import { readFile } from "node:fs/promises";
import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import { VALVE_LOOP as RUN, admin, engineer, settled } from "../../test/support/safety-harness";

// Adversarial review 15y, on a frozen audit store (its `record` holds until released, as a
// PostgreSQL stopped with SIGSTOP): safety functions queued behind a start waiting for its entry
// (M4), and the start then began a process on a machine stopped meanwhile; a start refused by the
// machine state left a failed process record and a process-end with no process-start (L8); the
// reading rule of `refersTo` contradicted the entries of an interlock trip (L7).

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

/** A MemoryStore whose audit log holds every record while held: a frozen audit database. */
class FrozenAuditStore extends MemoryStore {
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
    const inner = this.audit;
    (this as { audit: MemoryStore["audit"] }).audit = {
      record: async (entry) => {
        await this.#gate;
        return inner.record(entry);
      },
      query: (range) => inner.query(range),
    };
  }
}

async function build(model: "kiln" | "packml", pressure = { value: 1 }) {
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { model, safeState: [{ tag: "heater.setpoint", value: 0 }] },
    authorization: { operatorWritableTags: ["heater.*"] },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
    store: (clock) => new FrozenAuditStore({ clock }),
  });
  await parts.system.start();
  await parts.clock.advance(100);
  const processStarts: string[] = [];
  const processEnds: string[] = [];
  parts.system.bus.on("process-start", (event) => void processStarts.push(event.processId));
  parts.system.bus.on("process-end", (event) => void processEnds.push(event.processId));
  const valveWrites = (): number => parts.plc.writes.filter((write) => write.tag === "valve.h2o").length;
  return { ...parts, pressure, processStarts, processEnds, valveWrites };
}

/** Lets pending microtasks and zero-delay work run, without moving the simulated clock past a timeout. */
async function turns(clock: { advance(ms: number): Promise<void> }): Promise<void> {
  for (let turn = 0; turn < 5; turn++) await clock.advance(0);
}

describe("a safety function does not wait behind a start waiting for its entry (review 15y, M4)", () => {
  // With no process, the command cancels the waiting start, then goes to the machine as it would
  // with no start waiting: the table decides (review 15z, M3). Kiln idle and PackML stopped take
  // no stop (the state is answered); Kiln fault faults idle; PackML abort ends aborted (the
  // acting state completes once the safe state is written, review 15c).
  for (const [model, command, after] of [
    ["kiln", "stop", "idle"],
    ["kiln", "fault", "error"],
    ["packml", "stop", "stopped"],
    ["packml", "abort", "aborted"],
  ] as const) {
    test(`${model}: ${command} while a start waits on the frozen audit store answers at once; the start never begins a process`, async () => {
      const parts = await build(model);
      const { system, store, clock } = parts;
      store.hold();
      const start = settled(system.startRecipe(engineer, RUN));
      await turns(clock);
      const stop = settled(system.sendMachineCommand(admin, command));
      await turns(clock);
      // Answered while the start still waits for its entry (before the fix: behind it, ~5 s or more).
      expect(stop).toMatchObject({ done: true, value: after });
      expect(start.done).toBe(false);
      store.release();
      for (let step = 0; step < 10 && !start.done; step++) await clock.advance(100);
      expect(start).toMatchObject({ done: true, code: "KILN_ABORTED" });
      await clock.advance(500);
      expect(parts.processStarts).toEqual([]);
      expect(parts.valveWrites()).toBe(0);
      expect(system.machineState).toBe(after);
      const trail = await auditTrailAfterStop(parts);
      const intent = trail.find((entry) => entry.action === "recipe.start" && entry.refersTo === undefined);
      // Its entry was offered before the stop: a cancellation follows it, naming the stop.
      expect(trail.find((entry) => entry.refersTo === intent?.id)).toMatchObject({
        id: `${intent?.id}:cancel`,
        outcome: "failed",
        reason: expect.stringContaining(`machine command "${command}"`),
      });
      // It names the starts it cancelled, never an `aborts` of a process that never existed.
      const entries = trail.filter((entry) => entry.action === `machine.${command}`);
      expect(entries).toMatchObject([{ outcome: "allowed", newValue: { command, cancelsStarts: 1 } }]);
      expect(entries[0]?.newValue).not.toHaveProperty("aborts");
    });
  }

  test("sibling: a start still queued for its turn (behind a write waiting for its entry) is cancelled by a stop issued meanwhile", async () => {
    const parts = await build("packml");
    const { system, store, clock } = parts;
    store.hold();
    const write = settled(system.writeTag(admin, "heater.setpoint", 5));
    const start = settled(system.startRecipe(engineer, RUN));
    await turns(clock);
    // PackML: stopped (its initial state) accepts no stop; the waiting start is what it stops.
    const stop = settled(system.sendMachineCommand(admin, "stop"));
    await turns(clock);
    expect(stop).toMatchObject({ done: true, value: "stopped" });
    store.release();
    for (let step = 0; step < 10 && !(start.done && write.done); step++) await clock.advance(100);
    expect(write).toMatchObject({ done: true });
    expect(start).toMatchObject({ done: true, code: "KILN_ABORTED" });
    await clock.advance(500);
    expect(parts.processStarts).toEqual([]);
    expect(parts.valveWrites()).toBe(0);
    const trail = await auditTrailAfterStop(parts);
    // Cancelled before its entry was committed: one entry, failed, no intent.
    expect(trail.filter((entry) => entry.action === "recipe.start")).toMatchObject([
      { outcome: "failed", reason: expect.stringContaining("KILN_ABORTED") },
    ]);
    expect(trail.find((entry) => entry.action === "machine.stop")).toMatchObject({
      outcome: "allowed",
      newValue: { command: "stop", cancelsStarts: 1 },
    });
  });

  test("sibling: an interlock trip while a start waits for its entry cancels the start; no process begins on the tripped machine", async () => {
    const parts = await build("kiln");
    const { system, store, clock } = parts;
    store.hold();
    const start = settled(system.startRecipe(engineer, RUN));
    await turns(clock);
    parts.pressure.value = 25;
    await clock.advance(100);
    store.release();
    for (let step = 0; step < 10 && !start.done; step++) await clock.advance(100);
    expect(start).toMatchObject({ done: true, code: "KILN_ABORTED" });
    expect(parts.processStarts).toEqual([]);
    // No process record and no process-end for a process that never began (L8's rule holds here too).
    expect(parts.processEnds).toEqual([]);
    expect(await store.processes.list()).toEqual([]);
    expect(parts.valveWrites()).toBe(0);
  });

  test("sibling: stop() of the system while a start waits for its entry: the start never begins, even when the store then takes the entry", async () => {
    const parts = await build("kiln");
    const { system, store, clock } = parts;
    store.hold();
    const start = settled(system.startRecipe(engineer, RUN));
    await turns(clock);
    const stopping = system.stop();
    await turns(clock);
    store.release();
    for (let step = 0; step < 20 && !start.done; step++) await clock.advance(100);
    await stopping;
    expect(start).toMatchObject({ done: true, code: "KILN_ABORTED" });
    expect(parts.processStarts).toEqual([]);
    expect(parts.valveWrites()).toBe(0);
  });
});

describe("a start the machine state refuses leaves no process (review 15y, L8)", () => {
  test("kiln: a start in maintenance is refused denied before its entry; no process record, no process-end", async () => {
    const parts = await build("kiln");
    const { system } = parts;
    await system.sendMachineCommand(admin, "enterMaintenance");
    await expect(system.startRecipe(engineer, RUN)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    expect(parts.processEnds).toEqual([]);
    expect(await parts.store.processes.list()).toEqual([]);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "recipe.start")).toMatchObject([{ outcome: "denied" }]);
  });

  test("sibling, packml: a start on an aborted machine (manual abort, which completes to aborted) is refused the same way", async () => {
    const parts = await build("packml");
    const { system } = parts;
    await system.sendMachineCommand(admin, "abort");
    expect(system.machineState).toBe("aborted");
    await expect(system.startRecipe(engineer, RUN)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    expect(parts.processEnds).toEqual([]);
    expect(await parts.store.processes.list()).toEqual([]);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "recipe.start")).toMatchObject([{ outcome: "denied" }]);
  });
});

describe("the reading rule of refersTo agrees with the entries (review 15y, L7)", () => {
  test("an interlock trip whose safe-state write the device refuses: the trip ran, and the rule says so", async () => {
    const parts = await build("kiln");
    const write = parts.plc.write.bind(parts.plc);
    parts.plc.write = async (tag, value, signal) => {
      if (tag.name === "heater.setpoint") throw new Error("output module fault");
      return write(tag, value, signal);
    };
    await parts.system.startRecipe(engineer, RUN);
    await parts.clock.advance(100);
    parts.pressure.value = 25;
    await parts.clock.advance(100);
    expect(parts.system.machineState).toBe("error");
    const trail = await auditTrailAfterStop(parts);
    const trip = trail.find((entry) => entry.action === "machine.trip" && entry.refersTo === undefined)!;
    const followUp = trail.find((entry) => entry.refersTo === trip.id);
    expect(followUp).toMatchObject({ id: `${trip.id}:fail`, outcome: "failed" });
    // The documented rule: an entry named by a `:refusal` or `:cancel` did not run; one named by
    // a `:fail` ran and then failed (in part). The trip ran: the machine is in error.
    const didNotRun = new Set(
      trail.filter((entry) => /:(refusal|cancel)$/.test(entry.id)).map((entry) => entry.refersTo),
    );
    expect(didNotRun.has(trip.id)).toBe(false);
    const security = await readFile(new URL("../../../../docs/concepts/security.md", import.meta.url), "utf8");
    const oneLine = security.replace(/\s+/g, " ");
    expect(oneLine.includes("the rule is: **an entry that another entry refers to did not run.**")).toBe(false);
    expect(oneLine.includes("**An entry referred to by a `:refusal` or a `:cancel` did not run")).toBe(true);
  });
});
