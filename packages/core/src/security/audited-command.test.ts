import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

const START = Date.UTC(2026, 0, 1);
const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
  "chamber.pressure": { dataType: "float64" },
});
const operator: Principal = { id: "olga", roles: ["operator"] };
const engineer: Principal = { id: "enzo", roles: ["engineer"] };

async function setup(options: { audit?: (store: MemoryStore) => AuditLog; backlogLimit?: number } = {}) {
  const clock = new SimulatedClock({ start: START });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const failures: KilnEvents["audit-record-fail"][] = [];
  const drops: KilnEvents["audit-entry-drop"][] = [];
  bus.on("audit-record-fail", (event) => void failures.push(event));
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: options.audit?.(store) ?? store.audit,
    clock,
    bus,
    ...(options.backlogLimit === undefined ? {} : { backlogLimit: options.backlogLimit }),
  });
  const writeTag = (principal: Principal, tag: string, value: TagValue, comment?: string) =>
    runner.run({
      principal,
      permission: "tag.write",
      target: tag,
      machineState: "idle",
      newValue: value,
      readOldValue: () => plc.peek(tag),
      execute: () => plc.write(tags.get(tag), value),
      ...(comment === undefined ? {} : { comment }),
    });
  const entries = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  return { clock, plc, store, runner, writeTag, entries, failures, drops };
}

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("AuditedCommandRunner", () => {
  test("a forbidden write is audited as denied and never reaches the PLC", async () => {
    const { plc, writeTag, entries } = await setup();
    const error = await rejection(writeTag(operator, "valve.tma", true));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(plc.writes).toEqual([]);
    const [entry, ...rest] = await entries();
    expect(rest).toEqual([]);
    expect(entry).toEqual({
      principal: "olga",
      roles: ["operator"],
      action: "tag.write",
      target: "valve.tma",
      newValue: true,
      outcome: "denied",
      reason: expect.stringMatching(/^KILN_FORBIDDEN: /),
      at: START,
    });
  });

  test("an allowed write is audited with the old and new value and the operator's comment", async () => {
    const { clock, plc, writeTag, entries } = await setup();
    await clock.advance(1_000);
    await writeTag(operator, "heater.setpoint", 250, "warm-up for lot 42");
    await writeTag(engineer, "heater.setpoint", 300);
    expect(plc.writes.map((write) => [write.tag, write.value])).toEqual([
      ["heater.setpoint", 250],
      ["heater.setpoint", 300],
    ]);
    expect(await entries()).toEqual([
      {
        principal: "olga",
        roles: ["operator"],
        action: "tag.write",
        target: "heater.setpoint",
        oldValue: 0,
        newValue: 250,
        outcome: "allowed",
        reason: "warm-up for lot 42",
        at: START + 1_000,
      },
      expect.objectContaining({ principal: "enzo", oldValue: 250, newValue: 300, outcome: "allowed" }),
    ]);
  });

  test("a command refused by a check is denied; one that breaks while running is failed; errors pass through", async () => {
    const { plc, writeTag, entries } = await setup();
    expect((await rejection(writeTag(engineer, "chamber.pressure", 1))).code).toBe("KILN_TAG_NOT_WRITABLE");
    plc.faults.unreachable = true;
    expect((await rejection(writeTag(engineer, "valve.tma", true))).code).toBe("KILN_NOT_CONNECTED");
    expect((await entries()).map((entry) => [entry.target, entry.outcome, entry.reason?.split(":")[0]])).toEqual([
      ["chamber.pressure", "denied", "KILN_TAG_NOT_WRITABLE"],
      ["valve.tma", "failed", "KILN_NOT_CONNECTED"],
    ]);
  });

  test("commands without a value: the action name and result pass through", async () => {
    const { runner, entries } = await setup();
    const result = await runner.run({
      principal: operator,
      permission: "recipe.abort",
      action: "recipe.abort",
      target: "process-7",
      execute: () => "aborted",
    });
    expect(result).toBe("aborted");
    expect(await entries()).toEqual([expect.objectContaining({ action: "recipe.abort", outcome: "allowed" })]);
    expect((await entries())[0]).not.toHaveProperty("newValue");
  });

  test("an audit outage does not fail the command; entries are kept, reported and written once the log is back", async () => {
    let down = true;
    const { plc, writeTag, runner, entries, failures } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          if (down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
          await store.audit.record(entry);
        },
      }),
    });
    await writeTag(engineer, "valve.tma", true);
    expect((await rejection(writeTag(operator, "valve.tma", false))).code).toBe("KILN_FORBIDDEN");
    expect(plc.writes).toHaveLength(1);
    expect(runner.backlog).toBe(2);
    expect(failures.map((event) => [event.outcome, event.backlog])).toEqual([
      ["allowed", 1],
      ["denied", 2],
    ]);
    expect(KilnError.is(failures[0]?.error, "KILN_STORE_ERROR")).toBe(true);
    expect(await entries()).toEqual([]);

    down = false;
    await writeTag(engineer, "heater.setpoint", 10);
    expect(runner.backlog).toBe(0);
    expect((await entries()).map((entry) => [entry.principal, entry.outcome])).toEqual([
      ["enzo", "allowed"],
      ["olga", "denied"],
      ["enzo", "allowed"],
    ]);
  });

  test("the backlog is bounded: the oldest entries are dropped and the drop is reported", async () => {
    const { writeTag, runner, drops } = await setup({
      audit: () => ({
        query: async () => [],
        record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down")),
      }),
      backlogLimit: 2,
    });
    for (const value of [1, 2, 3]) await writeTag(engineer, "heater.setpoint", value);
    expect(runner.backlog).toBe(2);
    expect(runner.dropped).toBe(1);
    expect(drops).toEqual([expect.objectContaining({ count: 1 })]);
    expect(await runner.flush()).toBe(false);
  });

  test("a principal is read once: a roles getter that turns viewer into admin is audited and refused as viewer", async () => {
    const { plc, writeTag, entries } = await setup();
    let reads = 0;
    const shifty = {
      id: "mallory",
      get roles(): string[] {
        reads++;
        return reads === 1 ? ["viewer"] : ["admin"];
      },
    };
    const error = await rejection(writeTag(shifty, "valve.tma", true));
    expect(error.code).toBe("KILN_FORBIDDEN");
    expect(plc.writes).toEqual([]);
    expect(reads).toBe(1);
    expect(await entries()).toEqual([
      expect.objectContaining({ principal: "mallory", roles: ["viewer"], outcome: "denied" }),
    ]);
  });

  test("execute gets the frozen principal, never the caller's object", async () => {
    const { runner } = await setup();
    let reads = 0;
    const shifty = {
      get id(): string {
        reads++;
        return reads === 1 ? "olga" : "someone-else";
      },
      roles: ["operator"],
    };
    const seen = await runner.run({
      principal: shifty,
      permission: "recipe.start",
      target: "ald",
      execute: (command) => command.principal.id,
    });
    expect(seen).toBe("olga");
    expect(reads).toBe(1);
  });

  test("a refusal names only the subject the caller gave, not the target recorded in the audit", async () => {
    const { runner, entries } = await setup();
    const error = await rejection(
      runner.run({
        principal: { id: "vic", roles: ["viewer"] },
        permission: "recipe.pause",
        target: "process-7f3a",
        subject: "ald-1",
        execute: () => undefined,
      }),
    );
    expect(error.message).not.toContain("process-7f3a");
    expect(JSON.stringify(error.details)).not.toContain("process-7f3a");
    expect(error.message).toContain("ald-1");
    expect(await entries()).toEqual([expect.objectContaining({ target: "process-7f3a", outcome: "denied" })]);
  });
});
