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

// Adversarial review adv15b (main 6d6cdc02), HIGH-A: a custom audit store that hangs (or throws a
// retryable KilnError) on one entry's content only, a viewer's refused write with a chosen comment.
// The guard timed it out (KILN_TIMEOUT, a KilnError): the poison rule never counted it, the head was
// retried forever, nothing more was stored and commands were refused (fix15af).

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(options: { journal: boolean; mode: "hang" | "kerr" | "down"; pair?: boolean }) {
  const store = new MemoryStore();
  const original = store.audit.record.bind(store.audit);
  let down = false;
  store.audit.record = async (entry: AuditEntry) => {
    if (down) return new Promise<void>(() => {});
    if (JSON.stringify(entry).includes("EVIL1")) throw new TypeError("invalid byte sequence");
    if (JSON.stringify(entry).includes("HANGME")) {
      if (options.mode === "kerr") throw new KilnError("KILN_TIMEOUT", "statement timeout", { retryable: true });
      return new Promise<void>(() => {});
    }
    return original(entry);
  };
  const path = options.journal ? join(await mkdtemp(join(tmpdir(), "kiln-audit-timeout-")), "a.journal") : undefined;
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    authorization: { operatorWritableTags: ["heater.*"] },
    storePolicies: { audit: { timeoutMs: 100 } },
    audit: { backlog: { ...(path === undefined ? {} : { path }), maxEntries: 50 } },
  });
  let skips = 0;
  system.bus.on("audit-entry-skip", () => void skips++);
  await system.start();
  if (options.mode === "down") down = true;
  const viewer = { id: "vic", roles: ["viewer"] };
  const engineer = { id: "enzo", roles: ["engineer"] };
  if (options.pair === true) await system.writeTag(viewer, "heater.x", 1, { comment: "EVIL1" }).catch(() => undefined);
  await system.writeTag(viewer, "heater.x", 1, { comment: "HANGME" }).catch(() => undefined);
  const answers: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const answer = await system.writeTag(engineer, "heater.x", 100 + i).then(
      () => "ok",
      (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
    );
    answers[answer] = (answers[answer] ?? 0) + 1;
    await sleep(50);
  }
  await sleep(1_500);
  const health = system.health().audit;
  const all = await store.audit.query({ from: 0, to: Number.MAX_SAFE_INTEGER });
  const engineerStored = all.filter((entry) => entry.principal === "enzo" && entry.action === "tag.write").length;
  down = false;
  await system.stop();
  return { answers, engineerStored, skips, health };
}

describe("an audit store that hangs on one entry's content (adv15b HIGH-A)", () => {
  for (const journal of [true, false]) {
    test(`the hanging head is set aside once and later entries are stored (journal ${journal})`, async () => {
      const result = await run({ journal, mode: "hang" });
      expect(result.skips).toBe(1);
      expect(result.health.skipped).toBe(1);
      expect(result.engineerStored).toBeGreaterThanOrEqual(30);
      expect(result.answers.ok ?? 0).toBeGreaterThanOrEqual(30);
    }, 30_000);
  }

  test("a store that throws a retryable KilnError for that content: the same", async () => {
    const result = await run({ journal: true, mode: "kerr" });
    expect(result.skips).toBe(1);
    expect(result.engineerStored).toBeGreaterThanOrEqual(30);
  }, 30_000);

  test("(sibling) a poison head with the hanging entry behind it: a probe that times out, the next is tried", async () => {
    const result = await run({ journal: true, mode: "hang", pair: true });
    expect(result.skips).toBe(2);
    expect(result.engineerStored).toBeGreaterThanOrEqual(30);
  }, 30_000);

  test("a store that hangs on everything sets nothing aside (an outage)", async () => {
    const result = await run({ journal: true, mode: "down" });
    expect(result.skips).toBe(0);
    expect(result.health.skipped).toBe(0);
    expect(result.engineerStored).toBe(0);
  }, 30_000);
});
