import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import type { AuditBacklogOptions } from "./audited-command-options";
import { refusingAudit } from "../../test/support/refusing-audit";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review 15s, F1: with drop-oldest, a summary entry (audit.drop, audit.overflow) at
// the head of a full backlog was evicted as one entry, and the count it held was lost. Every
// command missing from the trail must be counted by a summary in it, across restarts.

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const engineer: Principal = { id: "enzo", roles: ["engineer"] };
const viewer: Principal = { id: "vera", roles: ["viewer"] };

async function setup(backlog: AuditBacklogOptions) {
  const { make, writeTag, drain, plc, drops } = await refusingAudit({ tags, backlog });
  /** One write per value: a principal's command, unique by its value ("ok" or the refusal's code). */
  const write = async (runner: AuditedCommandRunner, principal: Principal, value: number) => {
    const code = await writeTag(runner, principal, "heater.setpoint", value);
    return code === "resolved" ? "ok" : code;
  };
  /** A run of the system on the same journal while the store refuses: open, `commands`, close. */
  const run = async (commands: (runner: AuditedCommandRunner) => Promise<void>) => {
    const runner = make();
    await runner.open();
    await commands(runner);
    await runner.close();
  };
  return { plc, run, write, replay: drain, drops };
}

/** Commands recorded one by one, counted by their unique value (a retry never counts twice). */
const recorded = (trail: readonly AuditEntry[], outcome: AuditEntry["outcome"]) =>
  new Set(
    trail
      .filter((entry) => entry.action === "tag.write" && entry.outcome === outcome && entry.refersTo === undefined)
      .map((entry) => entry.newValue),
  ).size;
const counted = (trail: readonly AuditEntry[], action: string) =>
  trail
    .filter((entry) => entry.action === action)
    .reduce((total, entry) => total + (entry.newValue as { count: number }).count, 0);

describe("drop-oldest never evicts a summary's count (review 15s, F1)", () => {
  test("an audit.drop summary evicted by a later run: its count is folded into the next one, so the trail counts every missing command", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-summary-evict-")), "audit.journal");
    const { plc, run, write, replay } = await setup({ path, maxEntries: 20, whenFull: "drop-oldest" });
    for (const first of [0, 1000]) {
      await run(async (runner) => {
        for (let value = first; value < first + 50; value++) expect(await write(runner, engineer, value)).toBe("ok");
      });
    }
    const trail = await replay();
    expect(plc.writes).toHaveLength(100);
    const allowed = recorded(trail, "allowed");
    expect(allowed).toBeLessThan(100);
    // Exactly: every command that ran is in the trail or in an audit.drop count.
    expect(allowed + counted(trail, "audit.drop")).toBe(100);
  });

  test("an audit.overflow summary evicted by a later run's writes: the denied attempts it counted are in the drop count, and reported dropped", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-summary-evict-")), "audit.journal");
    const { plc, run, write, replay, drops } = await setup({ path, maxEntries: 20, whenFull: "drop-oldest" });
    // A viewer flood: 10 denied entries kept (their share), 30 counted into audit.overflow.
    await run(async (runner) => {
      for (let value = 0; value < 40; value++) expect(await write(runner, viewer, value)).toBe("KILN_FORBIDDEN");
    });
    const reportedBefore = drops.reduce((total, event) => total + event.count, 0);
    await run(async (runner) => {
      for (let value = 1000; value < 1050; value++) expect(await write(runner, engineer, value)).toBe("ok");
    });
    const trail = await replay();
    expect(plc.writes).toHaveLength(50);
    const missing = 90 - recorded(trail, "allowed") - recorded(trail, "denied");
    expect(missing).toBeGreaterThan(30);
    expect(counted(trail, "audit.drop") + counted(trail, "audit.overflow")).toBe(missing);
    // The attempts the evicted overflow summary counted were reported lost once it was.
    const reported = drops.reduce((total, event) => total + event.count, 0) - reportedBefore;
    expect(reported).toBe(counted(trail, "audit.drop"));
  });

  test("three runs, each evicting the summary the run before left (a folded count folded again), and a viewer flood between them: the counts add up exactly", async () => {
    const path = join(await mkdtemp(join(tmpdir(), "kiln-summary-evict-")), "audit.journal");
    const { plc, run, write, replay } = await setup({ path, maxEntries: 20, whenFull: "drop-oldest" });
    for (const first of [0, 1000, 2000]) {
      await run(async (runner) => {
        for (let value = first; value < first + 30; value++) expect(await write(runner, engineer, value)).toBe("ok");
        for (let value = first + 500; value < first + 525; value++)
          expect(await write(runner, viewer, value)).toBe("KILN_FORBIDDEN");
      });
    }
    const trail = await replay();
    expect(plc.writes).toHaveLength(90);
    const missing = 90 + 75 - recorded(trail, "allowed") - recorded(trail, "denied");
    expect(counted(trail, "audit.drop") + counted(trail, "audit.overflow")).toBe(missing);
  });

  test("no command can pass for a summary: an action in the audit. namespace is refused (KILN_VALIDATION) and recorded under another category", async () => {
    const { plc } = await setup({});
    const store = new MemoryStore();
    await store.open(tags.list());
    const runner = new AuditedCommandRunner({
      authorizer: new Authorizer({ roles: defaultRoleTable() }),
      audit: store.audit,
      clock: new SimulatedClock({ start: 0 }),
    });
    const forged = runner.run({
      principal: { id: "ada", roles: ["admin"] },
      permission: "audit.drop",
      target: "ald-1",
      newValue: { count: 1_000_000 },
      execute: () => plc.write(tags.get("heater.setpoint"), 1),
    });
    await expect(forged).rejects.toMatchObject({ code: "KILN_VALIDATION", message: expect.stringMatching(/action/) });
    const [entry] = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
    expect(entry).toMatchObject({ action: "audit.drop", category: "(reserved)", outcome: "denied" });
    expect(plc.writes).toEqual([]);
  });
});
