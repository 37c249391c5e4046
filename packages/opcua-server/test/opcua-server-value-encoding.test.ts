import { defineTags, QualityCodes, type Sample } from "@kiln/core";
import {
  AttributeIds,
  type DataValue,
  type HistoryData,
  HistoryReadRequest,
  ReadRawModifiedDetails,
  StatusCodes,
  TimestampsToReturn,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { statusCodeOfSample } from "../src/index";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

/**
 * A value that cannot be encoded in its node's DataType (an int16 tag's 70000, an int32's 1.5)
 * made a HistoryRead of the whole node BadInternalError (the Variant constructor threw) and was
 * served converted live (1.5 as 1). Live and history now serve it Bad with a Null value: the
 * sample's own code when it was bad, else BadTypeMismatch; the read goes on.
 */

const tags = defineTags({
  "a.i16": { dataType: "int16" },
  "a.i32": { dataType: "int32" },
  "a.u16": { dataType: "uint16" },
});

let pki: TestPki;
let served: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    sources: { "a.i32": () => 1.5 as unknown as number, "a.u16": () => -1 as unknown as number },
  });
  for (const tag of ["a.i32", "a.u16"]) served.plc.faults.badQuality.add(tag);
  vic = await connect(served.server, pki.trusted, user("vic"));
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await served?.dispose();
  await pki?.dispose();
});

const T0 = Date.UTC(2024, 0, 1);
const good = { severity: "good", code: QualityCodes.Good, reason: "ok" } as const;
const failed = { severity: "bad", code: QualityCodes.BadDeviceFailure, reason: "sensor" } as const;

async function historyRaw(tag: string, numValuesPerNode: number, continuationPoint?: Buffer) {
  const answer = await vic.session.historyRead(
    new HistoryReadRequest({
      historyReadDetails: new ReadRawModifiedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 11_000),
        numValuesPerNode,
        isReadModified: false,
      }),
      nodesToRead: [{ nodeId: served.server.nodeIdOf(tag), ...(continuationPoint ? { continuationPoint } : {}) }],
      timestampsToReturn: TimestampsToReturn.Source,
    }),
  );
  const result = answer.results![0]!;
  const values = ((result.historyData as HistoryData | null)?.dataValues ?? []) as DataValue[];
  return {
    statusCode: result.statusCode,
    values: values.map((value) => [value.statusCode.name, value.value.value as unknown]),
    continuationPoint: result.continuationPoint ?? undefined,
  };
}

describe("values that do not fit the node's DataType", () => {
  test("history: a bad int16 sample 70000 is served BadDeviceFailure Null, a good 80000 BadTypeMismatch Null; the rest is read", async () => {
    const samples: Sample[] = Array.from({ length: 11 }, (_, index) => ({
      tag: "a.i16",
      timestamp: T0 + index * 1000,
      value: index === 5 ? 70_000 : index === 7 ? 80_000 : index,
      quality: index === 5 ? failed : good,
    }));
    await (
      served.system as unknown as { unchecked: { store: { samples: { writeBatch(s: Sample[]): Promise<void> } } } }
    ).unchecked.store.samples.writeBatch(samples);
    const whole = await historyRaw("a.i16", 0);
    expect(whole.statusCode.isGood()).toBe(true);
    expect(whole.values).toHaveLength(11);
    expect(whole.values[4]).toEqual(["Good", 4]);
    expect(whole.values[5]).toEqual(["BadDeviceFailure", null]);
    expect(whole.values[6]).toEqual(["Good", 6]);
    expect(whole.values[7]).toEqual(["BadTypeMismatch", null]);
    // Paging (3 a page) goes past both.
    const paged: unknown[] = [];
    let continuationPoint: Buffer | undefined;
    for (let page = 0; page < 6; page++) {
      const answer = await historyRaw("a.i16", 3, continuationPoint);
      expect(answer.statusCode.isGood()).toBe(true);
      paged.push(...answer.values);
      continuationPoint = answer.continuationPoint;
      if (!continuationPoint) break;
    }
    expect(paged).toEqual(whole.values);
  });

  test("live: a bad int32 1.5 and a bad uint16 −1 are served Bad with a Null value, never converted (1.5 as 1)", async () => {
    const end = Date.now() + 5_000;
    let values: DataValue[] = [];
    while (Date.now() < end) {
      values = await vic.session.read(
        ["a.i32", "a.u16"].map((tag) => ({ nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value })),
      );
      if (values.every((value) => value.statusCode.isBad())) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const [index, tag] of ["a.i32", "a.u16"].entries()) {
      expect(values[index]!.statusCode.isBad()).toBe(true);
      expect(values[index]!.value.value).toBeNull();
      // The device's own bad code is kept, not replaced by BadTypeMismatch.
      expect(values[index]!.statusCode.value).toBe(statusCodeOfSample(served.system.cvt.get(tag)!));
    }
    expect(values.map((value) => value.statusCode)).not.toContain(StatusCodes.BadInternalError);
  });
});
