import { KilnError, QualityCodes, quality, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { ServerStatusCodes, statusCodeOfError, statusCodeOfSample } from "./opcua-status";

function sample(value: Sample["value"], severity: "good" | "uncertain" | "bad", code?: number): Sample {
  return { tag: "t", value, timestamp: 0, quality: code === undefined ? quality(severity) : { severity, code } };
}

describe("statusCodeOfSample", () => {
  test("keeps the device's code, info bits included, when it agrees with the severity", () => {
    expect(statusCodeOfSample(sample(1, "bad", 0x808c0000))).toBe(0x808c0000); // BadSensorFailure
    expect(statusCodeOfSample(sample(1, "uncertain", 0x408f0000))).toBe(0x408f0000);
    expect(statusCodeOfSample(sample(1, "good", 0x00000400))).toBe(0x00000400); // Good, overflow bit
    expect(statusCodeOfSample(sample(1, "bad", 0xc0000000))).toBe(0xc0000000);
  });

  test("never serves a bad or uncertain value as good: a disagreeing code becomes the generic one of the severity", () => {
    expect(statusCodeOfSample(sample(1, "bad", 0))).toBe(QualityCodes.Bad);
    expect(statusCodeOfSample(sample(1, "uncertain", 0))).toBe(QualityCodes.Uncertain);
    expect(statusCodeOfSample(sample(1, "good", 0x80000000))).toBe(QualityCodes.Good);
    expect(statusCodeOfSample(sample(1, "bad", -1))).toBe(QualityCodes.Bad);
  });

  test("a null value is never served good or uncertain", () => {
    expect(statusCodeOfSample(sample(null, "good"))).toBe(QualityCodes.BadNoData);
    expect(statusCodeOfSample(sample(null, "uncertain"))).toBe(QualityCodes.BadNoData);
    expect(statusCodeOfSample(sample(null, "bad", QualityCodes.BadNoCommunication))).toBe(
      QualityCodes.BadNoCommunication,
    );
  });
});

describe("statusCodeOfError", () => {
  test.each([
    ["KILN_FORBIDDEN", ServerStatusCodes.BadUserAccessDenied],
    ["KILN_OUT_OF_RANGE", ServerStatusCodes.BadOutOfRange],
    ["KILN_TAG_NOT_WRITABLE", ServerStatusCodes.BadNotWritable],
    ["KILN_INVALID_TRANSITION", ServerStatusCodes.BadInvalidState],
    ["KILN_LIFECYCLE", ServerStatusCodes.BadInvalidState],
    ["KILN_VALIDATION", ServerStatusCodes.BadInvalidArgument],
    ["KILN_TIMEOUT", ServerStatusCodes.BadTimeout],
    ["KILN_CIRCUIT_OPEN", ServerStatusCodes.BadNotConnected],
    ["KILN_AUDIT_UNAVAILABLE", ServerStatusCodes.BadResourceUnavailable],
    ["KILN_STORE_ERROR", ServerStatusCodes.BadInternalError],
  ] as const)("%s answers 0x%s", (code, expected) => {
    expect(statusCodeOfError(new KilnError(code, "refused"))).toBe(expected);
  });

  test("a device's rejection keeps the device's bad code; without one it is BadDeviceFailure", () => {
    const device = new KilnError("KILN_WRITE_REJECTED", "no", { details: { statusCode: 0x80740000 } });
    expect(statusCodeOfError(device)).toBe(0x80740000);
    expect(statusCodeOfError(new KilnError("KILN_WRITE_REJECTED", "no"))).toBe(ServerStatusCodes.BadDeviceFailure);
    expect(statusCodeOfError(new Error("boom"))).toBe(ServerStatusCodes.BadInternalError);
  });
});
