import { defineTags, type Sample } from "@kiln/core";
import { HistoryReadRequest, ReadRawModifiedDetails, StatusCodes, TimestampsToReturn } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";

/**
 * A HistoryRead response too large to send (10 nodes × 1,000 values × 1 kB) is answered with a
 * ServiceFault (BadTcpMessageTooLarge) by node-opcua, but the 10 continuation points it made were
 * kept: the client never got them and could not release them, and every later paged read answered
 * BadNoContinuationPoints. Points of a response that was not sent are released.
 */

const tags = defineTags({ "s.txt": { dataType: "string" } });
const T0 = Date.UTC(2024, 0, 1);

let pki: TestPki;
let served: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki });
  vic = await connect(served.server, pki.trusted, user("vic"));
  const samples: Sample[] = Array.from({ length: 2000 }, (_, index) => ({
    tag: "s.txt",
    value: "x".repeat(1000),
    timestamp: T0 + index * 1000,
    quality: { severity: "good", code: 0, reason: "ok" },
  }));
  await (
    served.system as unknown as { unchecked: { store: { samples: { writeBatch(s: Sample[]): Promise<void> } } } }
  ).unchecked.store.samples.writeBatch(samples);
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await served?.dispose();
  await pki?.dispose();
});

const read = (nodes: number, numValuesPerNode: number) =>
  vic.session.historyRead(
    new HistoryReadRequest({
      historyReadDetails: new ReadRawModifiedDetails({
        startTime: new Date(T0),
        endTime: new Date(T0 + 2_000_000),
        numValuesPerNode,
        isReadModified: false,
      }),
      nodesToRead: Array.from({ length: nodes }, () => ({ nodeId: served.server.nodeIdOf("s.txt") })),
      timestampsToReturn: TimestampsToReturn.Source,
    }),
  );

describe("continuation points of a HistoryRead response that was not sent", () => {
  test("a response too large to send leaves no continuation point taken: ten paged reads after it each get one", async () => {
    await expect(read(10, 1000)).rejects.toThrow(/BadTcpMessageTooLarge|BadResponseTooLarge/);
    // The session's 10 points (MaxHistoryContinuationPoints) are all free again.
    const answer = await read(10, 5);
    expect(answer.results!.map((result) => result.statusCode)).toEqual(
      Array.from({ length: 10 }, () => StatusCodes.Good),
    );
    expect(answer.results!.every((result) => (result.continuationPoint?.length ?? 0) > 0)).toBe(true);
  }, 60_000);

  test("the points of a response that was sent are kept: an eleventh answers BadNoContinuationPoints until released", async () => {
    const [eleventh] = (await read(1, 5)).results!;
    expect(eleventh!.statusCode).toBe(StatusCodes.BadNoContinuationPoints);
  }, 60_000);
});

describe("HistoryRead edge requests", () => {
  const at = (start: number, end: number, timestampsToReturn = TimestampsToReturn.Source) =>
    vic.session.historyRead(
      new HistoryReadRequest({
        historyReadDetails: new ReadRawModifiedDetails({
          startTime: new Date(start),
          endTime: new Date(end),
          numValuesPerNode: 0,
          isReadModified: false,
          returnBounds: true,
        }),
        nodesToRead: [{ nodeId: served.server.nodeIdOf("s.txt") }],
        timestampsToReturn,
      }),
    );
  const times = (answer: Awaited<ReturnType<typeof at>>) =>
    (
      (answer.results![0]!.historyData as { dataValues?: Array<{ sourceTimestamp: Date | null }> } | null)
        ?.dataValues ?? []
    ).map((value) => (value.sourceTimestamp?.getTime() ?? 0) - T0);

  test("start == end with returnBounds: the sample at that time once, not again as the end bound", async () => {
    expect(times(await at(T0 + 5_000, T0 + 5_000))).toEqual([5_000]);
  });

  test("start == end with returnBounds between two samples: the two bounds", async () => {
    expect(times(await at(T0 + 5_500, T0 + 5_500))).toEqual([5_000, 6_000]);
  });

  test("TimestampsToReturn Neither is refused BadTimestampsToReturnInvalid (Part 4, 5.10.3)", async () => {
    await expect(at(T0, T0 + 10_000, TimestampsToReturn.Neither)).rejects.toThrow(/BadTimestampsToReturnInvalid/);
    expect(times(await at(T0, T0 + 2_000))).toEqual([0, 1_000, 2_000]); // Source still answers
  });
});
