import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { createControlSystem } from "../compose/create-control-system";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { silentLogger } from "../runtime/silent-logger";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";

// fix15af (a timeout or retryable KilnError counts towards the head's failures) made health name
// the head of a store that is simply down as the entry holding the trail ("audit trail held by
// entry …"), hiding where the entries are ("entries journaled"): faults/audit-full-disk.test.ts,
// "the disk has room for the journal but not its reserve", failed and fix15af was reverted. A store
// down for everything is an outage, not poison (fix15ag).

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function outage(options: { journal: boolean; mode: "down" | "hang" }) {
  const store = new MemoryStore();
  const original = store.audit.record.bind(store.audit);
  let down = true;
  store.audit.record = async (entry: AuditEntry) => {
    if (down) {
      if (options.mode === "hang") return new Promise<void>(() => {});
      throw new KilnError("KILN_STORE_ERROR", "audit store down (test)", { retryable: true });
    }
    return original(entry);
  };
  const path = options.journal ? join(await mkdtemp(join(tmpdir(), "kiln-audit-outage-")), "a.journal") : undefined;
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    authorization: { operatorWritableTags: ["heater.*"] },
    storePolicies: { audit: { timeoutMs: 100 } },
    audit: { backlog: { ...(path === undefined ? {} : { path }), maxEntries: 100 } },
  });
  await system.start();
  const viewer = { id: "vic", roles: ["viewer"] };
  const engineer = { id: "enzo", roles: ["engineer"] };
  const codes: string[] = [];
  for (let i = 0; i < 12; i++) {
    const principal = i % 3 === 0 ? engineer : viewer;
    codes.push(
      await system.writeTag(principal, "heater.x", i).then(
        () => "ok",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      ),
    );
    await sleep(40);
  }
  await sleep(1_200);
  const health = system.health();
  down = false;
  await system.stop();
  await store.open(tags.list());
  const stored = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  return { health, codes, stored };
}

describe("a store down for everything is an outage: health says where the entries are (fix15ag)", () => {
  for (const mode of ["down", "hang"] as const) {
    test(`with a journal, store ${mode}: "entries journaled", no head named as holding the trail, nothing set aside`, async () => {
      const { health, codes, stored } = await outage({ journal: true, mode });
      const problems = health.problems.join("\n");
      expect(problems).not.toMatch(/audit trail held by entry/);
      expect(problems).toMatch(/entries journaled/);
      expect(health.audit.blockedBy).toBeUndefined();
      expect(health.audit.skipped + health.audit.setAside).toBe(0);
      // Journaled: the engineer's writes run, the viewers are denied.
      expect(codes.filter((code) => code === "ok")).toHaveLength(4);
      // Every entry waited in the journal (nothing stored, nothing dropped). The store is back for
      // the stop: the close's flush may store them (once each) or, while the audit breaker is still
      // open, leave them journaled for the next start. Before fix15j the refused entries' store
      // errors opened the breaker in "down" too, so nothing was ever stored here; now that depends
      // on timing (all twelve stored when the breaker stayed closed).
      expect(new Set(stored.map((entry) => entry.id)).size).toBe(stored.length);
      expect(stored.length).toBeLessThanOrEqual(12);
      expect(health.audit).toMatchObject({ backlog: 12, dropped: 0, durableBacklog: true });
    }, 30_000);
  }

  test('without a journal, store down: "held in memory only", no head named as holding the trail', async () => {
    const { health, codes } = await outage({ journal: false, mode: "down" });
    const problems = health.problems.join("\n");
    expect(problems).not.toMatch(/audit trail held by entry/);
    expect(problems).toMatch(/entries held in memory only/);
    expect(health.audit.blockedBy).toBeUndefined();
    expect(codes.filter((code) => code === "ok")).toHaveLength(0);
  }, 30_000);
});
