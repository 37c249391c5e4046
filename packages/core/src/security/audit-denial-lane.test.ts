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

// Adversarial pass adv15g (fix15j).
// MEDIUM-2: a refused command's audit entry was recorded inside the state-command turn, so an
// allowed write queued behind a burst of refused ones waited for every refusal's store call
// (2,000 denials, 50 ms a call: 104 s), and health said nothing meanwhile.
// MEDIUM-3 (no journal): refused commands' entries the store fails on (PostgreSQL raising for them:
// a trigger's P0001, a 40001) closed the store-failing gate, so authorized writes were refused
// KILN_AUDIT_UNAVAILABLE although the store took their entries.

const tags = defineTags({ "heater.x": { dataType: "float64", access: "readwrite" } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const viewer = { id: "vic", roles: ["viewer"] };
const engineer = { id: "enzo", roles: ["engineer"] };

/** PostgreSQL's answer to a trigger raising for the row (SQLSTATE P0001), as the store maps it. */
const raised = () =>
  new KilnError("KILN_STORE_ERROR", "PostgreSQL audit record failed: denied rows refused (P0001).", {
    retryable: true,
  });

async function rig(options: {
  delayMs?: number;
  journal?: boolean;
  fail?: (entry: AuditEntry, attempt: number) => boolean;
}) {
  const store = new MemoryStore();
  const original = store.audit.record.bind(store.audit);
  const attempts = new Map<string, number>();
  const stored: AuditEntry[] = [];
  store.audit.record = async (entry: AuditEntry) => {
    const attempt = (attempts.get(entry.id) ?? 0) + 1;
    attempts.set(entry.id, attempt);
    if (options.delayMs !== undefined) await sleep(options.delayMs);
    if (options.fail?.(entry, attempt) === true) throw raised();
    await original(entry);
    stored.push(entry);
  };
  const path =
    options.journal === true ? join(await mkdtemp(join(tmpdir(), "kiln-audit-lane-")), "a.journal") : undefined;
  const system = createControlSystem({
    machineId: "m",
    tags,
    driver: new SimulatedPlc({ tags }),
    store,
    logger: silentLogger,
    authorization: { operatorWritableTags: ["heater.*"] },
    ...(path === undefined ? {} : { audit: { backlog: { path } } }),
  });
  await system.start();
  const trail = async () => stored.filter((entry) => entry.category === "tag");
  return { system, store, trail };
}

describe("refused commands' entries do not hold allowed commands (adv15g MEDIUM-2, fix15j)", () => {
  test("no journal, 20 ms a store call: a write queued behind 200 refused writes answers at once", async () => {
    const { system, trail } = await rig({ delayMs: 20 });
    const denials = Array.from({ length: 200 }, (_, index) =>
      system.writeTag(viewer, "heater.x", index).then(
        () => "ok",
        (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
      ),
    );
    const t0 = Date.now();
    await system.writeTag(engineer, "heater.x", 42);
    const waited = Date.now() - t0;
    // Before: about 200 × 20 ms = 4 s (each refusal's store call inside the turn).
    expect(waited).toBeLessThan(1_000);
    expect(new Set(await Promise.all(denials))).toEqual(new Set(["KILN_FORBIDDEN"]));
    await system.stop();
    const entries = await trail();
    // Every entry stored once: 200 denied, 1 allowed.
    expect(new Set(entries.map((entry) => entry.id)).size).toBe(entries.length);
    expect(entries.filter((entry) => entry.outcome === "denied")).toHaveLength(200);
    expect(entries.filter((entry) => entry.outcome === "allowed")).toHaveLength(1);
    expect(system.health().audit.dropped).toBe(0);
  }, 30_000);

  test("(sibling) health names refused entries waiting for the store longer than 2 s", async () => {
    const { system, trail } = await rig({ delayMs: 60 });
    const denials = Array.from({ length: 300 }, (_, index) =>
      system.writeTag(viewer, "heater.x", index).catch(() => undefined),
    );
    await sleep(2_600);
    const problems = system.health().problems;
    // Before: nothing (the refusals waited for their turn, unseen by the audit writer).
    expect(problems.some((problem) => problem.includes("audit queue"))).toBe(true);
    expect(system.health().audit.queued ?? 0).toBeGreaterThan(0);
    await Promise.all(denials);
    expect(system.health().problems.some((problem) => problem.includes("audit queue"))).toBe(false);
    await system.stop();
    expect((await trail()).filter((entry) => entry.outcome === "denied")).toHaveLength(300);
  }, 60_000);

  test("(sibling) with a journal: a write queued behind 1,000 refused writes answers before most of them", async () => {
    const { system, trail } = await rig({ journal: true });
    let answered = 0;
    const denials = Array.from({ length: 1_000 }, (_, index) =>
      system.writeTag(viewer, "heater.x", index).catch(() => void answered++),
    );
    await system.writeTag(engineer, "heater.x", 42);
    // Before: every refusal answered first (one fsynced append each inside its turn). The
    // command work of the refusals takes CPU time of its own, so the bound is on order, not time.
    expect(answered).toBeLessThan(500);
    await Promise.all(denials);
    await system.stop();
    const entries = await trail();
    expect(new Set(entries.map((entry) => entry.id)).size).toBe(entries.length);
    expect(entries).toHaveLength(1_001);
  }, 60_000);
});

describe("refused commands' entries the store fails on do not refuse authorized ones (adv15g MEDIUM-3, fix15j)", () => {
  test("no journal, the store raises for every denied entry: 50 authorized writes amid refusals all run and are audited", async () => {
    const { system, trail } = await rig({ fail: (entry) => entry.outcome === "denied" });
    let skipped = 0;
    let dropped = 0;
    system.bus.on("audit-entry-skip", () => void skipped++);
    system.bus.on("audit-entry-drop", (event) => void (dropped += event.count));
    const answers: string[] = [];
    for (let index = 0; index < 50; index++) {
      const denial = system.writeTag(viewer, "heater.x", index).catch(() => undefined);
      answers.push(
        await system.writeTag(engineer, "heater.x", 100 + index).then(
          () => "ok",
          (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
        ),
      );
      await denial;
      await sleep(10);
    }
    // Before: 22-88 % refused KILN_AUDIT_UNAVAILABLE.
    expect(answers.filter((answer) => answer !== "ok")).toEqual([]);
    await system.stop();
    const entries = await trail();
    expect(entries.filter((entry) => entry.outcome === "allowed" && entry.principal === "enzo")).toHaveLength(50);
    // Nothing lost silently: each refusal's entry is set aside or reported dropped.
    expect(skipped + dropped).toBe(50);
  }, 60_000);

  test("(sibling) no journal, a serialization failure (40001) on each denied entry's first try: every authorized write runs, no entry lost or stored twice", async () => {
    const { system, trail } = await rig({ fail: (entry, attempt) => entry.outcome === "denied" && attempt === 1 });
    const answers: string[] = [];
    for (let index = 0; index < 50; index++) {
      const denials = [0, 1].map(() => system.writeTag(viewer, "heater.x", index).catch(() => undefined));
      answers.push(
        await system.writeTag(engineer, "heater.x", 100 + index).then(
          () => "ok",
          (error: unknown) => (KilnError.is(error) ? error.code : String(error)),
        ),
      );
      await Promise.all(denials);
    }
    expect(answers.filter((answer) => answer !== "ok")).toEqual([]);
    await system.stop();
    const entries = await trail();
    expect(new Set(entries.map((entry) => entry.id)).size).toBe(entries.length);
    expect(entries.filter((entry) => entry.outcome === "allowed")).toHaveLength(50);
    // Each refusal's entry stored once, or counted and reported dropped at the stop (a backlog
    // entry the store fails on waits for the background retry, which the stop does not outwait).
    const health = system.health().audit;
    expect(entries.filter((entry) => entry.outcome === "denied").length + health.dropped).toBe(100);
    expect(health.skipped).toBe(0);
  }, 60_000);
});
