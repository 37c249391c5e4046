import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, expect, onTestFinished, test, vi } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { RecordJournal } from "../journal/record-journal";
import { AuditedCommandRunner } from "./audited-command";
import type { AuditBacklogOptions } from "./audited-command-options";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

const START = Date.UTC(2026, 0, 1);
const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
  "chamber.pressure": { dataType: "float64" },
});
const operator: Principal = { id: "olga", roles: ["operator"] };
const engineer: Principal = { id: "enzo", roles: ["engineer"] };

async function setup(
  options: {
    audit?: (store: MemoryStore) => AuditLog;
    backlog?: AuditBacklogOptions;
    runWithoutDurableAudit?: readonly string[];
    /** Prefix of the entry ids, so a second runner on one journal makes ids of its own. */
    idPrefix?: string;
  } = {},
) {
  const clock = new SimulatedClock({ start: START });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const failures: KilnEvents["audit-record-fail"][] = [];
  const drops: KilnEvents["audit-entry-drop"][] = [];
  const skips: KilnEvents["audit-entry-skip"][] = [];
  const refusals: KilnEvents["command-refuse"][] = [];
  bus.on("audit-record-fail", (event) => void failures.push(event));
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  bus.on("audit-entry-skip", (event) => void skips.push(event));
  bus.on("command-refuse", (event) => void refusals.push(event));
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: options.audit?.(store) ?? store.audit,
    clock,
    bus,
    machineId: "ald-1",
    newId: () => `${options.idPrefix ?? "entry"}-${++ids}`,
    ...(options.backlog === undefined ? {} : { backlog: options.backlog }),
    ...(options.runWithoutDurableAudit === undefined ? {} : { runWithoutDurableAudit: options.runWithoutDurableAudit }),
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
  return { clock, plc, store, bus, runner, writeTag, entries, failures, drops, skips, refusals };
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
      id: "entry-1",
      machineId: "ald-1",
      category: "tag",
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
        id: "entry-1",
        machineId: "ald-1",
        category: "tag",
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

  test("in-execute: a check that refuses before commit is denied, an error before commit failed; after commit the allowed entry stays and the failure is its own entry naming it", async () => {
    const { plc, runner, bus, entries } = await setup();
    const fails: KilnEvents["command-fail"][] = [];
    bus.on("command-fail", (event) => void fails.push(event));
    const write = (tag: string, value: TagValue, before?: () => void) =>
      runner.run({
        principal: engineer,
        permission: "tag.write",
        target: tag,
        machineState: "idle",
        newValue: value,
        commit: "in-execute",
        execute: async (context) => {
          const definition = tags.get(tag);
          if (definition.access !== "readwrite") throw new KilnError("KILN_TAG_NOT_WRITABLE", `${tag} is read-only`);
          before?.();
          await context.commit();
          await plc.write(definition, value);
        },
      });
    expect((await rejection(write("chamber.pressure", 1))).code).toBe("KILN_TAG_NOT_WRITABLE");
    const stopped = () => {
      throw new KilnError("KILN_LIFECYCLE", "not running");
    };
    expect((await rejection(write("valve.tma", true, stopped))).code).toBe("KILN_LIFECYCLE");
    plc.faults.unreachable = true;
    expect((await rejection(write("valve.tma", true))).code).toBe("KILN_NOT_CONNECTED");
    expect((await entries()).map((entry) => [entry.target, entry.outcome, entry.reason?.split(":")[0]])).toEqual([
      ["chamber.pressure", "denied", "KILN_TAG_NOT_WRITABLE"],
      ["valve.tma", "failed", "KILN_LIFECYCLE"],
      ["valve.tma", "allowed", undefined],
      // The failure after the commit is an entry of its own naming the allowed one (review 15s, F4).
      ["valve.tma", "failed", "KILN_NOT_CONNECTED"],
    ]);
    expect((await entries()).at(-1)).toMatchObject({ id: "entry-3:fail", refersTo: "entry-3" });
    expect(fails).toEqual([
      expect.objectContaining({
        id: "entry-3",
        action: "tag.write",
        reason: expect.stringMatching(/^KILN_NOT_CONNECTED/),
      }),
    ]);
  });

  test("without a backlog journal an allowed command's entry is stored before the driver is touched; the first command after the store fails is refused, not run", async () => {
    let down = false;
    const seenAtWrite: string[][] = [];
    const { store, plc, runner, entries } = await setup({
      audit: (memory) => ({
        query: memory.audit.query,
        record: async (entry: AuditEntry) => {
          if (down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
          await memory.audit.record(entry);
        },
      }),
    });
    const write = (value: number) =>
      runner.run({
        principal: engineer,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: "idle",
        newValue: value,
        execute: async () => {
          const stored = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
          seenAtWrite.push(stored.map((entry) => `${entry.id}:${entry.outcome}`));
          await plc.write(tags.get("heater.setpoint"), value);
        },
      });
    await write(1);
    expect(seenAtWrite).toEqual([["entry-1:allowed"]]);
    down = true;
    // Nothing had failed yet: this is the first command to meet the outage.
    expect((await rejection(write(2))).code).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(plc.writes.map((entry) => entry.value)).toEqual([1]);
    expect(seenAtWrite).toHaveLength(1);
    down = false;
    // While the store is failing, commands do not call it: only the background retry probes it
    // (flush does its work here), and then commands run again (review 15j).
    expect((await rejection(write(3))).code).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(await runner.flush()).toBe(true);
    await write(3);
    expect(seenAtWrite[1]).toEqual(["entry-1:allowed", "entry-2:refusal:denied", "entry-3:denied", "entry-4:allowed"]);
    expect(runner.backlog).toBe(0);
    expect((await entries()).map((entry) => entry.reason?.split(":")[0])).toEqual([
      undefined,
      "KILN_AUDIT_UNAVAILABLE",
      "KILN_AUDIT_UNAVAILABLE",
      undefined,
    ]);
  });

  test("an error the store did not classify (not a KilnError) keeps the entry for retry, however often: never skipped", async () => {
    let failures = 5;
    const { runner, writeTag, entries, skips } = await setup({
      audit: (memory) => ({
        query: memory.audit.query,
        record: async (entry: AuditEntry) => {
          if (failures-- > 0) throw Object.assign(new Error("connect ENOENT /tmp/.s.PGSQL.5432"), { code: "ENOENT" });
          await memory.audit.record(entry);
        },
      }),
    });
    for (let attempt = 0; attempt < 4; attempt++) await rejection(writeTag(operator, "valve.tma", true));
    expect(runner.backlog).toBe(4);
    // A whole-store outage (every write fails): nothing is set aside, all are stored once it is over.
    // (A suspect head is retried after a probe entry, so two may be stored swapped: fault 4's rule.)
    // Each flush stops at a failure, as the background retry does, and the next one goes on.
    let flushes = 0;
    while (!(await runner.flush())) expect(++flushes).toBeLessThan(6);
    expect(skips).toEqual([]);
    expect((await entries()).map((entry) => entry.id).sort()).toEqual(["entry-1", "entry-2", "entry-3", "entry-4"]);
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
    // A safety action's entry follows it through the writer.
    await runner.flush();
    expect(await entries()).toEqual([expect.objectContaining({ action: "recipe.abort", outcome: "allowed" })]);
    expect((await entries())[0]).not.toHaveProperty("newValue");
  });

  test("fail closed: while the audit log is down a command is refused, not executed, and the refusal is audited and reported", async () => {
    let down = true;
    const { plc, writeTag, runner, entries, failures, refusals } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          if (down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
          await store.audit.record(entry);
        },
      }),
    });
    // The entry of an allowed command is stored before it runs, so even the first one is refused.
    expect((await rejection(writeTag(engineer, "valve.tma", true))).code).toBe("KILN_AUDIT_UNAVAILABLE");
    expect((await rejection(writeTag(operator, "valve.tma", false))).code).toBe("KILN_FORBIDDEN");
    const refused = await rejection(writeTag(engineer, "heater.setpoint", 5));
    expect(refused.code).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(refused.retryable).toBe(true);
    expect(plc.writes).toHaveLength(0);
    expect(refusals).toEqual([
      expect.objectContaining({ id: "entry-1", action: "tag.write", principal: "enzo" }),
      expect.objectContaining({ id: "entry-3", action: "tag.write", principal: "enzo" }),
    ]);
    expect(runner.backlog).toBe(3);
    // The refusal is an entry of its own, naming the intent (whose insert may yet commit late).
    expect(failures.map((event) => [event.id, event.outcome, event.backlog, event.durable])).toEqual([
      ["entry-1:refusal", "denied", 1, false],
      ["entry-2", "denied", 2, false],
      // Never offered (the backlog was not empty): its refusal is a plain entry under its own id.
      ["entry-3", "denied", 3, false],
    ]);
    expect(await entries()).toEqual([]);

    down = false;
    // The background retry (flush here) probes the store; commands never do (review 15j).
    expect(await runner.flush()).toBe(true);
    await writeTag(engineer, "heater.setpoint", 10);
    expect(runner.backlog).toBe(0);
    expect(
      (await entries()).map((entry) => [entry.id, entry.outcome, entry.reason?.split(":")[0], entry.refersTo]),
    ).toEqual([
      ["entry-1:refusal", "denied", "KILN_AUDIT_UNAVAILABLE", "entry-1"],
      ["entry-2", "denied", "KILN_FORBIDDEN", undefined],
      ["entry-3", "denied", "KILN_AUDIT_UNAVAILABLE", undefined],
      ["entry-4", "allowed", undefined, undefined],
    ]);
  });

  test("a safety action listed in runWithoutDurableAudit runs while the audit log is down; its entry is kept and reported", async () => {
    const { plc, writeTag, runner, failures } = await setup({
      audit: () => ({
        query: async () => [],
        record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })),
      }),
      runWithoutDurableAudit: ["tag.write"],
    });
    for (const value of [1, 2, 3]) await writeTag(engineer, "heater.setpoint", value);
    expect(plc.writes.map((write) => write.value)).toEqual([1, 2, 3]);
    await runner.flush();
    expect(runner.backlog).toBe(3);
    expect(failures.map((event) => event.durable)).toEqual([false, false, false]);
  });

  test("a safety action acts at once while the audit store hangs on an earlier entry; its entry follows once the store answers", async () => {
    let release: (() => void) | undefined;
    const { runner, writeTag, entries } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          if (release === undefined) await new Promise<void>((resolve) => (release = resolve));
          await store.audit.record(entry);
        },
      }),
    });
    const write = writeTag(engineer, "heater.setpoint", 1);
    let aborted = false;
    const abort = runner.run({
      principal: operator,
      permission: "recipe.abort",
      target: "process-1",
      execute: () => {
        aborted = true;
        return "aborted";
      },
    });
    for (let tick = 0; tick < 5; tick++) await Promise.resolve();
    expect(aborted).toBe(true);
    expect(await abort).toBe("aborted");
    release!();
    await write;
    expect(await runner.flush()).toBe(true);
    expect((await entries()).map((entry) => [entry.action, entry.outcome])).toEqual([
      ["tag.write", "allowed"],
      ["recipe.abort", "allowed"],
    ]);
  });

  test("a pause acts at once too (default runWithoutDurableAudit), a guarded command still waits", async () => {
    const { runner, store } = await setup({
      audit: () => ({ query: async () => [], record: () => new Promise<void>(() => undefined) }),
    });
    void store;
    const ran: string[] = [];
    void runner.run({
      principal: engineer,
      permission: "machine.mode",
      target: "ald-1",
      execute: () => ran.push("mode"),
    });
    void runner.run({ principal: operator, permission: "recipe.pause", target: "p", execute: () => ran.push("pause") });
    for (let tick = 0; tick < 5; tick++) await Promise.resolve();
    expect(ran).toEqual(["pause"]);
  });

  test("the backlog is bounded: with drop-oldest the oldest entries are dropped at the limit and the drop is reported", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    const down = (): AuditLog => ({
      query: async () => [],
      record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })),
    });
    const { plc, writeTag, runner, drops } = await setup({
      audit: down,
      backlog: { path, maxEntries: 2, whenFull: "drop-oldest" },
    });
    for (const value of [1, 2, 3]) await writeTag(engineer, "heater.setpoint", value);
    expect(plc.writes).toHaveLength(3);
    expect(runner.backlog).toBe(2);
    expect(runner.dropped).toBe(1);
    expect(drops).toEqual([expect.objectContaining({ count: 1 })]);
    expect(await runner.flush()).toBe(false);
    await runner.close();
    // Issue 15, fifth review: the dropped entry must not come back from the journal at the next
    // start (a release is durable only once the journal empties): what was reported is what happened.
    const next = await setup({ backlog: { path, maxEntries: 2, whenFull: "drop-oldest" } });
    expect(await next.runner.flush()).toBe(true);
    // ...and the trail itself says that one was dropped (issue 15, adversarial pass).
    expect((await next.entries()).map((entry) => [entry.action, entry.newValue])).toEqual([
      ["tag.write", 2],
      ["tag.write", 3],
      ["audit.drop", expect.objectContaining({ count: 1, firstId: "entry-1" })],
    ]);
    expect(next.drops).toEqual([]);
    await next.runner.close();
  });

  test("a store that fails now and then drains the backlog on the first retry delays, not the longest (review 15g, M4)", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    const state = { down: true, calls: 0 };
    const { plc, writeTag, runner, clock } = await setup({
      // Down, then every 4th call fails (retryable): the store is alive, only flaky.
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          state.calls++;
          if (state.down || state.calls % 4 === 0)
            throw new KilnError("KILN_STORE_ERROR", "audit store flaky", { retryable: true });
          await store.audit.record(entry);
        },
      }),
      backlog: { path, maxEntries: 100 },
    });
    for (let value = 0; value < 40; value++) await writeTag(engineer, "heater.setpoint", value);
    expect(plc.writes).toHaveLength(40);
    // A long outage grows the backoff (1, 2, 4, 8, 16 s...).
    for (let second = 0; second < 60; second++) await clock.advance(1_000);
    expect(runner.backlog).toBe(40);
    state.down = false;
    // The first retry may still be up to 30 s away (the outage's backoff); then about 13 failures,
    // each retried after at most 1 s: under 50 s. Before, each retry waited longer (up to 30 s) and
    // 90 s drained about a dozen. Each simulated second also gives the journal's real file I/O time.
    for (let second = 0; second < 90 && runner.backlog > 0; second++) {
      await clock.advance(1_000);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(runner.backlog).toBe(0);
    await runner.close();
  });

  describe("the audit journal's room (issue 15, ADR 0034)", () => {
    /** An audit log that fails while `state.down`, and takes `state.takes` entries first when set. */
    const flaky =
      (state: { down: boolean; takes?: number }) =>
      (store: MemoryStore): AuditLog => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          if (state.takes !== undefined && state.takes > 0) state.takes--;
          else if (state.down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
          await store.audit.record(entry);
        },
      });
    /** Bytes one journaled entry of these commands takes (they differ only in single-digit values). */
    async function entryBytes(): Promise<number> {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const probe = await setup({ audit: flaky({ down: true }), backlog: { path } });
      await probe.writeTag(engineer, "heater.setpoint", 1);
      await probe.writeTag(engineer, "heater.setpoint", 2);
      const bytes = (await stat(path)).size / 2;
      await probe.runner.close();
      return bytes;
    }

    test("entries already stored stop taking journal room: a command runs while the file still holds them", async () => {
      const recordBytes = await entryBytes();
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const state: { down: boolean; takes?: number } = { down: true };
      const { plc, writeTag, runner, entries, drops } = await setup({
        audit: flaky(state),
        backlog: { path, maxEntries: 10, maxBytes: Math.floor(5.5 * recordBytes) },
      });
      for (const value of [1, 2, 3, 4, 5]) await writeTag(engineer, "heater.setpoint", value);
      // The store comes back for three entries, then fails again: two are left, five in the file.
      state.takes = 3;
      expect(await runner.flush()).toBe(false);
      expect(runner.backlog).toBe(2);
      // Before: the journal counted the three stored entries, was "full", and the command was refused.
      await writeTag(engineer, "heater.setpoint", 6);
      expect(plc.writes.map((write) => write.value)).toEqual([1, 2, 3, 4, 5, 6]);
      state.down = false;
      expect(await runner.flush()).toBe(true);
      expect((await entries()).map((entry) => entry.newValue)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(runner.dropped).toBe(0);
      expect(drops).toEqual([]);
      await runner.close();
    });

    test("drop-oldest: a command refused because the journal is full evicts nothing, and every ran command's entry is stored", async () => {
      const recordBytes = await entryBytes();
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const backlog = {
        path,
        maxEntries: 3,
        maxBytes: Math.floor(3.5 * recordBytes),
        whenFull: "drop-oldest",
      } as const;
      const { plc, writeTag, runner, drops, refusals } = await setup({ audit: flaky({ down: true }), backlog });
      for (const value of [1, 2, 3]) await writeTag(engineer, "heater.setpoint", value);
      for (const value of [4, 5]) {
        expect((await rejection(writeTag(engineer, "heater.setpoint", value))).code).toBe("KILN_AUDIT_UNAVAILABLE");
      }
      expect(refusals).toHaveLength(2);
      expect(plc.writes.map((write) => write.value)).toEqual([1, 2, 3]);
      // Before: each refused command first evicted the oldest journaled entry of a command that
      // ran (reported as dropped, yet read back at the next start: the drop over-reported).
      expect(runner.dropped).toBe(0);
      expect(drops).toEqual([]);
      await runner.close();
      const next = await setup({ backlog: { ...backlog, path } });
      expect(await next.runner.flush()).toBe(true);
      const stored = await next.entries();
      expect(stored.filter((entry) => entry.outcome === "allowed").map((entry) => entry.newValue)).toEqual([1, 2, 3]);
      await next.runner.close();
    });

    test("drop-oldest: a dropped entry stays dropped after a crash (the drop is durable, no restart needed to prove it)", async () => {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const backlog = { path, maxEntries: 2, whenFull: "drop-oldest" } as const;
      const { writeTag, runner } = await setup({ audit: flaky({ down: true }), backlog });
      for (const value of [1, 2, 3, 4]) await writeTag(engineer, "heater.setpoint", value);
      expect(runner.dropped).toBe(2);
      // What a process killed now leaves: the file as it is, without close().
      const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      await writeFile(crashed, await readFile(path));
      const next = await setup({ backlog: { ...backlog, path: crashed } });
      expect(await next.runner.flush()).toBe(true);
      expect((await next.entries()).map((entry) => entry.newValue)).toEqual([3, 4]);
      await next.runner.close();
      await runner.close();
    });

    // Issue 15, adversarial pass: the trail itself must say that entries were dropped.
    const dropSummaries = (stored: AuditEntry[]) =>
      stored.filter((entry) => entry.action === "audit.drop").map((entry) => entry.newValue);

    test("drop-oldest: the drops are recorded as one durable audit.drop entry (count, first and last id and time) once there is room", async () => {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const state = { down: true };
      const { writeTag, runner, entries, clock } = await setup({
        audit: flaky(state),
        backlog: { path, maxEntries: 2, whenFull: "drop-oldest" },
      });
      for (const value of [1, 2, 3, 4]) {
        await writeTag(engineer, "heater.setpoint", value);
        await clock.advance(1_000);
      }
      expect(runner.dropped).toBe(2);
      state.down = false;
      expect(await runner.flush()).toBe(true);
      const stored = await entries();
      expect(stored.filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue)).toEqual([3, 4]);
      expect(dropSummaries(stored)).toEqual([
        {
          count: 2,
          firstId: "entry-1",
          first: START,
          lastId: "entry-2",
          last: START + 1_000,
          reasons: ["the audit backlog was full (2 entries, drop-oldest)"],
        },
      ]);
      expect(stored.find((entry) => entry.action === "audit.drop")).toMatchObject({
        outcome: "failed",
        category: "audit",
      });
      await runner.close();
    });

    test("drop-oldest: after a crash (journal and reserve as a killed process left them) the next start records the audit.drop entry", async () => {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const backlog = { path, maxEntries: 2, whenFull: "drop-oldest" } as const;
      const { writeTag, runner } = await setup({ audit: flaky({ down: true }), backlog });
      for (const value of [1, 2, 3, 4, 5]) await writeTag(engineer, "heater.setpoint", value);
      expect(runner.dropped).toBe(3);
      const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      await writeFile(crashed, await readFile(path));
      await writeFile(`${crashed}.reserve`, await readFile(`${path}.reserve`));
      const next = await setup({ backlog: { ...backlog, path: crashed }, idPrefix: "next" });
      expect(await next.runner.flush()).toBe(true);
      const stored = await next.entries();
      expect(stored.filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue)).toEqual([4, 5]);
      expect(dropSummaries(stored)).toMatchObject([{ count: 3, firstId: "entry-1", lastId: "entry-3" }]);
      // Recorded once: a further restart finds no count left.
      await next.runner.close();
      const third = await setup({ backlog: { ...backlog, path: crashed }, idPrefix: "third" });
      expect(await third.runner.flush()).toBe(true);
      expect(dropSummaries(await third.entries())).toEqual([]);
      await third.runner.close();
      await runner.close();
    });

    // fix15e (adv15d F5): on a full disk the drop's release mark cannot be written; the count was
    // durable, so the next start stored the dropped entries and counted them too.
    test("drop-oldest: the releases of dropped entries could not be made durable before the crash: the next start neither stores them nor counts them twice", async () => {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      const backlog = { path, maxEntries: 2, whenFull: "drop-oldest" } as const;
      const { writeTag, runner } = await setup({ audit: flaky({ down: true }), backlog });
      onTestFinished(() => runner.close());
      const release = RecordJournal.prototype.release;
      const marks = vi.spyOn(RecordJournal.prototype, "release").mockImplementation(async function (
        this: RecordJournal,
        options = {},
      ) {
        await release.call(this, {});
        if (options.durable === true) throw new KilnError("KILN_JOURNAL_FAILED", "mark failed (ENOSPC)");
      });
      for (const value of [1, 2, 3, 4, 5]) await writeTag(engineer, "heater.setpoint", value);
      marks.mockRestore();
      expect(runner.dropped).toBe(3);
      const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      await writeFile(crashed, await readFile(path));
      await writeFile(`${crashed}.reserve`, await readFile(`${path}.reserve`));
      const next = await setup({ backlog: { ...backlog, path: crashed }, idPrefix: "next" });
      expect(await next.runner.flush()).toBe(true);
      const stored = await next.entries();
      expect(stored.filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue)).toEqual([4, 5]);
      expect(dropSummaries(stored)).toMatchObject([{ count: 3, firstId: "entry-1", lastId: "entry-3" }]);
      await next.runner.close();
    });
  });

  // Issue 15, fifth review: a principal with no rights filled the backlog an admin's command needed.
  test.each(["refuse-commands", "drop-oldest"] as const)(
    "%s: a flood of denied attempts takes at most half the backlog; an authorized command still runs, journaled, and no allowed entry is evicted",
    async (whenFull) => {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      let down = true;
      const viewer: Principal = { id: "vic", roles: ["viewer"] };
      const { plc, writeTag, runner, entries, drops } = await setup({
        audit: (store) => ({
          query: store.audit.query,
          record: async (entry: AuditEntry) => {
            if (down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
            await store.audit.record(entry);
          },
        }),
        backlog: { path, maxEntries: 10, whenFull },
      });
      // Closed even when an assertion fails: an open journal and reserve would be closed by the
      // garbage collector in a later file (DEP0137), and their lock held until then.
      onTestFinished(() => runner.close());
      await writeTag(engineer, "heater.setpoint", 1);
      for (let attempt = 0; attempt < 200; attempt++)
        await rejection(writeTag(viewer, "heater.setpoint", 1000 + attempt));
      for (let attempt = 0; attempt < 3; attempt++) await rejection(writeTag(operator, "valve.tma", true));
      await writeTag(engineer, "heater.setpoint", 2);
      expect(plc.writes.map((write) => write.value)).toEqual([1, 2]);
      expect(runner.backlog).toBe(7);
      expect(drops).toEqual([]);
      down = false;
      expect(await runner.flush()).toBe(true);
      const stored = await entries();
      expect(stored.filter((entry) => entry.outcome === "allowed").map((entry) => entry.newValue)).toEqual([1, 2]);
      const summaries = stored.filter((entry) => entry.action === "audit.overflow");
      // One summary per principal; every attempt is either an entry or counted.
      expect(summaries.map((entry) => [entry.principal, (entry.newValue as { count: number }).count])).toEqual([
        ["vic", 195],
        ["olga", 3],
      ]);
      expect(stored.filter((entry) => entry.action === "tag.write" && entry.outcome === "denied")).toHaveLength(5);
    },
  );

  test("refuse-commands never evicts: denials at the limit are counted into one audit.overflow entry, the journaled writes that ran are all stored", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    let down = true;
    const { plc, writeTag, runner, entries, drops } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          if (down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
          await store.audit.record(entry);
        },
      }),
      backlog: { path, maxEntries: 3 },
    });
    onTestFinished(() => runner.close());
    for (const value of [1, 2, 3]) await writeTag(engineer, "heater.setpoint", value);
    expect(plc.writes).toHaveLength(3);
    for (let attempt = 0; attempt < 10; attempt++) {
      expect((await rejection(writeTag(operator, "valve.tma", true))).code).toBe("KILN_FORBIDDEN");
    }
    // Full with entries of commands that ran: every denial is counted, none evicts.
    // The backlog is full: the next write is refused. Its intent was never offered to the store
    // (the backlog was not empty), so its refusal is an ordinary denial: counted too (ADR 0013 addendum).
    expect((await rejection(writeTag(engineer, "heater.setpoint", 4))).code).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(plc.writes).toHaveLength(3);
    expect(runner.backlog).toBe(3);
    expect(runner.dropped).toBe(0);
    expect(drops).toEqual([]);

    down = false;
    expect(await runner.flush()).toBe(true);
    const stored = await entries();
    expect(stored.map((entry) => [entry.action, entry.outcome, entry.newValue])).toEqual([
      ["tag.write", "allowed", 1],
      ["tag.write", "allowed", 2],
      ["tag.write", "allowed", 3],
      ["audit.overflow", "denied", expect.objectContaining({ count: 10, principals: ["olga"] })],
      ["audit.overflow", "denied", expect.objectContaining({ count: 1, principals: ["enzo"] })],
    ]);
    expect(stored.some((entry) => entry.refersTo !== undefined)).toBe(false);
    expect(stored[3]!.reason).toContain("10 denied or failed attempt(s) by olga");
  });

  test("refuse-commands at the limit: an action that runs without a durable entry runs, and its entry is coalesced (the bound holds), not evicting one", async () => {
    const { writeTag, runner, drops } = await setup({
      audit: () => ({
        query: async () => [],
        record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })),
      }),
      backlog: { maxEntries: 2 },
      runWithoutDurableAudit: ["tag.write"],
    });
    for (const value of [1, 2, 3]) await writeTag(engineer, "heater.setpoint", value);
    await runner.flush();
    // Kept beyond the limit before adv15p M3; now held as a count of its kind until there is room.
    expect(runner.backlog).toBe(2);
    expect(runner.status().coalesced).toBe(1);
    expect(runner.dropped).toBe(0);
    expect(drops).toEqual([]);
    await runner.close();
    // Memory only: reported at close as dropped, never silently.
    expect(drops).toEqual([expect.objectContaining({ count: 3 })]);
  });

  test("a 150,000-character target is refused with KILN_VALIDATION before anything runs; its denied entry holds a bounded prefix and the length", async () => {
    const { plc, writeTag, entries } = await setup();
    const huge = "heater." + "x".repeat(150_000);
    const error = await rejection(writeTag(engineer, huge, 1));
    expect(error.code).toBe("KILN_VALIDATION");
    expect(error.details).toMatchObject({ issues: [expect.objectContaining({ path: "target" })] });
    expect(error.message.length).toBeLessThan(400);
    expect(plc.writes).toEqual([]);
    const [entry] = await entries();
    expect(entry).toMatchObject({ outcome: "denied", principal: "enzo" });
    expect(entry!.target.length).toBeLessThan(300);
    expect(entry!.target).toContain("…(truncated, 150007 chars)");
    expect(entry!.reason!.length).toBeLessThan(2100);
  });

  test("a principal with a 100,000-character id or 1,000 roles is refused with KILN_VALIDATION and recorded bounded", async () => {
    const { plc, writeTag, entries } = await setup();
    const longId = { id: "v".repeat(100_000), roles: ["engineer"] };
    const manyRoles = { id: "mia", roles: Array.from({ length: 1000 }, (_, index) => `role-${index}`) };
    const longRole = { id: "lou", roles: ["r".repeat(10_000)] };
    for (const principal of [longId, manyRoles, longRole]) {
      expect((await rejection(writeTag(principal, "heater.setpoint", 1))).code).toBe("KILN_VALIDATION");
    }
    expect(plc.writes).toEqual([]);
    const stored = await entries();
    expect(stored.map((entry) => entry.outcome)).toEqual(["denied", "denied", "denied"]);
    expect(stored[0]!.principal).toContain("…(truncated, 100000 chars)");
    expect(stored[0]!.principal.length).toBeLessThan(300);
    expect(stored[1]!.roles).toHaveLength(65);
    expect(stored[1]!.roles.at(-1)).toBe("…(1000 roles)");
    expect(stored[2]!.roles[0]!.length).toBeLessThan(200);
  });

  test("a value of 50 strings of 10,000 characters is kept to 100,000 characters in the entry", async () => {
    const { runner, entries } = await setup();
    await runner.run({
      principal: engineer,
      permission: "tag.write",
      target: "heater.setpoint",
      machineState: "idle",
      newValue: Array.from({ length: 50 }, () => "z".repeat(10_000)),
      execute: () => undefined,
    });
    const [entry] = await entries();
    // 100,000 characters kept, plus each cut string's mark (its length and hash), at most 10,000.
    expect(JSON.stringify(entry!.newValue).length).toBeLessThan(111_000);
    const last = (entry!.newValue as string[]).at(-1)!;
    expect(last).toBe(`…[cut: 10000 chars, sha256 ${createHash("sha256").update("z".repeat(10_000)).digest("hex")}]`);
  });

  test("long strings cut in the trail carry their length and SHA-256: values differing only past the cut stay distinct (issue 15)", async () => {
    const { runner, entries } = await setup();
    const base = "a".repeat(12_000);
    for (const newValue of [`${base}1`, `${base}2`, `${"a".repeat(100)}…[cut]`]) {
      await runner.run({
        principal: engineer,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: "idle",
        newValue,
        execute: () => undefined,
      });
    }
    const values = (await entries()).map((entry) => entry.newValue as string);
    expect(values[0]).toBe(
      `${"a".repeat(10_000)}…[cut: 12001 chars, sha256 ${createHash("sha256").update(`${base}1`).digest("hex")}]`,
    );
    expect(values[1]).not.toBe(values[0]);
    // A literal marker-like text is kept as it is: a cut is told by its length and hash.
    expect(values[2]).toBe(`${"a".repeat(100)}…[cut]`);
  });

  test("two long keys that share their first 256 characters are not merged into one (issue 15)", async () => {
    const { runner, entries } = await setup();
    const prefix = "k".repeat(300);
    await runner.run({
      principal: engineer,
      permission: "tag.write",
      target: "heater.setpoint",
      machineState: "idle",
      newValue: { [`${prefix}A`]: 1, [`${prefix}B`]: 2 },
      execute: () => undefined,
    });
    const [entry] = await entries();
    expect(Object.values(entry!.newValue as Record<string, number>)).toEqual([1, 2]);
  });

  test("malformed principals and an empty target are recorded denied in one normalized form every store accepts", async () => {
    const { writeTag, entries } = await setup();
    const sparse: unknown[] = ["operator"];
    sparse[2] = "admin";
    const principals = [
      { id: "", roles: ["admin"] },
      { id: "nina", roles: [1] },
      { id: "sid", roles: sparse },
    ];
    for (const principal of principals) {
      expect((await rejection(writeTag(principal as Principal, "heater.setpoint", 1))).code).toBe("KILN_VALIDATION");
    }
    expect((await rejection(writeTag(engineer, "", 1))).code).toBe("KILN_VALIDATION");
    expect((await entries()).map((entry) => [entry.principal, entry.roles, entry.target, entry.outcome])).toEqual([
      ["(invalid principal)", ["admin"], "heater.setpoint", "denied"],
      ["nina", ["(invalid role)"], "heater.setpoint", "denied"],
      ["sid", ["operator", "(invalid role)", "admin"], "heater.setpoint", "denied"],
      ["enzo", ["engineer"], "(invalid target)", "denied"],
    ]);
  });

  test("a caller principal with a reserved id ((system), (audit)) is refused KILN_VALIDATION on principal.id, recorded under the placeholder, and never reaches the device (adversarial review 15x, F2)", async () => {
    const { writeTag, entries, plc } = await setup();
    for (const id of ["(system)", "(audit)", "(invalid principal)"]) {
      const error = await rejection(writeTag({ id, roles: ["engineer"] }, "heater.setpoint", 1));
      expect(error.code).toBe("KILN_VALIDATION");
      expect(error.message).toMatch(/^Invalid principal: id: must not be in parentheses: .*reserved/);
      expect(error.details).toMatchObject({ issues: [{ path: "id", message: expect.stringContaining("reserved") }] });
    }
    expect(plc.writes).toEqual([]);
    expect((await entries()).map((entry) => [entry.principal, entry.roles, entry.outcome])).toEqual([
      ["(invalid principal)", ["engineer"], "denied"],
      ["(invalid principal)", ["engineer"], "denied"],
      ["(invalid principal)", ["engineer"], "denied"],
    ]);
    // An id that only contains parentheses is a host's name like any other.
    await writeTag({ id: "op (night shift)", roles: ["engineer"] }, "heater.setpoint", 2);
    expect(plc.writes.map((write) => write.value)).toEqual([2]);
  });

  test("ids that read as (system) or admin are refused KILN_VALIDATION on principal.id and never reach the device: invisible or space characters, parentheses of another width (adv15g MEDIUM-1)", async () => {
    const { writeTag, entries, plc } = await setup();
    // Accepted before: each wrote as an engineer under an id an audit view shows as (system) or admin.
    const lookalikes = [
      "(system)\uFE0F",
      "(system)\u00A0",
      "(system)\u3164",
      "\u3164(system)",
      "(system)\u{E0100}",
      "(system) ",
      " (system)",
      "\uFF08system\uFF09",
      "ad\u034Fmin",
      "admin\u2800",
      // siblings: superscript parentheses, the halfwidth Hangul filler, an ideographic space
      "\u207Dsystem\u207E",
      "admin\uFFA0",
      "adm\u3000in",
    ];
    for (const id of lookalikes) {
      const error = await rejection(writeTag({ id, roles: ["engineer"] }, "heater.setpoint", 1));
      expect(error.code, JSON.stringify(id)).toBe("KILN_VALIDATION");
      const paths = (error.details as { issues: { path: string }[] }).issues.map((issue) => issue.path);
      expect(paths.length, JSON.stringify(id)).toBeGreaterThan(0);
      expect(new Set(paths), JSON.stringify(id)).toEqual(new Set(["id"]));
    }
    expect(plc.writes).toEqual([]);
    const recorded = (await entries()).map((entry) => entry.principal);
    expect(recorded).toHaveLength(lookalikes.length);
    // Each recorded as the placeholder or with the odd character written out: none reads as (system) or admin.
    for (const principal of recorded)
      expect(principal === "(invalid principal)" || principal.includes("\\u{")).toBe(true);
    // Names of people in any script stay valid.
    for (const [index, id] of ["José", "Jose\u0301", "用户", "PLANT\\vera", "o'brien (night)"].entries())
      await writeTag({ id, roles: ["engineer"] }, "heater.setpoint", 10 + index);
    expect(plc.writes.map((write) => write.value)).toEqual([10, 11, 12, 13, 14]);
  });

  test("one entry larger than the journal's maxBytes is refused alone: the journal keeps taking the next commands", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    const { plc, runner, writeTag } = await setup({
      audit: () => ({
        query: async () => [],
        record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })),
      }),
      backlog: { path, maxBytes: 4096 },
    });
    await writeTag(engineer, "heater.setpoint", 1);
    const big = runner.run({
      principal: engineer,
      permission: "tag.write",
      target: "heater.setpoint",
      machineState: "idle",
      newValue: "y".repeat(8000),
      execute: () => plc.write(tags.get("heater.setpoint"), 2),
    });
    expect((await rejection(big)).code).toBe("KILN_AUDIT_UNAVAILABLE");
    await writeTag(engineer, "heater.setpoint", 3);
    expect(plc.writes.map((write) => write.value)).toEqual([1, 3]);
    await runner.close();
  });

  test("an entry the store refuses for good (text it cannot hold in the comment) is reported and skipped; the 40 commands behind it are all audited", async () => {
    const { store, writeTag, runner, entries, skips } = await setup({
      audit: (memory) => ({
        query: memory.audit.query,
        // What PostgreSQL answers for text it cannot hold: SQLSTATE 22021, not retryable.
        record: async (entry: AuditEntry) => {
          if (JSON.stringify(entry).includes("unholdable")) {
            throw new KilnError("KILN_STORE_ERROR", "invalid byte sequence for encoding UTF8: 0x00", {
              retryable: false,
            });
          }
          await memory.audit.record(entry);
        },
      }),
    });
    const viewer: Principal = { id: "vic", roles: ["viewer"] };
    expect((await rejection(writeTag(viewer, "heater.setpoint", 1, "note unholdable"))).code).toBe("KILN_FORBIDDEN");
    for (let index = 0; index < 40; index++) {
      const principal = index % 2 === 0 ? engineer : viewer;
      await writeTag(principal, "heater.setpoint", index).catch(() => undefined);
    }
    expect(skips).toEqual([
      expect.objectContaining({ id: "entry-1", outcome: "denied", reason: expect.stringMatching(/^KILN_STORE_ERROR/) }),
    ]);
    expect(runner.skipped).toBe(1);
    expect(runner.backlog).toBe(0);
    const recorded = await entries();
    expect(recorded).toHaveLength(40);
    expect(new Set(recorded.map((entry) => entry.id)).size).toBe(40);
    expect(recorded.filter((entry) => entry.outcome === "allowed")).toHaveLength(20);
    void store;
  });

  // Issue 15, fifth review: format characters (U+202E, U+200B, isolates) made a name read as another.
  test.each([
    ["right-to-left override", "heater\u202Esetpoint"],
    ["zero-width space", "heater.\u200Bsetpoint"],
    ["first strong isolate", "heater.setpoint\u2068"],
    ["NUL", "heater.setpoint\u0000"],
    ["line separator", "heater.setpoint\u2028"],
    ["paragraph separator", "heater.setpoint\u2029"],
    ["lone surrogate", "heater.setpoint\uD800"],
  ])(
    "a target with a %s is refused (KILN_VALIDATION, path target) before authorization; the entry shows the character escaped",
    async (_name, target) => {
      const { plc, writeTag, entries } = await setup();
      const error = await rejection(writeTag(engineer, target, 1));
      expect(error.code).toBe("KILN_VALIDATION");
      expect(error.message).toContain("target: must not contain control, format or line-separator characters");
      expect(plc.writes).toEqual([]);
      const [entry] = await entries();
      expect(entry?.outcome).toBe("denied");
      expect(entry?.target).toMatch(/\\u\{[0-9A-F]{4}\}/);
      expect(entry?.target).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u);
    },
  );

  test.each([
    ["id", { id: "ada\u202Enimda", roles: ["admin"] }],
    ["role", { id: "ada", roles: ["admin\u200B"] }],
    ["source", { id: "ada", roles: ["admin"], source: "hmi\u2066-2" }],
    // Issue 15, review 15d: a line separator in an id was allowed and stored raw (a forged audit line).
    ["id (line separator)", { id: "eng\u2028 admin tag.write valve allowed", roles: ["admin"] }],
    ["id (lone surrogate)", { id: "eng\uDC00", roles: ["admin"] }],
  ])(
    "a principal whose %s holds a format character is refused (KILN_VALIDATION), recorded escaped",
    async (_field, principal) => {
      const { plc, writeTag, entries } = await setup();
      expect((await rejection(writeTag(principal as Principal, "heater.setpoint", 1))).code).toBe("KILN_VALIDATION");
      expect(plc.writes).toEqual([]);
      const [entry] = await entries();
      expect(entry?.outcome).toBe("denied");
      expect([entry?.principal, ...(entry?.roles ?? []), entry?.source].join("")).not.toMatch(
        /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u,
      );
    },
  );

  test("a comment is free text, but in reason its control and format characters are written out (issue 15, review 15c)", async () => {
    const { writeTag, entries } = await setup();
    await writeTag(engineer, "heater.setpoint", 1, "lot \u202E42\nvic tag.write allowed\u2028ada");
    expect((await entries())[0]?.reason).toBe("lot \\u{202E}42\\u{000A}vic tag.write allowed\\u{2028}ada");
  });

  test("a literal escape typed by the caller is recorded apart from the real character (review 15j)", async () => {
    const { writeTag, entries } = await setup();
    // Typed: a backslash, then "u{000A}"; and a real newline. Each field goes through the one rule.
    await writeTag(engineer, "heater.setpoint", 1, "a\\u{000A}b");
    await writeTag(engineer, "heater.setpoint", 2, "a\nb");
    const [typed, real] = (await entries()).map((entry) => entry.reason);
    expect(typed).toBe("a\\u{005C}u{000A}b");
    expect(real).toBe("a\\u{000A}b");
    expect(typed).not.toBe(real);
  });

  test("a backslash is escaped in every text field: principal and target too (review 15j)", async () => {
    const { writeTag, entries } = await setup();
    await rejection(writeTag({ id: "eve\\u{000A}root", roles: ["engineer"] }, "heater\\u{000A}.setpoint", 1));
    const [entry] = await entries();
    expect(entry?.principal).toBe("eve\\u{005C}u{000A}root");
    expect(entry?.target).toBe("heater\\u{005C}u{000A}.setpoint");
  });

  test("a journaled backlog survives a restart and drains to the store in order", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    let down = true;
    const failing = (memory: MemoryStore): AuditLog => ({
      query: memory.audit.query,
      record: async (entry: AuditEntry) => {
        if (down) throw new KilnError("KILN_TIMEOUT", "audit store slow", { retryable: true });
        await memory.audit.record(entry);
      },
    });
    const first = await setup({ audit: failing, backlog: { path } });
    // With a journal the outage does not refuse commands: every entry is on disk first.
    for (const value of [1, 2, 3]) await first.writeTag(engineer, "heater.setpoint", value);
    expect(first.plc.writes).toHaveLength(3);
    expect(first.failures.map((event) => event.durable)).toEqual([true, true, true]);
    await first.runner.close();

    down = false;
    const second = await setup({ audit: failing, backlog: { path } });
    expect(await second.runner.flush()).toBe(true);
    expect((await second.entries()).map((entry) => [entry.id, entry.newValue])).toEqual([
      ["entry-1", 1],
      ["entry-2", 2],
      ["entry-3", 3],
    ]);
    // Drained: a third run finds nothing left.
    await second.runner.close();
    const third = await setup({ backlog: { path } });
    expect(await third.runner.flush()).toBe(true);
    expect(await third.entries()).toEqual([]);
    await third.runner.close();
  });

  test("two runners on one audit journal: the second cannot open it (one writer per journal) and fails closed; the first's entries are intact", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    const down = (memory: MemoryStore): AuditLog => ({
      query: memory.audit.query,
      record: async () => {
        throw new KilnError("KILN_TIMEOUT", "audit store slow", { retryable: true });
      },
    });
    const first = await setup({ audit: down, backlog: { path } });
    await first.writeTag(engineer, "heater.setpoint", 1);
    const second = await setup({ audit: down, backlog: { path } });
    const journalFails: KilnEvents["audit-journal-fail"][] = [];
    second.bus.on("audit-journal-fail", (event) => void journalFails.push(event));
    const refused = await rejection(second.writeTag(engineer, "heater.setpoint", 2));
    expect(refused.code).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(second.plc.writes).toHaveLength(0);
    // Not silent (review 15c, MEDIUM 2): the refusal, the status and an event name the journal and why.
    expect(refused.details).toMatchObject({
      journalPath: path,
      journalOperation: "open",
      errno: "KILN_JOURNAL_LOCKED",
    });
    expect(second.runner.status().journalProblems).toEqual([
      // Review 15i: and what that leaves only in memory (the refusal's own entry).
      expect.stringMatching(
        /^audit journal .*audit\.journal: open failed: .*KILN_JOURNAL_LOCKED.*retried\); 1 audit entry held only in memory \(lost if the process dies\)$/,
      ),
    ]);
    // Issue 15: the message names the audit journal's own option, not the sample spool's.
    expect(second.runner.status().journalProblems[0]).toContain("its own audit.backlog.path");
    expect(second.runner.status().journalProblems[0]).not.toContain("spoolPath");
    expect(journalFails).toEqual([expect.objectContaining({ operation: "open", errno: "KILN_JOURNAL_LOCKED", path })]);
    await first.writeTag(engineer, "heater.setpoint", 3);
    expect(first.failures.map((event) => event.durable)).toEqual([true, true]);
    await first.runner.close();
    // The open is retried on the backoff, no command needed: once the lock is free it opens and
    // what the journal holds is loaded (review 15c, MEDIUM 2).
    for (let step = 0; step < 20 && second.runner.status().journalProblems.length > 0; step++) {
      await second.clock.advance(30_000);
      // The retry's open does real file I/O (the lock's fsync): let it finish.
      await new Promise<void>((resolve) => setTimeout(resolve, 50));
    }
    expect(second.runner.status().journalProblems).toEqual([]);
    expect(second.runner.backlog).toBe(3);
    expect(journalFails).toHaveLength(1);
    await second.runner.close();
    const third = await setup({ backlog: { path } });
    expect(await third.runner.flush()).toBe(true);
    // The second's refusal was journaled once the journal opened (review 15c): not lost.
    expect((await third.entries()).map((entry) => entry.newValue)).toEqual([1, 3, 2]);
    await third.runner.close();
  });

  test.each([
    [
      "truncated (a torn tail)",
      (bytes: Buffer) => bytes.subarray(0, bytes.length - 5),
      ["entry-1", "entry-2"],
      /torn tail of \d+ bytes/,
    ],
    [
      "corrupted in the middle",
      (bytes: Buffer) => {
        const copy = Buffer.from(bytes);
        const second = copy.indexOf("entry-2");
        copy[second] = copy[second]! ^ 0xff;
        return copy;
      },
      ["entry-1", "entry-3"],
      /1 corrupt stretch/,
    ],
  ])(
    "a backlog journal %s between runs: the lost entries are reported by audit-entry-drop, the rest drain",
    async (_name, damage, kept, reason) => {
      const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
      let down = true;
      const failing = (memory: MemoryStore): AuditLog => ({
        query: memory.audit.query,
        record: async (entry: AuditEntry) => {
          if (down) throw new KilnError("KILN_TIMEOUT", "audit store slow", { retryable: true });
          await memory.audit.record(entry);
        },
      });
      const first = await setup({ audit: failing, backlog: { path } });
      for (const value of [1, 2, 3]) await first.writeTag(engineer, "heater.setpoint", value);
      await first.runner.close();
      await writeFile(path, damage(await readFile(path)));

      down = false;
      const second = await setup({ audit: failing, backlog: { path } });
      expect(await second.runner.flush()).toBe(true);
      expect((await second.entries()).map((entry) => entry.id)).toEqual(kept);
      expect(second.drops).toHaveLength(1);
      expect(second.drops[0]).toMatchObject({ count: 1, reason: expect.stringMatching(reason) });
      expect(second.runner.dropped).toBe(1);
      await second.runner.close();
    },
  );

  test("a release mark torn by a crash is not reported as a lost entry (adversarial review 15)", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    const { journal } = await RecordJournal.open(path);
    for (const value of [1, 2, 3]) {
      const entry: AuditEntry = {
        id: `old-${value}`,
        principal: "enzo",
        roles: ["engineer"],
        category: "tag",
        action: "tag.write",
        target: "heater.setpoint",
        outcome: "allowed",
        at: START + value,
        newValue: value,
      };
      await journal.append(Buffer.from(JSON.stringify(entry), "utf8"));
    }
    const before = (await stat(path)).size;
    await journal.release({ durable: true });
    // A power loss while the mark was written: only part of it reached the disk.
    const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-")), "audit.journal");
    await writeFile(crashed, (await readFile(path)).subarray(0, before + 13));
    await journal.close();
    const next = await setup({ backlog: { path: crashed } });
    expect(await next.runner.flush()).toBe(true);
    // The released entry comes back (stored once per id), nothing is reported lost.
    expect((await next.entries()).map((entry) => entry.id)).toEqual(["old-1", "old-2", "old-3"]);
    expect(next.drops).toEqual([]);
    expect(next.runner.dropped).toBe(0);
    await next.runner.close();
  });

  test("caller-controlled values are stored as a safe snapshot: cyclic, 20,000-deep, throwing getter or toJSON", async () => {
    const { runner, entries, plc, skips } = await setup();
    const cyclic: Record<string, unknown> = { name: "loop" };
    cyclic.self = cyclic;
    let deep: unknown = 1;
    for (let level = 0; level < 20_000; level++) deep = [deep];
    const getter = Object.defineProperty({}, "boom", {
      enumerable: true,
      get() {
        throw new Error("getter failed");
      },
    });
    const toJson = {
      toJSON() {
        throw new Error("toJSON failed");
      },
    };
    for (const value of [cyclic, deep, getter, toJson]) {
      await runner.run({
        principal: engineer,
        permission: "recipe.start",
        target: "r",
        newValue: value,
        execute: () => plc.write(tags.get("heater.setpoint"), 1),
      });
    }
    const stored = await entries();
    expect(skips).toEqual([]);
    expect(stored.map((entry) => entry.outcome)).toEqual(["allowed", "allowed", "allowed", "allowed"]);
    expect(stored[0]!.newValue).toEqual({ name: "loop", self: "[circular]" });
    expect(JSON.stringify(stored[1]!.newValue)).toContain("[too deep]");
    expect(stored[2]!.newValue).toEqual({ boom: "[unreadable: getter failed]" });
    expect(stored[3]!.newValue).toEqual({ toJSON: "[function]" });
    expect(plc.writes).toHaveLength(4);
  });

  test.each([
    ["a number", 42],
    ["an object", { text: "hi" }],
    ["a 20,000-deep array", Array.from({ length: 1 }).reduce<unknown>((inner) => inner, [])],
    ["a string over 1000 characters", "x".repeat(1001)],
  ])(
    "a comment that is %s refuses the command with KILN_VALIDATION, audited denied without it",
    async (_name, comment) => {
      const { writeTag, entries, plc } = await setup();
      let deep: unknown = comment;
      if (Array.isArray(comment)) for (let level = 0; level < 20_000; level++) deep = [deep];
      const error = await rejection(writeTag(engineer, "heater.setpoint", 5, deep as string));
      expect(error.code).toBe("KILN_VALIDATION");
      expect(error.message).toContain("comment");
      const [entry, ...rest] = await entries();
      expect(rest).toEqual([]);
      expect(entry).toMatchObject({ outcome: "denied", reason: expect.stringContaining("KILN_VALIDATION") });
      expect(entry!.reason).not.toContain("xxxx");
      expect(plc.writes).toEqual([]);
    },
  );

  test("exactly once: a store that stores the entry but answers with a timeout gets it again under the same id, and keeps one", async () => {
    let flaky = 0;
    const { writeTag, entries, runner } = await setup({
      audit: (memory) => ({
        query: memory.audit.query,
        record: async (entry: AuditEntry) => {
          await memory.audit.record(entry);
          if (flaky++ % 2 === 0) throw new KilnError("KILN_TIMEOUT", "answer lost", { retryable: true });
        },
      }),
      runWithoutDurableAudit: ["tag.write"],
    });
    await Promise.all([1, 2, 3, 4, 5].map((value) => writeTag(engineer, "heater.setpoint", value)));
    await runner.flush();
    const recorded = await entries();
    expect(recorded.map((entry) => entry.id).sort()).toEqual(["entry-1", "entry-2", "entry-3", "entry-4", "entry-5"]);
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

describe("the backlog is retried in the background (issue 15, second review)", () => {
  function failingAudit(state: { down: boolean }) {
    return (memory: MemoryStore): AuditLog => ({
      query: memory.audit.query,
      record: async (entry: AuditEntry) => {
        if (state.down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
        await memory.audit.record(entry);
      },
    });
  }

  test("an abort's entry kept during an outage is stored once the store is back, with no further command", async () => {
    const state = { down: true };
    const { runner, clock, entries } = await setup({ audit: failingAudit(state) });
    await runner.run({ principal: operator, permission: "recipe.abort", target: "p-1", execute: () => "aborted" });
    await clock.advance(10);
    expect(runner.backlog).toBe(1);
    state.down = false;
    // The default schedule waits at most 1 s (minus jitter) before its first retry.
    await clock.advance(1_000);
    expect(runner.backlog).toBe(0);
    expect((await entries()).map((entry) => [entry.action, entry.outcome])).toEqual([["recipe.abort", "allowed"]]);
  });

  test("a denial kept while the store stays down is retried with backoff, then stored; close stops the retries", async () => {
    const state = { down: true };
    const calls: number[] = [];
    const { runner, clock, entries } = await setup({
      audit: (memory) => {
        const audit = failingAudit(state)(memory);
        return { query: audit.query, record: (entry) => (calls.push(clock.now()), audit.record(entry)) };
      },
    });
    await rejection(
      runner.run({ principal: operator, permission: "tag.write", target: "valve.tma", execute: () => 1 }),
    );
    await clock.advance(60_000);
    const retries = calls.length;
    expect(retries).toBeGreaterThan(2);
    expect(retries).toBeLessThan(20);
    state.down = false;
    await clock.advance(30_000);
    expect((await entries()).map((entry) => entry.outcome)).toEqual(["denied"]);
    state.down = true;
    await rejection(
      runner.run({ principal: operator, permission: "tag.write", target: "valve.tma", execute: () => 1 }),
    );
    await runner.close();
    const atClose = calls.length;
    await clock.advance(120_000);
    expect(calls.length).toBe(atClose);
  });
});

describe("the overflow count at close becomes its summary entry (issue 15, second review)", () => {
  const deny = (runner: AuditedCommandRunner) =>
    rejection(runner.run({ principal: operator, permission: "tag.write", target: "valve.tma", execute: () => 1 }));

  test("with a journal and the store down at close, the summary is journaled and stored after the restart", async () => {
    const directory = await mkdtemp(join(tmpdir(), "kiln-audit-overflow-"));
    const path = join(directory, "audit.journal");
    const state = { down: true };
    const audit = (memory: MemoryStore): AuditLog => ({
      query: memory.audit.query,
      record: async (entry: AuditEntry) => {
        if (state.down) throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
        await memory.audit.record(entry);
      },
    });
    const first = await setup({ audit, backlog: { path, maxEntries: 2 } });
    for (let index = 0; index < 5; index++) await deny(first.runner);
    await first.runner.close();
    expect(first.drops).toEqual([]);
    state.down = false;
    const second = await setup({ backlog: { path, maxEntries: 2 } });
    expect(await second.runner.flush()).toBe(true);
    const stored = await second.entries();
    // maxEntries 2: one denied entry (their half), the other four counted.
    expect(stored.map((entry) => entry.action)).toEqual(["tag.write", "audit.overflow"]);
    expect(stored[1]?.newValue).toMatchObject({ count: 4 });
    await second.runner.close();
  });

  test("a crash after denials were counted: the count is recovered, reported by status() and summarized into the store (adversarial review 15)", async () => {
    const directory = await mkdtemp(join(tmpdir(), "kiln-audit-overflow-"));
    const path = join(directory, "audit.journal");
    const audit = (memory: MemoryStore): AuditLog => ({
      query: memory.audit.query,
      record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true })),
    });
    const first = await setup({ audit, backlog: { path, maxEntries: 2 } });
    for (let index = 0; index < 5; index++) expect((await deny(first.runner)).code).toBe("KILN_FORBIDDEN");
    expect(first.runner.status().overflow).toBe(4);
    // What a process killed now leaves: the files as they are, without close().
    const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-overflow-")), "audit.journal");
    await writeFile(crashed, await readFile(path));
    await writeFile(`${crashed}.reserve`, await readFile(`${path}.reserve`));
    const second = await setup({ backlog: { path: crashed, maxEntries: 2 }, idPrefix: "second" });
    expect(await second.runner.flush()).toBe(true);
    const stored = await second.entries();
    expect(stored.map((entry) => entry.action)).toEqual(["tag.write", "audit.overflow"]);
    expect(stored[1]?.newValue).toMatchObject({ count: 4, principals: ["olga"], actions: ["tag.write"] });
    expect(second.runner.status().overflow).toBe(0);
    await second.runner.close();
    // Summarized once: a further start finds no count left.
    const third = await setup({ backlog: { path: crashed, maxEntries: 2 }, idPrefix: "third" });
    expect(await third.runner.flush()).toBe(true);
    expect(await third.entries()).toEqual([]);
    await third.runner.close();
    await first.runner.close();
  });

  test("a count an earlier version left in <journal>.overflow is moved into the reserve once and summarized (review 15c)", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-overflow-")), "audit.journal");
    const { journal } = await RecordJournal.open(`${path}.overflow`);
    const bucket = {
      key: "olga",
      count: 3,
      first: START,
      last: START + 5,
      principals: ["olga"],
      morePrincipals: false,
    };
    await journal.append(Buffer.from(JSON.stringify([{ ...bucket, actions: ["tag.write"] }])));
    await journal.close();
    const first = await setup({ backlog: { path } });
    expect(await first.runner.flush()).toBe(true);
    const stored = await first.entries();
    expect(stored.map((entry) => entry.action)).toEqual(["audit.overflow"]);
    expect(stored[0]?.newValue).toMatchObject({ count: 3, principals: ["olga"] });
    await first.runner.close();
    await expect(stat(`${path}.overflow`)).rejects.toMatchObject({ code: "ENOENT" });
    const second = await setup({ backlog: { path }, idPrefix: "second" });
    expect(await second.runner.flush()).toBe(true);
    expect(await second.entries()).toEqual([]);
    await second.runner.close();
  });

  test("a count recovered at open is reported by status() until the store takes its summary", async () => {
    const directory = await mkdtemp(join(tmpdir(), "kiln-audit-overflow-"));
    const path = join(directory, "audit.journal");
    const down = (memory: MemoryStore): AuditLog => ({
      query: memory.audit.query,
      record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true })),
    });
    const first = await setup({ audit: down, backlog: { path, maxEntries: 2 } });
    for (let index = 0; index < 3; index++) await deny(first.runner);
    const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-overflow-")), "audit.journal");
    await writeFile(crashed, await readFile(path));
    await writeFile(`${crashed}.reserve`, await readFile(`${path}.reserve`));
    await first.runner.close();
    const second = await setup({ audit: down, backlog: { path: crashed, maxEntries: 2 } });
    expect(await second.runner.flush()).toBe(false);
    expect(second.runner.status()).toMatchObject({ overflow: 2, backlog: 1, dropped: 0 });
    await second.runner.close();
  });

  test("without a journal and the store still down, the count is reported as dropped", async () => {
    const { runner, drops } = await setup({
      audit: (memory) => ({
        query: memory.audit.query,
        record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })),
      }),
      backlog: { maxEntries: 2 },
    });
    for (let index = 0; index < 5; index++) await deny(runner);
    await runner.close();
    expect(drops.map((drop) => drop.count).sort()).toEqual([1, 4]);
  });
});

describe("a check that throws still leaves exactly one entry (issue 15, adversarial pass)", () => {
  test("a machine state that cannot be read: recorded failed, nothing executed", async () => {
    const { runner, plc, entries } = await setup();
    let executed = 0;
    const error: unknown = await runner
      .run({
        principal: operator,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: () => {
          throw new TypeError("state unreadable");
        },
        execute: () => void executed++,
      })
      .then(
        () => undefined,
        (reason: unknown) => reason,
      );
    expect(error).toBeInstanceOf(TypeError);
    expect(executed).toBe(0);
    expect(plc.writes).toEqual([]);
    const stored = await entries();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      action: "tag.write",
      outcome: "failed",
      reason: expect.stringContaining("state unreadable") as string,
    });
  });

  test("an authorizer whose check throws: recorded failed, nothing executed", async () => {
    const clock = new SimulatedClock({ start: START });
    const store = new MemoryStore({ clock });
    await store.open(tags.list());
    class Broken extends Authorizer {
      override can(): boolean {
        throw new Error("role directory down");
      }
    }
    const runner = new AuditedCommandRunner({ authorizer: new Broken(), audit: store.audit, clock });
    let executed = 0;
    await expect(
      runner.run({
        principal: operator,
        permission: "alarm.acknowledge",
        target: "a:HI",
        execute: () => void executed++,
      }),
    ).rejects.toThrow("role directory down");
    expect(executed).toBe(0);
    const stored = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
    expect(stored.map((entry) => [entry.action, entry.outcome])).toEqual([["alarm.acknowledge", "failed"]]);
  });
});

describe("a disk the journal filled before a crash (issue 15, adversarial pass)", () => {
  test("the reserve's room is given back to take the journal's lock: the backlog is replayed, the reserve made again once there is room (needs root to mount tmpfs)", async (context) => {
    const mount = await mkdtemp(join(tmpdir(), "kiln-audit-tmpfs-"));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", mount], { stdio: "ignore" });
    } catch {
      console.log("skipped: mounting a 512 KiB tmpfs failed (run the tests as root, with mount allowed, to enable)");
      await rm(mount, { recursive: true, force: true });
      context.skip();
      return;
    }
    try {
      const path = join(mount, "audit.journal");
      const first = await setup({
        audit: (store) => ({
          query: store.audit.query,
          record: () => Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true })),
        }),
        backlog: { path },
      });
      for (const value of [1, 2, 3]) await first.writeTag(engineer, "heater.setpoint", value);
      await first.runner.close();
      expect((await stat(`${path}.reserve`)).size).toBe(128 * 1024);
      // What a crash leaves: the lock of a process that is gone (a pid that just exited)...
      const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
      await writeFile(`${path}.lock`, JSON.stringify({ pid: dead, hostname: hostname(), token: "crashed" }));
      // ...on a disk filled to the last byte.
      const filler = join(mount, "filler");
      for (;;) {
        const full = await appendFile(filler, Buffer.alloc(4096)).then(
          () => false,
          () => true,
        );
        if (full) break;
      }
      const next = await setup({ backlog: { path }, idPrefix: "next" });
      expect(await next.runner.flush()).toBe(true);
      expect((await next.entries()).map((entry) => entry.newValue)).toEqual([1, 2, 3]);
      // The reserve kept its newest record but gave back its room; with room again it is made whole.
      expect((await stat(`${path}.reserve`)).size).toBeLessThan(128 * 1024);
      await rm(filler);
      await next.writeTag(engineer, "heater.setpoint", 4);
      expect(await next.runner.flush()).toBe(true); // a drain turn retries the reserve
      expect((await stat(`${path}.reserve`)).size).toBe(128 * 1024);
      await next.runner.close();
    } finally {
      execFileSync("umount", ["-l", mount], { stdio: "ignore" });
      await rm(mount, { recursive: true, force: true });
    }
  });
});
