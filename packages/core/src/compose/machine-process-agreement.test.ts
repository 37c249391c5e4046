import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { RecipeInput } from "../recipes/recipe-schema";
import { defaultRoleTable, type Principal } from "../security/authorization";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";

// Issue 15, adversarial review 15u: a machine command moved the machine out of its process
// state while the recipe kept running, and stop() aborted a process with no audit entry.
// ADR 0042: the machine state and the running process never disagree.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
});

const admin: Principal = { id: "root", roles: ["admin"] };
const engineer: Principal = { id: "erik", roles: ["engineer"] };
const operator: Principal = { id: "olga", roles: ["operator"] };

/** 30 loops of valve.h2o on, 50 ms, off: 90 steps, 1.5 s. */
const LONG: RecipeInput = {
  name: "long",
  version: 1,
  steps: [
    {
      loop: {
        count: 30,
        steps: [
          { set: { tag: "valve.h2o", value: true } },
          { wait: { durationMs: 50 } },
          { set: { tag: "valve.h2o", value: false } },
        ],
      },
    },
  ],
};

async function build(model: "kiln" | "packml", roles?: Record<string, string[]>, pressure = { value: 1 }) {
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { model, safeState: [{ tag: "heater.setpoint", value: 0 }] },
    authorization: roles === undefined ? { operatorWritableTags: ["heater.*"] } : { roles },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return { ...parts, pressure };
}

const code = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    (value) => value,
    (error: { code?: string; details?: unknown }) => ({ code: error.code, details: error.details }),
  );

describe("a machine command never leaves the process states while a process runs (ADR 0042)", () => {
  test("kiln: an admin's stop aborts the process (safe state written) and only then the machine is idle; nothing is written afterwards", async () => {
    const { system, plc, clock, store } = await build("kiln");
    const process = await system.startRecipe(engineer, LONG);
    await clock.advance(200);
    expect(system.machineState).toBe("processing");
    const stopping = system.sendMachineCommand(admin, "stop");
    await clock.advance(0);
    await expect(stopping).resolves.toBe("idle");
    const result = await process.finished;
    expect(result.status).toBe("aborted");
    expect(result.stepsCompleted).toBeLessThan(90);
    expect(plc.writes.at(-1)).toMatchObject({ tag: "heater.setpoint", value: 0 });
    const written = plc.writes.length;
    await clock.advance(500);
    expect(plc.writes.length).toBe(written);
    const trail = await auditTrailAfterStop({ system, plc, clock, store });
    expect(trail.find((entry) => entry.action === "machine.stop")).toMatchObject({
      outcome: "allowed",
      principal: "root",
      newValue: { command: "stop", aborts: process.id },
    });
  });

  test("kiln: fault aborts the process and leaves the machine in error; a pause is refused naming the process, the process runs on and an operator still may not write", async () => {
    const { system, clock } = await build("kiln");
    const process = await system.startRecipe(engineer, LONG);
    await clock.advance(200);
    await expect(code(system.sendMachineCommand(admin, "pause"))).resolves.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
      details: { stage: "process", processId: process.id, state: "processing" },
    });
    expect(system.machineState).toBe("processing");
    expect(process.status).toBe("running");
    await expect(code(system.writeTag(operator, "heater.setpoint", 42))).resolves.toMatchObject({
      code: "KILN_FORBIDDEN",
    });
    const faulting = system.sendMachineCommand(admin, "fault");
    await clock.advance(0);
    await expect(faulting).resolves.toBe("error");
    await expect(process.finished).resolves.toMatchObject({ status: "aborted" });
    await system.stop();
  });

  test("packml: abort aborts the process and the machine ends aborted; hold and suspend are refused while it runs", async () => {
    const { system, plc, clock } = await build("packml");
    const process = await system.startRecipe(engineer, LONG);
    await clock.advance(200);
    expect(system.machineState).toBe("execute");
    for (const command of ["hold", "suspend", "complete", "stateComplete"]) {
      await expect(code(system.sendMachineCommand(admin, command))).resolves.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: { stage: "process", processId: process.id },
      });
      expect(system.machineState).toBe("execute");
    }
    const aborting = system.sendMachineCommand(admin, "abort");
    await clock.advance(0);
    await expect(aborting).resolves.toBe("aborted");
    await expect(process.finished).resolves.toMatchObject({ status: "aborted" });
    expect(plc.writes.at(-1)).toMatchObject({ tag: "heater.setpoint", value: 0 });
    const written = plc.writes.length;
    await clock.advance(500);
    expect(plc.writes.length).toBe(written);
    await system.stop();
  });

  test("packml: stop aborts the process and the machine ends stopped", async () => {
    const { system, clock } = await build("packml");
    const process = await system.startRecipe(engineer, LONG);
    await clock.advance(200);
    const stopping = system.sendMachineCommand(admin, "stop");
    await clock.advance(0);
    await expect(stopping).resolves.toBe("stopped");
    await expect(process.finished).resolves.toMatchObject({ status: "aborted" });
    await system.stop();
  });

  test("without a process no command enters a process state: a role with only machine.mode cannot walk the machine into processing", async () => {
    const roles = { ...defaultRoleTable({ operatorWritableTags: ["heater.*"] }), shift: ["machine.mode"] };
    for (const model of ["kiln", "packml"] as const) {
      const { system } = await build(model, roles);
      const shift: Principal = { id: "s", roles: ["shift"] };
      if (model === "packml") {
        await system.sendMachineCommand(shift, "reset");
        await system.sendMachineCommand(shift, "stateComplete");
      }
      expect(system.machineState).toBe("idle");
      await expect(code(system.sendMachineCommand(shift, "start"))).resolves.toMatchObject({
        code: "KILN_INVALID_TRANSITION",
        details: { stage: "process", state: "idle", command: "start" },
      });
      expect(system.machineState).toBe("idle");
      await system.stop();
    }
  });
});

describe("actions the system takes by itself are audited (ADR 0042)", () => {
  test("stop() records the abort of the running process and its safe-state writes as the system's", async () => {
    const parts = await build("kiln");
    const process = await parts.system.startRecipe(engineer, LONG);
    await parts.clock.advance(100);
    const trail = await auditTrailAfterStop(parts);
    expect(parts.plc.writes.at(-1)).toMatchObject({ tag: "heater.setpoint", value: 0 });
    const aborts = trail.filter((entry) => entry.action === "recipe.abort");
    expect(aborts).toEqual([
      expect.objectContaining({
        principal: "(system)",
        roles: [],
        category: "recipe",
        target: process.id,
        outcome: "allowed",
        reason: "control system stopping",
        newValue: { processId: process.id, safeState: [{ tag: "heater.setpoint", value: 0 }] },
      }),
    ]);
  });

  test("stop(): a safe-state write the device refuses is recorded failed after the abort", async () => {
    const parts = await build("kiln");
    const process = await parts.system.startRecipe(engineer, LONG);
    await parts.clock.advance(100);
    const write = parts.plc.write.bind(parts.plc);
    parts.plc.write = async (tag, value, signal) => {
      if (tag.name === "heater.setpoint") throw new Error("output module fault");
      return write(tag, value, signal);
    };
    const trail = await auditTrailAfterStop(parts);
    const abort = trail.find((entry) => entry.action === "recipe.abort" && entry.refersTo === undefined);
    expect(abort).toMatchObject({ principal: "(system)", target: process.id });
    expect(trail.find((entry) => entry.refersTo === abort!.id)).toMatchObject({
      id: `${abort!.id}:fail`,
      outcome: "failed",
      reason: expect.stringContaining("safe-state heater.setpoint"),
    });
  });

  test("an interlock trip (a fault raised by an alarm) records its abort and safe-state writes as the system's", async () => {
    const parts = await build("kiln");
    const process = await parts.system.startRecipe(engineer, LONG);
    await parts.clock.advance(100);
    parts.pressure.value = 25;
    await parts.clock.advance(100);
    await expect(process.finished).resolves.toMatchObject({ status: "aborted" });
    expect(parts.system.machineState).toBe("error");
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "machine.trip")).toEqual([
      expect.objectContaining({
        principal: "(system)",
        category: "machine",
        target: "ald-1",
        outcome: "allowed",
        newValue: expect.objectContaining({ processId: process.id, safeState: [{ tag: "heater.setpoint", value: 0 }] }),
        reason: expect.stringContaining("interlock chamber.pressure:HIHI tripped"),
      }),
    ]);
  });
});

// Adversarial review 15x, HIGH: with no journal and the audit store failing, the manual stop,
// fault and abort were refused KILN_AUDIT_UNAVAILABLE (their entry had to be durable first) while
// the process kept writing. A stop button is a safety function: it acts at once, its entry follows.
describe("a stop button stops the plant while the audit store is down (ADR 0042)", () => {
  for (const [model, command, ends] of [
    ["kiln", "stop", "idle"],
    ["kiln", "fault", "error"],
    ["packml", "abort", "aborted"],
    ["packml", "stop", "stopped"],
  ] as const) {
    test(`${model}: ${command} aborts the running process and the machine ends ${ends}; the entry is stored once the store is back`, async () => {
      const { system, plc, clock, store } = await build(model);
      const process = await system.startRecipe(engineer, LONG);
      await clock.advance(200);
      const record = store.audit.record.bind(store.audit);
      let down = true;
      store.audit.record = (entry) =>
        down
          ? Promise.reject(new KilnError("KILN_STORE_ERROR", "audit table locked", { retryable: true }))
          : record(entry);
      const stopping = code(system.sendMachineCommand(admin, command));
      await clock.advance(0);
      expect(await stopping).toBe(ends);
      expect((await process.finished).status).toBe("aborted");
      const written = plc.writes.length;
      await clock.advance(500);
      expect(plc.writes.length).toBe(written);
      // Sibling: a command that is no safety function still fails closed while the store is down.
      expect(await code(system.writeTag(admin, "heater.setpoint", 5))).toMatchObject({
        code: "KILN_AUDIT_UNAVAILABLE",
      });
      down = false;
      // The entry was kept and is retried: it is stored once the store is back (the breaker half-opens after 2 s).
      for (let step = 0; step < 20 && system.health().audit.backlog > 0; step++) await clock.advance(500);
      expect(system.health().audit).toMatchObject({ backlog: 0, dropped: 0 });
      const trail = await auditTrailAfterStop({ system, plc, clock, store });
      expect(trail.filter((entry) => entry.action === `machine.${command}`)).toMatchObject([
        { outcome: "allowed", principal: "root", newValue: { command, aborts: process.id } },
      ]);
    });
  }
});
