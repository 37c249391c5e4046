import { describe, expect, test } from "vitest";
import type { RecipeInput } from "../recipes/recipe-schema";
import { defaultRoleTable } from "../security/authorization";
import { heldWriteSystem } from "../../test/support/held-write-system";
import { admin, engineer } from "../../test/support/safety-harness";
import { auditTrailAfterStop } from "../../test/support/simulated-system";

// Adversarial review 15r, M2: a start right after an abort was refused "already running a
// process" while the machine was already idle, for as long as a step write the aborted process
// had sent (still on the wire) took to settle: an invisible reason. ADR 0042 (15s §3) said the
// next start waits for it. It now does, bounded; past the bound it is refused naming the write,
// and health() names the write meanwhile.

const HOLD: RecipeInput = {
  name: "hold",
  version: 1,
  steps: [{ set: { tag: "stirrer.speed", value: 40 } }, { wait: { durationMs: 60_000 } }],
};
const NEXT: RecipeInput = { name: "next", version: 1, steps: [{ set: { tag: "stirrer.speed", value: 10 } }] };

describe("a start after an abort waits for the aborted process's write in flight (review 15r, M2)", () => {
  test("(the example) idle machine, step write still on the wire: the start waits, then runs after it, in order", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    const { system } = parts;
    const first = await system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    expect(parts.events).toEqual(["sent stirrer.speed=40"]);
    // Its answer (the process's result) waits for the write; the machine does not.
    const aborted = system.abortProcess(engineer);
    await parts.scans(1);
    expect(system.machineState).toBe("idle");
    // The write is named while the machine is idle and it has not settled.
    expect(system.health().problems).toEqual([
      expect.stringMatching(/^process .+ is ending: its write of stirrer\.speed sent before its abort has not settled/),
    ]);
    let outcome = "waiting";
    const next = system.startRecipe(engineer, NEXT).then(
      () => (outcome = "started"),
      (error: unknown) => (outcome = String(error)),
    );
    await parts.scans(4);
    expect(outcome).toBe("waiting");
    parts.release();
    await next;
    expect(outcome).toBe("started");
    await first.finished;
    await aborted;
    await parts.scans(4);
    expect(parts.values("stirrer.speed")).toEqual([40, 10]);
    expect(system.health().problems).toEqual([]);
    await system.stop();
  });

  test("(sibling) a write that never answers: the start waits for the driver's write timeout, then runs (the write is reported failed)", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 2_000 });
    const { system } = parts;
    await system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = system.abortProcess(engineer);
    await parts.scans(1);
    expect(system.machineState).toBe("idle");
    let outcome = "waiting";
    const next = system.startRecipe(engineer, NEXT).then(
      () => (outcome = "started"),
      (error: unknown) => (outcome = String(error)),
    );
    await parts.scans(20);
    expect(outcome).toBe("waiting");
    await parts.scans(30);
    await next;
    expect(outcome).toBe("started");
    // The write gave up at the driver's timeout: a problem of the aborted process, not lost.
    expect((await aborted).problems).toEqual([
      expect.objectContaining({
        stage: "step-write",
        tag: "stirrer.speed",
        error: expect.objectContaining({ code: "KILN_TIMEOUT" }),
      }),
    ]);
    // The given-up write may still land (review 15e): the next write to its tag waits one more
    // write timeout for the driver's call before it goes out.
    expect(parts.values("stirrer.speed")).toEqual([]);
    await parts.scans(42);
    expect(parts.values("stirrer.speed")).toEqual([10]);
    parts.release();
    await system.stop();
  });
});

// Adversarial review 15 (second pass), HIGH: an abort issued while a start waited for the ending
// process went to that process (already aborted; answered "aborted", audited a second abort) and
// the waiting start then ran. The waiting start is the abort's target now, as a stop's.
describe("an abort while a start waits for the ending process cancels the start (review 15-2, H1)", () => {
  const HEAT: RecipeInput = {
    name: "heat",
    version: 1,
    steps: [{ set: { tag: "heater.setpoint", value: 300 } }, { wait: { durationMs: 60_000 } }],
  };

  test("(the example) the waiting start rejects KILN_ABORTED, nothing it holds is written, one abort per process", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    const { system } = parts;
    const first = await system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = system.abortProcess(engineer);
    await parts.scans(1);
    const next = system.startRecipe(engineer, HEAT).then(
      () => "started",
      (error: unknown) => (error as { code?: string }).code,
    );
    await parts.scans(1);
    const second = await system.abortProcess(engineer);
    expect(second).toMatchObject({ status: "aborted", stepsCompleted: 0, persisted: false });
    expect(second.processId).not.toBe(first.id);
    parts.release();
    await parts.scans(10);
    expect(await next).toBe("KILN_ABORTED");
    await aborted;
    expect(system.machineState).toBe("idle");
    expect(parts.values("heater.setpoint")).not.toContain(300);
    const trail = await auditTrailAfterStop(parts);
    const aborts = trail.filter((entry) => entry.action === "recipe.abort");
    expect(aborts.map((entry) => entry.target)).toEqual([first.id, second.processId]);
    // Authorized (its entry committed) before the wait: its cancellation follows as a failed entry.
    const heat = trail.filter((entry) => entry.action === "recipe.start" && entry.target === "heat");
    expect(heat.at(-1)).toMatchObject({ outcome: "failed", reason: expect.stringMatching(/^KILN_ABORTED/) });
  });

  test("(sibling) an abort of the ending process with no start waiting is refused (denied), not a second abort", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    const { system } = parts;
    const first = await system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = system.abortProcess(engineer);
    await parts.scans(1);
    await expect(system.abortProcess(engineer)).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    parts.release();
    await aborted;
    const trail = await auditTrailAfterStop(parts);
    const aborts = trail.filter((entry) => entry.action === "recipe.abort" && entry.target === first.id);
    expect(aborts.map((entry) => entry.outcome)).toEqual(["allowed", "denied"]);
  });
});

// Adversarial review 15 (second pass), M1: a start bound to fail waited for the ending process
// before it was validated and authorized, holding other principals' commands behind it, and its
// late refusal named the tags the previous process was writing. It is refused at once now.
describe("a start bound to fail is refused at once while the last process is ending (review 15-2, M1)", () => {
  async function endingSystem() {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = parts.system.abortProcess(engineer);
    await parts.scans(1);
    return { parts, aborted };
  }

  test("(the example) an invalid recipe: KILN_VALIDATION before the ending write settles", async () => {
    const { parts, aborted } = await endingSystem();
    let outcome = "waiting";
    const bad = parts.system
      .startRecipe(engineer, { name: "bad", version: 1, steps: [{ set: { tag: "nope.tag", value: 1 } }] })
      .then(
        () => (outcome = "started"),
        (error: unknown) => (outcome = String((error as { code?: string }).code)),
      );
    await parts.scans(2);
    expect(outcome).toBe("KILN_VALIDATION");
    parts.release();
    await bad;
    await aborted;
    await parts.system.stop();
  });

  test("(sibling) a write set the principal may not write: KILN_FORBIDDEN before the wait, naming no ending write", async () => {
    const { parts, aborted } = await endingSystem();
    const operator = { id: "olga", roles: ["operator"] };
    let outcome: unknown = "waiting";
    const sneaky = parts.system
      .startRecipe(operator, { name: "sneaky", version: 1, steps: [{ set: { tag: "valve.h2o", value: true } }] })
      .then(
        () => (outcome = "started"),
        (error: unknown) => (outcome = error),
      );
    await parts.scans(2);
    expect(outcome).toMatchObject({ code: "KILN_FORBIDDEN" });
    expect(String((outcome as Error).message)).not.toMatch(/stirrer\.speed/);
    parts.release();
    await sneaky;
    await aborted;
    await parts.system.stop();
  });
});

// Adversarial review 15c, M1: a start waiting (up to endingWaitMs) for the last process to finish
// ending held the command turn all that time: another operator's tag write, a machine command,
// waited behind it. The wait now happens outside the turn; the start takes its turn again to begin.
describe("a start waiting for the ending process does not hold other commands (review 15c, M1)", () => {
  async function waitingStart() {
    const parts = await heldWriteSystem(
      "kiln",
      { tag: "stirrer.speed", value: 40 },
      { timeoutMs: 10_000, hiAlarmAt: 10 },
    );
    const first = await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = parts.system.abortProcess(engineer);
    await parts.scans(1);
    let outcome = "waiting";
    const next = parts.system.startRecipe(engineer, NEXT).then(
      () => (outcome = "started"),
      (error: unknown) => (outcome = String(error)),
    );
    await parts.scans(1);
    return { parts, first, aborted, next, outcome: () => outcome };
  }

  test("(the example) another principal's tag write and an alarm acknowledge complete during the wait; the start then runs after them", async () => {
    const { parts, aborted, next, outcome } = await waitingStart();
    parts.pressure.value = 15;
    await parts.scans(2);
    const ack = parts.system.acknowledgeAlarm(admin, "chamber.pressure:HI");
    const write = parts.system.writeTag(admin, "heater.setpoint", 5);
    let settled = 0;
    void ack.then(() => settled++);
    void write.then(() => settled++);
    await parts.scans(1);
    expect(settled).toBe(2);
    expect(await ack).toMatchObject({ state: { name: "acknowledged" } });
    // 0: the abort's safe state; 5: the write made during the wait.
    expect(parts.values("heater.setpoint")).toEqual([0, 5]);
    expect(outcome()).toBe("waiting");
    parts.release();
    await next;
    expect(outcome()).toBe("started");
    await aborted;
    await parts.scans(4);
    expect(parts.values("stirrer.speed")).toEqual([40, 10]);
    await parts.system.stop();
  });

  test("(sibling) a manual write of the next recipe's tag during the wait: sent after the ending write, and the start takes its turn after it", async () => {
    const { parts, aborted, next, outcome } = await waitingStart();
    const write = parts.system.writeTag(admin, "stirrer.speed", 7);
    await parts.scans(1);
    expect(outcome()).toBe("waiting");
    parts.release();
    await write;
    await next;
    expect(outcome()).toBe("started");
    await aborted;
    await parts.scans(4);
    // The tag's order: the aborted process's write, the manual one, then the new process's.
    expect(parts.values("stirrer.speed")).toEqual([40, 7, 10]);
    await parts.system.stop();
  });
});

// Adversarial review 15c (LOW): stop() while a process was only ending (aborted, its write still
// on the wire) aborted it again on the system's account: a second recipe.abort entry by (system).
describe("stop() while a process is ending waits for it, it does not abort it again (review 15c)", () => {
  test("(the example) one recipe.abort entry for the aborted process; its write still lands before the driver closes", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000 });
    const first = await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = parts.system.abortProcess(engineer);
    await parts.scans(1);
    const stopped = parts.system.stop();
    await parts.scans(1);
    parts.release();
    await stopped;
    await aborted;
    expect(parts.events).toContain("landed stirrer.speed=40");
    await parts.store.open(parts.system.tags.list());
    const trail = await parts.store.audit.query({ from: 0, to: parts.clock.now() + 1 });
    const aborts = trail.filter((entry) => entry.action === "recipe.abort" && entry.target === first.id);
    expect(aborts.map((entry) => [entry.principal, entry.outcome])).toEqual([[engineer.id, "allowed"]]);
  });

  test("(sibling) stop() while a process runs still aborts it on the system's account", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "none", value: -1 }, { timeoutMs: 10_000 });
    const first = await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const trail = await auditTrailAfterStop(parts);
    const aborts = trail.filter((entry) => entry.action === "recipe.abort" && entry.target === first.id);
    expect(aborts).toHaveLength(1);
    expect(aborts[0]!.principal).not.toBe(engineer.id);
    expect(await first.finished).toMatchObject({ status: "aborted" });
  });
});

// Adversarial review 15c (LOW): enterMaintenance refused while a process ran (or was ending)
// named that process's id to a caller holding only machine.maintenance, who may not act on it.
describe("a refused machine command names the process only to a caller who may stop it (review 15c)", () => {
  const tech = { id: "tina", roles: ["tech"] };
  const roles = { ...defaultRoleTable(), tech: ["read" as const, "machine.maintenance" as const] };

  test("(the example) machine.maintenance only, process ending: refused without the process id", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "stirrer.speed", value: 40 }, { timeoutMs: 10_000, roles });
    const first = await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    const aborted = parts.system.abortProcess(engineer);
    await parts.scans(1);
    const refused = await parts.system.sendMachineCommand(tech, "enterMaintenance").catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: "KILN_INVALID_TRANSITION", details: { stage: "process" } });
    expect((refused as { details: Record<string, unknown> }).details).not.toHaveProperty("processId");
    expect(String((refused as Error).message)).not.toContain(first.id);
    parts.release();
    await aborted;
    await parts.system.stop();
  });

  test("(sibling) an admin (machine.mode) is still told which process", async () => {
    const parts = await heldWriteSystem("kiln", { tag: "none", value: -1 }, { timeoutMs: 10_000, roles });
    const first = await parts.system.startRecipe(engineer, HOLD);
    await parts.scans(2);
    await expect(parts.system.sendMachineCommand(admin, "enterMaintenance")).rejects.toMatchObject({
      details: { processId: first.id },
    });
    await parts.system.abortProcess(engineer);
    await parts.system.stop();
  });
});
