import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { KilnError, MemoryStore, createControlSystem, defineTags, type Logger, type Sample } from "@kiln/core";
import { ModbusDriver, ModbusSimulator, type ModbusDriverOptions, type ModbusUnitStatusChange } from "../src/index";

// A caller that gives up (its signal aborts: a read's or a write's deadline) must not cut short the request on
// the wire: that request runs to its answer or timeout in the background and its outcome counts in the unit's
// and the link's health, or a dead unit behind a gateway is never found out and is asked again on every scan.
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  "unit1.counter": { dataType: "uint16", address: "HR0@1", access: "readwrite" },
  "unit2.level": { dataType: "uint16", address: "HR0@2", access: "readwrite" },
});
const unit1Tags = [tags.get("unit1.counter")!];
const unit2Tag = tags.get("unit2.level")!;

/** Unit health for these tests: offline after 3 timeouts, no probe of an offline unit within a test. */
const unitHealth = { offlineAfter: 3, probeInitialDelayMs: 60_000, probeMaxDelayMs: 60_000 };

async function startGateway(
  options: Partial<ModbusDriverOptions>,
): Promise<{ simulator: ModbusSimulator; driver: ModbusDriver }> {
  const simulator = new ModbusSimulator({ tags, signals: { "unit1.counter": { kind: "counter", start: 1 } } });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  simulator.injectSilence(2);
  const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, unitHealth, ...options });
  cleanups.push(() => driver.close());
  return { simulator, driver };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A signal that aborts `ms` from now, as a caller's deadline; its timer is cleared after the test. */
function deadline(ms: number): AbortSignal {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  cleanups.push(async () => clearTimeout(timer));
  return controller.signal;
}

function capture(warnings: { message: string; fields: unknown }[]): Logger {
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (fields: unknown, message?: string) => warnings.push({ message: message ?? "", fields }),
    error: () => undefined,
    child: () => logger,
  };
  return logger;
}

describe("a caller giving up while a request is on the wire", () => {
  it("still counts a dead unit's timeouts: it goes offline and the live unit is good on every later scan", async () => {
    // Each scan's caller gives up the moment a read request to unit 2 reaches the device (on the wire, before its
    // 120 ms timeout), counted rather than timed: a deadline in ms failed under load, when the request went out
    // after it (then never on the wire) or a live read took longer than it.
    const { simulator, driver } = await startGateway({ requestTimeoutMs: 120 });
    await driver.connect();
    const changes: ModbusUnitStatusChange[] = [];
    driver.onUnitStatusChange((change) => changes.push(change));
    let giveUp: AbortController | undefined;
    let unit2Reads = 0;
    // A read of unit 2's block (one register); a probe reads another size (and is not a read's: it is not waited for).
    const stopListening = simulator.onRequest((request) => {
      if (request.unitId !== 2 || request.quantity !== 1) return;
      unit2Reads++;
      giveUp?.abort();
    });
    cleanups.push(async () => stopListening());
    const unit2 = () => driver.units().find((unit) => unit.unitId === 2);
    const scans: (Sample[] | KilnError)[] = [];
    for (let scan = 0; scan < 7; scan++) {
      giveUp = new AbortController();
      scans.push(await driver.read(tags.list(), giveUp.signal).catch((error: KilnError) => error));
      giveUp = undefined;
      // The request left on the wire by scan 0 times out in the background (120 ms) and counts before scan 1.
      for (let wait = 0; scan === 0 && (unit2()?.consecutiveFailures ?? 0) === 0 && wait < 100; wait++) await sleep(20);
      await sleep(150);
    }
    for (let wait = 0; unit2()?.state !== "offline" && wait < 100; wait++) await sleep(20);

    // The first read asks unit 2 (never seen) and is aborted with its request on the wire (the contract);
    // that request's timeout still counts, so from then on unit 2 is not waited for: no later read sends it.
    expect(KilnError.is(scans[0], "KILN_ABORTED")).toBe(true);
    expect(unit2Reads).toBe(1);
    const later = scans.slice(1) as Sample[][];
    expect(later.every((samples) => Array.isArray(samples))).toBe(true);
    expect(later.map((samples) => samples[0]!.quality.severity)).toEqual(Array(6).fill("good"));
    expect(later.map((samples) => samples[1]!.quality.severity)).toEqual(Array(6).fill("bad"));
    expect(driver.units()).toMatchObject([
      { unitId: 1, state: "online", consecutiveFailures: 0 },
      { unitId: 2, state: "offline", consecutiveFailures: 3 },
    ]);
    expect(driver.endpoints()).toContainEqual(expect.objectContaining({ endpoint: "unit 2", state: "offline" }));
    expect(changes).toMatchObject([{ unitId: 2, from: "online", to: "offline" }]);
    expect(driver.status).toBe("connected");
  });

  it("keeps a live unit read in its own scan group good on every scan beside a dead unit's group", async () => {
    // Two scan groups on one gateway, unit 1 slow (20 ms) but live, unit 2 dead; the caller of unit 2's group
    // gives up the moment its request reaches the device, before the 120 ms request timeout (counted, not a
    // deadline in ms, which failed under load when unit 1's 20 ms read took longer). Were unit 2's aborted
    // requests not counted, it would be asked on every scan of its group (7 times, each holding the line for a
    // request timeout into unit 1's next read); counted, it is asked until it is offline (3 times), then not.
    const { simulator, driver } = await startGateway({ requestTimeoutMs: 120 });
    simulator.injectDelay(20, { area: "holding-register", address: 0, unitId: 1 });
    await driver.connect();
    let giveUp: AbortController | undefined;
    let unit2Reads = 0;
    const stopListening = simulator.onRequest((request) => {
      if (request.unitId !== 2 || request.quantity !== 1) return;
      unit2Reads++;
      giveUp?.abort();
    });
    cleanups.push(async () => stopListening());
    const unit2 = () => driver.units().find((unit) => unit.unitId === 2);
    const unit1: string[] = [];
    for (let scan = 0; scan < 7; scan++) {
      const samples = await driver.read(unit1Tags).catch((error: KilnError) => error);
      unit1.push(Array.isArray(samples) ? samples[0]!.quality.severity : (samples as KilnError).code);
      giveUp = new AbortController();
      await driver.read([unit2Tag], giveUp.signal).catch(() => undefined);
      giveUp = undefined;
      // Each request of unit 2 sent has timed out in the background and counted before the next scan.
      for (let wait = 0; (unit2()?.consecutiveFailures ?? 0) < Math.min(unit2Reads, 3) && wait < 100; wait++)
        await sleep(20);
    }
    expect(unit1).toEqual(Array(7).fill("good"));
    expect(unit2Reads).toBe(3);
    expect(unit2()).toMatchObject({ state: "offline" });
  });

  it("counts a write's timeout against its unit when the writer gave up while it was on the wire", async () => {
    const { driver } = await startGateway({ requestTimeoutMs: 150 });
    await driver.connect();
    // Unit 1 answers, so the link is known to work: the timeouts are unit 2's alone.
    await driver.read(unit1Tags);
    const unit2Failures = () => driver.units().find((unit) => unit.unitId === 2)?.consecutiveFailures ?? 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      // Another value each time: the same write again after a timeout would wait for quiet first (lateAnswerGuard).
      const error = await driver.write(unit2Tag, 7 + attempt, deadline(30)).catch((caught: unknown) => caught);
      // The writer gets KILN_ABORTED at once, before the request on the wire has timed out (not yet counted)...
      expect(KilnError.is(error, "KILN_ABORTED")).toBe(true);
      expect(unit2Failures()).toBe(attempt);
      // ...and the write on the wire times out in the background and counts.
      await sleep(200);
      expect(driver.units().find((unit) => unit.unitId === 2)).toMatchObject({ consecutiveFailures: attempt + 1 });
    }
    expect(driver.units().find((unit) => unit.unitId === 2)).toMatchObject({ state: "offline" });
    expect(driver.status).toBe("connected");
  });

  it("counts aborted writes against the link when no unit answers: the link is declared lost", async () => {
    const { driver } = await startGateway({ requestTimeoutMs: 100, maxConsecutiveTimeouts: 3 });
    await driver.connect();
    const statuses: string[] = [];
    driver.onStatusChange((change) => statuses.push(change.to));
    for (let attempt = 0; attempt < 3; attempt++) {
      await expect(driver.write(unit2Tag, 7, deadline(30))).rejects.toMatchObject({ code: "KILN_ABORTED" });
      await sleep(200);
    }
    expect(statuses).toContain("reconnecting");
  });
});

describe("requestTimeoutMs not below the acquisition deadline", () => {
  it("warns once with both numbers and keeps a live but slow unit good on every scan, no flip-flop", async () => {
    const warnings: { message: string; fields: unknown }[] = [];
    const { simulator, driver } = await startGateway({ requestTimeoutMs: 200, logger: capture(warnings) });
    simulator.injectDelay(30, { area: "holding-register", address: 0, unitId: 1 });
    const system = createControlSystem({
      machineId: "gateway",
      tags,
      store: new MemoryStore(),
      driver,
      scanGroups: { default: { periodMs: 500 } },
      acquisition: { timeoutMs: 200 },
    });
    cleanups.push(() => system.stop());
    const unit1: Sample[] = [];
    system.cvt.observe("unit1.counter", (change) => unit1.push(change.sample));
    await system.start();
    await sleep(3_200);

    expect(unit1.length).toBeGreaterThanOrEqual(6);
    expect(unit1.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
    expect(driver.units()).toMatchObject([
      { unitId: 1, state: "online", consecutiveFailures: 0 },
      { unitId: 2, state: "offline" },
    ]);
    const deadlineWarnings = warnings.filter(({ message }) => message.includes("requestTimeoutMs"));
    expect(deadlineWarnings).toHaveLength(1);
    expect(deadlineWarnings[0]!.fields).toMatchObject({ requestTimeoutMs: 200, deadlineMs: expect.any(Number) });
    expect(deadlineWarnings[0]!.message).toMatch(/200 ms.*\(\d+ ms/);
  });
});

describe("one caller signal shared by many requests (adv12e LOW: MaxListenersExceededWarning)", () => {
  it("12 concurrent reads and 12 in flight on one signal hold one abort listener, none after", async () => {
    const { simulator, driver } = await startGateway({ maxInFlight: 12 });
    simulator.injectDelay(20, { area: "holding-register", address: 0, unitId: 1 });
    await driver.connect();
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on("warning", onWarning);
    try {
      const controller = new AbortController();
      const reads = Array.from({ length: 12 }, () => driver.read(unit1Tags, controller.signal));
      await sleep(5);
      expect(getEventListeners(controller.signal, "abort").length).toBeLessThanOrEqual(1);
      const samples = await Promise.all(reads);
      expect(samples.every(([sample]) => sample!.quality.severity === "good")).toBe(true);
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
      await sleep(10);
      expect(warnings).not.toContain("MaxListenersExceededWarning");
    } finally {
      process.off("warning", onWarning);
    }
  });
});
