import { QualityCodes, defineTags } from "@kiln/core";
import { DataType, DataValue, StatusCodes } from "node-opcua";
import { describe, expect, test } from "vitest";
import { badSample, sampleFromDataValue, staleSample } from "./opcua-samples";

const tags = defineTags({ level: { dataType: "float64" } });
const level = tags.get("level");
const NOW = Date.UTC(2026, 0, 1);

describe("sampleFromDataValue", () => {
  test("a good value keeps the server's source timestamp", () => {
    const dataValue = new DataValue({
      value: { dataType: DataType.Double, value: 4.2 },
      sourceTimestamp: new Date(NOW - 500),
      serverTimestamp: new Date(NOW - 100),
    });
    expect(sampleFromDataValue(level, dataValue, NOW)).toEqual({
      tag: "level",
      value: 4.2,
      timestamp: NOW - 500,
      quality: { severity: "good", code: 0 },
    });
  });

  test("falls back to the server timestamp, then to now", () => {
    const server = new DataValue({
      value: { dataType: DataType.Double, value: 1 },
      serverTimestamp: new Date(NOW - 9),
    });
    expect(sampleFromDataValue(level, server, NOW).timestamp).toBe(NOW - 9);
    const none = new DataValue({ value: { dataType: DataType.Double, value: 1 } });
    expect(sampleFromDataValue(level, none, NOW).timestamp).toBe(NOW);
  });

  // adv13 (fresh review) LOW-3: OPC UA's MinDateTime (1601-01-01, DateTime 0: "no time") was used
  // as the sample time; through the core the tag turned uncertain, "stamped on receipt".
  test("a source timestamp of MinDateTime (1601-01-01) is absent: the server timestamp is used", () => {
    const dataValue = new DataValue({
      value: { dataType: DataType.Double, value: 10 },
      sourceTimestamp: new Date(Date.UTC(1601, 0, 1)),
      serverTimestamp: new Date(NOW - 7),
    });
    expect(sampleFromDataValue(level, dataValue, NOW)).toMatchObject({
      timestamp: NOW - 7,
      quality: { severity: "good" },
    });
  });

  test("sibling: source and server timestamps both MinDateTime (or before it): receipt time", () => {
    const dataValue = new DataValue({
      value: { dataType: DataType.Double, value: 10 },
      sourceTimestamp: new Date(Date.UTC(1601, 0, 1)),
      serverTimestamp: new Date(Date.UTC(1600, 5, 1)),
    });
    expect(sampleFromDataValue(level, dataValue, NOW).timestamp).toBe(NOW);
  });

  test("an uncertain status keeps the value and the exact code", () => {
    const dataValue = new DataValue({
      value: { dataType: DataType.Double, value: 3 },
      statusCode: StatusCodes.UncertainLastUsableValue,
    });
    const sample = sampleFromDataValue(level, dataValue, NOW);
    expect(sample.value).toBe(3);
    expect(sample.quality).toMatchObject({
      severity: "uncertain",
      code: QualityCodes.UncertainLastUsableValue,
      reason: "UncertainLastUsableValue",
    });
  });

  test("a bad status gives a null value with the code and its name", () => {
    const dataValue = new DataValue({ statusCode: StatusCodes.BadDeviceFailure });
    expect(sampleFromDataValue(level, dataValue, NOW)).toMatchObject({
      value: null,
      quality: { severity: "bad", code: QualityCodes.BadDeviceFailure, reason: "BadDeviceFailure" },
    });
  });

  test("a good value the tag cannot carry is bad with BadTypeMismatch", () => {
    const dataValue = new DataValue({ value: { dataType: DataType.String, value: "n/a" } });
    expect(sampleFromDataValue(level, dataValue, NOW).quality).toMatchObject({
      severity: "bad",
      code: QualityCodes.BadTypeMismatch,
    });
  });
});

describe("staleSample and badSample", () => {
  test("a lost connection turns the last value uncertain; no value at all is bad", () => {
    expect(staleSample(level, 7, NOW)).toMatchObject({
      value: 7,
      timestamp: NOW,
      quality: { severity: "uncertain", code: QualityCodes.UncertainNoCommunicationLastUsableValue },
    });
    expect(staleSample(level, undefined, NOW)).toMatchObject({
      value: null,
      quality: { severity: "bad", code: QualityCodes.BadNotConnected },
    });
    expect(badSample(level, QualityCodes.BadNodeIdUnknown, "gone", NOW).quality).toEqual({
      severity: "bad",
      code: QualityCodes.BadNodeIdUnknown,
      reason: "gone",
    });
  });
});
