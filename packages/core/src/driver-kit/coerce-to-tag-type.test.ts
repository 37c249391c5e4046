import { describe, expect, test } from "vitest";
import { QualityCodes } from "../domain/quality";
import type { TagDataType, TagValue } from "../domain/tags";
import { coerceToTagType } from "./coerce-to-tag-type";

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
