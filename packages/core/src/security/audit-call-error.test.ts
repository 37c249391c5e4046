import { expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable } from "./authorization";

// Open item (b) of fix15af: `#storing` told a timed-out call (which may still land, so its entry
// is never evicted and counted dropped) from the writer's shared last error, which a concurrent
// command's failing call may have set meanwhile: the head's timeout was then read as that
// command's plain error, the head evicted under drop-oldest and counted dropped, and its call
// landed. Each call's error is now kept on its own item (fix15ag).

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });

test("a head whose call timed out is not evicted and counted dropped when a concurrent command's call failed otherwise in the same turn", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  let dropped = 0;
  bus.on("audit-entry-drop", (event) => void (dropped += event.count));
  const calls: { entry: AuditEntry; resolve: () => void; reject: (error: unknown) => void }[] = [];
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: {
      query: store.audit.query,
      record: (entry: AuditEntry) =>
        new Promise<void>((resolve, reject) => {
          calls.push({ entry, resolve, reject });
        }),
    },
    clock,
    bus,
    machineId: "ald-1",
    newId: (() => {
      let ids = 0;
      return () => `entry-${++ids}`;
    })(),
    retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
    backlog: { maxEntries: 1, whenFull: "drop-oldest" },
  });
  await runner.open();
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
  const engineer = { id: "enzo", roles: ["engineer"] };
  // A trip's entry fails once with an error the store does not classify: queued (the store is
  // not taken as failing), and the drain's call for it goes out.
  const trip = runner.runSystemAction({ action: "machine.trip", target: "t1", reason: "interlock" }, () =>
    Promise.resolve(undefined),
  );
  await tick();
  expect(calls).toHaveLength(1);
  calls.shift()!.reject(new Error("connection reset"));
  await trip;
  const flushing = runner.flush().catch(() => false);
  for (let i = 0; i < 5 && calls.length === 0; i++) await tick();
  const headCall = calls.shift()!;
  expect(headCall.entry.id).toBe("entry-1");
  // A command stores its own entry meanwhile (no journal): its call is out too.
  const write = runner
    .run({
      principal: engineer,
      permission: "tag.write",
      target: "heater.setpoint",
      machineState: "idle",
      newValue: 5,
      execute: () => Promise.resolve(undefined),
    })
    .catch((error: unknown) => (KilnError.is(error) ? error.code : String(error)));
  for (let i = 0; i < 5 && calls.length === 0; i++) await tick();
  const commandCall = calls.shift()!;
  expect(commandCall.entry.id).toBe("entry-2");
  // The guard times the head's call out (it is still out at the store), and in the same turn the
  // command's call fails with a plain error.
  headCall.reject(new KilnError("KILN_TIMEOUT", "audit store timed out", { retryable: true }));
  commandCall.reject(new Error("connection reset"));
  expect(await write).toBe("KILN_AUDIT_UNAVAILABLE");
  for (let i = 0; i < 10; i++) await tick();
  // The head's abandoned call lands.
  await store.audit.record(headCall.entry);
  for (const call of calls.splice(0)) call.reject(new KilnError("KILN_TIMEOUT", "timed out", { retryable: true }));
  await flushing;
  const stored = new Set((await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).map((entry) => entry.id));
  // Whatever was counted dropped is missing from the store: the landed head never is.
  expect(stored.has("entry-1")).toBe(true);
  // Nothing was counted dropped: the head stayed marked while its call was out (before: evicted
  // and counted, 1 dropped, and then stored).
  expect(runner.status().dropped).toBe(0);
  expect(dropped).toBe(0);
});
