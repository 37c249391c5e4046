import { QualityCodes } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { qualityOfMetric, tagValueOfMetric } from "./host-samples";
import type { SparkplugPropertySet } from "./payload";

describe("quality of a Sparkplug metric", () => {
  test("StatusCode gives the OPC UA code exactly; StatusReason the reason", () => {
    expect(
      qualityOfMetric(
        {
          Quality: { type: "Int32", value: 192 },
          StatusCode: { type: "UInt32", value: QualityCodes.BadDeviceFailure },
          StatusReason: { type: "String", value: "probe" },
        },
        false,
      ),
    ).toMatchObject({ severity: "bad", code: QualityCodes.BadDeviceFailure, reason: expect.stringContaining("probe") });
    expect(
      qualityOfMetric({ StatusCode: { type: "UInt32", value: QualityCodes.UncertainLastUsableValue } }, false),
    ).toEqual({
      severity: "uncertain",
      code: QualityCodes.UncertainLastUsableValue,
    });
    expect(qualityOfMetric({ StatusCode: { type: "UInt64", value: 0n } }, false).severity).toBe("good");
  });

  test("Quality alone: 192 good, 500 stale is uncertain, 0 bad, other values by their OPC DA quality bits", () => {
    const of = (value: number) => qualityOfMetric({ Quality: { type: "Int32", value } }, false);
    expect(of(192)).toEqual({ severity: "good", code: 0 });
    expect(of(500)).toMatchObject({ severity: "uncertain", code: QualityCodes.UncertainLastUsableValue });
    expect(of(0)).toMatchObject({ severity: "bad", code: QualityCodes.Bad });
    expect(of(0x44).severity).toBe("uncertain");
    expect(of(0xd8).severity).toBe("good");
    expect(of(0x18).severity).toBe("bad");
  });

  test("a quality property of the wrong type is never read as good (issue 19 M3): bad BadTypeMismatch, naming the property", () => {
    const cases: SparkplugPropertySet[] = [
      { StatusCode: { type: "String", value: "2150694912" } },
      { Quality: { type: "String", value: "0" } },
      { Quality: { type: "String", value: "192" } },
      { StatusCode: { type: "Double", value: 0 } },
      { StatusCode: { type: "UInt32", value: null } },
      { Quality: { type: "Int32", value: -1 } },
      // A well-formed good StatusCode does not make up for a malformed Quality, nor the reverse.
      { StatusCode: { type: "UInt32", value: 0 }, Quality: { type: "String", value: "0" } },
      { StatusCode: { type: "String", value: "0" }, Quality: { type: "Int32", value: 192 } },
    ];
    for (const properties of cases) {
      const result = qualityOfMetric(properties, false);
      expect(result, JSON.stringify(properties)).toMatchObject({ severity: "bad", code: QualityCodes.BadTypeMismatch });
      expect(result.reason).toMatch(/(StatusCode|Quality) property is a /);
    }
  });

  test("StatusCode and Quality of different severities: the worse, both named", () => {
    const result = qualityOfMetric(
      { StatusCode: { type: "UInt32", value: 0 }, Quality: { type: "Int32", value: 0 } },
      false,
    );
    expect(result).toMatchObject({ severity: "bad", reason: expect.stringContaining("disagree") });
    expect(
      qualityOfMetric({ StatusCode: { type: "UInt32", value: 0 }, Quality: { type: "Int32", value: 192 } }, false),
    ).toEqual({ severity: "good", code: 0 });
  });

  test("no quality property is good; a null value is never good", () => {
    expect(qualityOfMetric(undefined, false)).toEqual({ severity: "good", code: 0 });
    expect(qualityOfMetric(undefined, true)).toMatchObject({ severity: "bad", code: QualityCodes.BadNoData });
    expect(qualityOfMetric({ Quality: { type: "Int32", value: 0 } }, true)).toMatchObject({
      severity: "bad",
      code: QualityCodes.Bad,
    });
  });

  test("values: scalars as they are, null for is_null, undefined for what Kiln cannot hold", () => {
    expect(tagValueOfMetric(1.5, "Double")).toBe(1.5);
    expect(tagValueOfMetric(2n ** 63n, "UInt64")).toBe(2n ** 63n);
    expect(tagValueOfMetric(true, "Boolean")).toBe(true);
    expect(tagValueOfMetric("x", "Text")).toBe("x");
    expect(tagValueOfMetric(null, "Double")).toBeNull();
    expect(tagValueOfMetric(new Uint8Array([1]), "Bytes")).toBeUndefined();
    expect(tagValueOfMetric([1, 2], "Int32Array")).toBeUndefined();
  });
});
