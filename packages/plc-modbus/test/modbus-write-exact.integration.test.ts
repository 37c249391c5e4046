import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTags, KilnError, type TagValue } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// Writes are refused, never rounded (adv12 M1), and follow the read rule: a value the wire cannot hold exactly, or
// that every read of the tag would report bad, is a KILN_VALIDATION naming the tag, and nothing is written.

const tags = defineTags({
  f_i32: { dataType: "float64", access: "readwrite", address: "HR0:int32" },
  f_u32: { dataType: "float64", access: "readwrite", address: "HR2:uint32" },
  f_i64: { dataType: "float64", access: "readwrite", address: "HR4:int64" },
  sc: {
    dataType: "float64",
    access: "readwrite",
    address: { area: "holding-register", address: 10, type: "int32", scale: 0.001 },
  },
  tenth: {
    dataType: "float64",
    access: "readwrite",
    address: { area: "holding-register", address: 12, type: "int16", scale: 0.1 },
  },
  i32f: { dataType: "int32", access: "readwrite", address: "HR20:float32" },
  f32: { dataType: "float64", access: "readwrite", address: "HR22:float32" },
  i64: { dataType: "int64", access: "readwrite", address: "HR24:int64" },
  // adv12b M1: an offset's round-off must not refuse exact steps.
  offsetC: {
    dataType: "float64",
    access: "readwrite",
    address: { area: "holding-register", address: 30, type: "int16", scale: 0.1, offset: -40 },
  },
  kelvin: {
    dataType: "float64",
    access: "readwrite",
    address: { area: "holding-register", address: 31, type: "uint16", scale: 0.01, offset: -273.15 },
  },
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
  return [sample!.value, sample!.quality.severity];
};

describe("a write the wire cannot hold exactly is refused, nothing written", () => {
  const refused: [string, TagValue][] = [
    ["f_i32", 2_000_000_000.5],
    ["f_i32", 1000.5],
    ["f_u32", 4_000_000_000.7],
    ["f_i64", 1e12 + 0.4],
    ["f_i64", 123_456_789_012.9],
    ["f_i64", 2 ** 60],
    ["sc", 1_000_000.0004],
    ["sc", 2_000_000.0015],
    ["tenth", 0.15],
    ["i32f", 16_777_217],
    ["i32f", 2_147_483_647],
    ["offsetC", -0.15],
    ["kelvin", 21.505],
  ];
  for (const [name, value] of refused) {
    it(`${name} ← ${value}`, async () => {
      const before = await read(name);
      const error = await driver.write(tags.get(name)!, value).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).message).toContain(name);
      expect(await read(name)).toEqual(before);
    });
  }
});

describe("a write the wire holds exactly (or a float tag on a float32 wire) lands and reads back good", () => {
  const accepted: [string, TagValue, TagValue][] = [
    ["f_i32", 2_000_000_000, 2_000_000_000],
    ["f_i64", 2 ** 52, 2 ** 52],
    ["sc", 1_000_000.001, 1_000_000.001],
    ["tenth", 0.3, 0.30000000000000004],
    ["i32f", 16_777_216, 16_777_216],
    ["f32", 0.1, Math.fround(0.1)],
    ["i64", 2n ** 60n, 2n ** 60n],
  ];
  for (const [name, value, stored] of accepted) {
    it(`${name} ← ${value}`, async () => {
      await driver.write(tags.get(name)!, value);
      expect(await read(name)).toEqual([stored, "good"]);
    });
  }
  // Every step of a scaled tag with an offset, written as its decimal value, lands on its own step
  // (before: -0.1 at scale 0.1 offset -40 and 21.5 at scale 0.01 offset -273.15 were refused).
  for (const [name, values] of [
    ["offsetC", [-0.1, 0.1, -0.3, -4.7, 21.5, -40, 100]],
    ["kelvin", [21.5, 0.01, 0.05, -273.15, 26.85, 100]],
  ] as const) {
    it(`${name}: every decimal step lands`, async () => {
      for (const value of values) {
        await driver.write(tags.get(name)!, value);
        const [back, severity] = await read(name);
        expect(severity).toBe("good");
        expect(Math.abs((back as number) - value)).toBeLessThan(1e-9);
      }
    });
  }
});
