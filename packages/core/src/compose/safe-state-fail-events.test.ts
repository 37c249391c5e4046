import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type Tag, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { createControlSystem } from "./create-control-system";
import type { Principal } from "../security/authorization";

// Adversarial review adv15r, M2: a manual fault, a re-drive of the safe state and an interlock trip
// whose safe-state write the device refused each recorded a `:fail` entry, but no `command-fail`
// event was published (the held `:fail` of a safety function and a system action's `:fail` went
// through a path that never published), although the docs say every `:fail` is published as
// `command-fail`. An HMI listening to events could not learn that the plant may not be safe.

const admin: Principal = { id: "ada", roles: ["admin"] };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

/** A system whose device refuses the safe state's heater write (0) while `refuseSafeState`. */
async function build() {
  const pressure = { value: 1 };
  const plc = new SimulatedPlc({ tags, sources: { "chamber.pressure": () => pressure.value } });
  const device = { refuseSafeState: false };
  const write = plc.write.bind(plc);
  plc.write = async (tag: Tag, value: TagValue, signal?: AbortSignal) => {
    if (device.refuseSafeState && tag.name === "heater.setpoint" && value === 0) {
      throw new KilnError("KILN_WRITE_REJECTED", "device refused heater.setpoint=0", { details: { sent: false } });
    }
    await write(tag, value, signal);
  };
  const store = new MemoryStore();
  const recorded: AuditEntry[] = [];
  const record = store.audit.record.bind(store.audit);
  store.audit.record = async (entry) => {
    await record(entry);
    recorded.push(entry);
  };
  const system = createControlSystem({
    machineId: "reactor-1",
    tags,
    driver: plc,
    store,
    scanGroups: { fast: { periodMs: 20 } },
    acquisition: { timeoutMs: 80 },
    machine: {
      model: "kiln",
      safeState: [
        { tag: "heater.setpoint", value: 0 },
        { tag: "valve.h2o", value: false },
      ],
    },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
  });
  const fails: KilnEvents["command-fail"][] = [];
  system.bus.on("command-fail", (event) => void fails.push(event));
  await system.start();
  await system.writeTag(admin, "heater.setpoint", 200);
  /** The `:fail` entries handed to the store, and the `command-fail` events: one each, joined by id. */
  const failEntries = () => recorded.filter((entry) => entry.id.endsWith(":fail"));
  return { system, device, pressure, fails, failEntries };
}

/** The event a `:fail` entry must have been published as. */
function eventOf(entry: AuditEntry) {
  return {
    id: entry.refersTo,
    principal: entry.principal,
    action: entry.action,
    target: entry.target,
    reason: entry.reason,
  };
}

describe("every :fail entry is published as command-fail, exactly once (adv15r M2)", () => {
  test("a manual fault whose safe-state write the device refused", async () => {
    const parts = await build();
    parts.device.refuseSafeState = true;
    // The fault answers its end state, not an error: the event is the only push that it failed.
    expect(await parts.system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(20);
    expect(parts.failEntries().map((entry) => entry.action)).toEqual(["machine.fault"]);
    expect(parts.fails).toEqual([expect.objectContaining(eventOf(parts.failEntries()[0]!))]);
    expect(parts.fails[0]).toMatchObject({ principal: "ada", target: "reactor-1" });
    expect(parts.fails[0]!.reason).toMatch(/heater\.setpoint.*KILN_WRITE_REJECTED/);
    await parts.system.stop();
  });

  test("a re-drive of the safe state (a stop in `error`) that fails again", async () => {
    const parts = await build();
    parts.device.refuseSafeState = true;
    await parts.system.sendMachineCommand(admin, "fault");
    expect(await parts.system.sendMachineCommand(admin, "stop")).toBe("error");
    await sleep(20);
    expect(parts.failEntries().map((entry) => entry.action)).toEqual(["machine.fault", "machine.stop"]);
    expect(parts.fails).toEqual(parts.failEntries().map((entry) => expect.objectContaining(eventOf(entry))));
    await parts.system.stop();
  });

  test("an interlock trip whose safe-state write the device refused (principal (system))", async () => {
    const parts = await build();
    parts.device.refuseSafeState = true;
    parts.pressure.value = 50;
    for (let waited = 0; parts.failEntries().length === 0 && waited < 2000; waited += 20) await sleep(20);
    await sleep(50);
    expect(parts.system.machineState).toBe("error");
    expect(parts.failEntries().map((entry) => entry.action)).toEqual(["machine.trip"]);
    expect(parts.fails).toEqual([expect.objectContaining(eventOf(parts.failEntries()[0]!))]);
    expect(parts.fails[0]).toMatchObject({ principal: "(system)", action: "machine.trip", target: "reactor-1" });
    await parts.system.stop();
  });

  test("(sibling) a safe state that succeeds publishes nothing", async () => {
    const parts = await build();
    expect(await parts.system.sendMachineCommand(admin, "fault")).toBe("error");
    await sleep(20);
    expect(parts.failEntries()).toEqual([]);
    expect(parts.fails).toEqual([]);
    await parts.system.stop();
  });
});
