import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import type { MemoryStore } from "../memory/memory-store";
import { auditTrailAfterStop, simulatedSystem, type SimulatedSystemOptions } from "../../test/support/simulated-system";

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
});
const admin = { id: "ada", roles: ["admin"] };
const endless = {
  name: "r",
  version: 1,
  steps: [{ set: { tag: "valve.tma", value: true } }, { wait: { durationMs: 600_000 } }],
};
const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

async function build(options: Partial<SimulatedSystemOptions> = {}) {
  const parts = simulatedSystem({
    tags,
    scanGroups: { fast: { periodMs: 50 } },
    machine: { safeState: [{ tag: "valve.tma", value: false }] },
    storePolicies: { audit: { timeoutMs: 1_000, retry: { maxAttempts: 1 } } },
    lifecycleTimeoutMs: 5_000,
    ...options,
  });
  await parts.system.start();
  await parts.clock.advance(100);
  return parts;
}

async function ticks(count = 30): Promise<void> {
  for (let tick = 0; tick < count; tick++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Advances simulated time until `promise` settles, at most 50 times as fast as real time: the
 * journal's file I/O takes real time, and simulated time racing ahead of it would make any
 * fsync look like a step that ran out of its budget (the CI failure of stop 28).
 */
async function settle(clock: { advance(ms: number): Promise<void> }, promise: Promise<unknown>): Promise<void> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  for (let step = 0; step < 2000 && !done; step++) {
    await clock.advance(100);
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
  expect(done).toBe(true);
}

/** A journal path in a fresh directory, removed after the test. */
async function journalPath(prefix: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), prefix));
  directories.push(directory);
  return join(directory, "audit.journal");
}

/**
 * Freezes the store's audit log for good (a record never settles, unlike `faults.hang`, so one
 * that timed out never lands later) until `thaw()`; records after the thaw reach the store.
 */
function freezeAudit(store: { audit: MemoryStore["audit"] }): { thaw(): void } {
  const record = store.audit.record.bind(store.audit);
  let frozen = true;
  store.audit.record = (entry) => (frozen ? new Promise<void>(() => undefined) : record(entry));
  return { thaw: () => void (frozen = false) };
}

const safeWrites = (writes: readonly { tag: string; value: unknown }[]) =>
  writes.filter((write) => write.tag === "valve.tma").map((write) => write.value);

describe("stop() with a running process writes its safe state first (issue 15, second review)", () => {
  test("the aborted process's safe state reaches the PLC", async () => {
    const { system, plc } = await build();
    const process = await system.startRecipe(admin, endless);
    await system.stop();
    expect(safeWrites(plc.writes)).toEqual([true, false]);
    await expect(process.finished).resolves.toMatchObject({ status: "aborted" });
  });

  test("the safe state is written at once while the audit store hangs with a write queued", async () => {
    const { system, plc, store, clock } = await build();
    await system.startRecipe(admin, endless);
    await clock.advance(100);
    store.faults.hang("audit");
    const write = system.writeTag(admin, "heater.setpoint", 100).then(
      () => "ok",
      (error: { code: string }) => error.code,
    );
    await ticks();
    const stopping = system.stop();
    await ticks();
    // No simulated time passed: the abort did not wait for the queued write or the audit store.
    expect(safeWrites(plc.writes)).toEqual([true, false]);
    await settle(clock, stopping);
    expect(await write).not.toBe("ok");
    expect(plc.writes.filter((entry) => entry.tag === "heater.setpoint")).toEqual([]);
  });
});

describe("stop() refuses commands in flight before they commit (issue 15, second review)", () => {
  test("with a journal, writes issued while the audit store hangs do not wait for it: each runs journaled, or is refused at stop and recorded failed (review 15j)", async () => {
    const journal = await journalPath("kiln-stop-gate-");
    const parts = await build({ audit: { backlog: { path: journal } } });
    const { system, plc, store, clock } = parts;
    // Frozen for good: a record that times out never lands later (unlike faults.hang).
    const audit = freezeAudit(store);
    const writes = [100, 101, 102].map((value) =>
      system.writeTag(admin, "heater.setpoint", value).then(
        () => "ok",
        (error: { code: string }) => error.code,
      ),
    );
    await ticks();
    const stopping = system.stop();
    await settle(clock, stopping);
    const outcomes = await Promise.all(writes);
    // The journal makes an entry durable: a write committed before the stop ran; none waited on the store.
    expect(outcomes.every((outcome) => outcome === "ok" || outcome === "KILN_LIFECYCLE")).toBe(true);
    const ran = [100, 101, 102].filter((_, index) => outcomes[index] === "ok");
    expect(plc.writes.filter((entry) => entry.tag === "heater.setpoint").map((entry) => entry.value)).toEqual(ran);
    audit.thaw();
    await settle(clock, system.start());
    const trail = await auditTrailAfterStop(parts);
    const entries = trail.filter((entry) => entry.action === "tag.write");
    // One entry each: allowed for those that ran; for the others failed (refused before the
    // commit), or, when the stop refused the write after its entry was durable (a failure after
    // the commit, as a device's refusal), allowed followed by its own entry naming it (`:fail`).
    for (const [index, value] of [100, 101, 102].entries()) {
      const mine = entries.filter((candidate) => candidate.newValue === value);
      if (outcomes[index] === "ok") expect(mine.map((entry) => entry.outcome)).toEqual(["allowed"]);
      else if (mine.length === 1) expect(mine[0]!.outcome).toBe("failed");
      else {
        expect(mine.map((entry) => entry.outcome)).toEqual(["allowed", "failed"]);
        expect(mine[1]!.refersTo).toBe(mine[0]!.id);
      }
    }
  });

  test("a recipe start queued behind a frozen audit store at stop starts nothing", async () => {
    const parts = await build();
    const { system, plc, store, clock } = parts;
    const audit = freezeAudit(store);
    const write = system.writeTag(admin, "heater.setpoint", 100).then(
      () => "ok",
      (error: { code: string }) => error.code,
    );
    const start = system.startRecipe(admin, endless).then(
      () => "ok",
      (error: { code: string }) => error.code,
    );
    await ticks();
    const stopping = system.stop();
    await settle(clock, stopping);
    expect(await start).toBe("KILN_LIFECYCLE");
    expect(await write).not.toBe("ok");
    expect(plc.writes).toEqual([]);
    audit.thaw();
    await settle(clock, system.start());
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.outcome === "allowed")).toEqual([]);
  });
});

describe("commands arriving while the system stops are refused with KILN_LIFECYCLE before touching a store (review 15r)", () => {
  test("every guarded command kind: refused KILN_LIFECYCLE, the recipe store never asked, each recorded failed", async () => {
    const journal = await journalPath("kiln-stop-gate-");
    const parts = await build({ audit: { backlog: { path: journal } } });
    const { system, plc, store, clock } = parts;
    await system.saveRecipe(admin, endless);
    // A recipe store that fails (as a breaker opened by the stop would answer): never reached.
    const asked: string[] = [];
    const recipes = store.recipes;
    const get = recipes.get.bind(recipes);
    const save = recipes.save.bind(recipes);
    recipes.get = (name) => {
      asked.push(`get ${name}`);
      return Promise.reject(new Error("the recipe store was asked while stopping"));
    };
    recipes.save = (recipe) => {
      asked.push(`save ${recipe.name}`);
      return Promise.reject(new Error("the recipe store was asked while stopping"));
    };
    // A frozen audit store keeps the stop busy settling a write in flight.
    const audit = freezeAudit(store);
    const codeOf = (promise: Promise<unknown>) =>
      promise.then(
        () => "ok",
        (error: { code: string }) => error.code,
      );
    const inFlight = codeOf(system.writeTag(admin, "heater.setpoint", 100));
    await ticks();
    const stopping = system.stop();
    await ticks();
    const calling = {
      startSavedRecipe: codeOf(system.startSavedRecipe(admin, "r", 1)),
      startRecipe: codeOf(
        system.startRecipe(admin, { name: "outer", version: 1, steps: [{ call: { recipe: "r", version: 1 } }] }),
      ),
      saveRecipe: codeOf(system.saveRecipe(admin, { ...endless, version: 2 })),
      writeTag: codeOf(system.writeTag(admin, "heater.setpoint", 200)),
      resumeProcess: codeOf(system.resumeProcess(admin)),
    };
    await settle(clock, stopping);
    await inFlight;
    for (const [kind, outcome] of Object.entries(calling))
      expect([kind, await outcome]).toEqual([kind, "KILN_LIFECYCLE"]);
    expect(asked).toEqual([]);
    expect(plc.writes.filter((write) => write.tag === "heater.setpoint" && write.value === 200)).toEqual([]);
    recipes.get = get;
    recipes.save = save;
    audit.thaw();
    await settle(clock, system.start());
    const trail = await auditTrailAfterStop(parts);
    for (const action of ["recipe.start", "recipe.save", "recipe.resume"]) {
      const refused = trail.filter((entry) => entry.action === action && entry.outcome === "failed");
      expect([action, refused.length]).toEqual([action, action === "recipe.start" ? 2 : 1]);
      for (const entry of refused) expect(entry.reason).toMatch(/stopping/);
    }
    expect(trail.filter((entry) => entry.action === "tag.write" && entry.newValue === 200)).toMatchObject([
      { outcome: "failed" },
    ]);
  });
});

describe("a start after a stop that abandoned a step waits for it (CI stop 28)", () => {
  test("the audit writer's close, abandoned past the drain budget, finishes before the start opens the writer: entries after the start are stored", async () => {
    const journal = await journalPath("kiln-stop-abandon-");
    const parts = await build({
      audit: { backlog: { path: journal } },
      logging: { drainTimeoutMs: 500 },
      lifecycleTimeoutMs: 30_000,
      storePolicies: { audit: { timeoutMs: 5_000, retry: { maxAttempts: 1 } } },
    });
    const { system, plc, store, clock } = parts;
    const audit = freezeAudit(store);
    const first = system.writeTag(admin, "heater.setpoint", 100).catch(() => undefined);
    await ticks();
    await settle(clock, system.stop());
    await first;
    audit.thaw();
    // The writer's close still waits on the frozen store call (its 5 s timeout): the start waits for it.
    await settle(clock, system.start());
    expect(system.state).toBe("running");
    await system.writeTag(admin, "heater.setpoint", 150);
    expect(plc.writes.filter((write) => write.value === 150)).toHaveLength(1);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "tag.write" && entry.newValue === 150)).toMatchObject([
      { outcome: "allowed" },
    ]);
    // Its entry, plus (when the stop refused it after the commit) its own entry naming it.
    const hundred = trail.filter((entry) => entry.action === "tag.write" && entry.newValue === 100);
    expect(hundred.filter((entry) => entry.refersTo === undefined)).toHaveLength(1);
    expect(
      hundred.filter((entry) => entry.refersTo !== undefined).every((entry) => entry.refersTo === hundred[0]!.id),
    ).toBe(true);
  });

  test("an abandoned audit writer's close that outlasts the next start's wait: the start fails KILN_LIFECYCLE naming it and changes nothing; a later start succeeds", async () => {
    const journal = await journalPath("kiln-stop-abandon-");
    const parts = await build({
      audit: { backlog: { path: journal } },
      logging: { drainTimeoutMs: 500 },
      lifecycleTimeoutMs: 1_000,
      storePolicies: { audit: { timeoutMs: 20_000, retry: { maxAttempts: 1 } } },
    });
    const { system, store, clock } = parts;
    const audit = freezeAudit(store);
    const first = system.writeTag(admin, "heater.setpoint", 100).catch(() => undefined);
    await ticks();
    await settle(clock, system.stop());
    await first;
    audit.thaw();
    // The writer's close waits on the frozen store call for 20 s; the start waits 1 s for it.
    const refused = system.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    await settle(clock, refused);
    expect(await refused).toMatchObject({
      code: "KILN_LIFECYCLE",
      retryable: true,
      details: { steps: ["closing the command runner"] },
    });
    expect(system.state).toBe("stopped");
    await clock.advance(20_000);
    // The close ends on the store call's timeout, then flushes its journal with real I/O: on a
    // loaded machine a start may still find it running, and says so (retryable, the same step).
    for (let attempt = 0; attempt < 20 && system.state !== "running"; attempt++) {
      const again = system.start().then(
        () => undefined,
        (error: unknown) => error,
      );
      await settle(clock, again);
      const error = await again;
      if (error !== undefined) {
        expect(error).toMatchObject({ code: "KILN_LIFECYCLE", details: { steps: ["closing the command runner"] } });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    expect(system.state).toBe("running");
    await system.writeTag(admin, "heater.setpoint", 150);
    const trail = await auditTrailAfterStop(parts);
    expect(trail.filter((entry) => entry.action === "tag.write" && entry.newValue === 150)).toMatchObject([
      { outcome: "allowed" },
    ]);
  });
});
