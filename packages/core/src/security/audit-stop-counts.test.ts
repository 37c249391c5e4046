import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { RecordJournal } from "../journal/record-journal";
import { ReservedRecord } from "../journal/reserved-record";
import type { AuditEntry } from "../ports/audit-log";
import { type AuditBacklogOptions } from "./audited-command-options";
import { refusingAudit } from "../../test/support/refusing-audit";
import { type Principal } from "./authorization";
import { tmpfs, unmount } from "../../test/support/tmpfs";

// Issue 15 (review 15r): a count of what was not recorded one by one (audit.overflow, audit.drop)
// leaves the reserve only once its summary entry is stored or journaled; nothing is discarded
// durably unless its drop is counted durably.

const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite" },
  "valve.tma": { dataType: "bool", access: "readwrite" },
});
const operator: Principal = { id: "olga", roles: ["operator"] };
const engineer: Principal = { id: "enzo", roles: ["engineer"] };

const setup = async (backlog: AuditBacklogOptions) => {
  const { make, writeTag, drain, plc, drops } = await refusingAudit({
    tags,
    backlog,
    operatorWritableTags: ["heater.*"],
  });
  return { plc, runner: make(), writeTag, restart: drain, drops };
};

const sum = (entries: readonly AuditEntry[], action: string): number =>
  entries
    .filter((entry) => entry.action === action)
    .reduce((total, entry) => total + ((entry.newValue as { count: number }).count ?? 0), 0);

/**
 * Fills the volume until a write fails (ENOSPC), then issues allowed commands until the journal
 * refuses one (its last page full too): from then on it takes nothing.
 */
async function fill(mount: string, command: (value: number) => Promise<string>): Promise<void> {
  for (let index = 0; index < 200; index++) {
    const ok = await writeFile(join(mount, `filler-${index}`), Buffer.alloc(16 * 1024)).then(
      () => true,
      () => false,
    );
    if (!ok) break;
  }
  for (let index = 0; index < 64; index++) await writeFile(join(mount, `tiny-${index}`), "x").catch(() => undefined);
  for (let value = 0; value < 100; value++) if ((await command(value)) === "KILN_AUDIT_UNAVAILABLE") return;
  throw new Error("the journal kept taking entries on a full disk");
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a clean stop keeps the counts the reserve holds (issue 15, review 15r)", () => {
  test("overflow counts: stop with the store down and the journal's disk full; after a restart an audit.overflow entry has the exact count", async (context) => {
    const mount = await tmpfs("600k");
    if (mount === undefined) return context.skip();
    try {
      const { runner, writeTag, restart, drops, plc } = await setup({
        path: join(mount, "audit.journal"),
        maxEntries: 20,
      });
      await runner.open();
      for (let value = 0; value < 60; value++)
        expect(await writeTag(runner, operator, "valve.tma", value % 2 === 0)).toBe("KILN_FORBIDDEN");
      expect(runner.status().overflow).toBeGreaterThan(0);
      await fill(mount, (value) => writeTag(runner, engineer, "heater.setpoint", value));
      // (The refusal of the command the full journal refused is counted too: failed, no room.)
      const counted = runner.status().overflow;
      await runner.close();
      // Nothing lost, so nothing reported lost: the reserve keeps the counts for the next start.
      expect(drops).toEqual([]);
      await rm(join(mount, "filler-0"), { force: true });
      const stored = await restart();
      expect(sum(stored, "audit.overflow")).toBe(counted);
      // Every denied attempt is in the trail: one by one, or counted.
      const denied = stored.filter((entry) => entry.action === "tag.write" && entry.outcome === "denied").length;
      const refused = stored.filter((entry) => entry.action === "tag.write" && entry.outcome === "failed").length;
      expect(denied + refused + counted).toBe(61);
      // And every command that ran has its entry.
      expect(stored.filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed")).toHaveLength(
        plc.writes.length,
      );
    } finally {
      await unmount(mount);
    }
  });

  test("drop counts (drop-oldest): stop with the store down and the journal's disk full; after a restart the audit.drop entry has the exact count", async (context) => {
    const mount = await tmpfs("600k");
    if (mount === undefined) return context.skip();
    try {
      const { runner, writeTag, restart, plc } = await setup({
        path: join(mount, "audit.journal"),
        maxEntries: 5,
        whenFull: "drop-oldest",
      });
      await runner.open();
      for (let value = 0; value < 12; value++)
        expect(await writeTag(runner, engineer, "heater.setpoint", value)).toBe("resolved");
      expect(runner.status().dropped).toBe(7);
      await fill(mount, (value) => writeTag(runner, engineer, "heater.setpoint", value));
      const dropped = runner.status().dropped;
      await runner.close();
      await rm(join(mount, "filler-0"), { force: true });
      const stored = await restart();
      expect(sum(stored, "audit.drop")).toBe(dropped);
      // Each command that ran has its entry or is counted in audit.drop.
      expect(stored.filter((entry) => entry.action === "tag.write").length + dropped).toBe(plc.writes.length);
    } finally {
      await unmount(mount);
    }
  });

  test("without a reserve to keep them, the counts a stop cannot summarize are reported with why, never silently", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-stop-")), "audit.journal");
    // The reserve cannot be made (its path is a folder); the journal cannot take the summaries (maxBytes).
    await mkdir(`${path}.reserve`);
    const { runner, writeTag, drops } = await setup({ path, maxEntries: 20, maxBytes: 1024 });
    await runner.open();
    for (let value = 0; value < 60; value++)
      expect(await writeTag(runner, operator, "valve.tma", value % 2 === 0)).toBe("KILN_FORBIDDEN");
    const counted = runner.status().overflow;
    expect(counted).toBeGreaterThan(0);
    await runner.close();
    const lost = drops.filter((event) => /no audit reserve to keep the count/.test(event.reason));
    expect(lost.reduce((total, event) => total + event.count, 0)).toBe(counted);
  });
});

describe("drop-oldest never discards an entry whose drop is not counted durably (issue 15, review 15r)", () => {
  test("without a reserve, drop-oldest refuses commands at the limit instead of evicting: every command that ran has its entry after a restart", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-stop-")), "audit.journal");
    await mkdir(`${path}.reserve`);
    const { runner, writeTag, restart, plc, drops } = await setup({ path, maxEntries: 5, whenFull: "drop-oldest" });
    await runner.open();
    const codes: string[] = [];
    for (let value = 0; value < 20; value++) codes.push(await writeTag(runner, engineer, "heater.setpoint", value));
    expect(codes.filter((code) => code === "resolved")).toHaveLength(5);
    expect(codes.slice(5).every((code) => code === "KILN_AUDIT_UNAVAILABLE")).toBe(true);
    expect(runner.status().dropped).toBe(0);
    await runner.close();
    expect(drops).toEqual([]);
    const stored = await restart();
    const ran = stored.filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed");
    expect(ran).toHaveLength(plc.writes.length);
    expect(plc.writes).toHaveLength(5);
  });

  test("the reserve fails mid-run after drops were counted: the counts are not lost and nothing more is evicted until it works", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-stop-")), "audit.journal");
    const { runner, writeTag, restart, plc } = await setup({ path, maxEntries: 5, whenFull: "drop-oldest" });
    await runner.open();
    for (let value = 0; value < 8; value++)
      expect(await writeTag(runner, engineer, "heater.setpoint", value)).toBe("resolved");
    expect(runner.status().dropped).toBe(3);
    const write = vi
      .spyOn(ReservedRecord.prototype, "write")
      .mockRejectedValue(new KilnError("KILN_JOURNAL_FAILED", "reserve write failed: ENOSPC"));
    for (let value = 8; value < 14; value++) await writeTag(runner, engineer, "heater.setpoint", value);
    // The first eviction that could not be counted durably was undone; then commands are refused.
    expect(runner.status().dropped).toBe(3);
    expect(runner.status().journalProblems.join()).toMatch(/reserve failed/);
    write.mockRestore();
    await runner.close();
    const stored = await restart();
    const ran = stored.filter((entry) => entry.action === "tag.write" && entry.outcome === "allowed").length;
    expect(sum(stored, "audit.drop")).toBe(3);
    expect(ran + 3).toBe(plc.writes.length);
  });
});

describe("what the reserve holds is read when its room cannot be reserved (adversarial review 15w, B)", () => {
  /** Writes small files until the volume takes no more. */
  async function fillUp(mount: string, prefix: string): Promise<void> {
    for (let index = 0; index < 400; index++) {
      const ok = await writeFile(join(mount, `${prefix}-${index}`), Buffer.alloc(4 * 1024)).then(
        () => true,
        () => false,
      );
      if (!ok) break;
    }
    for (let index = 0; index < 64; index++)
      await writeFile(join(mount, `${prefix}-tiny-${index}`), "x").catch(() => undefined);
  }

  test("a restart on a still-full disk: counts and held entries shown and kept, the file untouched; the summary recorded once room returns, exactly once", async (context) => {
    const mount = await tmpfs("600k");
    if (mount === undefined) return context.skip();
    try {
      const path = join(mount, "audit.journal");
      const { make, writeTag, link, clock, store } = await refusingAudit({
        tags,
        backlog: { path, maxEntries: 20 },
        operatorWritableTags: ["heater.*"],
      });
      const runner = make();
      await runner.open();
      for (let value = 0; value < 4; value++)
        expect(await writeTag(runner, operator, "valve.tma", value % 2 === 0)).toBe("KILN_FORBIDDEN");
      await fill(mount, (value) => writeTag(runner, engineer, "heater.setpoint", value));
      // The journal takes nothing now: denials go to the reserve (held), then are counted there.
      for (let value = 0; value < 60; value++) await writeTag(runner, operator, "valve.tma", value % 2 === 0);
      const counted = runner.status().overflow;
      const backlog = runner.status().backlog;
      expect(counted).toBeGreaterThan(0);
      expect(runner.status().journalProblems.join()).toMatch(/[1-9]\d* entr(y|ies) held in its reserve/);
      await runner.close();
      // What taking the journal's lock on a full disk does after a crash (ADR 0034 amendment):
      // the reserve gives back its room; then the disk fills to the last byte again.
      expect(await ReservedRecord.shrink(`${path}.reserve`, 64 * 1024)).toBe(true);
      await fillUp(mount, "again");
      // One page for the journal's lock (which the reserve's room made after the crash).
      await rm(join(mount, "again-0"));
      const before = await readFile(`${path}.reserve`);

      const next = make();
      await next.open();
      let status = next.status();
      expect(status.overflow).toBe(counted);
      expect(status.backlog).toBe(backlog);
      expect(status.journalProblems.join()).toMatch(
        new RegExp(`reserve failed.*ENOSPC.*holds ${counted} counted denied attempt\\(s\\).*held entr`),
      );
      // The store comes back, the disk is still full: the held entries are stored, the counts still shown.
      const recorded = vi.spyOn(store.audit, "record");
      link.up = true;
      for (let step = 0; step < 10 && next.status().backlog > 0; step++) {
        await next.flush();
        await clock.advance(1_000);
      }
      status = next.status();
      expect(status.backlog).toBe(0);
      expect(status.overflow).toBe(counted);
      expect(await readFile(`${path}.reserve`)).toEqual(before);
      // Room returns: the reserve is made, its counts become one summary, exactly once.
      for (const name of await readdir(mount)) if (/^(filler|again)-/.test(name)) await rm(join(mount, name));
      for (let step = 0; step < 20 && next.status().overflow > 0; step++) {
        await next.flush();
        await clock.advance(1_000);
        await new Promise<void>((resolve) => setTimeout(resolve, 10));
      }
      expect(next.status()).toMatchObject({ overflow: 0, backlog: 0, journalProblems: [] });
      // Each held entry written once: not queued again when the reserve opened (a store need not dedupe).
      const calls = recorded.mock.calls.map(([entry]) => entry.id);
      expect(new Set(calls).size).toBe(calls.length);
      await next.close();
      const third = make();
      await third.open();
      await third.flush();
      await third.close();
      const stored = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
      expect(sum(stored, "audit.overflow")).toBe(counted);
      // Every denied attempt is in the trail: one by one, or counted (and none twice).
      const ids = stored.map((entry) => entry.id);
      expect(new Set(ids).size).toBe(ids.length);
      const denied = stored.filter((entry) => entry.action === "tag.write" && entry.outcome !== "allowed").length;
      expect(denied + counted).toBe(64 + 1);
    } finally {
      await unmount(mount);
    }
  });

  test("drop counts (drop-oldest) in a reserve that cannot be opened: named with their count, the file untouched, summarized once when it opens (no root needed)", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-unopened-")), "audit.journal");
    const { make, writeTag, link, clock, store } = await refusingAudit({
      tags,
      backlog: { path, maxEntries: 5, whenFull: "drop-oldest" },
    });
    const runner = make();
    await runner.open();
    for (let value = 0; value < 8; value++)
      expect(await writeTag(runner, engineer, "heater.setpoint", value)).toBe("resolved");
    expect(runner.status().dropped).toBe(3);
    // The journal's disk is full at the stop: the audit.drop summary stays counted in the reserve.
    const append = vi
      .spyOn(RecordJournal.prototype, "append")
      .mockRejectedValue(
        new KilnError("KILN_JOURNAL_FAILED", "append failed: the disk is full", { details: { errno: "ENOSPC" } }),
      );
    await runner.close();
    append.mockRestore();
    const before = await readFile(`${path}.reserve`);
    const open = vi
      .spyOn(ReservedRecord, "open")
      .mockRejectedValue(
        new KilnError("KILN_JOURNAL_FAILED", "open failed: the disk is full", { details: { errno: "ENOSPC" } }),
      );
    const next = make();
    await next.open();
    expect(next.status().journalProblems.join()).toMatch(
      /reserve failed.*holds 0 counted denied attempt\(s\) and 3 dropped entries not yet in summary entries/,
    );
    link.up = true;
    for (let step = 0; step < 5; step++) {
      await next.flush();
      await clock.advance(1_000);
    }
    expect(next.status().backlog).toBe(0);
    expect(await readFile(`${path}.reserve`)).toEqual(before);
    expect(sum(await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER }), "audit.drop")).toBe(0);
    open.mockRestore();
    for (let step = 0; step < 10 && next.status().journalProblems.length > 0; step++) {
      await next.flush();
      await clock.advance(1_000);
      await new Promise<void>((resolve) => setTimeout(resolve, 10));
    }
    for (let step = 0; step < 5; step++) {
      await next.flush();
      await clock.advance(1_000);
    }
    await next.close();
    const stored = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
    expect(sum(stored, "audit.drop")).toBe(3);
    expect(stored.filter((entry) => entry.action === "tag.write")).toHaveLength(5);
  });
});
