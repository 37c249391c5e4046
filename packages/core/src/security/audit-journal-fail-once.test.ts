import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { RecordJournal } from "../journal/record-journal";
import { refusingAudit } from "../../test/support/refusing-audit";
import type { Principal } from "./authorization";

// Adversarial review adv15y, L1: one continuing journal failure (a full disk) published
// `audit-journal-fail` once per command while the store took the held entries in between: the
// held-entries path cleared the append failure when it had nothing to write. A failure in force is
// cleared only once an append succeeds, and published again only when its cause changes.

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const engineer: Principal = { id: "enzo", roles: ["engineer"] };

const systemError = (code: string): Error =>
  Object.assign(new Error(`${code}: write failed`), { code, errno: -28, syscall: "write" });

afterEach(() => {
  vi.restoreAllMocks();
});

async function setup() {
  const dir = await mkdtemp(join(tmpdir(), "kiln-journal-fail-once-"));
  const audit = await refusingAudit({ tags, backlog: { path: join(dir, "audit.journal") } });
  const events: KilnEvents["audit-journal-fail"][] = [];
  audit.bus.on("audit-journal-fail", (event) => void events.push(event));
  const runner = audit.make();
  await runner.open();
  let value = 0;
  /** A few commands with the store down (refused: the journal cannot take them), then the store takes what is held. */
  const round = async (): Promise<string[]> => {
    audit.link.up = false;
    const codes: string[] = [];
    for (let index = 0; index < 3; index++)
      codes.push(await audit.writeTag(runner, engineer, "heater.setpoint", ++value));
    audit.link.up = true;
    for (let step = 0; step < 5 && runner.status().backlog > 0; step++) {
      await runner.flush();
      await audit.clock.advance(1_000);
    }
    expect(runner.status().backlog).toBe(0);
    return codes;
  };
  const appendFails = () => events.filter((event) => event.operation === "append");
  return { dir, runner, round, appendFails };
}

describe("audit-journal-fail once per failure (adv15y L1)", () => {
  test("one continuing ENOSPC while the store takes the held entries between commands: published once", async () => {
    const { dir, runner, round, appendFails } = await setup();
    try {
      vi.spyOn(RecordJournal.prototype, "append").mockRejectedValue(systemError("ENOSPC"));
      for (let index = 0; index < 5; index++) expect(await round()).toContain("KILN_AUDIT_UNAVAILABLE");
      expect(appendFails()).toHaveLength(1);
      expect(appendFails()[0]).toMatchObject({ operation: "append", errno: "ENOSPC" });
      // Still failing: health still names it.
      expect(runner.status().journalProblems.join()).toMatch(/append failed.*ENOSPC/);
      await runner.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the cause changes (ENOSPC, then EIO): a second event; an append succeeds, then fails again: a new one", async () => {
    const { dir, runner, round, appendFails } = await setup();
    try {
      const append = vi.spyOn(RecordJournal.prototype, "append").mockRejectedValue(systemError("ENOSPC"));
      await round();
      await round();
      append.mockRejectedValue(systemError("EIO"));
      await round();
      await round();
      expect(appendFails().map((event) => event.errno)).toEqual(["ENOSPC", "EIO"]);
      // The journal takes an entry again: the failure is over.
      append.mockRestore();
      await round();
      expect(runner.status().journalProblems.join()).not.toMatch(/append failed/);
      expect(appendFails()).toHaveLength(2);
      // ...and fails again with the first cause: a new failure, published.
      vi.spyOn(RecordJournal.prototype, "append").mockRejectedValue(systemError("ENOSPC"));
      await round();
      await round();
      expect(appendFails().map((event) => event.errno)).toEqual(["ENOSPC", "EIO", "ENOSPC"]);
      await runner.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
