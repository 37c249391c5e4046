import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import type { Logger } from "../ports/logger";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review (fix15ad, LOW 2; fix15ac L2): a command the stop released (answered
// KILN_LIFECYCLE, its `:fail` saying its outcome is unknown) whose write then completed left the
// trail at "unknown" and said nothing at all, not even in the log. Now, while the audit writer
// still takes entries, the completion is recorded as `<id>:landed` (refersTo the command, outcome
// `allowed`); once the writer is closing (the stop closed the journal and the store) it is not
// recorded (nothing opens a stopped system's journal, review 15s) and is logged as an error.

const engineer: Principal = { id: "enzo", roles: ["engineer"] };

async function setup() {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open([]);
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const drops: KilnEvents["audit-entry-drop"][] = [];
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  const errors: { fields: unknown; message: string }[] = [];
  const logger = {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (fields: unknown, message?: string) => void errors.push({ fields, message: String(message) }),
  } as unknown as Logger;
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: store.audit,
    clock,
    bus,
    logger,
    machineId: "ald-1",
    newId: () => `entry-${++ids}`,
  });
  await runner.open();
  /** Runs a write whose device call completes (or fails) only when told. */
  const slowWrite = () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let land!: () => void;
    let fail!: (error: Error) => void;
    const device = new Promise<void>((resolve, reject) => {
      land = resolve;
      fail = reject;
    });
    const answer = runner
      .run({
        principal: engineer,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: "idle",
        newValue: 250,
        execute: async () => {
          started();
          await device;
        },
      })
      .then(
        () => "resolved",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      );
    return { running, answer, land, fail };
  };
  const stopped = new KilnError(
    "KILN_LIFECYCLE",
    "The control system stopped while the command was in flight: what became of it is unknown.",
    { details: { released: true } },
  );
  const entries = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
  return { runner, slowWrite, stopped, entries, errors, drops, store, tick };
}

describe("a command the stop released that completes after all (fix15ad)", () => {
  test("completing while the audit writer still takes entries: recorded as <id>:landed after its :fail", async () => {
    const { runner, slowWrite, stopped, entries, tick } = await setup();
    const write = slowWrite();
    await write.running;
    expect(runner.releaseInFlight(stopped)).toBe(1);
    expect(await write.answer).toBe("KILN_LIFECYCLE");
    write.land();
    await tick();
    expect(await runner.flush()).toBe(true);
    const trail = await entries();
    expect(trail.map((entry) => [entry.id, entry.outcome])).toEqual([
      ["entry-1", "allowed"],
      ["entry-1:fail", "failed"],
      ["entry-1:landed", "allowed"],
    ]);
    const landed = trail.find((entry) => entry.id === "entry-1:landed");
    expect(landed).toMatchObject({ refersTo: "entry-1", target: "heater.setpoint", newValue: 250 });
    expect(landed?.reason).toMatch(/completed after the control system's stop released it/);
    await runner.close();
  });

  test("(sibling) completing after the writer closed: not recorded, not counted as a drop, logged as an error; the :fail says unknown", async () => {
    const { runner, slowWrite, stopped, entries, errors, drops, tick } = await setup();
    const write = slowWrite();
    await write.running;
    runner.releaseInFlight(stopped);
    expect(await write.answer).toBe("KILN_LIFECYCLE");
    await runner.close();
    write.land();
    await tick();
    const trail = (await entries()) as AuditEntry[];
    expect(trail.map((entry) => entry.id)).toEqual(["entry-1", "entry-1:fail"]);
    expect(trail[1]!.reason).toContain("unknown");
    expect(drops).toEqual([]);
    expect(runner.status()).toMatchObject({ droppedWhileStopped: 0 });
    expect(errors).toContainEqual(
      expect.objectContaining({
        fields: expect.objectContaining({ id: "entry-1" }),
        message: expect.stringContaining("completed after the audit writer closed"),
      }),
    );
  });

  test("(sibling) failing after the release: no :landed, the :fail stands", async () => {
    const { runner, slowWrite, stopped, entries, tick } = await setup();
    const write = slowWrite();
    await write.running;
    runner.releaseInFlight(stopped);
    expect(await write.answer).toBe("KILN_LIFECYCLE");
    write.fail(new Error("device refused"));
    await tick();
    expect(await runner.flush()).toBe(true);
    expect((await entries()).map((entry) => entry.id)).toEqual(["entry-1", "entry-1:fail"]);
    await runner.close();
  });
});
