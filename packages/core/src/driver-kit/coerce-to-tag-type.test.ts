import { describe, expect, test } from "vitest";
import { QualityCodes } from "../domain/quality";
import type { TagDataType, TagValue } from "../domain/tags";
import { coerceToTagType, isExactTagValue } from "./coerce-to-tag-type";

const tag = (dataType: TagDataType) => ({ name: "t", dataType });
const exact = (value: TagValue, dataType: TagDataType) => coerceToTagType(value, tag(dataType), "Source");

describe("coerceToTagType (issue 13, fault 4)", () => {
  test.each<[TagValue, TagDataType, TagValue]>([
    [7n, "float64", 7],
    [-(2n ** 53n), "float64", -(2 ** 53)],
    [2n ** 53n, "float64", 2 ** 53],
    [1.5, "float64", 1.5],
    [3.4028234663852886e38, "float32", 3.4028234663852886e38],
    [Number.POSITIVE_INFINITY, "float32", Number.POSITIVE_INFINITY],
    [2, "int32", 2],
    [2.0, "int16", 2],
    [42n, "int32", 42],
    [4294967295, "uint32", 4294967295],
    [5, "int64", 5],
    [2n ** 60n, "int64", 2n ** 60n],
    [2n ** 63n, "uint64", 2n ** 63n],
    [true, "bool", true],
    [0, "bool", false],
    [1n, "bool", true],
    ["x", "string", "x"],
  ])("%s for a %s tag is exactly %s", (value, dataType, expected) => {
    expect(exact(value, dataType)).toEqual({ ok: true, value: expected });
  });

  test.each<[TagValue, TagDataType]>([
    [2n ** 53n + 1n, "float64"],
    [2n ** 60n, "float32"],
    [3.5e39, "float32"],
    [-3.5e39, "float32"],
    [1.5, "int32"],
    [3e9, "int32"],
    [-1, "uint16"],
    [Number.NaN, "int32"],
    [Number.POSITIVE_INFINITY, "int64"],
    [2n ** 63n, "int64"],
    [1.5, "int64"],
    [true, "float64"],
    [2, "bool"],
    ["true", "bool"],
    [1, "string"],
    ["1", "int32"],
  ])("%s for a %s tag is bad BadTypeMismatch, never good", (value, dataType) => {
    const result = exact(value, dataType);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.quality.severity).toBe("bad");
    expect(result.quality.code).toBe(QualityCodes.BadTypeMismatch);
    expect(result.quality.reason).toContain("Source");
    expect(result.quality.reason).toContain(dataType);
  });

  test("the reason names the source type, the value, the tag's type and the tag", () => {
    const result = coerceToTagType(1.5, { name: "reactor.steps", dataType: "int32" }, "Double");
    expect(result).toMatchObject({
      ok: false,
      quality: { reason: 'Double 1.5 cannot be carried exactly by int32 tag "reactor.steps"' },
    });
  });
});

describe("isExactTagValue (issue 16: the check of driver samples skips the conversion)", () => {
  const types: TagDataType[] = [
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
  ];
  const values: unknown[] = [
    0,
    -0,
    1,
    -1,
    1.5,
    32767,
    32768,
    -32768,
    -32769,
    65535,
    65536,
    2147483647,
    2147483648,
    -2147483649,
    4294967295,
    4294967296,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 1,
    Number.MIN_SAFE_INTEGER,
    -(2 ** 60),
    3.4028234663852886e38,
    3.5e39,
    -3.5e39,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    7n,
    true,
    false,
    "x",
    "",
    [1],
  ];
  test("answers true only where coerceToTagType returns the value itself", () => {
    for (const dataType of types) {
      for (const value of values) {
        if (!isExactTagValue(value, tag(dataType))) continue;
        const coerced = coerceToTagType(value as TagValue, tag(dataType));
        expect(coerced.ok && Object.is(coerced.value, value), `${String(value)} as ${dataType}`).toBe(true);
      }
    }
  });
  test("answers true for the values drivers type: a number for float and in-range integer tags, a boolean, a string", () => {
    expect(isExactTagValue(1.5, tag("float64"))).toBe(true);
    expect(isExactTagValue(Number.NaN, tag("float32"))).toBe(true);
    expect(isExactTagValue(-32768, tag("int16"))).toBe(true);
    expect(isExactTagValue(Number.MAX_SAFE_INTEGER, tag("int64"))).toBe(true);
    expect(isExactTagValue(true, tag("bool"))).toBe(true);
    expect(isExactTagValue("x", tag("string"))).toBe(true);
    expect(isExactTagValue(-0, tag("int32"))).toBe(false);
    expect(isExactTagValue(1, tag("bool"))).toBe(false);
    expect(isExactTagValue([1], { dataType: "float64", arrayLength: 2 })).toBe(false);
  });
});
