import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review adv15k, MEDIUM-1: at the stop, backlog entries already handled (stored as the
// poison rule's probe behind a suspect head, or refused for good and kept aside) were counted
// dropped (`dropped`, `droppedAtStop`) and a stored refusal was reported `audit-refusal-drop`
// ("the trail may show this command allowed"), though the store has them (fix15l).

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const viewer: Principal = { id: "vic", roles: ["viewer"] };

async function setup() {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const drops: KilnEvents["audit-entry-drop"][] = [];
  const refusalDrops: KilnEvents["audit-refusal-drop"][] = [];
  bus.on("audit-entry-drop", (event) => void drops.push(event));
  bus.on("audit-refusal-drop", (event) => void refusalDrops.push(event));
  const state = { down: false, hang: false, open: false, openAfter: "", hangAfter: "" };
  const audit: AuditLog = {
    query: store.audit.query,
    record: async (entry: AuditEntry) => {
      if (state.hang) await new Promise(() => undefined);
      if (state.open)
        throw new KilnError("KILN_CIRCUIT_OPEN", "the audit store's breaker is open", { retryable: true });
      if (state.down) throw new KilnError("KILN_STORE_ERROR", "connection refused", { retryable: true });
      if ((entry.reason ?? "").includes("EVIL1")) throw new TypeError("invalid byte sequence");
      if (entry.newValue === 666) throw new KilnError("KILN_VALIDATION", "value refused", { retryable: false });
      await store.audit.record(entry);
      // Once the probe is stored the store answers nothing more (its breaker opens, or it hangs):
      // the head is not proven the cause before the stop.
      if (entry.id === state.openAfter) state.open = true;
      if (entry.id === state.hangAfter) state.hang = true;
    },
  };
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit,
    clock,
    bus,
    machineId: "ald-1",
    newId: () => `e-${++ids}`,
    retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
  });
  await runner.open();
  const write = (principal: Principal, value: number, comment?: string) =>
    runner
      .run({
        principal,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: "idle",
        newValue: value,
        ...(comment === undefined ? {} : { comment }),
        execute: () => Promise.resolve(),
      })
      .then(
        () => "ok",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      );
  const storedIds = async () =>
    (await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).map((entry) => entry.id);
  /** Drains until `done` holds (the head still suspect, its probes handled), one retry at a time. */
  const drainUntil = async (done: () => Promise<boolean>) => {
    for (let round = 0; round < 20 && !(await done()); round++) {
      // A store that hangs leaves the flush pending: the state is looked at meanwhile.
      await Promise.race([runner.flush(), new Promise((resolve) => setTimeout(resolve, 20))]);
      if (await done()) return;
      await clock.advance(1_100);
    }
  };
  return { runner, write, storedIds, drops, refusalDrops, state, drainUntil, clock };
}

describe("the stop counts only entries still waiting for the store (fix15l, adv15k MEDIUM-1)", () => {
  test("a probe stored behind a suspect head is neither counted dropped nor reported at the stop", async () => {
    const { runner, write, storedIds, drops, refusalDrops, state, drainUntil, clock } = await setup();
    state.openAfter = "e-2";
    expect(await write(viewer, 1, "EVIL1")).toBe("KILN_FORBIDDEN");
    expect(await write(viewer, 2)).toBe("KILN_FORBIDDEN");
    await drainUntil(async () => (await storedIds()).includes("e-2"));
    expect(await storedIds()).toContain("e-2");
    expect(runner.status()).toMatchObject({ backlog: 1, skipped: 0 });
    // A retry with the breaker open is no answer about the head: it stays, unproven, to the stop.
    await clock.advance(1_100);
    expect(runner.status()).toMatchObject({ backlog: 1, skipped: 0 });
    await runner.close();
    // Only the head (e-1) is missing from the store: one entry dropped, no refusal reported.
    expect(await storedIds()).not.toContain("e-1");
    expect(runner.status()).toMatchObject({ dropped: 1, droppedAtStop: 1, refusalsDropped: 0 });
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(1);
    expect(refusalDrops).toHaveLength(0);
  });

  test("(sibling) a probe refused for good and kept aside is counted once (skipped), not dropped again at the stop", async () => {
    const { runner, write, storedIds, drops, state, drainUntil } = await setup();
    expect(await write(viewer, 1, "EVIL1")).toBe("KILN_FORBIDDEN");
    expect(await write(viewer, 666)).toBe("KILN_FORBIDDEN");
    await drainUntil(async () => runner.status().skipped >= 1);
    expect(runner.status().skipped).toBeGreaterThanOrEqual(1);
    state.down = true;
    await runner.close();
    expect(await storedIds()).toEqual([]);
    const status = runner.status();
    // Every entry is counted once: kept aside (skipped) or dropped, never both.
    expect(status.skipped + status.dropped).toBe(2);
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(status.dropped);
  });

  test("(sibling) the stop that gives up on a hanging store does not count the stored probe", async () => {
    const { runner, write, drops, refusalDrops, state, drainUntil, storedIds } = await setup();
    state.hangAfter = "e-2";
    expect(await write(viewer, 1, "EVIL1")).toBe("KILN_FORBIDDEN");
    expect(await write(viewer, 2)).toBe("KILN_FORBIDDEN");
    await drainUntil(async () => (await storedIds()).includes("e-2"));
    expect(runner.status()).toMatchObject({ backlog: 1, skipped: 0 });
    void runner.close();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(runner.giveUpClose("the stop gave up on the audit store")).toBe(1);
    expect(runner.status()).toMatchObject({ dropped: 1, droppedAtStop: 1, refusalsDropped: 0 });
    expect(drops.reduce((sum, event) => sum + event.count, 0)).toBe(1);
    expect(refusalDrops).toHaveLength(0);
  });
});
