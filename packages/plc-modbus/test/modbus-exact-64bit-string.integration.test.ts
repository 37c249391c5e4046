import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTags, KilnError, type TagValue } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// adv12 fix12e H1: a scaled 64-bit register beyond ±2^53 came back as its RAW value marked good (int64 scale 2
// reading 2^60 gave 2^60, not 2^61; a float64 tag got a bigint, good). A value is scaled exactly in bigint when
// scale and offset are whole numbers, and is bad with a reason when no exact value exists; writes follow the same
// rule. M2: a string that would not read back identically (a NUL, a lone surrogate) is refused, nothing written.

const rw = "readwrite" as const;
const hr = (address: number, type: "int64" | "uint64", scale = 1, offset = 0) => ({
  area: "holding-register" as const,
  address,
  type,
  scale,
  offset,
});
const tags = defineTags({
  raw: { dataType: "int64", access: rw, address: "HR40:int64" },
  i64x2: { dataType: "int64", access: rw, address: hr(40, "int64", 2) },
  u64x2: { dataType: "uint64", access: rw, address: hr(40, "uint64", 2) },
  i64off: { dataType: "int64", access: rw, address: hr(40, "int64", 1, 1000) },
  i64neg: { dataType: "int64", access: rw, address: hr(40, "int64", -3, -7) },
  f64x2: { dataType: "float64", access: rw, address: hr(40, "int64", 2) },
  i64half: { dataType: "int64", access: rw, address: hr(40, "int64", 0.5) },
  f64tenth: { dataType: "float64", access: rw, address: hr(40, "int64", 0.1) },
  text: { dataType: "string", access: rw, address: "HR60:string:3" },
  swapped: { dataType: "string", access: rw, address: "HR70:string:3:BADC" },
});

let simulator: ModbusSimulator;
let driver: ModbusDriver;

beforeAll(async () => {
  simulator = new ModbusSimulator({ tags });
  const { host, port } = await simulator.start();
  driver = new ModbusDriver({ transport: { kind: "tcp", host, port } });
  await driver.connect();
});

afterAll(async () => {
  await driver?.close();
  await simulator?.stop();
});

const read = async (name: string) => {
  const [sample] = await driver.read([tags.get(name)!]);
  return sample!;
};
const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );

describe("a scaled 64-bit register beyond ±2^53 is exact or bad, never the raw value good (H1)", () => {
  const good: [string, bigint, TagValue][] = [
    ["i64x2", 2n ** 60n, 2n ** 61n],
    ["u64x2", 2n ** 60n, 2n ** 61n],
    ["i64off", 2n ** 60n + 1n, 2n ** 60n + 1001n],
    ["i64neg", 2n ** 60n, -3n * 2n ** 60n - 7n],
    ["i64half", 2n ** 60n, 2n ** 59n],
    ["i64x2", -(2n ** 61n) - 1n, -(2n ** 62n) - 2n],
  ];
  for (const [name, raw, value] of good) {
    it(`${name} reading raw ${raw} is ${value} good`, async () => {
      await driver.write(tags.get("raw")!, raw);
      const sample = await read(name);
      expect([sample.value, sample.quality.severity]).toEqual([value, "good"]);
    });
  }
  const bad: [string, bigint][] = [
    ["f64x2", 2n ** 60n], // a float tag cannot carry the bigint 2^61 (core's rule beyond ±2^53)
    ["i64half", 2n ** 60n + 1n], // 2^59 + 0.5 exactly: no integer value (adv12b H1)
    ["f64tenth", 2n ** 60n + 1n],
  ];
  for (const [name, raw] of bad) {
    it(`${name} reading raw ${raw} is bad with a reason`, async () => {
      await driver.write(tags.get("raw")!, raw);
      const sample = await read(name);
      expect(sample.quality.severity).toBe("bad");
      expect(sample.value).toBeNull();
      expect(sample.quality.reason).toContain(name);
    });
  }
  it("a small scaled value still reads as a number", async () => {
    await driver.write(tags.get("raw")!, 21n);
    expect((await read("f64x2")).value).toBe(42);
    expect((await read("i64x2")).value).toBe(42);
  });
});

describe("a write to a scaled 64-bit register follows the same rule (H1)", () => {
  const accepted: [string, TagValue, bigint][] = [
    ["i64x2", 2n ** 61n, 2n ** 60n],
    ["i64x2", 2n ** 61n + 2n, 2n ** 60n + 1n],
    ["i64off", 2n ** 60n + 1001n, 2n ** 60n + 1n],
    ["u64x2", 2n ** 64n - 4n, 2n ** 63n - 2n],
    // Exactly 2^61 + 2 × 0.5 (fix12f: a fractional scale inverts exactly; fix12e refused it as inexact).
    ["i64half", 2n ** 60n + 1n, 2n ** 61n + 2n],
  ];
  for (const [name, value, raw] of accepted) {
    it(`${name} ← ${value} lands as raw ${raw} and reads back`, async () => {
      await driver.write(tags.get(name)!, value);
      expect(BigInt((await read("raw")).value as bigint)).toBe(raw);
      const back = await read(name);
      expect([back.value, back.quality.severity]).toEqual([value, "good"]);
    });
  }
  const refused: [string, TagValue][] = [
    ["i64x2", 2n ** 61n + 1n],
    ["i64neg", 2n ** 61n + 1n],
  ];
  for (const [name, value] of refused) {
    it(`${name} ← ${value} is refused, nothing written`, async () => {
      await driver.write(tags.get("raw")!, 5n);
      const error = await refusal(driver.write(tags.get(name)!, value));
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).message).toContain(name);
      expect((await read("raw")).value).toBe(5);
    });
  }
});

describe("a string that would not read back identically is refused, nothing written (M2)", () => {
  for (const [name, value] of [
    ["text", "A\u0000B"],
    ["text", "ab\u0000"],
    ["text", "\uD800"],
    ["text", "x\uDC00y"],
    ["swapped", "a\u0000"],
  ] as const) {
    it(`${name} ← ${JSON.stringify(value)}`, async () => {
      await driver.write(tags.get(name)!, "kept");
      const error = await refusal(driver.write(tags.get(name)!, value));
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).message).toContain(name);
      expect((await read(name)).value).toBe("kept");
    });
  }
  for (const [name, value] of [
    ["text", "é€"],
    ["text", "ABCDEF"],
    ["text", ""],
    ["swapped", "abc"],
  ] as const) {
    it(`${name} ← ${JSON.stringify(value)} lands and reads back good`, async () => {
      await driver.write(tags.get(name)!, value);
      const back = await read(name);
      expect([back.value, back.quality.severity]).toEqual([value, "good"]);
    });
  }
});
