import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import type { AuditEntry } from "../ports/audit-log";
import { simulatedSystem } from "../../test/support/simulated-system";

// Adversarial review adv15p, M3: with the audit store down and `refuse-commands`, operator
// commands are refused, but the system's own entries (interlock trips, their `:fail`, system
// actions) were queued in memory past `backlog.maxEntries` without bound: a trip chattering on a
// flapping input made one per change. The bound holds for every source now: past it, consecutive
// entries of one kind are coalesced into an `audit.coalesce` summary (count, first and last time
// and value), stored once the store is back; what does not fit even so is counted (`audit.drop`).

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 100 }, scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});

/** A MemoryStore whose audit log refuses every entry (retryable) while `down`. */
class DownAuditStore extends MemoryStore {
  down = false;
  constructor(options: ConstructorParameters<typeof MemoryStore>[0]) {
    super(options);
    const inner = this.audit;
    (this as { audit: MemoryStore["audit"] }).audit = {
      record: (entry) =>
        this.down
          ? Promise.reject(new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true }))
          : inner.record(entry),
      query: (range) => inner.query(range),
    };
  }
}

const MAX_ENTRIES = 200;

async function build() {
  let reads = 0;
  const flapping = { on: true };
  const parts = simulatedSystem({
    tags,
    // Flaps every read while `flapping.on`: each rise is an interlock trip.
    sources: { "chamber.pressure": () => (flapping.on && reads++ % 2 === 0 ? 50 : 1) },
    scanGroups: { fast: { periodMs: 50 } },
    machine: { model: "kiln", safeState: [{ tag: "heater.setpoint", value: 0 }] },
    authorization: { operatorWritableTags: ["heater.*"] },
    alarms: [
      { tag: "chamber.pressure", kind: "HIHI", setpoint: 20, priority: 1, message: "Overpressure", interlock: true },
    ],
    audit: { backlog: { maxEntries: MAX_ENTRIES, whenFull: "refuse-commands" } },
    store: (clock) => new DownAuditStore({ clock }),
  });
  const trips: number[] = [];
  parts.system.bus.on("interlock-trip", (event) => void trips.push(event.at));
  return { ...parts, flapping, trips };
}

/** Summaries' counts of `action` in the trail (`audit.coalesce` by the action they stand for; `audit.drop` by count). */
function coalesced(trail: readonly AuditEntry[], action: string): number {
  return trail
    .filter((entry) => entry.action === "audit.coalesce" && (entry.newValue as { action: string }).action === action)
    .reduce((sum, entry) => sum + (entry.newValue as { count: number }).count, 0);
}

async function trailOf(parts: Awaited<ReturnType<typeof build>>): Promise<AuditEntry[]> {
  await parts.system.stop();
  await parts.store.open(parts.system.tags.list());
  return parts.store.audit.query({ from: 0, to: parts.clock.now() + 1 });
}

describe("the audit backlog's bound holds for the system's own entries (adv15p M3)", () => {
  test("10,000 interlock trips while the audit store is down: the backlog stays within maxEntries, and stored entries plus summary counts are the trips exactly", async () => {
    const parts = await build();
    const { system, store, clock } = parts;
    store.down = true;
    await system.start();
    let most = 0;
    while (parts.trips.length < 10_000) {
      await clock.advance(50);
      most = Math.max(most, system.health().audit.backlog);
    }
    parts.flapping.on = false;
    await clock.advance(200);
    expect(most).toBeLessThanOrEqual(MAX_ENTRIES);
    const tripped = parts.trips.length;
    // Every trip wrote the safe state (the plant is protected; only the trail was at stake).
    expect(parts.plc.writes.filter((write) => write.tag === "heater.setpoint")).toHaveLength(tripped);
    store.down = false;
    await clock.advance(5_000);
    expect(system.health().audit.backlog).toBe(0);
    const trail = await trailOf(parts);
    const stored = trail.filter((entry) => entry.action === "machine.trip" && entry.refersTo === undefined).length;
    expect(stored).toBeLessThanOrEqual(MAX_ENTRIES);
    expect(stored + coalesced(trail, "machine.trip")).toBe(tripped);
    expect(trail.filter((entry) => entry.action === "audit.drop")).toEqual([]);
  }, 120_000);

  test("sibling: trips go on while the store comes back: health names the coalesced entries while they wait, and the trail still accounts for every trip exactly once", async () => {
    const parts = await build();
    const { system, store, clock } = parts;
    store.down = true;
    await system.start();
    while (parts.trips.length < 1_000) await clock.advance(50);
    expect(system.health().audit.coalesced).toBeGreaterThan(0);
    expect(system.health().problems).toContainEqual(
      expect.stringContaining("coalesced by kind while the audit backlog was full"),
    );
    // The store is back while the input still flaps: the summary is written once the backlog has
    // room, and later trips are stored behind it (or coalesced again while it is full).
    store.down = false;
    while (parts.trips.length < 2_000) await clock.advance(50);
    parts.flapping.on = false;
    await clock.advance(5_000);
    expect(system.health().audit).toMatchObject({ backlog: 0, coalesced: 0, dropped: 0 });
    expect(system.health().problems.filter((problem) => problem.includes("audit"))).toEqual([]);
    const tripped = parts.trips.length;
    const trail = await trailOf(parts);
    const single = trail.filter((entry) => entry.action === "machine.trip" && entry.refersTo === undefined);
    // Each stored once (ids unique), none also counted.
    expect(new Set(single.map((entry) => entry.id)).size).toBe(single.length);
    expect(single.length + coalesced(trail, "machine.trip")).toBe(tripped);
    // The summary spans the outage: from the first trip that did not fit to one before the store came back.
    const summaries = trail.filter((entry) => entry.action === "audit.coalesce");
    expect(summaries.length).toBeGreaterThanOrEqual(1);
    for (const summary of summaries) {
      const value = summary.newValue as { first: number; last: number; count: number };
      expect(value.last).toBeGreaterThanOrEqual(value.first);
      expect(summary).toMatchObject({ principal: "(system)", category: "audit", outcome: "allowed", target: "ald-1" });
    }
  }, 60_000);
});
