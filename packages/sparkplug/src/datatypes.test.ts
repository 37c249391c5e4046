import type { TagDataType } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { SPARKPLUG_DATA_TYPES, sparkplugDataTypeOf, sparkplugDataTypeOfTag, tagDataTypeOfSparkplug } from "./datatypes";

describe("data types", () => {
  test("wire numbers 1 to 34 name the specification's types; 0 (Unknown) and others name none", () => {
    expect(sparkplugDataTypeOf(9)).toBe("Float");
    expect(sparkplugDataTypeOf(34)).toBe("DateTimeArray");
    expect(sparkplugDataTypeOf(0)).toBeUndefined();
    expect(sparkplugDataTypeOf(35)).toBeUndefined();
    expect(Object.values(SPARKPLUG_DATA_TYPES)).toEqual(Array.from({ length: 34 }, (_, index) => index + 1));
  });

  test("every Kiln tag type maps to a Sparkplug type that maps back to it", () => {
    const kilnTypes: TagDataType[] = [
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
    for (const dataType of kilnTypes) expect(tagDataTypeOfSparkplug(sparkplugDataTypeOfTag(dataType))).toBe(dataType);
    expect(tagDataTypeOfSparkplug("Int8")).toBe("int16");
    expect(tagDataTypeOfSparkplug("DateTime")).toBe("int64");
    expect(tagDataTypeOfSparkplug("UUID")).toBe("string");
    expect(tagDataTypeOfSparkplug("DataSet")).toBeUndefined();
  });
});
