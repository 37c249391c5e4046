import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// adv12 fix12e M1: a bit write's read-modify-write is not atomic on the device. A word write to the same register
// issued while the bit's read was on the wire landed between the read and the write and was then overwritten by
// the stale word (HR5.3 ← true and HR5 ← 256 both OK, HR5 ended 8). Every write touching a register is ordered
// after the writes before it on that register.

const tags = defineTags({
  word: { dataType: "uint16", access: "readwrite", address: "HR5" },
  flag: { dataType: "bool", access: "readwrite", address: "HR5.3" },
  low: { dataType: "bool", access: "readwrite", address: "HR5.0" },
  pair: { dataType: "uint32", access: "readwrite", address: "HR4:uint32" },
  other: { dataType: "uint16", access: "readwrite", address: "HR9" },
});

let simulator: ModbusSimulator | undefined;
let driver: ModbusDriver | undefined;

afterEach(async () => {
  await driver?.close();
  await simulator?.stop();
});

async function setup(maxInFlight: number) {
  simulator = new ModbusSimulator({ tags, initialValues: { pair: 0, other: 0 } });
  const { host, port } = await simulator.start();
  driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, maxInFlight });
  await driver.connect();
  // The bit's read of HR5 stays on the wire for 50 ms, long enough for a later write to be issued.
  simulator.injectDelay(50, { area: "holding-register", address: 5, on: "read" });
  return { simulator, driver };
}

const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("writes to one register keep their order around a bit's read-modify-write", () => {
  for (const maxInFlight of [1, 4]) {
    it(`a word write issued during a bit's read-modify-write lands after it (maxInFlight ${maxInFlight})`, async () => {
      const { simulator, driver } = await setup(maxInFlight);
      const bit = driver.write(tags.get("flag"), true);
      await later(10);
      const word = driver.write(tags.get("word"), 0x0100);
      await Promise.all([bit, word]);
      expect(simulator.getValue("word")).toBe(0x0100);
    });
  }

  it("a two-register write covering the bit's register lands after it", async () => {
    const { simulator, driver } = await setup(1);
    const bit = driver.write(tags.get("flag"), true);
    await later(10);
    const pair = driver.write(tags.get("pair"), 0x0001_0200);
    await Promise.all([bit, pair]);
    expect(simulator.getValue("pair")).toBe(0x0001_0200);
  });

  it("a bit write after a word write reads the word: word, bit and bit compose", async () => {
    const { simulator, driver } = await setup(4);
    const first = driver.write(tags.get("flag"), true);
    await later(10);
    const word = driver.write(tags.get("word"), 0x0100);
    const low = driver.write(tags.get("low"), true);
    await Promise.all([first, word, low]);
    expect(simulator.getValue("word")).toBe(0x0101);
  });

  it("a write to another register is not held behind the bit", async () => {
    const { driver } = await setup(4);
    const bit = driver.write(tags.get("flag"), true);
    await later(5);
    const started = performance.now();
    await driver.write(tags.get("other"), 7);
    expect(performance.now() - started).toBeLessThan(40);
    await bit;
  });
});

// adv12b LOW (wlock): a write waiting for the register's lock ignored its caller's abort until the lock came.
describe("a write waiting for its register's lock heeds its caller's abort", () => {
  it("rejects KILN_ABORTED at once, sends nothing, and the earlier write lands", async () => {
    const { simulator, driver } = await setup(1);
    simulator.injectDelay(600, { area: "holding-register", address: 5, on: "write" });
    const first = driver.write(tags.get("word"), 1);
    await later(20);
    const started = performance.now();
    const error = await driver.write(tags.get("word"), 2, AbortSignal.timeout(100)).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(500);
    expect(error).toMatchObject({ code: "KILN_ABORTED" });
    await first;
    await later(100);
    expect(simulator.getValue("word")).toBe(1);
  });

  it("sibling: a write queued behind an aborted one still waits for the earlier write", async () => {
    const { simulator, driver } = await setup(4);
    simulator.injectDelay(400, { area: "holding-register", address: 5, on: "write" });
    const first = driver.write(tags.get("word"), 1);
    await later(20);
    const aborted = driver.write(tags.get("word"), 2, AbortSignal.timeout(50)).catch((e: unknown) => e);
    await later(10);
    const third = driver.write(tags.get("word"), 3);
    expect(await aborted).toMatchObject({ code: "KILN_ABORTED" });
    await Promise.all([first, third]);
    expect(simulator.getValue("word")).toBe(3);
  });
});
