import { defineTags, type Tag } from "@kiln/core";
import { DataType } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, type OpcuaDriver } from "../src/index";
import { variantForWrite } from "../src/opcua-values";
import { simulatorWithDriver } from "./support/simulator-with-driver";

// Issue 13 (adversarial review v): a direct driver.write skipped the core's checkTagValue (150 to
// a 0..100 tag, 70000 to an int16 tag, 5 elements to a float64[4] tag were all sent; a
// Float64Array was refused), and numbers written to Boolean and DateTime nodes were coerced
// (0.5 landed as true, 1e20 as an Invalid Date encoded 1970).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const served = defineTags({
  flag: { dataType: "bool", address: `nsu=${NS};s=Kiln.Flag`, access: "readwrite" },
  sp: { dataType: "float64", address: `nsu=${NS};s=Kiln.Sp`, access: "readwrite" },
  big: { dataType: "int32", address: `nsu=${NS};s=Kiln.Big`, access: "readwrite" },
  zones: { dataType: "float64", arrayLength: 4, address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
});
const tags = defineTags({
  flag: { dataType: "bool", address: `nsu=${NS};s=Kiln.Flag`, access: "readwrite" },
  "num.on.flag": { dataType: "float64", address: `nsu=${NS};s=Kiln.Flag`, access: "readwrite" },
  sp: { dataType: "float64", address: `nsu=${NS};s=Kiln.Sp`, access: "readwrite", range: { min: 0, max: 100 } },
  "i16.on.int32": { dataType: "int16", address: `nsu=${NS};s=Kiln.Big`, access: "readwrite" },
  zones: { dataType: "float64", arrayLength: 4, address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
});
const tag = (name: string): Tag => tags.list().find((t) => t.name === name)!;

let driver: OpcuaDriver;
let stop: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ driver, stop } = await simulatorWithDriver("write-checks", {
    tags: served,
    signals: { flag: { kind: "constant", value: false } },
  }));
});

afterAll(async () => {
  await stop?.();
});

const valueOf = async (name: string) => (await driver.read([tag(name)]))[0]!.value;

describe("direct writes are checked against the tag like the control system's (checkTagValue)", () => {
  test("outside the tag's range: KILN_OUT_OF_RANGE, nothing sent", async () => {
    await driver.write(tag("sp"), 40);
    await expect(driver.write(tag("sp"), 150)).rejects.toMatchObject({
      code: "KILN_OUT_OF_RANGE",
      details: { tag: "sp", value: 150, min: 0, max: 100 },
    });
    expect(await valueOf("sp")).toBe(40);
  });

  test("not the tag's type (70000 on int16, NaN, 5 elements on [4]): KILN_VALIDATION, nothing sent", async () => {
    await driver.write(tag("i16.on.int32"), 5);
    await expect(driver.write(tag("i16.on.int32"), 70000)).rejects.toMatchObject({ code: "KILN_VALIDATION" });
    await expect(driver.write(tag("sp"), Number.NaN)).rejects.toMatchObject({ code: "KILN_VALIDATION" });
    expect(await valueOf("i16.on.int32")).toBe(5);
    await driver.write(tag("zones"), [1, 2, 3, 4]);
    await expect(driver.write(tag("zones"), [9, 9, 9, 9, 9])).rejects.toMatchObject({
      code: "KILN_VALIDATION",
      message: expect.stringContaining("at most 4 elements"),
    });
    expect(await valueOf("zones")).toEqual([1, 2, 3, 4]);
  });

  test("a typed array for an array tag is written as its elements (ADR 0038)", async () => {
    await driver.write(tag("zones"), new Float64Array([5, 6, 7, 8]) as never);
    expect(await valueOf("zones")).toEqual([5, 6, 7, 8]);
  });
});

describe("numbers on Boolean and DateTime nodes: exactly or refused", () => {
  test("a float64 tag on a Boolean node: 0 and 1 are written, 0.5 / 2.7 / -3 refused", async () => {
    await driver.write(tag("flag"), false);
    for (const value of [0.5, 2.7, -3]) {
      await expect(driver.write(tag("num.on.flag"), value)).rejects.toMatchObject({
        code: "KILN_OUT_OF_RANGE",
        message: expect.stringContaining("num.on.flag"),
      });
      expect(await valueOf("flag")).toBe(false);
    }
    await driver.write(tag("num.on.flag"), 1);
    expect(await valueOf("flag")).toBe(true);
    await driver.write(tag("num.on.flag"), 0);
    expect(await valueOf("flag")).toBe(false);
  });

  const t = { name: "when", dataType: "int64", address: "x", access: "readwrite" } as unknown as Tag;

  test("bigint 0n/1n on a Boolean node, 2n refused", () => {
    expect(variantForWrite(1n, DataType.Boolean, t, "n").value).toBe(true);
    expect(variantForWrite(0n, DataType.Boolean, t, "n").value).toBe(false);
    expect(() => variantForWrite(2n, DataType.Boolean, t, "n")).toThrow(
      expect.objectContaining({ code: "KILN_OUT_OF_RANGE" }),
    );
  });

  test("DateTime: finite ms within 1601-01-01..9999-12-31 only", () => {
    const min = Date.UTC(1601, 0, 1);
    const max = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    for (const ok of [0, 4e12, min, max]) {
      expect((variantForWrite(ok, DataType.DateTime, t, "n").value as Date).getTime()).toBe(ok);
    }
    for (const bad of [min - 1, max + 1, 1e20, -1e20, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => variantForWrite(bad, DataType.DateTime, t, "n")).toThrow(
        expect.objectContaining({ code: "KILN_OUT_OF_RANGE", message: expect.stringContaining('tag "when"') }),
      );
    }
  });
});
