import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedClock } from "../memory/simulated-clock";
import type { AuditEntry, AuditLog } from "../ports/audit-log";
import { AuditedCommandRunner } from "./audited-command";
import { Authorizer, defaultRoleTable, type Principal } from "./authorization";

// Adversarial review adv15 (main e3a16d26), HIGH-1: a custom store that fails one entry with an
// error it does not classify (a poison head) and refuses the next for good (a non-retryable
// KILN_VALIDATION). The refused probe was neither marked nor counted as the store answering: it
// was chosen, refused and kept aside again at every drain (`skipped` 900 for one entry, 900
// set-aside lines), the head was never proven the cause, and with a journal not one of 300 later
// entries was stored, by a viewer's two refused writes (fix15ae).

const tags = defineTags({ "heater.setpoint": { dataType: "float64", access: "readwrite" } });
const viewer: Principal = { id: "vic", roles: ["viewer"] };
const engineer: Principal = { id: "enzo", roles: ["engineer"] };

async function setup(options: { journal: boolean; poison?: boolean }) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
  const store = new MemoryStore({ clock });
  await store.open(tags.list());
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const skips: KilnEvents["audit-entry-skip"][] = [];
  bus.on("audit-entry-skip", (event) => void skips.push(event));
  const audit: AuditLog = {
    query: store.audit.query,
    record: async (entry: AuditEntry) => {
      if (options.poison !== false && (entry.reason ?? "").includes("EVIL1"))
        throw new TypeError("invalid byte sequence");
      if (entry.newValue === 666) throw new KilnError("KILN_VALIDATION", "value refused", { retryable: false });
      await store.audit.record(entry);
    },
  };
  const path = options.journal
    ? join(await mkdtemp(join(tmpdir(), "kiln-audit-refused-probe-")), "a.journal")
    : undefined;
  let ids = 0;
  const runner = new AuditedCommandRunner({
    authorizer: new Authorizer({ roles: defaultRoleTable({ operatorWritableTags: ["heater.*"] }) }),
    audit,
    clock,
    bus,
    machineId: "ald-1",
    newId: () => `e-${++ids}`,
    retryBackoff: { initialDelayMs: 1_000, maxDelayMs: 1_000 },
    ...(path === undefined ? {} : { backlog: { path } }),
  });
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
      .then(
        () => "ok",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      );
  const stored = () => store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  const setAsideLines = async () =>
    path === undefined
      ? []
      : (await readFile(`${path}.set-aside`, "utf8").catch(() => ""))
          .split("\n")
          .filter((line) => line.length > 0)
          .map((line) => (JSON.parse(line) as AuditEntry).id);
  const drainAll = async () => {
    for (let round = 0; round < 50 && !(await runner.flush()); round++) await clock.advance(1_500);
  };
  return { runner, write, stored, setAsideLines, skips, drainAll, clock };
}

describe("a probe the store refuses for good is kept aside once and counts as the store answering (fix15ae)", () => {
  test("adv15 HIGH-1: with a journal, a viewer's poison entry and a refused one do not blind the trail", async () => {
    const { runner, write, stored, setAsideLines, skips, drainAll } = await setup({ journal: true });
    expect(await write(viewer, 1, "EVIL1")).toBe("KILN_FORBIDDEN");
    expect(await write(viewer, 666)).toBe("KILN_FORBIDDEN");
    const answers: string[] = [];
    for (let index = 0; index < 300; index++) answers.push(await write(engineer, 1_000 + index));
    expect(answers.every((answer) => answer === "ok")).toBe(true);
    await drainAll();
    const trail = await stored();
    expect(trail.filter((entry) => entry.outcome === "allowed")).toHaveLength(300);
    expect(runner.status()).toMatchObject({ backlog: 0, skipped: 2, setAside: 1 });
    expect(runner.status().blockedBy).toBeUndefined();
    const lines = await setAsideLines();
    expect(lines.toSorted()).toEqual(["e-1", "e-2"]);
    expect(skips.map((event) => event.id).toSorted()).toEqual(["e-1", "e-2"]);
    await runner.close();
  });

  test("(sibling) without a journal the refused entry is counted and reported once", async () => {
    const { runner, write, stored, skips, drainAll } = await setup({ journal: false });
    expect(await write(viewer, 1, "EVIL1")).toBe("KILN_FORBIDDEN");
    expect(await write(viewer, 666)).toBe("KILN_FORBIDDEN");
    for (let index = 0; index < 20; index++) await write(viewer, 2_000 + index);
    await drainAll();
    expect(runner.status()).toMatchObject({ backlog: 0, skipped: 2, setAside: 1 });
    expect(skips.map((event) => event.id).toSorted()).toEqual(["e-1", "e-2"]);
    expect(
      (await stored()).filter((entry) => entry.newValue !== undefined && Number(entry.newValue) >= 2_000),
    ).toHaveLength(20);
    await runner.close();
  });

  test("(sibling) a for-good refusal is the store's answer on another entry: the only probe behind a poison head proves it", async () => {
    const { runner, write, setAsideLines, drainAll } = await setup({ journal: true });
    expect(await write(viewer, 1, "EVIL1")).toBe("KILN_FORBIDDEN");
    expect(await write(viewer, 666)).toBe("KILN_FORBIDDEN");
    await drainAll();
    expect(runner.status()).toMatchObject({ backlog: 0, skipped: 2, setAside: 1 });
    expect((await setAsideLines()).toSorted()).toEqual(["e-1", "e-2"]);
    await runner.close();
  });
});
