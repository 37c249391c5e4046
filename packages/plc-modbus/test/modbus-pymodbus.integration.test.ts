import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryStore, QualityCodes, createControlSystem, defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions, type ModbusTransport } from "../src/index";
import { freePort } from "./free-port";
import { pymodbusPython, startPymodbus } from "./pymodbus-peer";
import { openSerialPair, type SerialPair } from "./serial-pair";

// Cross-check against a third-party Modbus stack: pymodbus's server over TCP, and over RTU on a socat pair.
const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0", access: "readwrite" },
  b: { dataType: "uint16", address: "HR20" },
  temperature: { dataType: "float32", address: "HR30:float32" },
  input: { dataType: "uint16", address: "IR4" },
  pump: { dataType: "bool", address: "C3" },
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Connects (and reads) until the server is up: a Python process takes a moment to start. */
async function readWhenUp(
  transport: ModbusTransport,
  options: Partial<ModbusDriverOptions> = {},
): Promise<{ driver: ModbusDriver; samples: Sample[] }> {
  const driver = new ModbusDriver({
    transport,
    requestTimeoutMs: 500,
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    ...options,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  for (let attempt = 0; ; attempt++) {
    const samples = await driver.read(tags.list());
    if (samples.every((sample) => sample.quality.severity === "good") || attempt > 40) return { driver, samples };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits until the server listens on `port`: the driver's connect fails until then. */
async function untilListening(port: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const probe = new ModbusDriver({
      transport: { kind: "tcp", host: "127.0.0.1", port },
      reconnect: { enabled: false },
    });
    const up = await probe.connect().then(
      () => true,
      () => false,
    );
    await probe.close();
    if (up || attempt > 50) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function crossCheck(
  transport: ModbusTransport,
  options: Partial<ModbusDriverOptions> = {},
): Promise<ModbusDriver> {
  const { driver, samples } = await readWhenUp(transport, options);
  expect(Object.fromEntries(samples.map((sample) => [sample.tag, [sample.value, sample.quality.severity]]))).toEqual({
    a: [111, "good"],
    b: [222, "good"],
    temperature: [21.5, "good"],
    input: [7, "good"],
    pump: [true, "good"],
  });
  await driver.write(tags.get("a"), 4321);
  const [a] = await driver.read([tags.get("a")]);
  expect(a).toMatchObject({ value: 4321, quality: { severity: "good" } });
  return driver;
}

describe.skipIf(!pymodbusPython)(
  "against pymodbus (needs python3-pymodbus and python3-serial: apt-get install python3-pymodbus python3-serial python3-serial-asyncio)",
  () => {
    it.each([
      ["default framing, one request at a time", {}, 1],
      ['frameCheck "strict"', { frameCheck: "strict" as const }, 1],
      ["4 requests in flight (each answer proven aligned by the next)", {}, 4],
    ])("reads every area and type, and writes, over Modbus TCP: %s", async (_, framing, maxInFlight) => {
      const port = await freePort();
      startPymodbus("tcp", String(port), cleanups);
      await untilListening(port);
      const driver = await crossCheck({ kind: "tcp", host: "127.0.0.1", port, ...framing }, { maxInFlight });
      // No answer was taken for a misaligned one: pipelining was never given up.
      expect(driver.maxInFlight).toBe(maxInFlight);
    });

    it("NaN and ±Infinity float registers are never shown good through acquisition; the value is kept as sent (adv12q F4)", async () => {
      const port = await freePort();
      startPymodbus("tcp", String(port), cleanups);
      const floats = defineTags({
        nan: { dataType: "float32", address: "HR60:float32" },
        inf: { dataType: "float32", address: "HR62:float32" },
        negInf: { dataType: "float64", address: "HR64:float32" },
        fine: { dataType: "float32", address: "HR30:float32" },
      });
      await untilListening(port);
      // The driver itself delivers what the device sent; the core's one check of driver samples judges it.
      const driver = new ModbusDriver({ transport: { kind: "tcp", host: "127.0.0.1", port } });
      const store = new MemoryStore();
      const system = createControlSystem({
        machineId: "nan",
        tags: floats,
        store,
        driver,
        scanGroups: { default: { periodMs: 100 } },
      });
      const seen = new Map<string, Sample>();
      for (const name of ["nan", "inf", "negInf", "fine"])
        system.cvt.observe(name, (change) => seen.set(name, change.sample));
      await system.start();
      try {
        for (let wait = 0; seen.size < 4 && wait < 50; wait++) await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        await system.stop();
      }
      const view = (name: string) => {
        const sample = seen.get(name)!;
        return [sample.value, sample.quality.severity, sample.quality.code, sample.quality.reason];
      };
      expect(view("nan")).toEqual([Number.NaN, "bad", QualityCodes.Bad, "the device sent NaN (not a number)"]);
      expect(view("inf")).toEqual([
        Number.POSITIVE_INFINITY,
        "bad",
        QualityCodes.BadOutOfRange,
        "the device sent +Infinity",
      ]);
      expect(view("negInf")).toEqual([
        Number.NEGATIVE_INFINITY,
        "bad",
        QualityCodes.BadOutOfRange,
        "the device sent -Infinity",
      ]);
      expect(view("fine")).toEqual([21.5, "good", QualityCodes.Good, undefined]);
    });

    it.skipIf(!hasSocat)(
      "reads every area and type, and writes, over Modbus RTU on a serial pair (needs socat)",
      async () => {
        const pair: SerialPair = await openSerialPair();
        cleanups.push(() => pair.close());
        startPymodbus("rtu", pair.device, cleanups);
        await crossCheck({ kind: "rtu", path: pair.master, baudRate: 19200 });
      },
    );
  },
);
