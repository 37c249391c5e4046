import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { createControlSystem } from "../compose/create-control-system";
import { KilnError } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { AuditEntry } from "../ports/audit-log";
import { silentLogger } from "../runtime/silent-logger";

// Adversarial review adv15k, MEDIUM-2: the denial lane's waiting list (fix15j) had no bound and
// was one queue for every principal. 20,000 refused writes against a store taking 1 s a call
// left 19,988 refusals waiting in memory (+186 MB), beyond every limit of the backlog; an
// engineer's own refused write waited more than 10 s behind 3,000 refusals of a viewer (fix15l).

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const viewer = { id: "vic", roles: ["viewer"] };
const engineer = { id: "enzo", roles: ["engineer"] };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const code = (promise: Promise<unknown>) =>
  promise.then(
    () => "ok",
    (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
  );

function rig(options: { delayMs: number; maxEntries?: number; journal?: string }) {
  const store = new MemoryStore();
  const record = store.audit.record.bind(store.audit);
  const delay = { ms: options.delayMs };
  const stored: AuditEntry[] = [];
  store.audit.record = async (entry: AuditEntry) => {
    if (delay.ms > 0) await sleep(delay.ms);
    await record(entry);
    stored.push(entry);
  };
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    authorization: { operatorWritableTags: ["heater.*"] },
    audit: {
      backlog: {
        ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
        ...(options.journal === undefined ? {} : { path: options.journal }),
      },
    },
  });
  return { system, stored, delay };
}

describe("the denial lane's waiting list is bounded and served by principal in turn (fix15l, adv15k MEDIUM-2)", () => {
  test("20,000 refusals against a store taking 1 s a call: at most the denied share waits, the rest is counted in the overflow", async () => {
    const { system, stored, delay } = rig({ delayMs: 1_000, maxEntries: 100 });
    await system.start();
    const answers: Promise<string>[] = [];
    for (let index = 0; index < 20_000; index++) answers.push(code(system.writeTag(viewer, "heater.x", index)));
    await sleep(1_500);
    const audit = system.health().audit;
    // The backlog's denied share (50 of 100) bounds the waiting list.
    expect(audit.queued).toBeLessThanOrEqual(50);
    // The counted refusals were answered without waiting for the store.
    const settled = await Promise.race([
      Promise.all(answers.slice(1_000)).then((all) => all),
      sleep(2_000).then(() => undefined),
    ]);
    expect(settled?.every((answer) => answer === "KILN_FORBIDDEN")).toBe(true);
    // Nothing silent: each refusal is stored, or counted in an audit.overflow summary.
    delay.ms = 0;
    expect((await Promise.all(answers)).every((answer) => answer === "KILN_FORBIDDEN")).toBe(true);
    await system.stop();
    const refusals = stored.filter((entry) => entry.outcome === "denied" && entry.action !== "audit.overflow");
    const summarized = stored
      .filter((entry) => entry.action === "audit.overflow")
      .reduce((sum, entry) => sum + Number((entry.newValue as { count?: number } | undefined)?.count ?? 0), 0);
    // Counted in summaries (most of them: the rest waited for, or had, a place in the lane).
    expect(summarized).toBeGreaterThanOrEqual(20_000 - 50 - 4 - 8);
    expect(refusals.length + summarized + system.health().audit.dropped).toBe(20_000);
  }, 60_000);

  test("with a journal, 20,000 refusals past the bound do not stand before an engineer's write: counted with shared reserve writes, not a writer turn each (adv15m MEDIUM-1)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-lane-journal-"));
    try {
      const { system, stored } = rig({ delayMs: 20, journal: join(dir, "audit.journal") });
      await system.start();
      const answers: Promise<string>[] = [];
      for (let index = 0; index < 20_000; index++) answers.push(code(system.writeTag(viewer, "heater.x", index)));
      await sleep(50);
      const started = performance.now();
      expect(await code(system.writeTag(engineer, "heater.x", 1))).toBe("ok");
      const waitedMs = performance.now() - started;
      // Before: 4.8 s (each counted refusal took a writer turn and rewrote the whole reserve).
      expect(waitedMs, `the engineer's write waited ${waitedMs.toFixed(0)} ms`).toBeLessThan(1_500);
      expect((await Promise.all(answers)).every((answer) => answer === "KILN_FORBIDDEN")).toBe(true);
      await system.stop();
      expect(stored.filter((entry) => entry.outcome === "allowed" && entry.principal === engineer.id)).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("(sibling) an engineer's refused write is answered within 1 s behind 3,000 refusals of a viewer", async () => {
    const { system } = rig({ delayMs: 20 });
    await system.start();
    const floods: Promise<string>[] = [];
    for (let index = 0; index < 3_000; index++) floods.push(code(system.writeTag(viewer, "heater.x", index)));
    await sleep(100);
    const began = Date.now();
    const answer = await Promise.race([
      code(system.writeTag(engineer, "heater.x", "not a number" as unknown as number)),
      sleep(5_000).then(() => "still waiting after 5 s"),
    ]);
    const waited = Date.now() - began;
    expect(answer).toBe("KILN_VALIDATION");
    expect(waited).toBeLessThan(1_000);
    await Promise.all(floods);
    await system.stop();
  }, 60_000);
});
