import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { disclosedRefusal } from "../domain/refusal-disclosure";
import type { RecipeInput } from "../recipes/recipe-schema";
import { Authorizer, defaultRoleTable, type Principal, type RoleTable } from "../security/authorization";
import { disclosureFor } from "../security/refusal-disclosure-rule";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";

// Adversarial review 15e (LOW): refusals told callers more than their rights: a caller holding
// only machine.maintenance learnt the machine's state and accepted commands, a recipe.pause-only
// operator the running process's id, and a start refused while the last process ended learnt the
// tags of its late writes (that one: recipe-executor.test.ts; through the system the driver's
// write timeout settles a late write before the start's wait ends). One rule (disclosureFor) now decides what a refusal may reveal to whom,
// applied where the audited command runner hands a refusal to its caller; the audit keeps all.

const HOLD: RecipeInput = {
  name: "hold",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};

const roles: RoleTable = {
  ...defaultRoleTable(),
  maint: ["machine.maintenance"],
  pauser: ["recipe.pause"],
};
const maint: Principal = { id: "mia", roles: ["maint"] };
const pauser: Principal = { id: "pia", roles: ["pauser"] };

async function build() {
  return heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000, roles });
}

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("a refusal reveals only what its caller may know (review 15e)", () => {
  test("(the example) a machine.maintenance-only caller refused while a process runs learns neither the state, the accepted commands nor the process", async () => {
    const parts = await build();
    const { system } = parts;
    const process = await system.startRecipe(engineer, HOLD);
    const refused = await rejection(system.sendMachineCommand(maint, "enterMaintenance"));
    expect(refused.code).toBe("KILN_INVALID_TRANSITION");
    expect(refused.details).not.toHaveProperty("state");
    expect(refused.details).not.toHaveProperty("allowed");
    expect(refused.details).not.toHaveProperty("processId");
    expect(refused.message).not.toContain(process.id);
    expect(refused.message).not.toContain("processing");
    // Nor whether a process runs at all (review 15f, LOW).
    expect(refused.message).not.toMatch(/process/i);
    expect(JSON.stringify(refused.details)).not.toMatch(/process is running/);
    // Sibling: an admin (machine.mode) is told all of it.
    const told = await rejection(system.sendMachineCommand(admin, "enterMaintenance"));
    expect(told.details).toMatchObject({ state: "processing", processId: process.id, allowed: ["stop", "fault"] });
    expect(told.message).toContain(process.id);
    // The audit keeps the full reason.
    parts.release();
    await system.abortProcess(engineer);
    await system.stop();
  });

  test("(sibling) a machine.maintenance-only caller refused by the state table learns neither the state nor the accepted commands", async () => {
    const parts = await build();
    const { system } = parts;
    const refused = await rejection(system.sendMachineCommand(maint, "exitMaintenance"));
    expect(refused.code).toBe("KILN_INVALID_TRANSITION");
    expect(refused.details).not.toHaveProperty("state");
    expect(refused.details).not.toHaveProperty("allowed");
    expect(refused.message).not.toContain('"idle"');
    const told = await rejection(system.sendMachineCommand(admin, "exitMaintenance"));
    expect(told.details).toMatchObject({ state: "idle", allowed: expect.any(Array) });
    await system.stop();
  });

  test("(the example) a recipe.pause-only operator whose pause is cancelled by a resume is not told the process id; an engineer is", async () => {
    const parts = await build();
    const { system } = parts;
    const process = await system.startRecipe(engineer, HOLD);
    // The first step's write is held: the pause waits for the step boundary, then a resume cancels it.
    const paused = rejection(system.pauseProcess(pauser));
    await parts.scans(1);
    await system.resumeProcess(engineer);
    const refused = await paused;
    expect(refused.code).toBe("KILN_INVALID_TRANSITION");
    expect(refused.message).not.toContain(process.id);
    expect(refused.details).not.toHaveProperty("processId");
    const pausedByEngineer = rejection(system.pauseProcess(engineer));
    await parts.scans(1);
    await system.resumeProcess(engineer);
    const told = await pausedByEngineer;
    expect(told.message).toContain(process.id);
    expect(told.details).toMatchObject({ processId: process.id });
    // The audit keeps the id (the entry's target) and the full reason.
    const entries = await system.history.audit.query({ from: 0, to: parts.clock.now() + 1 });
    const pauseFailure = entries.find((entry) => entry.action === "recipe.pause" && entry.principal === "pia");
    expect(pauseFailure?.target).toBe(process.id);
    parts.release();
    await system.abortProcess(engineer);
    await system.stop();
  });
});

describe("disclosedRefusal: the net under refusals not marked by their maker (review 15e)", () => {
  const authorizer = new Authorizer({ roles });
  const error = new KilnError("KILN_INVALID_TRANSITION", 'Process "p-1" in "processing" refused "x".', {
    details: { command: "x", processId: "p-1", machineState: "processing", allowed: ["stop"], retry: 2 },
  });

  test("a caller without the rights gets the code and command, without the facts", () => {
    const shown = disclosedRefusal(error, disclosureFor(authorizer, pauser, "m-1", undefined)) as KilnError;
    expect(shown.code).toBe("KILN_INVALID_TRANSITION");
    expect(shown.details).toEqual({ command: "x", retry: 2 });
    expect(shown.message).not.toContain("p-1");
    expect(shown.message).not.toContain("processing");
  });

  test("(sibling) an admin gets the refusal itself; a malformed principal learns nothing", () => {
    expect(disclosedRefusal(error, disclosureFor(authorizer, admin, "m-1", undefined))).toBe(error);
    const shown = disclosedRefusal(error, disclosureFor(authorizer, undefined, "m-1", undefined)) as KilnError;
    expect(shown.details).toEqual({ command: "x", retry: 2 });
  });
});

describe("a caller who may not know whether a process runs is not told so (review 15f, LOW)", () => {
  test("(sibling) exitMaintenance refused while a process runs does not name a process either", async () => {
    const parts = await build();
    const { system } = parts;
    await system.startRecipe(engineer, HOLD);
    const running = await rejection(system.sendMachineCommand(maint, "exitMaintenance"));
    expect(running.message).not.toMatch(/process/i);
    parts.release();
    await system.abortProcess(engineer);
    await system.stop();
  });
});
