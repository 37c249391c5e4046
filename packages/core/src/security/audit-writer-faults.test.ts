import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import type { Logger } from "../ports/logger";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditedCommandRunner, type AuditBacklogOptions } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite" },
  "valve.tma": { dataType: "bool", access: "readwrite" },
});
const operator: Principal = { id: "olga", roles: ["operator"] };
const engineer: Principal = { id: "enzo", roles: ["engineer"] };

async function setup(options: { audit?: (store: MemoryStore) => AuditLog; backlog?: AuditBacklogOptions } = {}) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const events = {
    skips: [] as KilnEvents["audit-entry-skip"][],
    refusalDrops: [] as KilnEvents["audit-refusal-drop"][],
    drops: [] as KilnEvents["audit-entry-drop"][],
  };
  bus.on("audit-entry-skip", (event) => void events.skips.push(event));
  bus.on("audit-refusal-drop", (event) => void events.refusalDrops.push(event));
  bus.on("audit-entry-drop", (event) => void events.drops.push(event));
  const errors: string[] = [];
  const logger: Logger = {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (_fields: unknown, message?: string) => void errors.push(String(message)),
  } as unknown as Logger;
  let ids = 0;
  const make = () =>
    new AuditedCommandRunner({
      authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
      audit: options.audit?.(store) ?? store.audit,
      clock,
      bus,
      logger,
      machineId: "ald-1",
      newId: () => `entry-${++ids}`,
      retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
      ...(options.backlog === undefined ? {} : { backlog: options.backlog }),
    });
  const runner = make();
  const writeTag = (on: AuditedCommandRunner, principal: Principal, tag: string, value: TagValue) =>
    on.run({
      principal,
      permission: "tag.write",
      target: tag,
      machineState: "idle",
      newValue: value,
      execute: () => plc.write(tags.get(tag), value),
    });
  const entries = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  return { clock, plc, store, runner, make, writeTag, entries, events, errors };
}

const codeOf = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => "resolved",
    (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
  );

const journalPath = async () => join(await mkdtemp(join(tmpdir(), "kiln-audit-faults-")), "audit.journal");

describe("a refusal that follows an offered intent (issue 15, fault 2)", () => {
  test("without a journal, stop() with the store frozen drops it last and says so: event, error log naming the intent, counted", async () => {
    // A frozen database: every INSERT times out, and commits later (past the timeout).
    const held: AuditEntry[] = [];
    const { runner, writeTag, store, plc, events, errors } = await setup({
      audit: () => ({
        query: async () => [],
        record: async (entry) => {
          held.push(entry);
          throw new KilnError("KILN_TIMEOUT", "audit store timed out", { retryable: true });
        },
      }),
    });
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 5))).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(plc.writes).toEqual([]);
    await runner.close();
    expect(events.refusalDrops).toEqual([
      expect.objectContaining({
        id: "entry-1:refusal",
        intentId: "entry-1",
        action: "tag.write",
        target: "heater.setpoint",
      }),
    ]);
    expect(events.refusalDrops[0]!.reason).toContain("the trail may show this command allowed; it did not run");
    expect(errors.some((message) => message.includes("entry-1") && message.includes("did not run"))).toBe(true);
    expect(runner.status()).toMatchObject({ refusalsDropped: 1, dropped: 1 });
    // Not folded into the plain drop count event.
    expect(events.drops).toEqual([]);
    // What the event warns of: the intent the store held commits, its refusal never does.
    for (const entry of held.filter((each) => each.refersTo === undefined)) await store.audit.record(entry);
    expect((await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).map((entry) => entry.id)).toEqual([
      "entry-1",
    ]);
  });

  for (const whenFull of ["drop-oldest", "refuse-commands"] as const) {
    test(`only an intent handed to the store gets a refusal naming it; the others are ordinary denials, bounded (${whenFull})`, async () => {
      const offered: string[] = [];
      const { runner, writeTag, events } = await setup({
        audit: () => ({
          query: async () => [],
          record: (entry) => {
            offered.push(entry.id);
            return Promise.reject(new KilnError("KILN_TIMEOUT", "frozen", { retryable: true }));
          },
        }),
        backlog: { maxEntries: 4, whenFull },
      });
      const errors: KilnError[] = [];
      for (let value = 0; value < 50; value++) {
        await writeTag(runner, engineer, "heater.setpoint", value).catch((error: KilnError) => void errors.push(error));
      }
      for (let attempt = 0; attempt < 3; attempt++) await codeOf(writeTag(runner, operator, "valve.tma", true));
      expect(errors.map((error) => error.code)).toEqual(Array(50).fill("KILN_AUDIT_UNAVAILABLE"));
      // The first intent reached the store (its fate unknown): its refusal names it. The backlog
      // then held that refusal, so no later intent was offered: their refusals are plain denials.
      expect(offered.filter((id) => /^entry-\d+$/.test(id) && id !== "entry-1")).toEqual([]);
      expect(errors[0]!.details).toMatchObject({ auditEntryId: "entry-1:refusal", intentEntryId: "entry-1" });
      expect(errors[1]!.details).toMatchObject({ auditEntryId: "entry-2" });
      expect(errors[1]!.details["intentEntryId"]).toBeUndefined();
      // Bounded: the denials took their share and were counted beyond it.
      expect(runner.backlog).toBeLessThanOrEqual(4);
      await runner.close();
      expect(events.refusalDrops.map((event) => event.intentId)).toEqual(["entry-1"]);
    });
  }
});

describe("a poison entry (issue 15, fault 4)", () => {
  const poisoned = (poison: (entry: AuditEntry) => boolean) => (store: MemoryStore) => ({
    query: store.audit.query,
    record: async (entry: AuditEntry) => {
      // Not a KilnError: the store does not say whether it is about the entry or about itself.
      if (poison(entry)) throw new Error("invalid byte sequence for encoding UTF8: 0x00");
      await store.audit.record(entry);
    },
  });

  test("without a journal: set aside after a bounded number of attempts, reported with its id; commands run again; health names it meanwhile", async () => {
    const { runner, writeTag, entries, events, plc } = await setup({
      audit: poisoned((entry) => entry.id === "entry-1"),
    });
    expect(await codeOf(writeTag(runner, operator, "valve.tma", true))).toBe("KILN_FORBIDDEN");
    expect(runner.status()).toMatchObject({ backlog: 1 });
    // The background retry (or any flush) tries the head again: it fails, and health names it.
    expect(await runner.flush()).toBe(false);
    expect(runner.status().blockedBy).toMatchObject({ id: "entry-1", error: expect.stringContaining("UTF8") });
    // The next command is the probe: the store takes its entry while failing the head again, so
    // the head is set aside and the command runs.
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 2))).toBe("resolved");
    expect(plc.writes.map((write) => write.value)).toEqual([2]);
    expect(events.skips).toEqual([
      expect.objectContaining({ id: "entry-1", reason: expect.stringContaining("set aside") }),
    ]);
    expect(runner.status()).toMatchObject({ backlog: 0, setAside: 1, skipped: 1 });
    expect(runner.status().blockedBy).toBeUndefined();
    expect((await entries()).map((entry) => entry.id)).toEqual(["entry-2"]);
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 3))).toBe("resolved");
  });

  test("with a journal: the set-aside entry is kept in <journal>.set-aside and the journaled queue moves on", async () => {
    const path = await journalPath();
    const { runner, writeTag, entries, events } = await setup({
      audit: poisoned((entry) => entry.id === "entry-1"),
      backlog: { path },
    });
    await codeOf(writeTag(runner, operator, "valve.tma", true));
    for (const value of [1, 2, 3])
      expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", value))).toBe("resolved");
    expect(await runner.flush()).toBe(true);
    expect(events.skips.map((event) => event.id)).toEqual(["entry-1"]);
    const kept = (await readFile(`${path}.set-aside`, "utf8")).trim().split("\n");
    expect(kept.map((line) => (JSON.parse(line) as AuditEntry).id)).toEqual(["entry-1"]);
    expect((await entries()).map((entry) => entry.id).sort()).toEqual(["entry-2", "entry-3", "entry-4"]);
    await runner.close();
  });

  test("concurrent commands during an outage: only the first intent is offered, so one refusal names an intent", async () => {
    const { runner, writeTag, events } = await setup({
      audit: () => ({
        query: async () => [],
        record: () => Promise.reject(new KilnError("KILN_TIMEOUT", "frozen", { retryable: true })),
      }),
      backlog: { maxEntries: 4 },
    });
    const codes = await Promise.all(
      Array.from({ length: 20 }, (_, value) => codeOf(writeTag(runner, engineer, "heater.setpoint", value))),
    );
    expect(codes).toEqual(Array(20).fill("KILN_AUDIT_UNAVAILABLE"));
    expect(runner.backlog).toBeLessThanOrEqual(4);
    await runner.close();
    expect(events.refusalDrops.map((event) => event.intentId)).toEqual(["entry-1"]);
  });

  test("a refusal naming its intent is never set aside: it stays at the head, retried, and is stored once the store takes it", async () => {
    let poison = true;
    let intentFails = true;
    const { runner, writeTag, entries, events, plc } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          // The intent's reply is lost once (it may have landed); the refusal then keeps failing unclassified.
          if (entry.id === "entry-1" && intentFails) {
            intentFails = false;
            throw new Error("socket hang up");
          }
          if (poison && entry.refersTo !== undefined) throw new Error("socket hang up");
          await store.audit.record(entry);
        },
      }),
    });
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 1))).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(await runner.flush()).toBe(false);
    expect(await runner.flush()).toBe(false);
    // The store would take the next intent (the poison probe) but the refusal is not set aside.
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 2))).toBe("KILN_AUDIT_UNAVAILABLE");
    expect(plc.writes).toEqual([]);
    expect(events.skips).toEqual([]);
    expect(runner.status()).toMatchObject({ setAside: 0, blockedBy: { id: "entry-1:refusal" } });
    poison = false;
    expect(await runner.flush()).toBe(true);
    const stored = await entries();
    expect(stored.find((entry) => entry.id === "entry-1:refusal")).toMatchObject({ refersTo: "entry-1" });
    // The second intent was never offered: its refusal is its own plain denial.
    expect(stored.find((entry) => entry.id.startsWith("entry-2"))).toMatchObject({ id: "entry-2", outcome: "denied" });
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 3))).toBe("resolved");
  });

  test("a refusal that keeps failing is dropped only at stop, through the refusal-drop report", async () => {
    const { runner, writeTag, events } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry: AuditEntry) => {
          if (entry.id === "entry-1" || entry.refersTo !== undefined) throw new Error("socket hang up");
          await store.audit.record(entry);
        },
      }),
    });
    await codeOf(writeTag(runner, engineer, "heater.setpoint", 1));
    for (let round = 0; round < 4; round++) {
      await runner.flush();
      await codeOf(writeTag(runner, operator, "valve.tma", true));
    }
    expect(events.skips).toEqual([]);
    await runner.close();
    expect(events.refusalDrops.map((event) => event.id)).toEqual(["entry-1:refusal"]);
    expect(runner.status()).toMatchObject({ refusalsDropped: 1, setAside: 0 });
  });

  test("a whole-store outage (every write fails, unclassified) sets nothing aside: retried, fail closed, stored once it is over", async () => {
    let down = true;
    const { runner, writeTag, entries, events, plc } = await setup({ audit: poisoned(() => down) });
    for (let attempt = 0; attempt < 6; attempt++) await codeOf(writeTag(runner, operator, "valve.tma", true));
    for (let attempt = 0; attempt < 3; attempt++) {
      expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", attempt))).toBe("KILN_AUDIT_UNAVAILABLE");
    }
    expect(plc.writes).toEqual([]);
    expect(events.skips).toEqual([]);
    expect(runner.status()).toMatchObject({ setAside: 0, blockedBy: { id: "entry-1" } });
    down = false;
    expect(await runner.flush()).toBe(true);
    expect(events.skips).toEqual([]);
    expect((await entries()).filter((entry) => entry.action === "tag.write")).toHaveLength(9);
  });
});

describe("a closed runner never reopens its journal (issue 15, fault 5)", () => {
  test("flush and record after close() take no journal lock: a new runner on the same journal still journals", async () => {
    const path = await journalPath();
    let down = true;
    const { runner, make, writeTag, entries } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry) => {
          if (down) throw new KilnError("KILN_TIMEOUT", "down", { retryable: true });
          await store.audit.record(entry);
        },
      }),
      backlog: { path },
    });
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 1))).toBe("resolved");
    await runner.close();
    // Every path that used to reopen it: a flush, and an entry recorded while closed.
    await runner.flush();
    expect(await codeOf(writeTag(runner, operator, "valve.tma", true))).toBe("KILN_FORBIDDEN");
    const next = make();
    await next.open();
    // The journal is the new runner's: a write while the store is down is journaled, so it runs.
    expect(await codeOf(writeTag(next, engineer, "heater.setpoint", 2))).toBe("resolved");
    down = false;
    expect(await next.flush()).toBe(true);
    expect((await entries()).filter((entry) => entry.outcome === "allowed").map((entry) => entry.newValue)).toEqual([
      1, 2,
    ]);
    await next.close();
  });
});

describe("a journaled backlog is retried after a restart (issue 15, fault 6)", () => {
  test("open() loads the journal and retries it in the background: stored within the retry interval, no command needed", async () => {
    const path = await journalPath();
    let down = true;
    const { runner, make, writeTag, entries, clock } = await setup({
      audit: (store) => ({
        query: store.audit.query,
        record: async (entry) => {
          if (down) throw new KilnError("KILN_TIMEOUT", "down", { retryable: true });
          await store.audit.record(entry);
        },
      }),
      backlog: { path },
    });
    for (const value of [1, 2]) await writeTag(runner, engineer, "heater.setpoint", value);
    await runner.close();
    down = false;
    const next = make();
    await next.open();
    await expect.poll(() => next.backlog).toBe(2);
    await clock.advance(1_000);
    await expect.poll(async () => (await entries()).map((entry) => entry.newValue)).toEqual([1, 2]);
    expect(next.backlog).toBe(0);
    await next.close();
  });
});

describe("a journal or reserve that cannot be made at start (issue 15, review 15i)", () => {
  const down = (store: MemoryStore): AuditLog => ({
    query: store.audit.query,
    record: () => Promise.reject(new KilnError("KILN_TIMEOUT", "down", { retryable: true })),
  });

  test("the journal cannot be opened (its folder is a file): health counts what is held only in memory; once it opens, that is journaled", async () => {
    const folder = join(await mkdtemp(join(tmpdir(), "kiln-audit-start-")), "audit");
    await writeFile(folder, "not a folder");
    const path = join(folder, "audit.journal");
    const { runner, make, writeTag, clock } = await setup({ audit: down, backlog: { path } });
    await runner.open();
    // Start waited for the first attempt: the failure is named at once, before any command.
    expect(runner.status().journalProblems).toEqual([expect.stringMatching(/open failed.*EEXIST.*\(retried\)$/)]);
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 1))).toBe("KILN_AUDIT_UNAVAILABLE");
    for (const value of [2, 3])
      expect(await codeOf(writeTag(runner, operator, "valve.tma", value === 2))).toBe("KILN_FORBIDDEN");
    expect(runner.status().journalProblems).toEqual([
      expect.stringMatching(/open failed.*EEXIST.*; 3 audit entries held only in memory \(lost if the process dies\)$/),
    ]);
    await rm(folder);
    await mkdir(folder);
    for (let step = 0; step < 20 && runner.status().journalProblems.length > 0; step++) {
      await clock.advance(1_000);
      await new Promise<void>((resolve) => setTimeout(resolve, 20));
    }
    expect(runner.status().journalProblems).toEqual([]);
    // Journaled (and its reserve made): a process that dies now loses nothing; the next one reads them back.
    expect((await stat(`${path}.reserve`)).size).toBe(128 * 1024);
    const journaled = (await readFile(path)).toString("latin1");
    expect(["entry-1:refusal", "entry-2", "entry-3"].every((id) => journaled.includes(`"${id}"`))).toBe(true);
    await runner.close();
    const next = make();
    await next.open();
    expect(next.backlog).toBe(3);
    await next.close();
  });

  test("the journal opens but its reserve cannot be made: health says so, and it is made on the retry", async () => {
    const path = await journalPath();
    await mkdir(`${path}.reserve`);
    const { runner, writeTag, clock } = await setup({ audit: down, backlog: { path } });
    await runner.open();
    expect(runner.status().journalProblems).toEqual([
      expect.stringMatching(
        /audit\.journal\.reserve: reserve failed.*EISDIR.*no room is reserved for a full disk until it is made \(retried\)$/,
      ),
    ]);
    expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 1))).toBe("resolved");
    await rm(`${path}.reserve`, { recursive: true });
    for (let step = 0; step < 20 && runner.status().journalProblems.length > 0; step++) {
      await clock.advance(1_000);
      await new Promise<void>((resolve) => setTimeout(resolve, 20));
    }
    expect(runner.status().journalProblems).toEqual([]);
    expect((await stat(`${path}.reserve`)).size).toBe(128 * 1024);
    await runner.close();
  });
});

describe("a command's entry does not wait for the whole backlog (issue 15, review 15i)", () => {
  test.each([
    ["the backlog retry", 1, "retry"],
    ["the backlog retry", 40, "retry"],
    ["a command's turn", 1, "command"],
    ["a command's turn", 72, "command"],
  ] as const)(
    "with a slow store and 300 entries waiting, a command issued while a drain begun by %s is under way (issued after %i stores) is stored within two turns of 32",
    async (_name, after, trigger) => {
      let down = true;
      const calls: AuditEntry[] = [];
      const { runner, writeTag, clock } = await setup({
        audit: (store) => ({
          query: store.audit.query,
          record: async (entry) => {
            if (down) throw new KilnError("KILN_TIMEOUT", "down", { retryable: true });
            calls.push(entry);
            // A slow store: each insert takes a few real milliseconds.
            await new Promise<void>((resolve) => setTimeout(resolve, 2));
            await store.audit.record(entry);
          },
        }),
      });
      await runner.open();
      // 300 denied attempts wait in the backlog (in memory: no journal) while the store is down.
      for (let value = 0; value < 300; value++) await codeOf(writeTag(runner, operator, "valve.tma", value % 2 === 0));
      expect(runner.backlog).toBe(300);
      down = false;
      if (trigger === "retry") await clock.advance(1_000);
      // This denied command's turn stores 32 of the backlog and its own entry; the rest drains in the background.
      else expect(await codeOf(writeTag(runner, operator, "valve.tma", true))).toBe("KILN_FORBIDDEN");
      // Issued during the first background turn, or once past it.
      await expect.poll(() => calls.length, { interval: 1 }).toBeGreaterThanOrEqual(after);
      const before = calls.length;
      expect(await codeOf(writeTag(runner, engineer, "heater.setpoint", 7))).toBe("resolved");
      // Counted in store calls, not time: the rest of the turn under way (< 32), then its own turn (32), then it.
      const stored = calls.findIndex((entry) => entry.outcome === "allowed");
      expect(stored).toBeGreaterThanOrEqual(before);
      expect(stored - before).toBeLessThanOrEqual(2 * 32);
      expect(runner.backlog).toBeGreaterThan(0);
      // And the rest still drains in the background, each entry once.
      await expect.poll(() => runner.backlog, { timeout: 10_000 }).toBe(0);
      expect(new Set(calls.map((entry) => entry.id)).size).toBe(calls.length);
      expect(calls).toHaveLength(trigger === "retry" ? 301 : 302);
      await runner.close();
    },
  );
});
