import { afterEach, describe, expect, it } from "vitest";
import {
  KilnValidationError,
  SystemClock,
  defineTags,
  type Clock,
  type Logger,
  type TagDefinitionInput,
} from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";
import { rawRegister, startRawTcpDevice } from "./raw-tcp-device";

// Pipelining on Modbus TCP: several requests on the wire at once, answers matched by transaction id.
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// 400 uint16 tags, one every 8 registers: 25 requests of up to 125 registers.
const definitions: Record<string, TagDefinitionInput> = {};
const initialValues: Record<string, number> = {};
for (let index = 0; index < 400; index++) {
  definitions[`t${index}`] = { dataType: "uint16", address: `HR${index * 8}` };
  initialValues[`t${index}`] = (index * 37) % 65536;
}
const tags = defineTags(definitions).list();

async function start(): Promise<{ simulator: ModbusSimulator; host: string; port: number }> {
  const simulator = new ModbusSimulator({ tags, initialValues });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  return { simulator, host, port };
}

// Requests of 1, 2 and 3 registers: answers that cannot be taken for each other, so the driver may pipeline
// them before the device has proved that it stamps answers with the right transaction id.
const proofTags = defineTags({
  p0: { dataType: "uint16", address: "HR0" },
  p1: { dataType: "uint16", address: "HR800" },
  p2: { dataType: "uint16", address: "HR801" },
  p3: { dataType: "uint16", address: "HR1600" },
  p4: { dataType: "uint16", address: "HR1602" },
}).list();

/** Reads distinguishable requests until the device has proved its transaction ids (same-shape pipelining). */
async function proveIds(driver: ModbusDriver): Promise<void> {
  for (let read = 0; read < 3; read++) await driver.read(proofTags);
}

function driverFor(host: string, port: number, maxInFlight: number, requestTimeoutMs = 1000): ModbusDriver {
  const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, maxInFlight, requestTimeoutMs });
  cleanups.push(() => driver.close());
  return driver;
}

describe("maxInFlight (pipelining)", () => {
  it("reads the same values as one request at a time, even when answers come back out of order", async () => {
    const { simulator, host, port } = await start();
    const pipelined = driverFor(host, port, 8);
    const sequential = driverFor(host, port, 1);
    await pipelined.connect();
    await sequential.connect();
    await proveIds(pipelined);
    expect(pipelined.readPlan(tags).requests.length).toBe(25);
    // The first block's answer comes last: the others overtake it on the wire.
    simulator.injectDelay(30, { area: "holding-register", address: 0, length: 125 });
    const fast = await pipelined.read(tags);
    const slow = await sequential.read(tags);
    expect(fast.every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(fast.map((sample) => sample.value)).toEqual(slow.map((sample) => sample.value));
    expect(fast.map((sample) => sample.value)).toEqual(tags.map((tag) => initialValues[tag.name]));
  });

  it("keeps up to maxInFlight requests outstanding while an earlier one is unanswered", async () => {
    const { simulator, host, port } = await start();
    const driver = driverFor(host, port, 8, 60_000);
    await driver.connect();
    await proveIds(driver);
    simulator.injectTimeout({ area: "holding-register", address: 0, length: 1 });
    let seen = 0;
    const eight = new Promise<void>((resolve) =>
      simulator.onRequest(() => {
        if (++seen === 8) resolve();
      }),
    );
    const reading = driver.read(tags).catch((error: unknown) => error);
    // With one request at a time the second would wait the first one's 60 s timeout.
    await eight;
    expect(seen).toBe(8);
    await driver.close();
    expect(await reading).toMatchObject({ code: "KILN_NOT_CONNECTED" });
  });

  it("is refused for Modbus RTU, where a serial line carries one request at a time", () => {
    expect(() => new ModbusDriver({ transport: { kind: "rtu", path: "/dev/ttyUSB0" }, maxInFlight: 4 })).toThrow(
      KilnValidationError,
    );
  });
});

describe("a device that drops pipelined requests", () => {
  it("is detected: the driver falls back to one request at a time, and the unit and link stay healthy", async () => {
    const { simulator, host, port } = await start();
    const driver = driverFor(host, port, 8, 300);
    const statuses: string[] = [];
    driver.onStatusChange((change) => statuses.push(change.to));
    await driver.connect();
    await proveIds(driver);
    simulator.injectDelay(5);
    simulator.injectBusyDrop();
    const first = await driver.read(tags);
    expect(first.some((sample) => sample.quality.severity === "bad")).toBe(true);
    expect(driver.maxInFlight).toBe(1);
    expect(driver.units().every((unit) => unit.state === "online")).toBe(true);
    const second = await driver.read(tags);
    expect(second.map((sample) => sample.value)).toEqual(tags.map((tag) => initialValues[tag.name]));
    expect(second.every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(statuses).toEqual(["connecting", "connected"]);
  });

  it("is detected when the device answers only the earliest of the requests in flight", async () => {
    // A common kind: busy with the first request, it drops whatever arrives meanwhile, so no request sent
    // after a dropped one is ever answered (the 'later request answered' sign never shows).
    let busyUntil = 0;
    const device = await startRawTcpDevice(() => {
      const now = Date.now();
      if (now < busyUntil) return { kind: "silent" };
      // Busy until shortly before it answers: requests sent with the first (within a millisecond) are
      // dropped, the next one sent after the answer never is (Date.now() and the timer that sends the
      // answer may disagree by a millisecond).
      busyUntil = now + 15;
      return { kind: "normal", delayMs: 20 };
    });
    cleanups.push(() => device.stop());
    // Requests of 1, 2 and 3 registers, so their answers cannot be mistaken for each other.
    const shaped = defineTags({
      a: { dataType: "uint16", address: "HR0" },
      b: { dataType: "uint16", address: "HR200" },
      c: { dataType: "uint16", address: "HR201" },
      d: { dataType: "uint16", address: "HR400" },
      e: { dataType: "uint16", address: "HR402" },
    }).list();
    const warnings: string[] = [];
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host: device.host, port: device.port },
      maxInFlight: 8,
      requestTimeoutMs: 200,
      logger: capture(warnings),
    });
    cleanups.push(() => driver.close());
    const unitChanges: string[] = [];
    driver.onUnitStatusChange((change) => unitChanges.push(change.to));
    await driver.connect();
    expect(driver.readPlan(shaped).requests.length).toBe(3);
    await driver.read(shaped);
    expect(driver.maxInFlight).toBe(1);
    expect(warnings.join("\n")).toMatch(/answered some requests in flight but not others/);
    // The dropped requests did not count against the unit.
    expect(driver.units()).toMatchObject([{ unitId: 1, state: "online", consecutiveFailures: 0 }]);
    for (let scan = 0; scan < 3; scan++) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      const samples = await driver.read(shaped);
      expect(samples.map((sample) => sample.quality.severity)).toEqual(Array(5).fill("good"));
      expect(samples.map((sample) => sample.value)).toEqual([0, 200, 201, 400, 402].map((at) => rawRegister(1, at)));
    }
    expect(unitChanges).toEqual([]);
  });

  it("is not suspected when a dead unit behind a gateway times out beside a live one", async () => {
    const device = await startRawTcpDevice((request) =>
      request.unitId === 2 ? { kind: "silent" } : { kind: "normal", delayMs: 5 },
    );
    cleanups.push(() => device.stop());
    const gateway = defineTags({
      a: { dataType: "uint16", address: "HR0@1" },
      b: { dataType: "uint16", address: "HR0@2" },
      c: { dataType: "uint16", address: "HR300@1" },
    }).list();
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host: device.host, port: device.port },
      maxInFlight: 4,
      requestTimeoutMs: 100,
    });
    cleanups.push(() => driver.close());
    await driver.connect();
    for (let scan = 0; scan < 4; scan++) await driver.read(gateway);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(driver.maxInFlight).toBe(4);
    expect(driver.units().find((unit) => unit.unitId === 2)?.consecutiveFailures).toBeGreaterThanOrEqual(2);
  });

  it("tries pipelining again 5 minutes later (one slow answer is not a device that drops frames)", async () => {
    const { simulator, host, port } = await start();
    // Real time, plus whatever the test skips ahead.
    let skipped = 0;
    const real = new SystemClock();
    const clock: Clock = {
      now: () => real.now() + skipped,
      setTimeout: (callback, delayMs) => real.setTimeout(callback, delayMs),
      clearTimeout: (handle) => real.clearTimeout(handle),
      sleep: (delayMs, signal) => real.sleep(delayMs, signal),
    };
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host, port },
      maxInFlight: 8,
      requestTimeoutMs: 300,
      clock,
    });
    cleanups.push(() => driver.close());
    await driver.connect();
    await proveIds(driver);
    simulator.injectDelay(5);
    const busyDrop = simulator.injectBusyDrop();
    await driver.read(tags);
    expect(driver.maxInFlight).toBe(1);
    skipped = 4 * 60_000;
    await driver.read(tags);
    expect(driver.maxInFlight).toBe(1);
    busyDrop(); // it was one slow moment: the device takes pipelined requests again
    skipped = 5 * 60_000;
    const after = await driver.read(tags);
    expect(driver.maxInFlight).toBe(8);
    expect(after.every((sample) => sample.quality.severity === "good")).toBe(true);
  });
});

function capture(warnings: string[]): Logger {
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (...args: unknown[]) => {
      warnings.push(args.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg))).join(" "));
    },
    error: () => undefined,
    child: () => logger,
  };
  return logger;
}
