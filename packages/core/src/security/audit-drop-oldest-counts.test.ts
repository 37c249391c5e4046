import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

// Adversarial review adv15 (main e3a16d26), MEDIUM-1 and MEDIUM-2, `drop-oldest` with a journal:
// - the drain cleared an entry's `storing` mark when the store took it but removed it from the
//   backlog only in a later writer turn; an enqueue in between evicted it and counted it dropped
//   (and folded a stored `audit.drop` summary into the next tally): 586 counted for 145 missing;
// - while the head's store call was out nothing was evicted (every entry behind it is journaled,
//   and the journal releases oldest first), so the backlog grew without bound (6,474 at
//   maxEntries 20). Now commands are refused while the limit cannot be kept (fix15ae).

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const admin: Principal = { id: "ada", roles: ["admin"] };

async function setup(options: { maxEntries: number; record: (entry: AuditEntry) => Promise<void> }) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  let dropEvents = 0;
  bus.on("audit-entry-drop", (event) => void (dropEvents += event.count));
  const audit: AuditLog = {
    query: store.audit.query,
    record: async (entry: AuditEntry) => {
      await options.record(entry);
      await store.audit.record(entry);
    },
  };
  const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-drop-oldest-")), "a.journal");
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit,
    clock,
    bus,
    machineId: "ald-1",
    newId: () => `e-${++ids}`,
    retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
    backlog: { path, maxEntries: options.maxEntries, whenFull: "drop-oldest" },
  });
  await runner.open();
  const write = (value: number) =>
    runner
      .run({
        principal: admin,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: "idle",
        newValue: value,
        execute: () => Promise.resolve(),
      })
      .then(
        () => "ok",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      );
  const stored = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  return { runner, write, stored, dropEvents: () => dropEvents, clock };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("drop-oldest with a journal: counts equal what is missing, and the limit holds (fix15ae)", () => {
  test("adv15 MEDIUM-1: a healthy slow store, 8 concurrent writes a round: dropped equals the commands missing from the store", async () => {
    let calls = 0;
    const { runner, write, stored, dropEvents } = await setup({
      maxEntries: 30,
      // Healthy, answering after 0 to 2 event-loop turns.
      record: async () => {
        for (let wait = calls++ % 3; wait > 0; wait--) await turn();
      },
    });
    let value = 0;
    const answers = new Map<number, string>();
    for (let round = 0; round < 60; round++) {
      await Promise.all(
        Array.from({ length: 8 }, () => {
          const mine = ++value;
          return write(mine).then((answer) => answers.set(mine, answer));
        }),
      );
    }
    for (let round = 0; round < 100 && !(await runner.flush()); round++) await turn();
    const trail = await stored();
    const values = new Set(trail.filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue));
    const ran = [...answers].filter(([, answer]) => answer === "ok").map(([mine]) => mine);
    const missing = ran.filter((mine) => !values.has(mine)).length;
    const summarized = trail
      .filter((entry) => entry.action === "audit.drop")
      .reduce((sum, entry) => sum + (entry.newValue as { count: number }).count, 0);
    // Entries were dropped (the backlog was full while the store took others): the counts are tested.
    expect(missing).toBeGreaterThan(0);
    expect(runner.dropped).toBe(missing);
    expect(dropEvents()).toBe(missing);
    expect(summarized).toBe(missing);
    await runner.close();
  });

  test("adv15 MEDIUM-2: while the head's store call is out the backlog keeps maxEntries; what ran is stored or counted dropped", async () => {
    const state = { hang: true, hung: [] as ((error?: Error) => void)[] };
    const { runner, write, stored } = await setup({
      maxEntries: 20,
      record: (entry) =>
        state.hang
          ? new Promise<void>((resolve, reject) =>
              state.hung.push((error) => (error === undefined ? resolve() : reject(error))),
            )
          : Promise.resolve(void entry),
    });
    const answers = new Map<number, Promise<string>>();
    // The first entry is journaled and its drain's store call hangs: the head's call is out.
    answers.set(1, write(1));
    for (let round = 0; round < 400 && state.hung.length === 0; round++) await sleep(5);
    expect(state.hung).toHaveLength(1);
    for (let value = 2; value <= 200; value++) answers.set(value, write(value));
    let most = 0;
    for (let round = 0; round < 100; round++) {
      await sleep(2);
      most = Math.max(most, runner.backlog);
    }
    expect(most).toBeLessThanOrEqual(20);
    // The store's calls time out; then it answers again.
    for (let round = 0; round < 20 && state.hung.length > 0; round++) {
      for (const settle of state.hung.splice(0))
        settle(new KilnError("KILN_TIMEOUT", "audit store timed out", { retryable: true }));
      await turn();
      most = Math.max(most, runner.backlog);
    }
    state.hang = false;
    const settled = new Map<number, string>();
    for (const [value, answer] of answers) settled.set(value, await answer);
    for (let round = 0; round < 50 && !(await runner.flush()); round++) await turn();
    expect(most).toBeLessThanOrEqual(20);
    const values = new Set(
      (await stored()).filter((entry) => entry.action === "tag.write").map((entry) => entry.newValue),
    );
    const ran = [...settled].filter(([, answer]) => answer === "ok").map(([value]) => value);
    expect(ran.length).toBeGreaterThanOrEqual(20);
    expect(
      [...settled.values()].filter((answer) => answer !== "ok").every((answer) => answer === "KILN_AUDIT_UNAVAILABLE"),
    ).toBe(true);
    expect(runner.dropped).toBe(ran.filter((value) => !values.has(value)).length);
    await runner.close();
  });
});
