import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { createControlSystem, defineTags, MemoryStore, SimulatedPlc, silentLogger } from "../index";
import type { AuditEntry } from "../ports/audit-log";

// fix15z, adv15y H2. With a device that hangs every write, stop() aborted the running process,
// whose safe state was written one tag after another, each waiting up to the driver's timeout:
// stop() took 10 s (4 tags, timeout 4 s, drainTimeoutMs 2000; documented bound drainTimeoutMs +
// 2 s), the abandoned abort went on issuing writes after stop() returned, and its `:fail` was
// dropped: the trail read "recipe.abort allowed", no `:fail`, as if the safe state was written.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const admin = { id: "ada", roles: ["admin"] } as never;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A process running on `count` safe-state tags; the device then hangs every write; stop(). */
async function hungDeviceStop(options: { count: number; deviceTimeoutMs: number; press: boolean; journal: boolean }) {
  const names = Array.from({ length: options.count }, (_, index) => `v.t${index}`);
  const tags = defineTags(
    Object.fromEntries(names.map((name) => [name, { dataType: "float64", access: "readwrite", scanGroup: "fast" }])),
  );
  const plc = new SimulatedPlc({ tags });
  const write = plc.write.bind(plc);
  let hang = false;
  const calls: { tag: string; at: number }[] = [];
  plc.write = async (tag, value, signal) => {
    calls.push({ tag: tag.name, at: Date.now() });
    if (hang) return new Promise<void>(() => undefined);
    await write(tag, value, signal);
  };
  const store = new MemoryStore();
  const stored: AuditEntry[] = [];
  const record = store.audit.record.bind(store.audit);
  store.audit.record = async (entry: AuditEntry) => {
    await record(entry);
    stored.push(entry);
  };
  const dir = mkdtempSync(join(tmpdir(), "kiln-stop-halt-"));
  dirs.push(dir);
  const system = createControlSystem({
    machineId: "r1",
    tags,
    driver: plc,
    store,
    logger: silentLogger,
    scanGroups: { fast: { periodMs: 50 } },
    acquisition: { timeoutMs: options.deviceTimeoutMs },
    lifecycleTimeoutMs: 1000,
    logging: { drainTimeoutMs: 2000 },
    ...(options.journal ? { audit: { backlog: { path: join(dir, "audit") } } } : {}),
    machine: { model: "kiln", safeState: names.map((tag) => ({ tag, value: 0 })) },
  } as never);
  const drops: number[] = [];
  system.bus.on("audit-entry-drop", (event) => void drops.push(event.count));
  await system.start();
  await system.startRecipe(admin, { name: "r", version: 1, steps: [{ wait: { durationMs: 60_000 } }] });
  await sleep(100);
  hang = true;
  if (options.press) void system.sendMachineCommand(admin, "stop").catch(() => undefined);
  await sleep(20);
  const started = Date.now();
  await system.stop();
  const returned = Date.now();
  const atReturn = { stored: [...stored], problems: system.health().problems, audit: system.health().audit };
  return { names, calls, stored, drops, atReturn, tookMs: returned - started, returned, system };
}

describe("stop() halts the safe state it can no longer wait for, and records its outcome first (fix15z, adv15y H2)", () => {
  test("4 safe-state tags, a device that hangs every write (timeout 4 s), drainTimeoutMs 2000: stop() within its bound, the abort's :fail stored naming every tag, nothing sent after", async () => {
    const run = await hungDeviceStop({ count: 4, deviceTimeoutMs: 4000, press: false, journal: false });
    // Documented bound: drainTimeoutMs + 2 s (before: 10 s).
    expect(run.tookMs).toBeLessThan(4000);
    const abort = run.atReturn.stored.find((entry) => entry.action === "recipe.abort" && entry.outcome === "allowed");
    expect(abort).toBeDefined();
    const fail = run.atReturn.stored.find((entry) => entry.id === `${abort!.id}:fail`);
    expect(fail).toMatchObject({ outcome: "failed" });
    for (const tag of run.names) {
      expect(fail!.reason).toContain(tag);
      expect(run.atReturn.problems).toContainEqual(expect.stringContaining(`safe state not confirmed on ${tag}`));
    }
    expect(run.atReturn.audit.droppedAtStop).toBe(0);
    // The device timeout of the write still out passes; nothing else is sent, nothing dropped.
    await sleep(4500);
    expect(run.calls.filter((call) => call.at >= run.returned)).toEqual([]);
    expect(run.drops).toEqual([]);
    expect(run.system.health().audit.droppedWhileStopped).toBe(0);
    expect(run.stored.filter((entry) => entry.id.endsWith(":fail"))).toHaveLength(1);
  }, 20_000);

  test("(sibling) with a journal and a stop press acting, default device timeout: both :fail stored before stop() returns, nothing dropped", async () => {
    const run = await hungDeviceStop({ count: 2, deviceTimeoutMs: 2000, press: true, journal: true });
    expect(run.tookMs).toBeLessThan(4000);
    const fails = run.atReturn.stored.filter((entry) => entry.id.endsWith(":fail"));
    expect(fails.map((entry) => entry.action).sort()).toEqual(["machine.stop", "recipe.abort"]);
    for (const fail of fails) for (const tag of run.names) expect(fail.reason).toContain(tag);
    await sleep(2500);
    expect(run.calls.filter((call) => call.at >= run.returned)).toEqual([]);
    expect(run.drops).toEqual([]);
    expect(run.system.health().audit.droppedWhileStopped).toBe(0);
  }, 20_000);
});
