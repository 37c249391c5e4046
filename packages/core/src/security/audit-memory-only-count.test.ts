import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { ReservedRecord } from "../journal/reserved-record";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { decodeReserve, RESERVE_SLOT_BYTES } from "./audit-reserve-record";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Issue 15 (the pass on fix15c): an action in runWithoutDurableAudit runs however full the
// journal is; its entry is journaled, else kept in `<journal>.reserve`, else held only in memory.
// Those held only in memory were lost uncounted to a SIGKILL (74 of 400 aborts). The reserve's
// record now counts them (`memoryOnly`), so a next start records them dropped; the kill itself is
// faults/audit-full-disk.test.ts. Here: the count follows what memory holds, in a live process.

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const operator: Principal = { id: "olga", roles: ["operator"] };
const folders: string[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
});

/** A runner whose audit store is down until `up()`, journaling at most 32 KiB, writes run without a durable entry. */
async function rig() {
  const folder = await mkdtemp(join(tmpdir(), "kiln-audit-memory-only-"));
  folders.push(folder);
  const path = join(folder, "audit.journal");
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  let up = false;
  const audit = {
    query: store.audit.query,
    record: (entry: AuditEntry) =>
      up ? store.audit.record(entry) : Promise.reject(new KilnError("KILN_TIMEOUT", "down", { retryable: true })),
  };
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const drops: KilnEvents["audit-entry-drop"][] = [];
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  let ids = 0;
  const make = (at = path) =>
    new AuditedCommandRunner({
      authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
      audit,
      clock,
      bus,
      machineId: "ald-1",
      newId: () => `entry-${++ids}`,
      retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
      runWithoutDurableAudit: ["tag.write"],
      backlog: { path: at, maxEntries: 100_000, maxBytes: 32_768 },
    });
  const runner = make();
  await runner.open();
  const write = (value: number) =>
    runner.run({
      principal: operator,
      permission: "tag.write",
      target: "heater.setpoint",
      machineState: "idle",
      newValue: value,
      execute: () => plc.write(tags.get("heater.setpoint"), value),
    });
  /** What the reserve's newest record counts as held only in memory (0: none). */
  const memoryOnly = async (): Promise<number> =>
    decodeReserve(await ReservedRecord.peek(`${path}.reserve`, RESERVE_SLOT_BYTES))?.memoryOnly?.count ?? 0;
  const restart = async (): Promise<AuditEntry[]> => {
    up = true;
    const next = make();
    await next.open();
    await next.close();
    return store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  };
  return { runner, write, memoryOnly, drops, up: () => void (up = true), restart, plc, make, path };
}

describe("entries held only in memory are counted in the audit reserve", () => {
  test("600 writes beyond the journal's and the reserve's room: the reserve counts those held only in memory; once stored, it counts none, and a restart records nothing dropped", async () => {
    const { runner, write, memoryOnly, drops, up, restart, plc } = await rig();
    for (let value = 1; value <= 600; value++) await write(value);
    expect(plc.writes).toHaveLength(600);
    // Beyond the journal's 32 KiB and the reserve's 64 KiB some are held only in memory.
    expect(runner.status().durableBacklog).toBe(false);
    expect(await memoryOnly()).toBeGreaterThan(0);
    up();
    expect(await runner.flush()).toBe(true);
    expect(runner.status().durableBacklog).toBe(true);
    expect(await memoryOnly()).toBe(0);
    await runner.close();
    const trail = await restart();
    expect(trail.filter((entry) => entry.action === "audit.drop")).toEqual([]);
    expect(trail.filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue)).toEqual(
      Array.from({ length: 600 }, (_unused, index) => index + 1),
    );
    expect(drops).toEqual([]);
  }, 60_000);

  test("sibling: stopped with the store down, what memory held is reported lost at the stop once, and the next start does not count it again", async () => {
    const { runner, write, memoryOnly, drops, restart } = await rig();
    for (let value = 1; value <= 600; value++) await write(value);
    const held = await memoryOnly();
    expect(held).toBeGreaterThan(0);
    await runner.close();
    expect(drops.reduce((sum, drop) => sum + drop.count, 0)).toBe(held);
    expect(await memoryOnly()).toBe(0);
    const trail = await restart();
    const stored = trail.filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue as number);
    expect(stored).toHaveLength(600 - held);
    expect(new Set(stored).size).toBe(stored.length);
    // Counted once, at the stop (the event): no audit.drop summary counts them a second time.
    expect(trail.filter((entry) => entry.action === "audit.drop")).toEqual([]);
    expect(drops.reduce((sum, drop) => sum + drop.count, 0)).toBe(held);
  }, 60_000);

  // fix15e (adv15d F1, F2): while the reserve's writes fail (EIO) nothing durable can count an
  // entry held only in memory. An action that runs without a durable entry then waits for one like
  // any other command (refused while the store is down); and the entries the reserve's last record
  // counts are not stored (nor journaled) until the record can be rewritten, so the count at the
  // next start is exactly what is missing.
  test("the reserve cannot be written: an unguarded write is refused while the store is down, waits for its stored entry once it is up; counted entries wait for the reserve", async () => {
    const { runner, write, memoryOnly, up, restart, plc } = await rig();
    for (let value = 1; value <= 600; value++) await write(value);
    const held = await memoryOnly();
    expect(held).toBeGreaterThan(0);
    const eio = vi
      .spyOn(ReservedRecord.prototype, "write")
      .mockRejectedValue(
        new KilnError("KILN_JOURNAL_FAILED", "write failed (EIO)", { retryable: true, details: { errno: "EIO" } }),
      );
    await expect(write(601)).rejects.toMatchObject({ code: "KILN_AUDIT_UNAVAILABLE" });
    expect(plc.writes).toHaveLength(600);
    up();
    // The store takes what the journal and the reserve hold; what the record counts waits (and
    // the refusal of 601, behind it).
    expect(await runner.flush()).toBe(false);
    expect(runner.status().backlog).toBe(held + 1);
    await write(602);
    expect(plc.writes).toHaveLength(601);
    // Its entry was made durable before it acted: journaled (the store took the journal's records,
    // so it has room again), not counted in memory.
    expect(runner.status().backlog).toBe(held + 2);
    expect(await memoryOnly()).toBe(held);
    eio.mockRestore();
    expect(await runner.flush()).toBe(true);
    expect(await memoryOnly()).toBe(0);
    await runner.close();
    const trail = await restart();
    expect(trail.filter((entry) => entry.action === "audit.drop")).toEqual([]);
    const written = trail.filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed");
    // Each once, never the refused 601 (602 went ahead of the entries that waited).
    expect(written.map((entry) => entry.newValue as number).sort((a, b) => a - b)).toEqual([
      ...Array.from({ length: 600 }, (_unused, index) => index + 1),
      602,
    ]);
  }, 60_000);

  // fix15e (adv15d F4): restarted on a disk still full, the reserve cannot be opened (its room
  // cannot be reserved) and is only read; what the run that died held only in memory was not
  // named until it opened. Health names it now; it is recorded as dropped once the reserve opens.
  test("restarted while the reserve cannot be opened: health names the entries the dead run held only in memory", async () => {
    const { runner, write, memoryOnly, make, path } = await rig();
    for (let value = 1; value <= 600; value++) await write(value);
    const held = await memoryOnly();
    expect(held).toBeGreaterThan(0);
    // The files as a SIGKILL leaves them, in another folder (the first runner keeps its lock).
    const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-memory-only-")), "audit.journal");
    folders.push(join(crashed, ".."));
    await copyFile(path, crashed);
    await copyFile(`${path}.reserve`, `${crashed}.reserve`);
    const full = Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
    vi.spyOn(ReservedRecord, "open").mockRejectedValue(
      new KilnError("KILN_JOURNAL_FAILED", "reserve failed: the disk is full", {
        cause: full,
        retryable: true,
        details: { errno: "ENOSPC" },
      }),
    );
    const next = make(crashed);
    await next.open();
    expect(next.status().journalProblems.join("\n")).toMatch(
      new RegExp(
        `${held} entries the run that ended held only in memory \\(lost; recorded as dropped once it opens\\)`,
      ),
    );
    vi.restoreAllMocks();
    await next.close();
    await runner.close();
  }, 60_000);
});
