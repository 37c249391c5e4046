import { defineTags, quality, type Sample } from "@kiln/core";
import {
  type DataValue,
  HistoryReadRequest,
  type HistoryData,
  ReadAtTimeDetails,
  ReadProcessedDetails,
  TimestampsToReturn,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AGGREGATE_FUNCTION_NODE_IDS } from "../src/index";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

/**
 * A processed value is served by the same encoding rule as Raw and AtTime: a value the node's
 * DataType cannot carry (a Delta beyond 64 bits, an int16 tag's stored 70000) is Bad with no
 * value, never wrapped or converted to another DataType.
 */

const tags = defineTags({
  "hist.u": { dataType: "uint64" },
  "hist.i": { dataType: "int64" },
  "hist.s": { dataType: "int16" },
  "hist.b": { dataType: "int16" },
  "hist.flag": { dataType: "bool" },
  "hist.n": { dataType: "int32", interpolation: "sloped" },
});
const T0 = Date.UTC(2026, 0, 1);
const sample = (tag: string, i: number, value: Sample["value"], bad = false): Sample => ({
  tag,
  timestamp: T0 + i * 1000,
  value,
  quality: bad ? quality("bad", "device failure", 0x808b0000) : quality("good"),
});

let pki: TestPki;
let served: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki });
  await served.system.unchecked.store.samples.writeBatch([
    sample("hist.u", 0, 2n ** 64n - 1n),
    sample("hist.u", 1, 0n),
    sample("hist.i", 0, 2n ** 63n - 1n),
    sample("hist.i", 1, -(2n ** 63n)),
    sample("hist.s", 0, 70000),
    sample("hist.s", 1, 5),
    sample("hist.b", 0, 70000, true),
    sample("hist.flag", 0, true),
    sample("hist.flag", 1, false),
    sample("hist.n", -1, 1),
    sample("hist.n", 1, 4),
  ]);
  vic = await connect(served.server, pki.trusted, user("vic"));
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await served?.dispose();
  await pki?.dispose();
});

async function processed(tag: string, aggregate: keyof typeof AGGREGATE_FUNCTION_NODE_IDS): Promise<DataValue> {
  const response = await vic.session.historyRead(
    new HistoryReadRequest({
      historyReadDetails: new ReadProcessedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 2000),
        processingInterval: 0,
        aggregateType: [`i=${AGGREGATE_FUNCTION_NODE_IDS[aggregate]}`],
        aggregateConfiguration: { useServerCapabilitiesDefaults: true },
      }) as never,
      nodesToRead: [{ nodeId: served.server.nodeIdOf(tag) }],
      timestampsToReturn: TimestampsToReturn.Source,
      releaseContinuationPoints: false,
    }),
  );
  expect(response.results![0]!.statusCode.isGood()).toBe(true);
  return (response.results![0]!.historyData as HistoryData).dataValues![0]!;
}

describe("processed values the node's DataType cannot carry", () => {
  test.each([
    ["hist.u", "2^64−1 → 0", -(2n ** 64n) + 1n],
    ["hist.i", "int64 max → min", -(2n ** 64n) + 1n],
  ])("a Delta of %s (%s) beyond 64 bits is BadOutOfRange with no value, never wrapped", async (tag, _, delta) => {
    const [expected] = await served.system.history.queries!.aggregate([tag], {
      start: T0,
      end: T0 + 2000,
      intervalMs: 2000,
      aggregates: ["Delta"],
    });
    expect(expected!.values.Delta!.value).toBe(delta); // Kiln's own result is exact
    const value = await processed(tag, "Delta");
    expect(value.statusCode.name).toBe("BadOutOfRange");
    expect(value.value.value ?? null).toBeNull();
  });

  test.each(["Maximum", "Start"] as const)(
    "%s of an int16 tag whose stored sample is 70000: BadTypeMismatch with no value, like Raw and AtTime",
    async (aggregate) => {
      const value = await processed("hist.s", aggregate);
      expect(value.statusCode.name).toBe("BadTypeMismatch");
      expect(value.value.value ?? null).toBeNull();
      const response = await vic.session.historyRead(
        new HistoryReadRequest({
          historyReadDetails: new ReadAtTimeDetails({ reqTimes: [new Date(T0)], useSimpleBounds: true }) as never,
          nodesToRead: [{ nodeId: served.server.nodeIdOf("hist.s") }],
          timestampsToReturn: TimestampsToReturn.Source,
          releaseContinuationPoints: false,
        }),
      );
      const [atTime] = (response.results![0]!.historyData as HistoryData).dataValues!;
      expect(atTime!.statusCode.name).toBe("BadTypeMismatch");
    },
  );

  test("Minimum and End of an int16 tag that fit are served as Int16 (not Bad); a bad stored 70000 keeps its device code", async () => {
    for (const aggregate of ["Minimum", "End"] as const) {
      const value = await processed("hist.s", aggregate);
      expect([aggregate, value.statusCode.isBad(), value.value.value]).toEqual([aggregate, false, 5]);
      expect(value.value.dataType).toBe(4); // Int16
    }
    const bad = await processed("hist.b", "Start");
    expect(bad.statusCode.isBad()).toBe(true);
    expect(bad.statusCode.name).not.toBe("BadTypeMismatch");
    expect(bad.value.value ?? null).toBeNull();
  });
});

describe("processed values of a bool tag and an interpolated integer tag (adversarial review 20w, fault 2)", () => {
  // OPC UA DataType ids: Boolean 1, Int32 6, UInt32 7, Double 11.
  test.each([
    ["Minimum", 1, false],
    ["Maximum", 1, true],
    ["Start", 1, true],
    ["End", 1, false],
    ["Interpolative", 1, true],
    ["Count", 7, 2],
    ["Average", 11, 0.5],
    ["TimeAverage", 11, 0.5],
  ] as const)(
    "%s of a bool tag (true, then false) is served as DataType %i: %s",
    async (aggregate, dataType, expected) => {
      const value = await processed("hist.flag", aggregate);
      expect([aggregate, value.statusCode.isBad(), value.value.dataType, value.value.value]).toEqual([
        aggregate,
        false,
        dataType,
        expected,
      ]);
    },
  );

  test("Interpolative of a sloped int32 tag between 1 and 4 (2.5 at the interval's start) is served as Int32, Same as Source (Part 13), rounded: 3", async () => {
    const value = await processed("hist.n", "Interpolative");
    expect([value.statusCode.isBad(), value.value.dataType, value.value.value]).toEqual([false, 6, 3]);
  });
});
