import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import type { AuditBacklogOptions } from "./audited-command-options";
import { Authorizer, defaultRoleTable } from "./authorization";

// Adversarial review adv15p, M3 (siblings of compose/trip-audit-bound.test.ts): entries that would
// be kept beyond `backlog.maxEntries` (the system's own, `:fail` follow-ups) are coalesced by kind
// while the backlog is full; every entry is then stored once or counted (a summary's count, or an
// `audit.drop` count reported by `audit-entry-drop`).

const START = Date.UTC(2026, 0, 1);

async function setup(backlog: AuditBacklogOptions, idPrefix = "entry") {
  const clock = new SimulatedClock({ start: START });
  const store = new MemoryStore({ clock });
  await store.open([]);
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const drops: KilnEvents["audit-entry-drop"][] = [];
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  const link = { up: false };
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable() }),
    audit: {
      query: store.audit.query,
      record: (entry: AuditEntry) =>
        link.up
          ? store.audit.record(entry)
          : Promise.reject(new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true })),
    },
    clock,
    bus,
    machineId: "ald-1",
    newId: () => `${idPrefix}-${++ids}`,
    retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
    backlog,
  });
  await runner.open();
  /** The system's own action (as an interlock trip), failing when `fails`: an entry and then its `:fail`. */
  const trip = (value: number, fails = false, target = "ald-1") =>
    runner
      .runSystemAction({ action: "machine.trip", target, reason: "interlock", newValue: { value } }, () =>
        fails ? Promise.reject(new KilnError("KILN_WRITE_REJECTED", "device refused")) : Promise.resolve(value),
      )
      .catch(() => undefined);
  const trail = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  return { clock, store, link, runner, trip, trail, drops };
}

/** Entries of `action` stored one by one (follow-ups apart), plus the counts of the summaries standing for them. */
function accounted(trail: readonly AuditEntry[], action: string, followUps: boolean) {
  const single = trail.filter(
    (entry) => entry.action === action && (entry.refersTo !== undefined) === followUps,
  ).length;
  const summarized = trail
    .filter((entry) => entry.action === "audit.coalesce")
    .map((entry) => entry.newValue as { action: string; count: number; firstRefersTo?: string })
    .filter((value) => value.action === action && (value.firstRefersTo !== undefined) === followUps)
    .reduce((sum, value) => sum + value.count, 0);
  return { single, summarized, total: single + summarized };
}

describe("entries kept beyond maxEntries are coalesced by kind (adv15p M3)", () => {
  test("a trip and its :fail alternating: both kinds are coalesced, the backlog stays within maxEntries, every entry is stored or counted", async () => {
    const { runner, link, trip, trail, drops } = await setup({ maxEntries: 20 });
    let most = 0;
    for (let value = 0; value < 1_000; value++) {
      await trip(value, value % 2 === 1);
      most = Math.max(most, runner.backlog);
    }
    // Without a journal a system action does not wait for its entry: let the writer take them all.
    expect(await runner.flush()).toBe(false);
    expect(most).toBeLessThanOrEqual(20);
    expect(runner.backlog).toBe(20);
    expect(runner.status().coalesced).toBe(1_000 + 500 - 20);
    link.up = true;
    expect(await runner.flush()).toBe(true);
    expect(runner.status().coalesced).toBe(0);
    const stored = await trail();
    expect(accounted(stored, "machine.trip", false).total).toBe(1_000);
    expect(accounted(stored, "machine.trip", true).total).toBe(500);
    // Two kinds, two summaries: first and last time and value, the follow-ups' intents named.
    const summaries = stored.filter((entry) => entry.action === "audit.coalesce");
    expect(summaries).toHaveLength(2);
    expect(summaries.find((entry) => entry.outcome === "allowed")?.newValue).toMatchObject({
      action: "machine.trip",
      lastValue: { value: 999 },
    });
    expect(summaries.find((entry) => entry.outcome === "failed")?.newValue).toMatchObject({
      action: "machine.trip",
      lastValue: { value: 999 },
      lastRefersTo: expect.any(String),
    });
    expect(drops).toEqual([]);
    expect(runner.dropped).toBe(0);
    await runner.close();
  });

  test("more kinds than are coalesced at once: the rest are counted into audit.drop and reported, never held", async () => {
    const { runner, link, trip, trail, drops } = await setup({ maxEntries: 5 });
    // 5 fill the backlog; 20 targets × 10 entries after that: 16 kinds coalesced, 4 counted.
    for (let value = 0; value < 5; value++) await trip(value);
    for (let round = 0; round < 10; round++) {
      for (let target = 0; target < 20; target++) await trip(round, false, `ald-${target}`);
    }
    expect(await runner.flush()).toBe(false);
    expect(runner.backlog).toBe(5);
    expect(runner.status().coalesced).toBe(160);
    expect(runner.dropped).toBe(40);
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(40);
    link.up = true;
    expect(await runner.flush()).toBe(true);
    const stored = await trail();
    const dropCount = stored
      .filter((entry) => entry.action === "audit.drop")
      .reduce((sum, entry) => sum + (entry.newValue as { count: number }).count, 0);
    expect(dropCount).toBe(40);
    expect(accounted(stored, "machine.trip", false).total + dropCount).toBe(205);
    await runner.close();
  });

  test("with a journal the coalesced counts survive a crash: the next start records their summaries", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-coalesce-")), "audit.journal");
    const backlog = { path, maxEntries: 10 } as const;
    const first = await setup(backlog);
    for (let value = 0; value < 100; value++) await first.trip(value);
    expect(first.runner.backlog).toBe(10);
    expect(first.runner.status().coalesced).toBe(90);
    // A killed process: its journal and reserve as they are, copied for the next start.
    const crashed = join(await mkdtemp(join(tmpdir(), "kiln-coalesce-")), "audit.journal");
    await writeFile(crashed, await readFile(path));
    await writeFile(`${crashed}.reserve`, await readFile(`${path}.reserve`));
    const next = await setup({ ...backlog, path: crashed }, "next");
    next.link.up = true;
    expect(await next.runner.flush()).toBe(true);
    expect(accounted(await next.trail(), "machine.trip", false)).toEqual({ single: 10, summarized: 90, total: 100 });
    await next.runner.close();
    await first.runner.close();
  });
});

describe("a coalesced run is one session's: source and roles are part of its kind (fix15v, adv15u M2)", () => {
  /** A fault press (a safety function: never refused for a full backlog, coalesced instead) by `ada` from `source` with `roles`. */
  const press = (runner: AuditedCommandRunner, source: string, roles: readonly string[]) =>
    runner.run({
      principal: { id: "ada", roles, source },
      permission: "machine.mode",
      action: "machine.fault",
      target: "ald-1",
      newValue: { command: "fault" },
      safetyFunction: true,
      execute: () => Promise.resolve("error"),
    });

  test("presses by one principal from two sources are summarized apart, each summary naming its own source", async () => {
    const { runner, link, trip, trail, drops } = await setup({ maxEntries: 2 });
    for (let value = 0; value < 2; value++) await trip(value);
    // Before: one run keyed by principal/action/target/outcome, stored under the first press's source.
    for (let round = 0; round < 3; round++) {
      await press(runner, "rogue-laptop", ["admin"]);
      await press(runner, "hmi-1", ["admin"]);
      await press(runner, "hmi-1", ["admin"]);
    }
    expect(await runner.flush()).toBe(false);
    link.up = true;
    expect(await runner.flush()).toBe(true);
    const summaries = (await trail()).filter(
      (entry) => entry.action === "audit.coalesce" && (entry.newValue as { action: string }).action === "machine.fault",
    );
    const bySource = Object.fromEntries(
      summaries.map((entry) => [entry.source, (entry.newValue as { count: number }).count]),
    );
    expect(bySource).toEqual({ "rogue-laptop": 3, "hmi-1": 6 });
    expect(drops).toEqual([]);
    await runner.close();
  });

  test("(sibling) the same source with other roles is another kind; the same roles in another order are not", async () => {
    const { runner, link, trip, trail } = await setup({ maxEntries: 2 });
    for (let value = 0; value < 2; value++) await trip(value);
    await press(runner, "hmi-2", ["admin", "engineer"]);
    await press(runner, "hmi-2", ["engineer", "admin"]);
    await press(runner, "hmi-2", ["admin"]);
    // Without a journal a safety function does not wait for its entry: let the writer take them all.
    expect(await runner.flush()).toBe(false);
    link.up = true;
    expect(await runner.flush()).toBe(true);
    // A run of one is stored as its entry; a longer one as its summary.
    const counted = (await trail()).flatMap((entry): [string, number][] => {
      const roles = [...entry.roles].sort().join("+");
      if (entry.action === "machine.fault") return [[roles, 1]];
      const value = entry.newValue as { action?: string; count?: number };
      return entry.action === "audit.coalesce" && value.action === "machine.fault" ? [[roles, value.count ?? 0]] : [];
    });
    expect(counted.sort()).toEqual([
      ["admin+engineer", 2],
      ["admin", 1],
    ]);
    await runner.close();
  });
});

describe("entries dropped past the kinds limit are reported once, also at a stop (fix15v, adv15u L2)", () => {
  test("stopped without a journal while the store is down: the drop events add up to the entries lost, the audit.drop count not reported again", async () => {
    const { runner, trip, drops } = await setup({ maxEntries: 5 });
    for (let value = 0; value < 5; value++) await trip(value);
    // 20 targets × 3: 16 kinds coalesced (48 entries), 4 kinds past the limit (12 entries) dropped and reported at once.
    for (let round = 0; round < 3; round++) {
      for (let target = 0; target < 20; target++) await trip(round, false, `ald-${target}`);
    }
    expect(await runner.flush()).toBe(false);
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(12);
    await runner.close();
    // At the stop: the 5 held entries and the 16 coalesced runs (48) are lost and reported now; the
    // 12 were reported when dropped (before: reported again with the unsaved audit.drop summary).
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(12 + 5 + 48);
  });

  test("(sibling) drop-oldest: an evicted entry is reported when evicted, not again with the unsaved audit.drop summary at the stop", async () => {
    const { runner, trip, drops } = await setup({ maxEntries: 3, whenFull: "drop-oldest" });
    for (let value = 0; value < 10; value++) await trip(value);
    expect(await runner.flush()).toBe(false);
    const atDrop = drops.reduce((sum, event) => sum + event.count, 0);
    await runner.close();
    const held = 3;
    // Every trip is reported exactly once: dropped when evicted, or lost at the stop.
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(atDrop + held);
    expect(atDrop + held).toBe(10);
  });
});
