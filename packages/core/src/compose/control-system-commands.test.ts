import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { SimulatedPlc } from "../memory/simulated-plc";
import type { RecipeInput } from "../recipes/recipe-schema";
import type { Principal } from "../security/authorization";
import type { ControlSystem } from "./control-system";
import { auditTrailAfterStop, simulatedSystem } from "../../test/support/simulated-system";
import { createControlSystem } from "./create-control-system";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});

const operator: Principal = { id: "olga", roles: ["operator"] };
const viewer: Principal = { id: "vic", roles: ["viewer"] };
const engineer: Principal = { id: "erik", roles: ["engineer"] };

const ALD: RecipeInput = {
  name: "ald",
  version: 1,
  parameters: { cycles: { type: "number", default: 1, min: 1, max: 1000 } },
  steps: [
    {
      loop: {
        count: { param: "cycles" },
        steps: [
          { pulse: { tag: "valve.tma", durationMs: 20 } },
          { wait: { durationMs: 50 } },
          { pulse: { tag: "valve.h2o", durationMs: 20 } },
          { wait: { durationMs: 50 } },
        ],
      },
    },
  ],
};

/** Operators run saved recipes: an engineer saves ALD (idempotent), then the operator starts it. */
async function startAld(system: ControlSystem, cycles: number) {
  await system.saveRecipe(engineer, ALD);
  return system.startRecipe(operator, ALD, { parameters: { cycles } });
}

async function build(pressure: { value: number } = { value: 1 }) {
  const parts = simulatedSystem({
    tags,
    sources: { "chamber.pressure": () => pressure.value },
    scanGroups: { fast: { periodMs: 50 } },
    machine: {
      safeState: [
        { tag: "valve.tma", value: false },
        { tag: "valve.h2o", value: false },
      ],
    },
    authorization: { operatorWritableTags: ["heater.*"] },
    alarms: [
      { tag: "chamber.pressure", kind: "HI", setpoint: 10, priority: 2, message: "Pressure high" },
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return { ...parts, pressure };
}

const pulses = (plc: SimulatedPlc, tag: string) =>
  plc.writes.filter((write) => write.tag === tag && write.value === true).length;

describe("every caller-influenced text field of an audit entry is escaped and bounded (issue 15, adversarial review 15c)", () => {
  const hostile = /[\p{Cc}\p{Cf}]/u;
  test.each([
    ["a newline faking a line", "x\n2026-11-30 admin tag.write valve allowed"],
    ["NUL", "x\u0000y"],
    ["a right-to-left override", "reset\u202Etixe"],
    ["isolates", "x\u2066admin\u2069"],
  ])("a machine command's name with %s is recorded with it written out, in action and reason", async (_name, name) => {
    const parts = await build();
    await expect(parts.system.sendMachineCommand(viewer, name)).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    await expect(parts.system.sendMachineCommand(operator, name)).rejects.toBeInstanceOf(KilnError);
    const audit = await auditTrailAfterStop(parts);
    expect(audit).toHaveLength(2);
    for (const entry of audit) {
      expect(entry.action).toMatch(/^machine\.x|^machine\.reset/);
      expect(entry.action).toMatch(/\\u\{[0-9A-F]{4}\}/);
      for (const field of [entry.action, entry.category, entry.principal, entry.target, entry.reason]) {
        expect(field ?? "").not.toMatch(hostile);
      }
    }
  });

  test("a recipe parameter's hostile name reaches reason written out (LOW 5)", async () => {
    const parts = await build();
    await parts.system.saveRecipe(engineer, ALD);
    const error = await parts.system
      .startRecipe(operator, ALD, { parameters: { "\u202E\u0007": 1 } as never })
      .catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    const audit = await auditTrailAfterStop(parts);
    const refused = audit.find((entry) => entry.action === "recipe.start");
    expect(refused?.outcome).toBe("denied");
    expect(refused?.reason).toContain("\\u{202E}\\u{0007}");
    expect(refused?.reason).not.toMatch(hostile);
  });

  test("a 300,000-character action is bounded in action and category (LOW 6)", async () => {
    const parts = await build();
    const action = `${"c".repeat(300_000)}.x`;
    const reason = new KilnError("KILN_VALIDATION", "refused by the server");
    await expect(
      parts.system.refuseCommand(
        { id: "root", roles: ["admin"] },
        { permission: "tag.write", action, target: "heater.setpoint", reason },
      ),
    ).rejects.toBe(reason);
    const [entry] = await auditTrailAfterStop(parts);
    expect(entry?.category?.length).toBeLessThan(200);
    expect(entry?.category).toContain("(truncated, 300000 chars)");
    expect(entry?.action.length).toBeLessThan(400);
  });
});

describe("operator commands", () => {
  test("an allowed write reaches the PLC and is audited with old and new value", async () => {
    const parts = await build();
    const { plc, system } = parts;
    await system.writeTag(operator, "heater.setpoint", 250);
    expect(plc.writes).toEqual([expect.objectContaining({ tag: "heater.setpoint", value: 250 })]);
    const audit = await auditTrailAfterStop(parts);
    expect(audit).toEqual([
      expect.objectContaining({
        principal: "olga",
        action: "tag.write",
        target: "heater.setpoint",
        oldValue: 0,
        newValue: 250,
        outcome: "allowed",
      }),
    ]);
  });

  test("a forbidden write is audited as denied and never reaches the PLC", async () => {
    const parts = await build();
    const { plc, system } = parts;
    await expect(system.writeTag(viewer, "heater.setpoint", 250)).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    await expect(system.writeTag(operator, "valve.tma", true)).rejects.toMatchObject({ code: "KILN_FORBIDDEN" });
    expect(plc.writes).toEqual([]);
    const audit = await auditTrailAfterStop(parts);
    expect(audit.map((entry) => [entry.principal, entry.target, entry.outcome])).toEqual([
      ["vic", "heater.setpoint", "denied"],
      ["olga", "valve.tma", "denied"],
    ]);
  });

  test("bad writes fail with their own codes before any traffic, and are audited", async () => {
    const { plc, system } = await build();
    const codeOf = (promise: Promise<unknown>) =>
      promise.then(
        () => "resolved",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      );
    expect(await codeOf(system.writeTag(engineer, "chamber.pressure", 1))).toBe("KILN_TAG_NOT_WRITABLE");
    expect(await codeOf(system.writeTag(engineer, "heater.setpoint", 900))).toBe("KILN_OUT_OF_RANGE");
    expect(await codeOf(system.writeTag(engineer, "valve.tma", 1 as never))).toBe("KILN_VALIDATION");
    expect(await codeOf(system.writeTag(engineer, "nope", 1))).toBe("KILN_TAG_UNKNOWN");
    expect(plc.writes).toEqual([]);
    await system.stop();
  });

  test("a recipe started by an operator runs to completion with every pulse written", async () => {
    const { clock, plc, store, system } = await build();
    const process = await startAld(system, 20);
    expect(system.machineState).toBe("processing");
    await clock.advance(20 * 140 + 100);
    const result = await process.finished;
    expect(result.status).toBe("completed");
    expect(pulses(plc, "valve.tma")).toBe(20);
    expect(pulses(plc, "valve.h2o")).toBe(20);
    expect(system.machineState).toBe("idle");
    await system.stop();
    await store.open(tags.list());
    expect((await store.processes.get(process.id))?.status).toBe("completed");
  });

  test("an interlock trip aborts the running process within one scan and writes the safe state", async () => {
    const { clock, plc, system, pressure } = await build();
    const process = await startAld(system, 100);
    await clock.advance(1_000);
    pressure.value = 25; // overpressure
    const trippedAt = clock.now();
    await clock.advance(50); // one scan period
    const result = await process.finished;
    expect(result.status).toBe("aborted");
    expect(system.machineState).toBe("error");
    const lastWrites = plc.writes.filter((write) => write.at >= trippedAt);
    expect(lastWrites.slice(-2).map((write) => [write.tag, write.value])).toEqual([
      ["valve.tma", false],
      ["valve.h2o", false],
    ]);
    expect(lastWrites.every((write) => write.at - trippedAt <= 50)).toBe(true);
    // While the interlock is active the trip cannot be reset (review 15u), nor the machine started.
    await expect(system.sendMachineCommand({ id: "root", roles: ["admin"] }, "reset")).rejects.toMatchObject({
      code: "KILN_INVALID_TRANSITION",
    });
    await expect(startAld(system, 1)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    expect(system.machineState).toBe("error");
    await system.stop();
  });

  test("pause and resume take effect at step boundaries; abort writes the safe state", async () => {
    const { clock, plc, system } = await build();
    const process = await startAld(system, 50);
    await clock.advance(300);
    const pausing = system.pauseProcess(operator); // takes effect at the next step boundary
    await clock.advance(200);
    await pausing;
    const pausedAt = plc.writes.length;
    await clock.advance(1_000);
    expect(plc.writes.length).toBe(pausedAt);
    await system.resumeProcess(operator);
    await clock.advance(300);
    expect(plc.writes.length).toBeGreaterThan(pausedAt);
    const result = await system.abortProcess(operator, "operator stop");
    expect(result.status).toBe("aborted");
    expect(plc.writes.slice(-2).map((write) => [write.tag, write.value])).toEqual([
      ["valve.tma", false],
      ["valve.h2o", false],
    ]);
    expect((await process.finished).status).toBe("aborted");
    await system.stop();
  });

  test("an invalid recipe is rejected with every problem by path and nothing runs", async () => {
    const { plc, system } = await build();
    const bad: RecipeInput = {
      name: "bad",
      version: 1,
      steps: [
        { set: { tag: "chamber.pressure", value: 1 } },
        {
          loop: {
            count: 2,
            steps: [{ pulse: { tag: "valve.nope", durationMs: 10 } }, { set: { tag: "heater.setpoint", value: 999 } }],
          },
        },
      ],
    };
    const error = await system.startRecipe(operator, bad).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    expect((error as { issues: { path: string }[] }).issues.map((issue) => issue.path)).toEqual([
      "steps[0].set.tag",
      "steps[1].loop.steps[0].pulse.tag",
      "steps[1].loop.steps[1].set.value",
    ]);
    expect(plc.writes).toEqual([]);
    expect(system.machineState).toBe("idle");
    await system.stop();
  });

  test("alarms are acknowledged through audited commands", async () => {
    const parts = await build();
    const { clock, system, pressure } = parts;
    pressure.value = 15;
    await clock.advance(100);
    await expect(system.acknowledgeAlarm(viewer, "chamber.pressure:HI")).rejects.toMatchObject({
      code: "KILN_FORBIDDEN",
    });
    const snapshot = await system.acknowledgeAlarm(operator, "chamber.pressure:HI", "seen");
    expect(snapshot.state.name).toBe("acknowledged");
    const audit = await auditTrailAfterStop(parts);
    expect(audit.map((entry) => [entry.principal, entry.action, entry.outcome])).toEqual([
      ["vic", "alarm.acknowledge", "denied"],
      ["olga", "alarm.acknowledge", "allowed"],
    ]);
  });

  test("a host restarted mid-run finds the process interrupted, never running forever", async () => {
    const { clock, store, system } = await build();
    const process = await startAld(system, 100);
    await clock.advance(6_000); // past the 5 s progress-save interval
    // Simulate a crash: the store keeps what was saved; a new system starts on it.
    const saved = await store.processes.get(process.id);
    expect(saved?.status).toBe("running");
    const restarted = createControlSystem({
      machineId: "ald-1",
      tags,
      store,
      clock,
      scanGroups: { fast: { periodMs: 50 } },
    });
    await store.close();
    await restarted.start();
    const recovered = await store.processes.get(process.id);
    expect(recovered?.status).toBe("interrupted");
    expect(recovered?.lastCompletedStep).toBeDefined();
    await restarted.stop();
  });
});
