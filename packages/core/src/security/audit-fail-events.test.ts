import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner, type CommandContext } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review adv15r, M2, at the runner: every `:fail` entry, whatever path makes it, is
// published as `command-fail` exactly once, with the command's id, action, target and the
// entry's reason. Before, only a command's own error after its commit was published; a `:fail`
// held while the command ran (a safety function's safe state), one told after it answered, one
// of a command then cancelled, and a system action's were recorded silently.

const admin: Principal = { id: "ada", roles: ["admin"] };

async function setup() {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open([]);
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const fails: KilnEvents["command-fail"][] = [];
  bus.on("command-fail", (event) => void fails.push(event));
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable() }),
    audit: store.audit,
    clock,
    bus,
    machineId: "m-1",
    newId: () => `entry-${++ids}`,
  });
  const failEntries = async (): Promise<AuditEntry[]> =>
    (await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).filter((entry) => entry.id.endsWith(":fail"));
  const machineCommand = (execute: (context: CommandContext) => Promise<string>) =>
    runner.run({
      principal: admin,
      permission: "machine.mode",
      action: "machine.fault",
      target: "m-1",
      newValue: { command: "fault" },
      safetyFunction: true,
      execute,
    });
  return { runner, fails, failEntries, machineCommand };
}

const joined = (entry: AuditEntry) =>
  expect.objectContaining({
    id: entry.refersTo,
    principal: entry.principal,
    action: entry.action,
    target: entry.target,
    reason: entry.reason,
  });

describe("command-fail for every :fail entry (adv15r M2)", () => {
  test("a :fail told while a safety function runs, which then answers its end state", async () => {
    const parts = await setup();
    const answer = await parts.machineCommand(async (context) => {
      context.recordAfter("fail", { outcome: "failed", reason: "safe-state heater.setpoint: refused" });
      return "error";
    });
    expect(answer).toBe("error");
    await parts.runner.flush();
    const entries = await parts.failEntries();
    expect(entries.map((entry) => entry.id)).toEqual(["entry-1:fail"]);
    expect(parts.fails).toEqual([joined(entries[0]!)]);
  });

  test("(sibling) a :fail told after the command answered (a late failure)", async () => {
    const parts = await setup();
    let later: CommandContext | undefined;
    await parts.machineCommand(async (context) => {
      later = context;
      return "error";
    });
    expect(parts.fails).toEqual([]);
    later!.recordAfter("fail", { outcome: "failed", reason: "late: heater.setpoint was not written" });
    // A second one is not recorded (one entry per suffix), so it is not published either.
    later!.recordAfter("fail", { outcome: "failed", reason: "again" });
    await parts.runner.flush();
    const entries = await parts.failEntries();
    expect(entries).toHaveLength(1);
    expect(parts.fails).toEqual([joined(entries[0]!)]);
  });

  test("(sibling) a command that fails after a held :fail: one entry saying both, one event saying both", async () => {
    const parts = await setup();
    await expect(
      parts.machineCommand(async (context) => {
        context.recordAfter("fail", { outcome: "failed", reason: "safe-state heater.setpoint: refused" });
        throw new KilnError("KILN_INVALID_TRANSITION", "the machine refused fault");
      }),
    ).rejects.toMatchObject({ code: "KILN_INVALID_TRANSITION" });
    await parts.runner.flush();
    const entries = await parts.failEntries();
    expect(entries).toHaveLength(1);
    expect(entries[0]!.reason).toMatch(/refused; then KILN_INVALID_TRANSITION/);
    expect(parts.fails).toEqual([joined(entries[0]!)]);
  });

  test("(sibling) a command cancelled after a held :fail: the :fail is published, the :cancel is not", async () => {
    const parts = await setup();
    await expect(
      parts.machineCommand(async (context) => {
        context.recordAfter("fail", { outcome: "failed", reason: "safe-state heater.setpoint: refused" });
        throw new KilnError("KILN_ABORTED", "cancelled", { details: { cancelled: true } });
      }),
    ).rejects.toMatchObject({ code: "KILN_ABORTED" });
    await parts.runner.flush();
    const entries = await parts.failEntries();
    expect(entries).toHaveLength(1);
    expect(parts.fails).toEqual([joined(entries[0]!)]);
  });

  test("(sibling) a system action whose effect throws, and one whose result is a problem", async () => {
    const parts = await setup();
    await expect(
      parts.runner.runSystemAction({ action: "recipe.abort", target: "p-1", reason: "stop" }, () =>
        Promise.reject(new KilnError("KILN_WRITE_REJECTED", "device refused")),
      ),
    ).rejects.toMatchObject({ code: "KILN_WRITE_REJECTED" });
    await parts.runner.runSystemAction(
      { action: "machine.trip", target: "m-1", reason: "interlock" },
      () => Promise.resolve("tripped"),
      () => "safe-state heater.setpoint: refused",
    );
    await parts.runner.flush();
    const entries = await parts.failEntries();
    expect(entries.map((entry) => entry.action)).toEqual(["recipe.abort", "machine.trip"]);
    expect(parts.fails).toEqual(entries.map(joined));
    expect(parts.fails.map((event) => event.principal)).toEqual(["(system)", "(system)"]);
  });
});
