import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import {
  createControlSystem,
  defineTags,
  KilnError,
  MemoryStore,
  SimulatedPlc,
  silentLogger,
  type ControlSystem,
} from "../index";
import type { AuditEntry } from "../ports/audit-log";

// fix15ab (adv15 H1-H3, M1). fix15z and fix15aa each released only the wait their own test used;
// a command (or the stop's abort) waiting on anything else outlived stop(): the process record's
// save after a hung device (the abort's `:fail` dropped seconds after the return, journal or not),
// one hung store call of a denial while the rest of the store answered, a device write still
// inside its driver timeout (and the write queued behind it), a store port (saveRecipe). Now the
// stop settles everything still in flight in one place before the writer closes: each is answered
// (KILN_LIFECYCLE) and the entry it owes is stored, journaled or counted in droppedAtStop before
// stop() returns; nothing is reported (or counted) afterwards.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const admin = { id: "ada", roles: ["admin"] } as never;
const viewer = { id: "vic", roles: ["viewer"] } as never;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Harness {
  system: ControlSystem;
  plc: SimulatedPlc;
  store: MemoryStore;
  /** Entries the audit store took, with when (ms, Date.now()). */
  stored: { entry: AuditEntry; at: number }[];
  /** audit-entry-drop events: count and when. */
  drops: { count: number; at: number }[];
  hangDevice(): void;
  /** The audit store's record() calls from now on: `hang(n)` true leaves the nth (1-based) unanswered. */
  hangAudit(hang: (call: number) => boolean): void;
}

async function harness(options: {
  deviceTimeoutMs?: number;
  drainTimeoutMs?: number;
  journal?: boolean;
  auditTimeoutMs?: number;
  processSaveMs?: () => number;
  hangRepositories?: () => boolean;
}): Promise<Harness> {
  const names = ["v.t0", "v.t1"];
  const tags = defineTags(
    Object.fromEntries(
      [...names, "h.sp"].map((name) => [name, { dataType: "float64", access: "readwrite", scanGroup: "fast" }]),
    ) as never,
  );
  const plc = new SimulatedPlc({ tags });
  let deviceHung = false;
  const write = plc.write.bind(plc);
  plc.write = (tag, value, signal) => (deviceHung ? new Promise<void>(() => undefined) : write(tag, value, signal));
  const store = new MemoryStore();
  const stored: Harness["stored"] = [];
  const record = store.audit.record.bind(store.audit);
  let auditHang: ((call: number) => boolean) | undefined;
  let calls = 0;
  store.audit.record = async (entry: AuditEntry) => {
    if (auditHang?.(++calls) === true) return new Promise<void>(() => undefined);
    await record(entry);
    stored.push({ entry, at: Date.now() });
  };
  const save = store.processes.save.bind(store.processes);
  store.processes.save = async (...args: Parameters<typeof save>) => {
    const ms = options.processSaveMs?.() ?? 0;
    if (ms > 0) await sleep(ms);
    return save(...args);
  };
  if (options.hangRepositories !== undefined) {
    const hang = options.hangRepositories;
    const recipes = store.recipes as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const name of ["save", "get", "list", "latest"] as const) {
      const original = recipes[name];
      if (typeof original !== "function") continue;
      const bound = original.bind(store.recipes);
      recipes[name] = (...args: unknown[]) => (hang() ? new Promise(() => undefined) : bound(...args));
    }
  }
  let path: string | undefined;
  if (options.journal === true) {
    const dir = mkdtempSync(join(tmpdir(), "kiln-stop-settles-"));
    dirs.push(dir);
    path = join(dir, "audit");
  }
  const system = createControlSystem({
    machineId: "r1",
    tags,
    driver: plc,
    store,
    logger: silentLogger,
    scanGroups: { fast: { periodMs: 50 } },
    acquisition: { timeoutMs: options.deviceTimeoutMs ?? 4_000 },
    lifecycleTimeoutMs: 1_000,
    logging: { drainTimeoutMs: options.drainTimeoutMs ?? 1_000 },
    ...(options.auditTimeoutMs === undefined
      ? {}
      : { storePolicies: { audit: { timeoutMs: options.auditTimeoutMs } } }),
    ...(path === undefined ? {} : { audit: { backlog: { path } } }),
    machine: { model: "kiln", safeState: names.map((tag) => ({ tag, value: 0 })) },
  } as never);
  const drops: Harness["drops"] = [];
  system.bus.on("audit-entry-drop", (event) => void drops.push({ count: event.count, at: Date.now() }));
  await system.start();
  return {
    system,
    plc,
    store,
    stored,
    drops,
    hangDevice: () => void (deviceHung = true),
    hangAudit: (hang) => {
      calls = 0;
      auditHang = hang;
    },
  };
}

/** A command's outcome: its error code ("ok" when it resolved) and when it settled, or "pending". */
function track(work: Promise<unknown>): { code: string; at?: number } {
  const outcome: { code: string; at?: number } = { code: "pending" };
  void work.then(
    () => Object.assign(outcome, { code: "ok", at: Date.now() }),
    (error: unknown) =>
      Object.assign(outcome, { code: KilnError.is(error) ? error.code : String(error), at: Date.now() }),
  );
  return outcome;
}

/** Stops `system`; returns when it returned (ms, Date.now()) and how long it took. */
async function stopped(system: ControlSystem): Promise<{ at: number; tookMs: number }> {
  const started = Date.now();
  await system.stop();
  return { at: Date.now(), tookMs: Date.now() - started };
}

describe("stop() settles everything still in flight before it returns, whatever it waits on (fix15ab)", () => {
  test("H1: hung device and a process save of 1 s: the abort's :fail (naming the halted safe state) is stored before stop() returns", async () => {
    let saveMs = 0;
    const h = await harness({ deviceTimeoutMs: 4_000, drainTimeoutMs: 2_000, processSaveMs: () => saveMs });
    await h.system.startRecipe(admin, { name: "r", version: 1, steps: [{ wait: { durationMs: 60_000 } }] });
    await sleep(100);
    h.hangDevice();
    saveMs = 1_000;
    const stop = await stopped(h.system);
    expect(stop.tookMs).toBeLessThan(6_000);
    const abortFail = h.stored.find((item) => item.entry.action === "recipe.abort" && item.entry.id.endsWith(":fail"));
    expect(abortFail?.at).toBeLessThanOrEqual(stop.at);
    expect(abortFail?.entry.reason).toContain("v.t0");
    const audit = h.system.health().audit;
    expect(audit.droppedAtStop).toBe(0);
    // The save finishes later: nothing is reported or counted afterwards.
    await sleep(2_500);
    expect(h.drops).toEqual([]);
    expect(h.system.health().audit.droppedWhileStopped ?? 0).toBe(0);
  }, 20_000);

  test("(sibling of H1) with a journal and a hung audit store: the abort's :fail is journaled, nothing dropped, nothing late", async () => {
    let saveMs = 0;
    const h = await harness({
      deviceTimeoutMs: 4_000,
      drainTimeoutMs: 2_000,
      journal: true,
      processSaveMs: () => saveMs,
    });
    await h.system.startRecipe(admin, { name: "r", version: 1, steps: [{ wait: { durationMs: 60_000 } }] });
    await sleep(100);
    h.hangDevice();
    h.hangAudit(() => true);
    saveMs = 1_000;
    const stop = await stopped(h.system);
    expect(stop.tookMs).toBeLessThan(6_000);
    const audit = h.system.health().audit;
    expect(audit.droppedAtStop).toBe(0);
    expect(audit.durableBacklog).toBe(true);
    expect(audit.backlog).toBeGreaterThanOrEqual(2); // recipe.abort and its :fail, at least
    await sleep(2_500);
    expect(h.drops).toEqual([]);
    expect(h.system.health().audit.droppedWhileStopped ?? 0).toBe(0);
  }, 20_000);

  test("H2: one hung audit-store call among answered ones: every command settled before stop() returns, the hung entry counted then", async () => {
    const h = await harness({ auditTimeoutMs: 3_000 });
    // The third record() from now on never answers; the others do.
    h.hangAudit((call) => call === 3);
    const outcomes = Array.from({ length: 12 }, (_, index) =>
      track(h.system.writeTag(index % 2 === 0 ? viewer : admin, "h.sp", index)),
    );
    await sleep(300);
    const stop = await stopped(h.system);
    expect(stop.tookMs).toBeLessThan(4_000);
    for (const outcome of outcomes) {
      expect(outcome.code).not.toBe("pending");
      expect(outcome.at).toBeLessThanOrEqual(stop.at);
    }
    const audit = h.system.health().audit;
    expect(audit.droppedAtStop).toBeGreaterThanOrEqual(1);
    const reportedByReturn = h.drops.filter((drop) => drop.at <= stop.at).reduce((sum, drop) => sum + drop.count, 0);
    expect(reportedByReturn).toBe(audit.droppedAtStop);
    // Past the store's timeout (3 s): the hung call fails, nothing more is reported or counted.
    await sleep(3_500);
    expect(h.drops.filter((drop) => drop.at > stop.at)).toEqual([]);
    expect(h.system.health().audit.droppedAtStop).toBe(audit.droppedAtStop);
    expect(h.system.health().audit.droppedWhileStopped ?? 0).toBe(0);
  }, 20_000);

  test("H3: a write within its driver timeout (longer than the budget) and one queued behind it: both answered, their entries stored before stop() returns", async () => {
    const h = await harness({ deviceTimeoutMs: 4_000, drainTimeoutMs: 1_000 });
    h.hangDevice();
    const first = track(h.system.writeTag(admin, "h.sp", 5));
    const second = track(h.system.writeTag(admin, "h.sp", 6));
    await sleep(200);
    const stop = await stopped(h.system);
    expect(stop.tookMs).toBeLessThan(4_000);
    for (const outcome of [first, second]) {
      expect(outcome.code).toBe("KILN_LIFECYCLE");
      expect(outcome.at).toBeLessThanOrEqual(stop.at);
    }
    const writes = h.stored.filter((item) => item.entry.action === "tag.write");
    for (const item of writes) expect(item.at).toBeLessThanOrEqual(stop.at);
    // The first: allowed, then its :fail (outcome unknown); the second: its own entry, not allowed.
    expect(writes.map((item) => item.entry.outcome).sort()).toEqual(["allowed", "failed", "failed"]);
    expect(writes.find((item) => item.entry.id.endsWith(":fail"))?.entry.reason).toContain("unknown");
    expect(h.system.health().audit.droppedAtStop).toBe(0);
    // Past the driver timeout: nothing reported late, nothing recorded late.
    const count = h.stored.length;
    await sleep(3_500);
    expect(h.drops).toEqual([]);
    expect(h.stored.length).toBe(count);
  }, 20_000);

  test("M1: saveRecipe waiting on a hung recipes repository: answered, its :fail stored before stop() returns", async () => {
    let hang = false;
    const h = await harness({ hangRepositories: () => hang });
    const recipe = { name: "sv", version: 1, steps: [{ wait: { durationMs: 60_000 } }] };
    await h.system.saveRecipe(admin, recipe as never);
    hang = true;
    const save = track(h.system.saveRecipe(admin, { ...recipe, version: 2 } as never));
    await sleep(200);
    const stop = await stopped(h.system);
    expect(stop.tookMs).toBeLessThan(4_000);
    expect(save.code).toBe("KILN_LIFECYCLE");
    expect(save.at).toBeLessThanOrEqual(stop.at);
    const saves = h.stored.filter((item) => item.entry.action === "recipe.save");
    const fail = saves.find((item) => item.entry.id.endsWith(":fail"));
    expect(fail?.at).toBeLessThanOrEqual(stop.at);
    expect(fail?.entry.outcome).toBe("failed");
    expect(h.system.health().audit.droppedAtStop).toBe(0);
    await sleep(500);
    expect(h.drops).toEqual([]);
  }, 20_000);

  test.each([
    ["with a journal", true],
    ["(sibling) without one", false],
  ])(
    "adv15b M1: after a stop that gave up on the audit writer (%s), a command issued once stop() returned counts as dropped while stopped, never at the stop",
    async (_, journal) => {
      const h = await harness({ drainTimeoutMs: 1_000, auditTimeoutMs: 2_500, journal });
      h.hangAudit(() => true);
      const before = [track(h.system.writeTag(viewer, "h.sp", 1)), track(h.system.writeTag(admin, "h.sp", 2))];
      await sleep(100);
      const stop = await stopped(h.system);
      for (const outcome of before) expect(outcome.code).not.toBe("pending");
      const atReturn = h.system.health().audit;
      const after = [
        track(h.system.writeTag(viewer, "h.sp", 3)),
        track(h.system.writeTag(admin, "h.sp", 4)),
        track(h.system.writeTag(admin, "v.t0", 4)),
      ];
      await sleep(500);
      expect(after.map((outcome) => outcome.code)).toEqual(["KILN_FORBIDDEN", "KILN_LIFECYCLE", "KILN_LIFECYCLE"]);
      const later = h.system.health().audit;
      // What stop() said when it returned stands; the three later commands are counted as what they are.
      expect(later.droppedAtStop).toBe(atReturn.droppedAtStop);
      expect(later.droppedWhileStopped ?? 0).toBe((atReturn.droppedWhileStopped ?? 0) + 3);
      expect(stop.tookMs).toBeLessThan(4_000);
    },
    20_000,
  );

  test("adv15b M2: an operator's abort whose effect is done is recorded allowed, never released as failed, when only the process record's save is slow at a stop", async () => {
    let saveMs = 0;
    const h = await harness({ deviceTimeoutMs: 2_000, drainTimeoutMs: 1_000, processSaveMs: () => saveMs });
    await h.system.startRecipe(admin, { name: "r", version: 1, steps: [{ wait: { durationMs: 60_000 } }] });
    await sleep(150);
    saveMs = 3_000;
    const abort = track(h.system.abortProcess(admin, "user"));
    await sleep(50);
    const stop = await stopped(h.system);
    const entries = h.stored.filter((item) => item.entry.action === "recipe.abort" && item.entry.principal === "ada");
    expect(entries.map((item) => item.entry.outcome)).toEqual(["allowed"]);
    expect(entries[0]!.at).toBeLessThanOrEqual(stop.at);
    expect(h.system.health().audit.droppedAtStop).toBe(0);
    // The caller's answer is the process's result once the save is done: aborted, not refused.
    await sleep(3_500);
    expect(abort.code).toBe("ok");
    expect(
      h.stored.filter((item) => item.entry.action === "recipe.abort" && item.entry.principal === "ada"),
    ).toHaveLength(1);
  }, 20_000);

  test("(sibling of adv15b M2) an operator's abort with the device hung: its safe state halted at the stop, the :fail names it, before stop() returns", async () => {
    const h = await harness({ deviceTimeoutMs: 4_000, drainTimeoutMs: 1_000 });
    await h.system.startRecipe(admin, { name: "r", version: 1, steps: [{ wait: { durationMs: 60_000 } }] });
    await sleep(150);
    h.hangDevice();
    const abort = track(h.system.abortProcess(admin, "user"));
    await sleep(50);
    const stop = await stopped(h.system);
    expect(abort.code).not.toBe("pending");
    const fail = h.stored.find(
      (item) =>
        item.entry.action === "recipe.abort" && item.entry.principal === "ada" && item.entry.id.endsWith(":fail"),
    );
    expect(fail?.at).toBeLessThanOrEqual(stop.at);
    expect(fail?.entry.reason).toContain("v.t0");
  }, 20_000);

  test("adv15b L1: after a clean stop, health's audit backlog counts the journaled entries the next start records; 0 once it has", async () => {
    const h = await harness({ drainTimeoutMs: 500, journal: true });
    // The audit store fails fast (retryable): the writer's close is clean, the entries stay journaled.
    const record = h.store.audit.record.bind(h.store.audit);
    let down = true;
    h.store.audit.record = async (entry: AuditEntry) => {
      if (down) throw new KilnError("KILN_STORE_ERROR", "down", { retryable: true });
      return record(entry);
    };
    const outcomes = Array.from({ length: 6 }, (_, index) =>
      track(h.system.writeTag(index % 2 === 0 ? admin : viewer, "h.sp", index)),
    );
    await sleep(300);
    await h.system.stop();
    for (const outcome of outcomes) expect(outcome.code).not.toBe("pending");
    const audit = h.system.health().audit;
    expect(audit.droppedAtStop).toBe(0);
    expect(audit.durableBacklog).toBe(true);
    expect(audit.backlog).toBeGreaterThanOrEqual(6);
    down = false;
    const before = h.stored.length;
    await h.system.start();
    await expect.poll(() => h.system.health().audit.backlog, { timeout: 5_000 }).toBe(0);
    expect(h.stored.length - before).toBeGreaterThanOrEqual(audit.backlog);
    await h.system.stop();
  }, 20_000);
});
