import { describe, expect, test } from "vitest";
import { QualityCodes, qualityFromStatusCode, severityOfStatusCode } from "./quality";

describe("OPC UA status code mapping", () => {
  test.each([
    [0x00000000, "good"],
    [0x00960000, "good"], // GoodLocalOverride
    [0x40000000, "uncertain"],
    [0x40900000, "uncertain"], // UncertainLastUsableValue
    [0x80000000, "bad"],
    [0x803b0000, "bad"], // BadNotWritable
    [0xc0000000, "bad"], // reserved top bits 11 are bad too
  ] as const)("status 0x%s maps to %s by its top two bits", (code, severity) => {
    expect(severityOfStatusCode(code)).toBe(severity);
  });

  test("keeps the code and reason", () => {
    expect(qualityFromStatusCode(QualityCodes.BadNodeIdUnknown, "BadNodeIdUnknown")).toEqual({
      severity: "bad",
      code: 0x80340000,
      reason: "BadNodeIdUnknown",
    });
  });

  test("treats a negative signed 32-bit code as unsigned", () => {
    expect(qualityFromStatusCode(0x80050000 | 0).code).toBe(0x80050000);
  });
});
