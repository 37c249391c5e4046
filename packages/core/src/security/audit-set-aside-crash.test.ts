import { copyFile, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { encodeExactJson } from "../logging/sample-journal";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review adv15b, LOW-C (open after fix15af): a probe the store refused for good is
// kept aside mid-backlog (a `<journal>.set-aside` line, counted in `skipped`), but its journal
// record is released only when it reaches the head. After a crash before that, it was replayed,
// refused again, kept aside again (a second line) and counted again. At journal open, a replayed
// record already kept aside is released unread (fix15ag).

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const viewer: Principal = { id: "vic", roles: ["viewer"] };

function make(path: string, audit: AuditLog, clock: SimulatedClock, bus: EventBus<KilnEvents>, first: number) {
  let ids = first;
  return new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit,
    clock,
    bus,
    machineId: "ald-1",
    newId: () => `e-${++ids}`,
    retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
    backlog: { path },
  });
}

async function crashedWithKeptAside(options: { poisonBehind: boolean }) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const skips: string[] = [];
  bus.on("audit-entry-skip", (event) => void skips.push(event.id));
  let headCalls = 0;
  const refused = (entry: AuditEntry) =>
    entry.newValue === 666 ? new KilnError("KILN_VALIDATION", "value refused", { retryable: false }) : undefined;
  const audit: AuditLog = {
    query: store.audit.query,
    record: async (entry: AuditEntry) => {
      // The head fails twice with an error the store does not classify, then its breaker is open:
      // no evidence, so it stays at the head while the refused probe behind it was kept aside.
      if ((entry.reason ?? "").includes("EVIL1")) {
        if (++headCalls <= 2) throw new TypeError("invalid byte sequence");
        throw new KilnError("KILN_CIRCUIT_OPEN", "audit store breaker open", { retryable: false });
      }
      const error = refused(entry);
      if (error !== undefined) throw error;
      await store.audit.record(entry);
    },
  };
  const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-aside-crash-")), "a.journal");
  const runner = make(path, audit, clock, bus, 0);
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
      .catch(() => undefined);
  await write(viewer, 1, "EVIL1");
  await write(viewer, 666);
  if (options.poisonBehind) await write(viewer, 2);
  for (let round = 0; round < 5; round++) {
    await runner.flush();
    await clock.advance(1_500);
  }
  expect(skips).toEqual(["e-2"]);
  expect(runner.status()).toMatchObject({ skipped: 1, setAside: 0 });
  // The crash: the journal and its set-aside file as the killed process left them.
  const crashed = join(await mkdtemp(join(tmpdir(), "kiln-audit-aside-crash-")), "a.journal");
  await copyFile(path, crashed);
  await copyFile(`${path}.set-aside`, `${crashed}.set-aside`);
  await runner.close();
  // Restarted with a store that refuses the same entry for good and takes every other.
  const next = make(
    crashed,
    {
      query: store.audit.query,
      record: async (entry) => {
        const error = refused(entry);
        if (error !== undefined) throw error;
        await store.audit.record(entry);
      },
    },
    clock,
    bus,
    100,
  );
  skips.length = 0;
  await next.open();
  for (let round = 0; round < 20 && !(await next.flush()); round++) await clock.advance(1_500);
  const lines = (await readFile(`${crashed}.set-aside`, "utf8")).split("\n").filter(Boolean);
  const stored = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  const status = next.status();
  await next.close();
  return { lines, skips, status, stored };
}

describe("a probe kept aside mid-backlog is not kept aside and counted again after a crash (adv15b LOW-C)", () => {
  test("replayed at the next start, it is released unread: one set-aside line, not counted again", async () => {
    const { lines, skips, status, stored } = await crashedWithKeptAside({ poisonBehind: false });
    expect(lines.map((line) => (JSON.parse(line) as AuditEntry).id)).toEqual(["e-2"]);
    expect(skips).toEqual([]);
    expect(status).toMatchObject({ skipped: 0, backlog: 0 });
    // The head it waited behind is stored once the store takes it.
    expect(stored.map((entry) => entry.id)).toEqual(["e-1"]);
  });

  test("(sibling) an entry behind it that was never kept aside is still replayed and stored", async () => {
    const { lines, skips, status, stored } = await crashedWithKeptAside({ poisonBehind: true });
    expect(lines).toHaveLength(1);
    expect(skips).toEqual([]);
    expect(status).toMatchObject({ skipped: 0, backlog: 0 });
    expect(stored.map((entry) => entry.id).toSorted()).toEqual(["e-1", "e-3"]);
  });

  test("(sibling) matched by content, not by id: a record with the id of a kept-aside entry but other content is stored", async () => {
    const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
    const store = new MemoryStore({ clock });
    await store.open(tags.list());
    const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
    const skips: string[] = [];
    bus.on("audit-entry-skip", (event) => void skips.push(event.id));
    const offered = new Map<string, AuditEntry>();
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-aside-id-")), "a.journal");
    const down = make(
      path,
      {
        query: store.audit.query,
        record: (entry) => {
          offered.set(entry.id, entry);
          return Promise.reject(new KilnError("KILN_STORE_ERROR", "down", { retryable: true }));
        },
      },
      clock,
      bus,
      0,
    );
    await down.open();
    for (const target of ["t1", "t2"])
      await down.runSystemAction({ action: "machine.trip", target, reason: "interlock" }, () =>
        Promise.resolve(undefined),
      );
    await down.close();
    // As a crash after keeping aside e-2 as it is, and e-1 with other content (what a follow-up
    // recorded again without its values shares with the original: its id).
    await writeFile(
      `${path}.set-aside`,
      `${encodeExactJson({ ...offered.get("e-1")!, reason: "the original, with its values" })}\n` +
        `${encodeExactJson(offered.get("e-2")!)}\n`,
    );
    const up = make(path, store.audit, clock, bus, 100);
    await up.open();
    for (let round = 0; round < 20 && !(await up.flush()); round++) await clock.advance(1_500);
    expect(up.status()).toMatchObject({ backlog: 0, skipped: 0 });
    await up.close();
    expect(skips).toEqual([]);
    await store.open(tags.list());
    expect((await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).map((entry) => entry.id)).toEqual([
      "e-1",
    ]);
  });
});
