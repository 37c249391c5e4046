import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as FastCheck from "fast-check";
import { createControlSystem } from "../compose/create-control-system";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { readFileSync } from "node:fs";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { ConformanceRunner } from "./conformance-runner";
import type { ControlSystem, PlcDriver, Principal, Store, TagValue } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";

/** Options of {@link auditTrailPropertySuite}. */
export interface AuditTrailPropertyOptions {
  /** Registers the test (vitest's or jest's `test`); the third argument is its timeout in ms. */
  readonly test: (name: string, body: () => Promise<void>, timeoutMs?: number) => unknown;
  /** Makes assertions (the runner's `expect`); only `toBe` and `toEqual` are used. */
  readonly expect: ConformanceRunner["expect"];
  /** What the store is, for the test name: `"MemoryStore"`, `"PostgreSQL (PGlite)"`. */
  readonly name: string;
  /**
   * Returns a fresh, empty store for one run (the suite opens it through the control system and
   * closes it at `stop()`). Called once per generated case.
   */
  readonly createStore: () => Store | Promise<Store>;
  /** Generated cases. @default 20 */
  readonly runs?: number;
  /** The test's timeout in ms. @default 240000 */
  readonly timeoutMs?: number;
  /** fast-check's seed, to replay a failure it reported. @default random */
  readonly seed?: number;
}

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 } },
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "counter.total": { dataType: "int64", access: "readwrite" },
  "chamber.pressure": { dataType: "float64" },
});

type Command =
  | { readonly kind: "write"; readonly principal: Principal; readonly tag: string; readonly value: TagValue }
  | { readonly kind: "machine"; readonly principal: Principal; readonly command: string }
  | { readonly kind: "acknowledge"; readonly principal: Principal; readonly alarmId: string };

/**
 * Registers one property-based test (fast-check) of the audit trail of a control system on the
 * store `createStore` makes: random sequences of commands (tag writes, machine commands, alarm
 * acknowledgements) from random principals (NUL, 40 000-character and odd strings, `__proto__`,
 * malformed principals: an empty or non-string id, non-string or sparse roles, 100 roles;
 * bigints beyond 64 bits), run concurrently in batches, while the audit store fails at random
 * (retryable `KILN_STORE_ERROR`) and a backlog journal is configured. It asserts IEC 62443-3-3
 * CR 2.8-2.10 as Kiln implements them (ADR 0013):
 *
 * - every command has exactly one audit entry that is its outcome (stored once by its event id,
 *   or reported by `audit-entry-skip` when the store can never hold it: only text with a NUL
 *   character may be skipped), and none is dropped; an `allowed` entry that another entry names
 *   (`refersTo`) is not an outcome: the follow-up is (a `:refusal` or `:cancel`: that command
 *   did not run; a `:fail`: it ran and then failed);
 * - no denied command reached the driver: the driver's writes are exactly the allowed
 *   `tag.write` entries (tag and value);
 * - no allowed command ran without a durable entry: when the driver is called, an allowed
 *   entry for that tag is already stored or journaled (`audit-record-fail` with `durable: true`).
 *
 * Core runs it on `MemoryStore`; `@kiln/store-postgres` on PGlite and a PostgreSQL server. It
 * needs `fast-check` (an optional peer dependency of `@kiln/core`, loaded when the test runs).
 *
 * @example
 * import { auditTrailPropertySuite } from "@kiln/core/testing";
 * import { expect, test } from "vitest";
 * auditTrailPropertySuite({ test, expect, name: "MyStore", createStore: () => new MyStore(), runs: 10 });
 */
export function auditTrailPropertySuite(options: AuditTrailPropertyOptions): void {
  options.test(
    `audit trail property (${options.name}): every command has exactly one audit entry, no denied command reaches the PLC, no allowed command runs without a durable entry`,
    async () => {
      const fc = await import("fast-check");
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(commandArbitrary(fc), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }),
          fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
          (batches, failures) => checkOneCase(options, batches, failures),
        ),
        { numRuns: options.runs ?? 20, ...(options.seed === undefined ? {} : { seed: options.seed }) },
      );
    },
    options.timeoutMs ?? 240_000,
  );
}

function commandArbitrary(fc: typeof FastCheck): FastCheck.Arbitrary<Command> {
  const oddString = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.string({ maxLength: 8 }).map((text) => `${text}\u0000`),
    fc.constantFrom("heater.setpoint", "valve.tma", "counter.total", "chamber.pressure", "heater.*", "__proto__"),
    fc.nat(40_000).map((length) => "x".repeat(length)),
  );
  const sparseRoles: unknown[] = ["operator"];
  sparseRoles[2] = "admin";
  const principal: FastCheck.Arbitrary<Principal> = fc.oneof(
    fc.record(
      {
        id: oddString,
        roles: fc.subarray(["viewer", "operator", "engineer", "admin", "__proto__"]),
        source: oddString,
      },
      { requiredKeys: ["id", "roles"] },
    ),
    // Malformed principals: every store must record their denial alike (none skipped).
    fc.constantFrom(
      { id: "", roles: ["admin"] },
      { id: "nina", roles: [1] },
      { id: "sid", roles: sparseRoles },
      { id: 7, roles: ["admin"] },
      { id: "max", roles: Array.from({ length: 100 }, (_, index) => `role-${index}`) },
    ) as FastCheck.Arbitrary<Principal>,
  );
  const value: FastCheck.Arbitrary<TagValue> = fc.oneof(
    fc.double(),
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
    fc.boolean(),
    oddString,
  );
  return fc.oneof(
    fc.record({ kind: fc.constant("write" as const), principal, tag: oddString, value }),
    fc.record({ kind: fc.constant("machine" as const), principal, command: fc.constantFrom("start", "stop", "bogus") }),
    fc.record({ kind: fc.constant("acknowledge" as const), principal, alarmId: oddString }),
  );
}

async function checkOneCase(
  options: AuditTrailPropertyOptions,
  batches: readonly (readonly Command[])[],
  failures: readonly boolean[],
): Promise<void> {
  const { expect } = options;
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const plc = new SimulatedPlc({ tags, clock });
  const store = await options.createStore();
  const directory = await mkdtemp(join(tmpdir(), "kiln-audit-property-"));
  let calls = 0;
  let failing = true;
  // What is durable, by entry id: stored in the store, or journaled (audit-record-fail, durable).
  const stored = new Set<string>();
  const journaled = new Map<string, { action: string; target: string; outcome: string }>();
  const attempted = new Map<string, AuditEntry>();
  const audit: Store["audit"] = {
    record: async (entry) => {
      attempted.set(entry.id, entry);
      if (failing && failures[calls++ % failures.length]!) {
        throw new KilnError("KILN_STORE_ERROR", "audit store down", { retryable: true });
      }
      await store.audit.record(entry);
      stored.add(entry.id);
    },
    query: (range) => store.audit.query(range),
  };
  // At every driver write: an allowed tag.write entry for the tag must already be durable, one per write.
  const writesSoFar = new Map<string, number>();
  const early: string[] = [];
  const durableAllowed = (tag: string): number => {
    let count = 0;
    for (const id of stored) {
      const entry = attempted.get(id);
      if (entry?.action === "tag.write" && entry.outcome === "allowed" && entry.target === tag) count++;
    }
    const inJournal = new Map(journaled);
    // With a journal, a command's entry is made durable by the append and stored in the
    // background, with no event (review 15j): read from the journal file itself.
    let text = "";
    try {
      text = readFileSync(join(directory, "audit.journal"), "latin1");
    } catch {
      // No journal file yet.
    }
    for (const match of text.matchAll(
      /"id":"([^"]+)"[^{}]*?"action":"(tag\.write)","target":"([^"]+)","outcome":"(allowed)"/g,
    )) {
      inJournal.set(match[1]!, { action: match[2]!, target: match[3]!, outcome: match[4]! });
    }
    for (const [id, entry] of inJournal) {
      if (!stored.has(id) && entry.action === "tag.write" && entry.outcome === "allowed" && entry.target === tag) {
        count++;
      }
    }
    return count;
  };
  const driver = new Proxy(plc, {
    get(target, property) {
      if (property === "write") {
        return (tag: Parameters<PlcDriver["write"]>[0], value: TagValue, signal?: AbortSignal) => {
          const writes = (writesSoFar.get(tag.name) ?? 0) + 1;
          writesSoFar.set(tag.name, writes);
          if (durableAllowed(tag.name) < writes) early.push(`${tag.name}=${String(value)}`);
          return target.write(tag, value, signal);
        };
      }
      const member: unknown = Reflect.get(target, property, target);
      return typeof member === "function" ? (member as (...args: unknown[]) => unknown).bind(target) : member;
    },
  });
  const system = createControlSystem({
    machineId: "ald-1",
    tags,
    driver,
    store: { ...storeParts(store), audit },
    clock,
    storePolicies: { audit: { breaker: { failureThreshold: 1_000_000 } } },
    authorization: { operatorWritableTags: ["heater.*"] },
    alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 3, priority: 2, message: "high" }],
    audit: { backlog: { path: join(directory, "audit.journal") } },
  });
  const skipped = new Set<string>();
  let dropped = 0;
  system.bus.on("audit-record-fail", (event) => {
    if (event.durable) journaled.set(event.id, event);
  });
  system.bus.on("audit-entry-skip", (event) => void skipped.add(event.id));
  system.bus.on("audit-entry-drop", (event) => void (dropped += event.count));
  try {
    await system.start();
    let issued = 0;
    for (const batch of batches) {
      issued += batch.length;
      await Promise.allSettled(batch.map((next) => run(system, next)));
    }
    failing = false;
    await system.writeTag({ id: "admin", roles: ["admin"] }, "valve.tma", false);
    issued++;
    // The backlog (and, with the journal, the command's own entry) is written in the background (review 15j).
    // While the store had been failing, the background retry (on the simulated clock) probes it first.
    for (let step = 0; step < 2_000 && system.health().audit.backlog > 0; step++) {
      await clock.advance(100);
      await new Promise<void>((resolve) => setTimeout(resolve, 1));
    }
    const entries = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
    await system.stop();

    const ids = entries.map((entry) => entry.id);
    expect(new Set(ids).size).toBe(ids.length);
    // A refusal recorded after its intent was offered names it (refersTo): the intent, when its
    // insert committed anyway, did not run; the command's outcome is the refusal.
    const refused = new Set(entries.flatMap((entry) => (entry.refersTo === undefined ? [] : [entry.refersTo])));
    expect(ids.filter((id) => !refused.has(id)).length + skipped.size).toBe(issued);
    expect(ids.filter((id) => skipped.has(id))).toEqual([]);
    // Only text no store can hold (a NUL character) may be skipped: every other entry, a
    // malformed principal's denial included, is stored by every store.
    expect([...skipped].filter((id) => !JSON.stringify(attempted.get(id) ?? "").includes("\\u0000"))).toEqual([]);
    expect(dropped).toBe(0);
    const allowedWrites = entries
      .filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed" && !refused.has(entry.id))
      .map((entry) => `${entry.target}=${String(entry.newValue)}`)
      .sort();
    expect(plc.writes.map((write) => `${write.tag}=${String(write.value)}`).sort()).toEqual(allowedWrites);
    expect(early).toEqual([]);
  } finally {
    await system.stop().catch(() => undefined);
    await rm(directory, { recursive: true, force: true });
  }
}

function run(system: ControlSystem, next: Command): Promise<unknown> {
  switch (next.kind) {
    case "write":
      return system.writeTag(next.principal, next.tag, next.value);
    case "machine":
      return system.sendMachineCommand(next.principal, next.command);
    case "acknowledge":
      return system.acknowledgeAlarm(next.principal, next.alarmId);
  }
}

/** The store's parts as a plain object, so one port can be replaced. */
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
