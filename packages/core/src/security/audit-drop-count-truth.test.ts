import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable } from "./authorization";

// Adversarial review (fix15ad, LOW 3; ADR 0034 amendment 15j's known limit): with `drop-oldest`,
// the head entry whose store call was in flight could be evicted and counted dropped, and then
// stored by that call: the count (and the trail's `audit.drop` summary naming it) said lost while
// the entry was in the store. Now an entry whose store call is out, or that the store already
// took (the poison rule's probe), is never counted dropped: a drop count equals what is missing.

type Mode = "down" | "hang" | "up" | "poison";

async function setup(maxEntries: number) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open([]);
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const state = { mode: "up" as Mode, hung: [] as (() => void)[], poisonCalls: 0 };
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: {
      query: store.audit.query,
      record: async (entry: AuditEntry) => {
        if (state.mode === "down") throw new KilnError("KILN_TIMEOUT", "audit store timed out", { retryable: true });
        // entry-1 fails twice unclassified, then its breaker is open: no answer, so it stays (a
        // timeout is evidence about its content since fix15af).
        if (state.mode === "poison" && entry.id === "entry-1") {
          if (++state.poisonCalls <= 2) throw new Error("cannot store this entry");
          throw new KilnError("KILN_CIRCUIT_OPEN", "audit store breaker open", { retryable: false });
        }
        if (state.mode === "hang") await new Promise<void>((resolve) => state.hung.push(resolve));
        await store.audit.record(entry);
      },
    },
    clock,
    bus,
    machineId: "ald-1",
    newId: (() => {
      let ids = 0;
      return () => `entry-${++ids}`;
    })(),
    backlog: { maxEntries, whenFull: "drop-oldest" },
  });
  await runner.open();
  const trip = (value: number) =>
    runner.runSystemAction({ action: "machine.trip", target: `t${value}`, reason: "interlock" }, () =>
      Promise.resolve(undefined),
    );
  const entries = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
  return { runner, state, trip, entries, tick };
}

describe("a drop count equals what is missing from the store (fix15ad)", () => {
  test("drop-oldest does not evict the head while its store call is out: the entry it then stores is not counted dropped", async () => {
    const { runner, state, trip, entries, tick } = await setup(2);
    state.mode = "down";
    await trip(1);
    await trip(2);
    expect(runner.backlog).toBe(2);
    // The store answers again, slowly: a drain's call for the head is out.
    state.mode = "hang";
    const flushing = runner.flush();
    await tick();
    expect(state.hung).toHaveLength(1);
    // A third entry at the limit evicts one.
    await trip(3);
    state.mode = "up";
    for (const release of state.hung.splice(0)) release();
    await flushing;
    expect(await runner.flush()).toBe(true);
    const trail = await entries();
    const trips = trail.filter((entry) => entry.action === "machine.trip").map((entry) => entry.target);
    const missing = ["t1", "t2", "t3"].filter((target) => !trips.includes(target));
    expect(runner.dropped).toBe(missing.length);
    // The trail's drop summary names only what is missing.
    const summary = trail.find((entry) => entry.action === "audit.drop");
    expect(summary?.newValue).toMatchObject({ count: missing.length });
    expect(missing).toEqual(["t2"]);
    await runner.close();
  });

  test("(sibling) an entry the store took as the poison rule's probe, evicted at the limit, is not counted dropped", async () => {
    const { runner, state, trip, entries } = await setup(3);
    state.mode = "down";
    for (const value of [1, 2, 3]) await trip(value);
    // The head fails twice with an error the store does not classify, then its breaker is open:
    // the probe behind it (entry-2) was stored, the head stays.
    state.mode = "poison";
    expect(await runner.flush()).toBe(false);
    expect(await runner.flush()).toBe(false);
    expect((await entries()).map((entry) => entry.id)).toEqual(["entry-2"]);
    // At the limit the oldest go: the head (never stored), then the probe (stored already).
    await trip(4);
    await trip(5);
    state.mode = "up";
    expect(await runner.flush()).toBe(true);
    const trail = await entries();
    const trips = trail.filter((entry) => entry.action === "machine.trip").map((entry) => entry.target);
    const missing = ["t1", "t2", "t3", "t4", "t5"].filter((target) => !trips.includes(target));
    expect(missing).toEqual(["t1"]);
    expect(runner.dropped).toBe(missing.length);
    expect(trail.find((entry) => entry.action === "audit.drop")?.newValue).toMatchObject({ count: 1 });
    await runner.close();
  });

  test("(sibling) an entry counted dropped at the stop (its store call still out) and stored after all is taken back out of the counts", async () => {
    const { runner, state, entries, tick } = await setup(10);
    state.mode = "hang";
    // A viewer's denied attempt: its entry is stored at once, off the writer; that call hangs.
    const denied = runner
      .run({
        principal: { id: "olga", roles: ["operator"] },
        permission: "tag.write",
        target: "valve.tma",
        machineState: "idle",
        newValue: true,
        execute: () => Promise.resolve(),
      })
      .catch((error: unknown) => (KilnError.is(error) ? error.code : String(error)));
    await tick();
    expect(state.hung).toHaveLength(1);
    await runner.close();
    // The stop gives up on the call still out: counted dropped at the stop.
    expect(runner.giveUpClose("the control system stopped while the audit store had not answered")).toBe(1);
    expect(await denied).toBe("KILN_FORBIDDEN");
    expect(runner.status()).toMatchObject({ dropped: 1, droppedAtStop: 1 });
    // The call lands after all: the entry is in the store, so nothing is missing.
    for (const release of state.hung.splice(0)) release();
    await tick();
    await tick();
    expect((await entries()).map((entry) => entry.id)).toEqual(["entry-1"]);
    expect(runner.status()).toMatchObject({ dropped: 0, droppedAtStop: 0 });
  });
});
