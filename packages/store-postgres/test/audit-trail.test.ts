import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  KilnError,
  SimulatedPlc,
  createControlSystem,
  defineTags,
  type Principal,
  type Store,
  type TagValue,
} from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { TARGETS, useTarget } from "./support/database";

// The audit trail's guarantees on PostgreSQL: the same property as core's
// compose/audit-trail.property.test.ts (MemoryStore), plus the NUL regression of issue 15.
const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "counter.total": { dataType: "int64", access: "readwrite" },
  "chamber.pressure": { dataType: "float64" },
});

const oddString = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ maxLength: 8 }).map((text) => `${text}\u0000`),
  fc.constantFrom("heater.setpoint", "valve.tma", "counter.total", "chamber.pressure", "heater.*", "__proto__"),
  fc.nat(40_000).map((length) => "x".repeat(length)),
);
const principal: fc.Arbitrary<Principal> = fc.record(
  {
    id: oddString,
    roles: fc.subarray(["viewer", "operator", "engineer", "admin", "__proto__"]),
    source: oddString,
  },
  { requiredKeys: ["id", "roles"] },
);
const value: fc.Arbitrary<TagValue> = fc.oneof(
  fc.double(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.boolean(),
  oddString,
);
type Command =
  | { readonly kind: "write"; readonly principal: Principal; readonly tag: string; readonly value: TagValue }
  | { readonly kind: "machine"; readonly principal: Principal; readonly command: string }
  | { readonly kind: "acknowledge"; readonly principal: Principal; readonly alarmId: string };
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), principal, tag: oddString, value }),
  fc.record({ kind: fc.constant("machine" as const), principal, command: fc.constantFrom("start", "stop", "bogus") }),
  fc.record({ kind: fc.constant("acknowledge" as const), principal, alarmId: oddString }),
);

/**
 * The audit trail's guarantees over random command sequences from random principals (NUL, huge
 * and odd strings, bigints), run concurrently in batches, with an audit store failing at random:
 * every command has exactly one entry (stored, or reported as skipped), no denied command reached
 * the driver, and no allowed command ran without a durable entry (stored, or journaled).
 */
async function checkAuditTrail(newStore: () => Store | Promise<Store>, runs: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(command, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
      async (batches, failures) => {
        const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
        const plc = new SimulatedPlc({ tags, clock });
        const store = await newStore();
        let calls = 0;
        let failing = true;
        const audit: Store["audit"] = {
          record: async (entry) => {
            if (failing && failures[calls++ % failures.length]!) {
              throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
            }
            await store.audit.record(entry);
          },
          query: (range) => store.audit.query(range),
        };
        const system = createControlSystem({
          machineId: "ald-1",
          tags,
          driver: plc,
          store: { ...storeParts(store), audit },
          clock,
          storePolicies: { audit: { breaker: { failureThreshold: 1_000_000 } } },
          authorization: { operatorWritableTags: ["heater.*"] },
          alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 3, priority: 2, message: "high" }],
          audit: { backlog: { path: join(await mkdtemp(join(tmpdir(), "kiln-audit-property-")), "audit.journal") } },
        });
        const events = { fail: new Map<string, boolean>(), skipped: new Set<string>(), dropped: 0 };
        system.bus.on("audit-record-fail", (event) => void events.fail.set(event.id, event.durable));
        system.bus.on("audit-entry-skip", (event) => void events.skipped.add(event.id));
        system.bus.on("audit-entry-drop", (event) => void (events.dropped += event.count));
        await system.start();
        let issued = 0;
        for (const batch of batches) {
          issued += batch.length;
          await Promise.allSettled(batch.map((next) => run(system, next)));
        }
        failing = false;
        // The next command drains the backlog first, in order.
        await system.writeTag({ id: "admin", roles: ["admin"] }, "valve.tma", false);
        issued++;
        const entries = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
        await system.stop();

        const ids = entries.map((entry) => entry.id);
        expect(new Set(ids).size).toBe(ids.length);
        expect(ids.length + events.skipped.size).toBe(issued);
        expect(ids.some((id) => events.skipped.has(id))).toBe(false);
        expect(events.dropped).toBe(0);
        const allowedWrites = entries
          .filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed")
          .map((entry) => `${entry.target}=${String(entry.newValue)}`)
          .sort();
        expect(plc.writes.map((write) => `${write.tag}=${String(write.value)}`).sort()).toEqual(allowedWrites);
        for (const entry of entries.filter((stored) => stored.outcome === "allowed")) {
          // Either stored when it was made, or journaled before the command returned.
          expect(events.fail.get(entry.id) ?? true).toBe(true);
        }
      },
    ),
    { numRuns: runs },
  );
}

function run(system: ReturnType<typeof createControlSystem>, next: Command): Promise<unknown> {
  switch (next.kind) {
    case "write":
      return system.writeTag(next.principal, next.tag, next.value);
    case "machine":
      return system.sendMachineCommand(next.principal, next.command);
    case "acknowledge":
      return system.acknowledgeAlarm(next.principal, next.alarmId);
  }
}

function storeParts(store: Store): Store {
  return {
    storeApiVersion: store.storeApiVersion,
    capabilities: store.capabilities,
    open: (list) => store.open(list),
    close: () => store.close(),
    samples: store.samples,
    ...(store.history === undefined ? {} : { history: store.history }),
    events: store.events,
    processes: store.processes,
    recipes: store.recipes,
    alarms: store.alarms,
    audit: store.audit,
  };
}

describe.each(TARGETS)("the audit trail $title", ({ kind, skip }) => {
  const target = useTarget(kind);

  test.skipIf(skip)(
    "a viewer's refused write to a tag named with NUL, then 40 more commands: every one is audited or reported, none held up",
    async () => {
      const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
      const plc = new SimulatedPlc({ tags, clock });
      const store = target.create();
      const system = createControlSystem({
        machineId: "ald-1",
        tags,
        driver: plc,
        store,
        clock,
        authorization: { operatorWritableTags: ["heater.*"] },
      });
      const skipped: string[] = [];
      system.bus.on("audit-entry-skip", (event) => void skipped.push(event.id));
      await system.start();
      const viewer: Principal = { id: "vic", roles: ["viewer"] };
      const engineer: Principal = { id: "enzo", roles: ["engineer"], source: "hmi-2/session-81f" };
      await expect(system.writeTag(viewer, "heater.setpoint\u0000", 1)).rejects.toMatchObject({
        code: "KILN_FORBIDDEN",
      });
      for (let index = 0; index < 40; index++) {
        await system.writeTag(index % 2 === 0 ? engineer : viewer, "heater.setpoint", index).catch(() => undefined);
      }
      const entries = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
      await system.stop();
      // 41 commands: each stored once, or (the NUL one, where the store cannot hold it) reported.
      expect(entries.length + skipped.length).toBe(41);
      expect(new Set([...entries.map((entry) => entry.id), ...skipped]).size).toBe(41);
      expect(entries.filter((entry) => entry.outcome === "allowed")).toHaveLength(20);
      expect(plc.writes).toHaveLength(20);
      expect(entries.find((entry) => entry.principal === "enzo")).toMatchObject({
        machineId: "ald-1",
        source: "hmi-2/session-81f",
        category: "tag",
        action: "tag.write",
        roles: ["engineer"],
      });
    },
  );

  test.skipIf(skip)(
    "property: every command has exactly one audit entry, no denied command reaches the PLC, no allowed command runs without a durable entry",
    async () => {
      await checkAuditTrail(() => target.create(), kind === "server" ? 12 : 8);
    },
    240_000,
  );
});
