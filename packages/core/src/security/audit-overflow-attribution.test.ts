import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags, type TagValue } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";
import { tmpfs, unmount } from "../../test/support/tmpfs";

// Adversarial review adv15z, HIGH-1: with the journal's disk full and the reserve out of room, the
// writer took a refused attempt's entry back with a blind `pop()` after awaits: concurrent commands
// had pushed behind it meanwhile, so another principal's entry left uncounted and this one was
// counted twice (when the reserve had counted it already). Totals stayed right; who was charged not.

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite" },
  "valve.tma": { dataType: "bool", access: "readwrite" },
});
const viewer: Principal = { id: "vera", roles: ["viewer"] };
const operator: Principal = { id: "olga", roles: ["operator"] };

describe("attempts counted while the journal's disk is full are charged to their own principal", () => {
  test("concurrent refused writes by two principals: entries + overflow counts per principal equal their attempts (needs root to mount a tmpfs)", async (context) => {
    const mount = await tmpfs("300k");
    if (mount === undefined) return context.skip();
    try {
      const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
      const plc = new SimulatedPlc({ tags, clock });
      await plc.connect();
      const store = new MemoryStore({ clock });
      await store.open(tags.list());
      let storeUp = false;
      const audit = {
        query: store.audit.query,
        record: (entry: AuditEntry) =>
          storeUp
            ? store.audit.record(entry)
            : Promise.reject(new KilnError("KILN_TIMEOUT", "down", { retryable: true })),
      };
      const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
      const drops: KilnEvents["audit-entry-drop"][] = [];
      bus.on("audit-entry-drop", (event) => void drops.push(event));
      let ids = 0;
      const path = join(mount, "audit.journal");
      const make = () =>
        new AuditedCommandRunner({
          authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
          audit,
          clock,
          bus,
          machineId: "ald-1",
          newId: () => `entry-${++ids}`,
          retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
          backlog: { path, maxEntries: 100_000 },
        });
      const runner = make();
      await runner.open();
      // The disk full after the journal and its reserve were made.
      for (let file = 0; file < 40; file++)
        await writeFile(join(mount, `filler-${file}`), Buffer.alloc(16 * 1024)).catch(() => undefined);
      const attempts = new Map<string, number>();
      const writeTag = (principal: Principal, tag: string, value: TagValue) => {
        attempts.set(principal.id, (attempts.get(principal.id) ?? 0) + 1);
        return runner
          .run({
            principal,
            permission: "tag.write",
            target: tag,
            machineState: "idle",
            newValue: value,
            execute: () => plc.write(tags.get(tag), value),
          })
          .then(
            () => "ran",
            (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
          );
      };
      for (let round = 0; round < 400; round++) {
        const outcomes = await Promise.all([
          writeTag(viewer, "heater.setpoint", round),
          writeTag(operator, "valve.tma", round % 2 === 0),
          writeTag(viewer, "heater.setpoint", -round),
        ]);
        expect(outcomes.every((code) => code === "KILN_FORBIDDEN")).toBe(true);
      }
      expect(plc.writes).toEqual([]);
      storeUp = true;
      await runner.close();
      // A new runner on the same journal stores what the last one kept.
      const next = make();
      await next.open();
      await next.close();
      const entries = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
      const charged = new Map<string, number>();
      let collapsed = 0;
      for (const entry of entries) {
        if (entry.action === "tag.write") charged.set(entry.principal, (charged.get(entry.principal) ?? 0) + 1);
        if (entry.action === "audit.overflow") {
          const { count, principals } = entry.newValue as { count: number; principals: string[] };
          if (principals.length === 1) charged.set(principals[0]!, (charged.get(principals[0]!) ?? 0) + count);
          else collapsed += count;
        }
      }
      // Nothing reported lost; every attempt charged to its own principal (none merged into a shared bucket here).
      expect(drops).toEqual([]);
      expect(collapsed).toBe(0);
      expect(Object.fromEntries(charged)).toEqual(Object.fromEntries(attempts));
    } finally {
      await unmount(mount);
    }
  }, 120_000);

  test.each(["disk full", "maxBytes"] as const)(
    "after a crash with the journal full (%s), no command that did not run is in the trail as allowed without its refusal (needs root to mount a tmpfs)",
    async (variant, context) => {
      // adv15za HIGH-1: over the reserve's room the newest entries were left out first, whatever they were, so a
      // refusal could be held in memory only while older denials kept their room; the crash then lost it and the
      // trail said "allowed" for a command that never ran.
      const mount = await tmpfs("300k");
      if (mount === undefined) return context.skip();
      try {
        const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
        const plc = new SimulatedPlc({ tags, clock });
        await plc.connect();
        const store = new MemoryStore({ clock });
        await store.open(tags.list());
        let storeUp = false;
        const audit = {
          query: store.audit.query,
          record: (entry: AuditEntry) =>
            storeUp
              ? store.audit.record(entry)
              : Promise.reject(new KilnError("KILN_TIMEOUT", "down", { retryable: true })),
        };
        const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
        const refusalDrops: KilnEvents["audit-refusal-drop"][] = [];
        bus.on("audit-refusal-drop", (event) => void refusalDrops.push(event));
        let ids = 0;
        const path = join(mount, "audit.journal");
        const make = () =>
          new AuditedCommandRunner({
            authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
            audit,
            clock,
            bus,
            machineId: "ald-1",
            newId: () => `entry-${++ids}`,
            retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
            backlog: { path, maxEntries: 100_000, ...(variant === "maxBytes" ? { maxBytes: 32_768 } : {}) },
          });
        const runner = make();
        await runner.open();
        if (variant === "disk full")
          for (let file = 0; file < 40; file++)
            await writeFile(join(mount, `filler-${file}`), Buffer.alloc(16 * 1024)).catch(() => undefined);
        const run = (principal: Principal, tag: string, value: TagValue) =>
          runner
            .run({
              principal,
              permission: "tag.write",
              target: tag,
              machineState: "idle",
              newValue: value,
              execute: () => plc.write(tags.get(tag), value),
            })
            .then(
              () => "ran",
              (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
            );
        const notRun = new Set<number>();
        for (let round = 1; round <= 300; round++) {
          const [, outcome] = await Promise.all([
            run(viewer, "heater.setpoint", -round),
            run(operator, "heater.setpoint", round),
            run(viewer, "heater.setpoint", -round - 0.5),
          ]);
          if (outcome !== "ran") notRun.add(round);
        }
        expect(notRun.size).toBeGreaterThan(0);
        // A crash: the runner is abandoned as it is; the next one opens the same journal and reserve.
        storeUp = true;
        const next = make();
        await next.open();
        await next.close();
        const entries = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
        const refused = new Set(entries.filter((entry) => entry.refersTo !== undefined).map((entry) => entry.refersTo));
        const allowedNotRun = entries.filter(
          (entry) =>
            entry.action === "tag.write" &&
            entry.outcome === "allowed" &&
            entry.refersTo === undefined &&
            notRun.has(entry.newValue as number) &&
            !refused.has(entry.id),
        );
        // Unless reported lost (audit-refusal-drop), none.
        expect({ allowedNotRun: allowedNotRun.length, reported: refusalDrops.length }).toEqual({
          allowedNotRun: 0,
          reported: 0,
        });
        expect(plc.writes.map((write) => write.value).filter((value) => notRun.has(value as number))).toEqual([]);
      } finally {
        await unmount(mount);
      }
    },
    120_000,
  );
});
