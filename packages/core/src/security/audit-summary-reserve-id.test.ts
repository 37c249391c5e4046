import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { createControlSystem } from "../compose/create-control-system";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { ReservedRecord } from "../journal/reserved-record";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { silentLogger } from "../runtime/silent-logger";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable } from "./authorization";
import { switchableAuditStore } from "../../test/support/switchable-audit-store";

// Adversarial review adv15o, MEDIUM-1 (fix15p): an overflow summary was journaled, then the
// reserve (`<journal>.reserve`) could not be rewritten without its count (EIO on every rewrite,
// or the process died in between). The next start summarized the record's count again: 5,977
// refusals counted for 3,000. Each summary now carries its bucket's id, which the record keeps: a
// summary is not stored while a record holding its count is the last one written, and a start
// that finds it in the journal drops the record's count.

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const eio = () =>
  new KilnError("KILN_JOURNAL_FAILED", "reserve write failed (EIO)", { retryable: true, details: { errno: "EIO" } });

afterEach(() => {
  vi.restoreAllMocks();
});

function rig(journal: string, store: MemoryStore, stored: AuditEntry[]) {
  const down = switchableAuditStore(store, stored);
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    authorization: { operatorWritableTags: ["heater.*"] },
    audit: { backlog: { path: journal, maxEntries: 40 } },
    logging: { drainTimeoutMs: 2_000 },
  });
  const reported = { dropped: 0 };
  system.bus.on("audit-entry-drop", (event) => void (reported.dropped += event.count));
  return { system, down, reported };
}

/** Refusals stored one by one (by id) and the counts of the summaries (by id: a store keeps one entry per id). */
function tally(stored: readonly AuditEntry[]): { refusals: number; summarized: number } {
  const refusals = new Set(
    stored.filter((entry) => entry.outcome === "denied" && !entry.action.startsWith("audit.")).map((entry) => entry.id),
  );
  const summaries = new Map(
    stored
      .filter((entry) => entry.action === "audit.overflow")
      .map((entry) => [entry.id, Number((entry.newValue as { count?: number } | undefined)?.count ?? 0)]),
  );
  return { refusals: refusals.size, summarized: [...summaries.values()].reduce((sum, count) => sum + count, 0) };
}

async function flood(system: ReturnType<typeof rig>["system"], count: number): Promise<void> {
  const answers = await Promise.all(
    Array.from({ length: count }, (_unused, index) =>
      system.writeTag({ id: "viewer", roles: ["viewer"] }, "heater.x", index).then(
        () => "ok",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      ),
    ),
  );
  expect(answers.every((answer) => answer === "KILN_FORBIDDEN")).toBe(true);
}

/**
 * A run of 3,000 refused writes with the store down, after which every rewrite of the reserve fails (EIO) from the
 * moment an overflow summary is in the journal; then the store is back and the run stops.
 */
async function floodWhileRewritesFail(journal: string, stored: AuditEntry[]) {
  const run = rig(journal, new MemoryStore(), stored);
  await run.system.start();
  run.down.on = true;
  let failing = false;
  const original = ReservedRecord.prototype.write;
  const write = vi.spyOn(ReservedRecord.prototype, "write").mockImplementation(function (
    this: ReservedRecord,
    payload,
  ) {
    failing ||= readFileSync(journal).includes("audit.overflow");
    return failing ? Promise.reject(eio()) : original.call(this, payload);
  });
  await flood(run.system, 3_000);
  run.down.on = false;
  await sleep(1_500);
  await run.system.stop();
  expect(write).toHaveBeenCalled();
  vi.restoreAllMocks();
  return run;
}

describe("an overflow summary is counted once though the reserve keeps its count (adv15o MEDIUM-1, fix15p)", () => {
  test("every rewrite of the reserve fails (EIO) after the summary is journaled; a restart on the same journal: 3,000 refusals counted 3,000 times, not 5,977", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-summary-reserve-id-"));
    const journal = join(dir, "audit.journal");
    const stored: AuditEntry[] = [];
    try {
      const first = await floodWhileRewritesFail(journal, stored);

      const second = rig(journal, new MemoryStore(), stored);
      await second.system.start();
      await second.system.stop();
      const { refusals, summarized } = tally(stored);
      const dropped = first.reported.dropped + second.reported.dropped;
      expect(summarized).toBeGreaterThan(0);
      // Before: 5,9xx (the summary stored by the first run, and the reserve's count summarized again).
      expect(refusals + summarized + dropped, `stored ${refusals}, summarized ${summarized}, dropped ${dropped}`).toBe(
        3_000,
      );
      expect(second.system.health().audit.backlog).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("(sibling) the process ends between the summary's journal append and the reserve's rewrite (the write never lands); a start on what is on disk: counted once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-summary-reserve-id-"));
    const journal = join(dir, "audit.journal");
    const stored: AuditEntry[] = [];
    try {
      const first = rig(journal, new MemoryStore(), stored);
      await first.system.start();
      first.down.on = true;
      await flood(first.system, 3_000);
      // The first reserve write once a summary is in the journal never lands: the process "dies" there.
      const write = ReservedRecord.prototype.write;
      let died: () => void = () => undefined;
      const dead = new Promise<void>((resolve) => (died = resolve));
      vi.spyOn(ReservedRecord.prototype, "write").mockImplementation(function (this: ReservedRecord, payload) {
        if (!readFileSync(journal).includes("audit.overflow")) return write.call(this, payload);
        died();
        return new Promise<void>(() => undefined);
      });
      first.down.on = false;
      await dead;
      const after = join(dir, "after");
      mkdirSync(after);
      for (const file of readdirSync(dir).filter((name) => name.startsWith("audit.journal") && !name.endsWith(".lock")))
        cpSync(join(dir, file), join(after, file));
      vi.restoreAllMocks();

      const second = rig(join(after, "audit.journal"), new MemoryStore(), stored);
      await second.system.start();
      await second.system.stop();
      const { refusals, summarized } = tally(stored);
      const dropped = first.reported.dropped + second.reported.dropped;
      expect(summarized).toBeGreaterThan(0);
      // Before: the journaled summary and the reserve's count both summarized (about 2 × 2,980).
      expect(refusals + summarized + dropped, `stored ${refusals}, summarized ${summarized}, dropped ${dropped}`).toBe(
        3_000,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("a coalesced run is counted once though the reserve keeps its count (fix15p, the same kind)", () => {
  const START = Date.UTC(2026, 0, 1);

  async function setup(path: string, idPrefix: string) {
    const clock = new SimulatedClock({ start: START });
    const store = new MemoryStore({ clock });
    await store.open([]);
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
      machineId: "ald-1",
      newId: () => `${idPrefix}-${++ids}`,
      retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
      backlog: { path, maxEntries: 10 },
    });
    await runner.open();
    const trip = (value: number) =>
      runner
        .runSystemAction({ action: "machine.trip", target: "ald-1", reason: "interlock", newValue: { value } }, () =>
          Promise.resolve(value),
        )
        .catch(() => undefined);
    const trail = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
    return { link, runner, trip, trail };
  }

  test("100 trips, 90 coalesced in the reserve; every rewrite of the reserve fails once the audit.coalesce summary is journaled; a restart: 100, not 190", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-summary-reserve-id-"));
    const path = join(dir, "audit.journal");
    try {
      const first = await setup(path, "first");
      for (let value = 0; value < 100; value++) await first.trip(value);
      expect(first.runner.status().coalesced).toBe(90);
      vi.spyOn(ReservedRecord.prototype, "write").mockRejectedValue(eio());
      first.link.up = true;
      await first.runner.flush();
      await first.runner.close();
      vi.restoreAllMocks();
      const next = await setup(path, "next");
      next.link.up = true;
      expect(await next.runner.flush()).toBe(true);
      await next.runner.close();
      const trail = new Map([...(await first.trail()), ...(await next.trail())].map((entry) => [entry.id, entry]));
      const single = [...trail.values()].filter((entry) => entry.action === "machine.trip").length;
      const summarized = [...trail.values()]
        .filter((entry) => entry.action === "audit.coalesce")
        .reduce((sum, entry) => sum + (entry.newValue as { count: number }).count, 0);
      // Before: 10 + 90 + 90 (the run's count in the reserve summarized again).
      expect(single + summarized, `single ${single}, summarized ${summarized}`).toBe(100);
      expect(summarized).toBe(90);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// adv15q HIGH-1: a run that could not open the reserve stored the summary the reserve's record still
// held the count of; once stored and released, its id was free again, and the next run that opened
// the reserve summarized the record's count, with new refusals, again under that id: the store kept
// the first entry with the id and threw the second away (200 of 3,200 refusals lost, unreported).
// While the reserve is unopened, a summary its record (read without opening it) holds, or every
// summary the journal held when the record cannot be read either, waits until it opens.
describe("a summary is not stored while a reserve that cannot be opened may hold its count (adv15q HIGH-1)", () => {
  for (const peek of ["read", "unreadable"] as const) {
    test(`run 1: every rewrite fails once the summary is journaled; run 2: the reserve cannot be opened (its record ${peek === "read" ? "read without opening it" : "unreadable too"}), the store up; run 3: 200 more refusals; all 3,200 counted once`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "kiln-audit-unopened-"));
      const journal = join(dir, "audit.journal");
      const stored: AuditEntry[] = [];
      try {
        const first = await floodWhileRewritesFail(journal, stored);
        vi.spyOn(ReservedRecord, "open").mockImplementation(() => Promise.reject(eio()));
        if (peek === "unreadable") vi.spyOn(ReservedRecord, "peek").mockImplementation(() => Promise.reject(eio()));
        const second = rig(journal, new MemoryStore(), stored);
        await second.system.start();
        await sleep(1_500);
        await second.system.stop();
        vi.restoreAllMocks();
        const third = rig(journal, new MemoryStore(), stored);
        await third.system.start();
        third.down.on = true;
        await flood(third.system, 200);
        third.down.on = false;
        await sleep(1_500);
        await third.system.stop();
        // One audit store keeps the first entry with an id and refuses a second one.
        const kept = new Map<string, AuditEntry>();
        for (const entry of stored) if (!kept.has(entry.id)) kept.set(entry.id, entry);
        const entries = [...kept.values()];
        const refusals = entries.filter((entry) => entry.outcome === "denied" && !entry.action.startsWith("audit."));
        const summarized = entries
          .filter((entry) => entry.action === "audit.overflow")
          .reduce((sum, entry) => sum + Number((entry.newValue as { count?: number } | undefined)?.count ?? 0), 0);
        const reported = first.reported.dropped + second.reported.dropped + third.reported.dropped;
        // Before: 3,000 (the third run's summary of 3,179 thrown away under the first run's id).
        expect(refusals.length + summarized + reported).toBe(3_200);
        // No id offered twice with different counts.
        const counts = new Map<string, Set<unknown>>();
        for (const entry of stored.filter((each) => each.action === "audit.overflow")) {
          const seen = counts.get(entry.id) ?? new Set();
          seen.add((entry.newValue as { count?: number } | undefined)?.count);
          counts.set(entry.id, seen);
        }
        expect([...counts.values()].every((seen) => seen.size === 1)).toBe(true);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  }
});
