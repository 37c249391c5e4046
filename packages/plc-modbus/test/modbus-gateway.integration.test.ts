import { afterEach, describe, expect, it } from "vitest";
import { KilnError, MemoryStore, createControlSystem, defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, ModbusSimulator, type ModbusDriverOptions, type ModbusUnitStatusChange } from "../src/index";

// A gateway with several units behind one TCP connection: one dead unit must not take the others down,
// and a connection reset must fail the request in flight at once.
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const gatewayTags = defineTags({
  "unit1.counter": { dataType: "uint16", address: "HR0@1" },
  "unit1.input": { dataType: "uint16", address: "IR0@1" },
  "unit2.level": { dataType: "uint16", address: "HR0@2" },
  "unit2.flow": { dataType: "uint16", address: "IR5@2" },
  "unit2.pump": { dataType: "bool", address: "C0@2" },
});

async function startGateway(): Promise<{ simulator: ModbusSimulator; host: string; port: number }> {
  const simulator = new ModbusSimulator({
    tags: gatewayTags,
    signals: { "unit1.counter": { kind: "counter", start: 1 }, "unit1.input": { kind: "counter", start: 100 } },
  });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  return { simulator, host, port };
}

function createDriver(options: ModbusDriverOptions): ModbusDriver {
  const driver = new ModbusDriver(options);
  cleanups.push(() => driver.close());
  return driver;
}

describe("a gateway with a dead unit", () => {
  it("keeps unit 1's tags good on every 1 s scan while unit 2 never answers (default settings)", async () => {
    const { simulator, host, port } = await startGateway();
    simulator.injectSilence(2);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    const statuses: string[] = [];
    driver.onStatusChange((change) => statuses.push(change.to));
    const unitChanges: ModbusUnitStatusChange[] = [];
    driver.onUnitStatusChange((change) => unitChanges.push(change));
    const system = createControlSystem({ machineId: "gateway", tags: gatewayTags, store: new MemoryStore(), driver });
    cleanups.push(() => system.stop());
    const unit1: Sample[] = [];
    system.cvt.observe("unit1.counter", (change) => unit1.push(change.sample));
    await system.start();
    await new Promise((resolve) => setTimeout(resolve, 6_500));

    const good = unit1.filter((sample) => sample.quality.severity === "good");
    // Scans at 1 s for 6.5 s: only the scan of unit 2's first timeout may run long (it waits 1 s for it);
    // after that unit 2 is probed after unit 1's reads and never delays them.
    expect(good.length).toBeGreaterThanOrEqual(5);
    const group = system.health().acquisition.groups[0]!;
    expect(group.skippedCycles).toBeLessThanOrEqual(1);
    expect(unit1.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
    // Every scan run has unit 1's value (but the one still running): none stalled behind unit 2, none discarded.
    expect(group.failedReads).toBe(0);
    expect(good.length).toBeGreaterThanOrEqual(group.cycles - 1);

    // The link never dropped; the unit, not the gateway, is offline, and says so.
    expect(statuses).not.toContain("reconnecting");
    expect(driver.status).toBe("connected");
    const unit2 = driver.units().find((unit) => unit.unitId === 2);
    expect(unit2).toMatchObject({ state: "offline" });
    expect(driver.units().find((unit) => unit.unitId === 1)).toMatchObject({ state: "online", consecutiveFailures: 0 });
    expect(unitChanges).toMatchObject([{ unitId: 2, from: "online", to: "offline" }]);
    const level = system.read("unit2.level");
    expect(level?.quality.severity).toBe("bad");
    expect(level?.quality.reason).toMatch(/unit 2 (offline, next probe at \d{4}-\d\d-\d\dT|did not answer)/);

    // system.health() names the offline unit and its next probe, and says degraded.
    const health = system.health();
    expect(health.status).toBe("degraded");
    expect(health.acquisition.endpoints).toContainEqual(
      expect.objectContaining({ endpoint: "unit 2", state: "offline", nextProbeAt: expect.any(Number) }),
    );
    expect(health.acquisition.endpoints).toContainEqual(
      expect.objectContaining({ endpoint: "unit 1", state: "online" }),
    );
    expect(health.problems).toEqual([
      expect.stringMatching(/^PLC modbus:127\.0\.0\.1:\d+ unit 2 offline: .*, next probe at \d{4}-\d\d-\d\dT/),
    ]);
  }, 20_000);

  it("answers an offline unit's tags without traffic until its probe is due, and brings it back online", async () => {
    const { simulator, host, port } = await startGateway();
    const silence = simulator.injectSilence(2);
    const driver = createDriver({
      transport: { kind: "tcp", host, port },
      requestTimeoutMs: 50,
      unitHealth: { offlineAfter: 2, probeInitialDelayMs: 400, probeMaxDelayMs: 400 },
    });
    const unitChanges: ModbusUnitStatusChange[] = [];
    driver.onUnitStatusChange((change) => unitChanges.push(change));
    await driver.connect();
    const list = gatewayTags.list();
    // The first timeout is awaited; later ones are probes sent after unit 1's reads, not awaited.
    for (let scan = 0; scan < 20 && unitChanges.length === 0; scan++) {
      await driver.read(list);
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    expect(driver.units().find((unit) => unit.unitId === 2)?.state).toBe("offline");

    const unit2Requests: number[] = [];
    simulator.onRequest((request) => {
      if (request.unitId === 2) unit2Requests.push(request.functionCode);
    });
    const skipped = await driver.read(list);
    expect(unit2Requests).toEqual([]);
    const byName = Object.fromEntries(skipped.map((sample) => [sample.tag, sample]));
    expect(byName["unit1.counter"]!.quality.severity).toBe("good");
    expect(byName["unit2.flow"]!.quality.reason).toMatch(/^unit 2 offline, next probe at \d{4}-\d\d-\d\dT[\d:.]+Z$/);

    silence();
    await new Promise((resolve) => setTimeout(resolve, 450));
    // The due probe goes out after unit 1's reads; unit 2 answers it and is read normally from then on.
    await driver.read(list);
    // The probe's answer lands after the read returns (it is not awaited): polled, not slept on.
    await expect.poll(() => driver.units().find((unit) => unit.unitId === 2)?.state, { timeout: 2_000 }).toBe("online");
    const probed = await driver.read(list);
    expect(probed.every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(unitChanges.map((change) => `${change.unitId}:${change.to}`)).toEqual(["2:offline", "2:online"]);
  });

  it("declares the link lost when every unit stops answering", async () => {
    const { simulator, host, port } = await startGateway();
    simulator.injectSilence(1);
    simulator.injectSilence(2);
    const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 50 });
    await driver.connect();
    const lost = new Promise<string | undefined>((resolve) =>
      driver.onStatusChange((change) => {
        if (change.to === "reconnecting") resolve(change.reason);
      }),
    );
    for (let scan = 0; scan < 3 && driver.status === "connected"; scan++) {
      await driver.read(gatewayTags.list()).catch(() => undefined);
    }
    expect(await lost).toMatch(/no answer from any unit/);
  });

  it("waits for a dead unit once: later reads take no request timeout at all", async () => {
    const { simulator, host, port } = await startGateway();
    simulator.injectSilence(2);
    const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 400 });
    await driver.connect();
    // Requests to unit 2 each read sends (probes go in the pauses between reads, never during one).
    let unit2Requests = 0;
    simulator.onRequest((request) => {
      if (request.unitId === 2) unit2Requests++;
    });
    const asked: number[] = [];
    for (let scan = 0; scan < 4; scan++) {
      const before = unit2Requests;
      const samples = await driver.read(gatewayTags.list());
      asked.push(unit2Requests - before);
      const byName = Object.fromEntries(samples.map((sample) => [sample.tag, sample]));
      expect(byName["unit1.counter"]!.quality.severity).toBe("good");
      expect(byName["unit1.input"]!.quality.severity).toBe("good");
      expect(byName["unit2.level"]!.quality.severity).toBe("bad");
      // A probe of unit 2 may still be on the line; the next read's unit 1 requests wait behind it.
      await new Promise((resolve) => setTimeout(resolve, 450));
    }
    // The first read asks unit 2 (and waits for its timeout); the later ones send it nothing, so none waits.
    expect(asked[0]).toBeGreaterThanOrEqual(1);
    expect(asked.slice(1)).toEqual([0, 0, 0]);
  });
});

describe("a gateway with several dead units", () => {
  // Scaled from the review's 1 s scans / 1 s request timeout / 2 s acquisition timeout to 200/200/400 ms.
  function deadUnitTags(dead: number) {
    const definitions: Record<string, { dataType: "uint16" | "bool"; address: string }> = {
      "u1.a": { dataType: "uint16", address: "HR0@1" },
      "u1.b": { dataType: "uint16", address: "IR0@1" },
    };
    for (let unit = 2; unit < 2 + dead; unit++) {
      definitions[`u${unit}.a`] = { dataType: "uint16", address: `HR0@${unit}` };
      definitions[`u${unit}.b`] = { dataType: "uint16", address: `IR5@${unit}` };
      definitions[`u${unit}.c`] = { dataType: "bool", address: `C0@${unit}` };
    }
    return defineTags(definitions);
  }

  for (const dead of [1, 2, 3, 5]) {
    it(`keeps the live unit good on every scan from the first with ${dead} dead unit(s) behind the gateway`, async () => {
      const tags = deadUnitTags(dead);
      const simulator = new ModbusSimulator({ tags, signals: { "u1.a": { kind: "counter", start: 1 } } });
      const { host, port } = await simulator.start();
      cleanups.push(() => simulator.stop());
      for (let unit = 2; unit < 2 + dead; unit++) simulator.injectSilence(unit);
      const units: number[] = [];
      simulator.onRequest((request) => units.push(request.unitId));
      const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 200 });
      const system = createControlSystem({
        machineId: "gateway",
        tags,
        store: new MemoryStore(),
        driver,
        scanGroups: { default: { periodMs: 200 } },
        acquisition: { timeoutMs: 400 },
      });
      cleanups.push(() => system.stop());
      const live: Sample[] = [];
      system.cvt.observe("u1.a", (change) => live.push(change.sample));
      await system.start();
      await new Promise((resolve) => setTimeout(resolve, 2_500));

      // The first scan waits for one dead unit (one request timeout) and may overrun its period once;
      // every scan has unit 1's value, none is discarded by the acquisition timeout.
      expect(live.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
      // Unit 1 is read before any dead unit is asked (so before a timeout can delay it), and every scan run
      // delivered its value (but the one still running), the first included.
      expect(units.indexOf(1)).toBeLessThan(units.findIndex((unit) => unit !== 1));
      const group = system.health().acquisition.groups[0]!;
      expect(live.length).toBeGreaterThanOrEqual(group.cycles - 1);
      expect(group.failedReads).toBe(0);
      expect(group.skippedCycles).toBeLessThanOrEqual(1);
      expect(live.length).toBeGreaterThanOrEqual(9);
      expect(driver.units().find((unit) => unit.unitId === 1)).toMatchObject({ state: "online" });
      for (let unit = 2; unit < 2 + dead; unit++) expect(system.read(`u${unit}.a`)?.quality.severity).toBe("bad");
    }, 15_000);
  }

  it("units that die together ahead of a live one: one is found per read, then the live one is good on every scan (adv12p MEDIUM: the documented bound)", async () => {
    // Units 2-6 answer the first scan, then all go silent; unit 7 stays alive. Unit 7 may be bad only while
    // units asked before it are found dead (one per read), never for longer, and never wrong.
    const definitions: Record<string, { dataType: "uint16"; address: string }> = {};
    for (let unit = 2; unit <= 7; unit++) definitions[`u${unit}`] = { dataType: "uint16", address: `HR0@${unit}` };
    const tags = defineTags(definitions);
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await simulator.start();
    cleanups.push(() => simulator.stop());
    const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 150 });
    await driver.connect();
    const first = await driver.read(tags.list());
    expect(first.every((sample) => sample.quality.severity === "good")).toBe(true);
    for (let unit = 2; unit <= 6; unit++) simulator.injectSilence(unit);
    const live: Sample[] = [];
    for (let scan = 0; scan < 12; scan++) live.push((await driver.read(tags.list()))[5]!);
    const bad = live.filter((sample) => sample.quality.severity !== "good");
    expect(bad.length).toBeLessThanOrEqual(5);
    for (const sample of bad)
      expect(sample.quality.reason).toMatch(/not asked in this read: another request timed out first/);
    expect(live.slice(5).map((sample) => sample.quality.severity)).toEqual(Array(7).fill("good"));
    expect(live.filter((sample) => sample.quality.severity === "good").map((sample) => sample.value)).toEqual(
      Array(live.length - bad.length).fill(first[5]!.value),
    );
  }, 15_000);

  it("units that die together after a live one: the live one is good on every scan (sibling)", async () => {
    const definitions: Record<string, { dataType: "uint16"; address: string }> = {};
    for (let unit = 2; unit <= 7; unit++) definitions[`u${unit}`] = { dataType: "uint16", address: `HR0@${unit}` };
    const tags = defineTags(definitions);
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await simulator.start();
    cleanups.push(() => simulator.stop());
    const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 150 });
    await driver.connect();
    const [first] = await driver.read(tags.list());
    for (let unit = 3; unit <= 7; unit++) simulator.injectSilence(unit);
    const live: Sample[] = [];
    for (let scan = 0; scan < 8; scan++) live.push((await driver.read(tags.list()))[0]!);
    expect(live.map((sample) => [sample.value, sample.quality.severity])).toEqual(
      Array(8).fill([first!.value, "good"]),
    );
  }, 15_000);

  it("returns the finished samples good and the rest bad before the caller's deadline", async () => {
    const tags = deadUnitTags(3);
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await simulator.start();
    cleanups.push(() => simulator.stop());
    for (let unit = 2; unit < 5; unit++) simulator.injectSilence(unit);
    // A request timeout longer than the caller's budget: without the deadline the read would take 1 s.
    const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 1_000 });
    const system = createControlSystem({
      machineId: "gateway",
      tags,
      store: new MemoryStore(),
      driver,
      scanGroups: { default: { periodMs: 5_000 } },
      acquisition: { timeoutMs: 300 },
    });
    cleanups.push(() => system.stop());
    await system.start();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(system.health().acquisition.groups[0]!.failedReads).toBe(0);
    expect(system.read("u1.a")?.quality.severity).toBe("good");
    expect(system.read("u2.a")?.quality).toMatchObject({ severity: "bad", reason: expect.stringMatching(/deadline/) });
    expect(system.read("u3.a")?.quality).toMatchObject({
      severity: "bad",
      reason: expect.stringMatching(/not answered/),
    });
  });
});

describe("a connection reset with a request in flight", () => {
  // The request timeout is an hour: a read or write that waited for it would outlast the test's own timeout, so
  // settling at all (with KILN_CONNECTION_FAILED, not KILN_TIMEOUT) shows the reset was noticed at once.
  const HOUR_MS = 3_600_000;

  it("fails the read at once with a retryable KILN_CONNECTION_FAILED, not at the request timeout", async () => {
    const { simulator, host, port } = await startGateway();
    const driver = createDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: HOUR_MS });
    await driver.connect();
    simulator.injectReset({ area: "holding-register", address: 0, unitId: 1 });
    const error = await driver.read(gatewayTags.list()).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
  });

  it("fails a write in flight at once too, and reconnects", async () => {
    const { simulator, host, port } = await startGateway();
    const writable = defineTags({ "unit1.setpoint": { dataType: "uint16", access: "readwrite", address: "HR7@1" } });
    const driver = createDriver({
      transport: { kind: "tcp", host, port },
      requestTimeoutMs: HOUR_MS,
      reconnect: { initialDelayMs: 10 },
    });
    await driver.connect();
    const reset = simulator.injectReset({ area: "holding-register", address: 7, on: "write" });
    const error = await driver.write(writable.get("unit1.setpoint"), 5).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    reset();
    await driver.connect();
    await driver.write(writable.get("unit1.setpoint"), 6);
    expect(simulator.stats.connections).toBe(2);
  });
});
