import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { createControlSystem } from "../compose/create-control-system";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { silentLogger } from "../runtime/silent-logger";

// Adversarial review adv15b (main 6d6cdc02), MEDIUM-B: under drop-oldest an entry whose store call
// the guard timed out was evicted and counted dropped, and the abandoned call then landed: the
// counts exceeded what is missing (126 counted for 120 missing). It stays marked until a later call
// for it answers (fix15af).

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("drop-oldest: an entry whose timed-out store call lands late is not counted dropped", async () => {
  const store = new MemoryStore();
  const record = store.audit.record.bind(store.audit);
  const all: AuditEntry[] = [];
  const original = (entry: AuditEntry) => record(entry).then(() => void all.push(entry));
  let frozen = false;
  const held: (() => void)[] = [];
  store.audit.record = (entry: AuditEntry) =>
    frozen
      ? new Promise<void>((resolve, reject) => held.push(() => void original(entry).then(resolve, reject)))
      : original(entry);
  const path = join(await mkdtemp(join(tmpdir(), "kiln-audit-landed-")), "a.journal");
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    storePolicies: { audit: { timeoutMs: 200 } },
    audit: { backlog: { path, maxEntries: 10, whenFull: "drop-oldest" } },
  });
  await system.start();
  const admin = { id: "ada", roles: ["admin"] };
  const viewer = { id: "vic", roles: ["viewer"] };
  const answers = new Map<number, string>();
  let value = 0;
  for (let round = 0; round < 20; round++) {
    if (round % 10 === 2) frozen = true;
    if (round % 10 === 7) {
      frozen = false;
      for (const release of held.splice(0)) release();
    }
    await Promise.all(
      Array.from({ length: 6 }, (_, index) => {
        const written = ++value;
        return system.writeTag(index === 5 ? viewer : admin, "heater.x", written).then(
          () => void answers.set(written, "ok"),
          (error: unknown) => void answers.set(written, KilnError.is(error) ? error.code : "x"),
        );
      }),
    );
    await sleep(50);
  }
  frozen = false;
  for (const release of held.splice(0)) release();
  // Drained before the stop: an entry still journaled at the stop is not in `all` (it is stored at
  // the next start), which read as an ok command missing when a loaded machine drained slower than
  // the earlier fixed 10 s bound (fix15ak). Bounded by the test's own timeout instead.
  while (system.health().audit.backlog > 0) await sleep(50);
  expect(system.health().audit.backlog).toBe(0);
  await system.stop();
  const counted = (action: string) =>
    all
      .filter((entry) => entry.action === action)
      .reduce((sum, entry) => sum + ((entry.newValue as { count?: number } | undefined)?.count ?? 0), 0);
  let missing = 0;
  for (let written = 1; written <= value; written++) {
    if (all.some((entry) => entry.action === "tag.write" && entry.newValue === written)) continue;
    missing++;
  }
  // No ok command missing uncounted. An ok command's entry may itself be the oldest one dropped
  // (what drop-oldest does, ADR 0013): on a loaded machine one was, counted (41 counted for 41
  // missing), so the test no longer asserts that none is; the count equal to what is missing is
  // the rule, and it fails when a landed entry is counted as well (42 for 40 before fix15af).
  expect(counted("audit.drop") + counted("audit.overflow")).toBe(missing);
}, 60_000);
