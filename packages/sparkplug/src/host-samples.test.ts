import { QualityCodes } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { qualityOfMetric, tagValueOfMetric } from "./host-samples";

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
    ).toEqual({ severity: "bad", code: QualityCodes.BadDeviceFailure, reason: "probe" });
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
