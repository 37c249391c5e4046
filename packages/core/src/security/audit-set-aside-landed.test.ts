import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { createControlSystem } from "../compose/create-control-system";
import { defineTags } from "../domain/tags";
import { silentLogger } from "../runtime/silent-logger";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";

// fix15ak (adversarial review MEDIUM-1): an entry whose store call timed out (the port guard
// abandoned it) and was then set aside, but whose abandoned call landed afterwards, was reported
// "not in the audit trail" (skipped, setAside) although the store had it. The guard's timeout now
// carries the abandoned call's late outcome to the audit writer.

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!condition() && Date.now() < end) await sleep(20);
}

async function run(options: { journal: boolean; late: "land" | "fail" }) {
  const store = new MemoryStore();
  const original = store.audit.record.bind(store.audit);
  // Every call for the HANGME entry is held past the guard's timeout, until the test lets them go.
  const held: Array<() => void> = [];
  const calls = new Map<string, number>();
  let hangingId: string | undefined;
  store.audit.record = (entry: AuditEntry) => {
    calls.set(entry.id, (calls.get(entry.id) ?? 0) + 1);
    if (JSON.stringify(entry).includes("HANGME")) {
      hangingId = entry.id;
      return new Promise<void>((resolve, reject) => {
        held.push(() =>
          options.late === "land" ? void original(entry).then(resolve, reject) : reject(new TypeError("lost late")),
        );
      });
    }
    return original(entry);
  };
  const path = options.journal ? join(await mkdtemp(join(tmpdir(), "kiln-audit-landed-")), "a.journal") : undefined;
  const make = () =>
    createControlSystem({
      machineId: "m",
      tags,
      driver: new SimulatedPlc({ tags }),
      store,
      logger: silentLogger,
      authorization: { operatorWritableTags: ["heater.*"] },
      storePolicies: { audit: { timeoutMs: 100 } },
      audit: { backlog: { ...(path === undefined ? {} : { path }), maxEntries: 50 } },
    });
  const system = make();
  const events = { skip: [] as string[], storedLate: [] as string[] };
  system.bus.on("audit-entry-skip", (event) => void events.skip.push(event.id));
  system.bus.on("audit-entry-stored-late", (event) => void events.storedLate.push(event.id));
  await system.start();
  const viewer = { id: "vic", roles: ["viewer"] };
  const engineer = { id: "enzo", roles: ["engineer"] };
  await system.writeTag(viewer, "heater.x", 1, { comment: "HANGME" }).catch(() => undefined);
  for (let i = 0; i < 60 && events.skip.length === 0; i++) {
    await system.writeTag(engineer, "heater.x", 100 + i).catch(() => undefined);
    await sleep(50);
  }
  expect(events.skip).toEqual([hangingId]);
  const before = system.health().audit;
  expect(before.setAside).toBe(1);
  // The abandoned calls settle now, after the entry was set aside.
  for (const release of held.splice(0)) release();
  if (options.late === "land") await until(() => events.storedLate.length > 0, 5_000);
  await sleep(300);
  const after = system.health().audit;
  const setAsideFile = path === undefined ? "" : await readFile(`${path}.set-aside`, "utf8");
  await system.stop();
  // A restart with the journal: nothing of it is replayed or stored again.
  const callsBefore = calls.get(hangingId!) ?? 0;
  const again = make();
  await again.start();
  await sleep(300);
  const health2 = again.health().audit;
  const all = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  await again.stop();
  return {
    hangingId: hangingId!,
    events,
    after,
    health2,
    setAsideFile,
    stored: all.filter((entry) => entry.id === hangingId).length,
    callsAfterRestart: (calls.get(hangingId!) ?? 0) - callsBefore,
  };
}

describe("an audit entry set aside after its store call timed out (fix15ak)", () => {
  for (const journal of [true, false]) {
    test(`whose abandoned call lands later is reported stored late, not lost (journal ${journal})`, async () => {
      const result = await run({ journal, late: "land" });
      expect(result.events.storedLate).toEqual([result.hangingId]);
      expect(result.after.storedLate).toBe(1);
      expect(result.after.skipped).toBe(0);
      expect(result.after.setAside).toBe(0);
      expect(result.after.skippedNotKept).toBe(0);
      expect(result.stored).toBe(1);
      expect(result.callsAfterRestart).toBe(0);
      expect(result.health2.skipped).toBe(0);
      if (journal) {
        const lines = result.setAsideFile.trim().split("\n");
        expect(lines).toHaveLength(2);
        expect(JSON.parse(lines[0]!).id).toBe(result.hangingId);
        expect(JSON.parse(lines[1]!).storedLate).toBe(result.hangingId);
      }
    }, 60_000);

    test(`(sibling) whose abandoned call fails later is reported lost exactly once (journal ${journal})`, async () => {
      const result = await run({ journal, late: "fail" });
      expect(result.events.skip).toHaveLength(1);
      expect(result.events.storedLate).toEqual([]);
      expect(result.after.storedLate).toBe(0);
      expect(result.after.skipped).toBe(1);
      expect(result.after.setAside).toBe(1);
      expect(result.stored).toBe(0);
      expect(result.callsAfterRestart).toBe(0);
      if (journal) expect(result.setAsideFile.trim().split("\n")).toHaveLength(1);
    }, 60_000);
  }
});
