import { expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// fix15c (adv15za LOW): an overflow summary said "the audit backlog's share for them was full"
// whatever made the writer count instead of record. Each count keeps its cause, and the summary
// names it (`newValue.causes`, the reason); the journal-full causes are covered by
// test/audit-overflow-crash.test.ts.

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const viewer: Principal = { id: "vera", roles: ["viewer"] };

test("denied attempts beyond their share of an in-memory backlog: the summary names that share as the cause", async () => {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const plc = new SimulatedPlc({ tags, clock });
  await plc.connect();
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  let up = false;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit: {
      query: store.audit.query,
      record: (entry: AuditEntry) =>
        up ? store.audit.record(entry) : Promise.reject(new KilnError("KILN_TIMEOUT", "down", { retryable: true })),
    },
    clock,
    bus: new EventBus<KilnEvents>({ now: () => clock.now() }),
    machineId: "ald-1",
    backlog: { maxEntries: 20 },
  });
  await runner.open();
  for (let round = 0; round < 60; round++) {
    await runner
      .run({
        principal: viewer,
        permission: "tag.write",
        target: "heater.setpoint",
        machineState: "idle",
        newValue: round,
        execute: () => plc.write(tags.get("heater.setpoint"), round),
      })
      .catch(() => undefined);
  }
  up = true;
  await runner.close();
  const summaries = (await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).filter(
    (entry) => entry.action === "audit.overflow",
  );
  expect(summaries.length).toBeGreaterThan(0);
  const causes = new Set(summaries.flatMap((entry) => (entry.newValue as { causes?: string[] }).causes ?? []));
  expect(
    [...causes].some((cause) => /share for denied and failed entries was full \(\d+ of 20 entries\)/.test(cause)),
  ).toBe(true);
  expect([...causes].some((cause) => cause.includes("maxBytes") || cause.includes("reserve"))).toBe(false);
  for (const entry of summaries)
    expect(entry.reason).toContain((entry.newValue as { causes: string[] }).causes.join("; "));
});
