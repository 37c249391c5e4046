import { defineTags } from "@kiln/core";
import {
  AttributeIds,
  type ClientMonitoredItem,
  type ClientSubscription,
  type DataValue,
  DataChangeFilter,
  DataChangeTrigger,
  DeadbandType,
  TimestampsToReturn,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
  waitFor,
} from "./support/opcua-fixture";

/**
 * node-opcua's deadband check is numeric only and threw ("expecting number only but got object")
 * when a tag read bad with value null for two scans in a row: the exception left a value callback
 * and ended the process. These run in the test worker's process: a crash fails the file.
 */

const tags = defineTags({
  "line.flow": { dataType: "float64" },
  "line.level": { dataType: "float64", range: { min: 0, max: 100 } },
  "line.count": { dataType: "int64" },
  "meter.energy": { dataType: "int64" },
  "meter.total": { dataType: "uint64", range: { min: 0, max: 1e12 } },
});

/** What each source answers now: a number, or null (a failed read: bad, value null). */
const now: { flow: number | null; level: number | null; count: number | null; energy: bigint; total: bigint } = {
  flow: 5,
  level: 5,
  count: 5,
  energy: 0n,
  total: 0n,
};

let pki: TestPki;
let served: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;
let subscription: ClientSubscription;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    sources: {
      "line.flow": () => now.flow as number,
      "line.level": () => now.level as number,
      "line.count": () => now.count as number,
      "meter.energy": () => now.energy as never,
      "meter.total": () => now.total as never,
    },
  });
  vic = await connect(served.server, pki.trusted, user("vic"));
  subscription = await vic.session.createSubscription2({
    requestedPublishingInterval: 50,
    requestedLifetimeCount: 600,
    requestedMaxKeepAliveCount: 10,
    publishingEnabled: true,
  });
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await served?.dispose();
  await pki?.dispose();
});

/** A value notification reduced to what is compared: "Good 5", "Bad null", "Good [1,2,3]". */
const shown = (value: DataValue): string =>
  `${value.statusCode.isGood() ? "Good" : "Bad"} ${JSON.stringify((value.value?.value as unknown) ?? null)}`;

async function watch(tag: string, filter: DataChangeFilter): Promise<{ item: ClientMonitoredItem; seen: string[] }> {
  const item = await subscription.monitor(
    { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
    { samplingInterval: 0, queueSize: 20, filter },
    TimestampsToReturn.Both,
  );
  const seen: string[] = [];
  item.on("changed", (value) => seen.push(shown(value)));
  await waitFor(() => seen.length > 0, `the first value of ${tag}`);
  return { item, seen };
}

/** Lets the scan run `scans` times (50 ms each) with the sources as they are. */
const scans = (count: number) => new Promise((resolve) => setTimeout(resolve, count * 50 + 100));

describe("deadband on values that are not finite numbers", () => {
  test("absolute and percent deadbands: Good → Bad null for many scans → Good is reported once each, never a crash", async () => {
    const absolute = await watch(
      "line.flow",
      new DataChangeFilter({
        trigger: DataChangeTrigger.StatusValue,
        deadbandType: DeadbandType.Absolute,
        deadbandValue: 1,
      }),
    );
    const percent = await watch(
      "line.level",
      new DataChangeFilter({
        trigger: DataChangeTrigger.StatusValue,
        deadbandType: DeadbandType.Percent,
        deadbandValue: 1,
      }),
    );
    const steps: Array<number | null> = [null, 5, 5.5, null, 9];
    for (const value of steps) {
      now.flow = value;
      now.level = value;
      await scans(6);
    }
    await waitFor(() => absolute.seen.length >= 5 && percent.seen.length >= 5, "the last change");
    await scans(2);
    // 5.5 is inside both deadbands (1, and 1 % of 0–100): not reported. Bad null is reported once per raise.
    expect(absolute.seen).toEqual(["Good 5", "Bad null", "Good 5", "Bad null", "Good 9"]);
    expect(percent.seen).toEqual(["Good 5", "Bad null", "Good 5", "Bad null", "Good 9"]);
    await absolute.item.terminate();
    await percent.item.terminate();
  }, 30_000);

  test("an Int64 tag (a [high, low] pair) under an absolute deadband: bad null and back", async () => {
    const count = await watch(
      "line.count",
      new DataChangeFilter({
        trigger: DataChangeTrigger.StatusValue,
        deadbandType: DeadbandType.Absolute,
        deadbandValue: 1,
      }),
    );
    for (const value of [null, 5, 6, 9]) {
      now.count = value;
      await scans(6);
    }
    await waitFor(() => count.seen.length >= 4, "the last change");
    await scans(2);
    // 6 is inside the deadband (a difference of 1 is not more than 1): not reported.
    expect(count.seen).toEqual(["Good [0,5]", "Bad null", "Good [0,5]", "Good [0,9]"]);
    const [read] = await vic.session.read([
      { nodeId: served.server.nodeIdOf("line.flow"), attributeId: AttributeIds.Value },
    ]);
    expect(read!.statusCode.isGood()).toBe(true); // still serving
  }, 30_000);

  test("a move beyond Number.MAX_VALUE (-1.7e308 → 1.7e308) under absolute and percent deadbands is reported, never a crash", async () => {
    now.flow = -1.7e308;
    now.level = -1.7e308;
    await scans(4);
    const filter = (deadbandType: DeadbandType) =>
      new DataChangeFilter({ trigger: DataChangeTrigger.StatusValue, deadbandType, deadbandValue: 1 });
    const absolute = await watch("line.flow", filter(DeadbandType.Absolute));
    const percent = await watch("line.level", filter(DeadbandType.Percent));
    for (const value of [1.7e308, 1.7e308, 5]) {
      now.flow = value;
      now.level = value;
      await scans(6);
    }
    await waitFor(() => absolute.seen.length >= 3 && percent.seen.length >= 3, "the last change");
    await scans(2);
    // Each move is far beyond any deadband; its difference is not even a finite double.
    expect(absolute.seen.map((entry) => entry.split(" ")[0])).toEqual(["Good", "Good", "Good"]);
    expect(absolute.seen.map((entry) => Number(entry.split(" ")[1]))).toEqual([-1.7e308, 1.7e308, 5]);
    expect(percent.seen.map((entry) => Number(entry.split(" ")[1]))).toEqual([-1.7e308, 1.7e308, 5]);
    const [read] = await vic.session.read([
      { nodeId: served.server.nodeIdOf("line.flow"), attributeId: AttributeIds.Value },
    ]);
    expect(read!.statusCode.isGood()).toBe(true); // still serving
    await absolute.item.terminate();
    await percent.item.terminate();
  }, 30_000);
});

describe("deadband on 64-bit values (adversarial review 20w, fault 1)", () => {
  const filter = (deadbandType: DeadbandType, deadbandValue: number) =>
    new DataChangeFilter({ trigger: DataChangeTrigger.StatusValue, deadbandType, deadbandValue });

  test("a move of 3·2^32 − 1 beyond an absolute deadband of 1e10 (int64) and 1 % of 0–1e12 (uint64) is reported", async () => {
    now.energy = 0n;
    now.total = 0n;
    await scans(2);
    const energy = await watch("meter.energy", filter(DeadbandType.Absolute, 1e10));
    const total = await watch("meter.total", filter(DeadbandType.Percent, 1));
    now.energy = 3n * 2n ** 32n - 1n; // 12,884,901,887 > 1e10
    now.total = 3n * 2n ** 32n - 1n;
    await waitFor(() => energy.seen.length >= 2 && total.seen.length >= 2, "the move past the deadband");
    // node-opcua's check multiplied the high-word difference by 2^32 − 1 (within 1e10) and then compared the low words only.
    expect(energy.seen).toEqual(["Good [0,0]", "Good [2,4294967295]"]);
    expect(total.seen).toEqual(["Good [0,0]", "Good [2,4294967295]"]);
    await energy.item.terminate();
    await total.item.terminate();
  }, 30_000);

  test("a negative int64 crossing zero: a difference equal to the deadband is not reported, one more is (|last − current| > deadband)", async () => {
    now.energy = -5_000_000_000n;
    await scans(2);
    const energy = await watch("meter.energy", filter(DeadbandType.Absolute, 1e10));
    now.energy = 5_000_000_000n; // exactly 1e10 from the last reported value: inside
    await scans(6);
    now.energy = 5_000_000_001n; // 1e10 + 1 from the last reported value (-5e9): outside
    await waitFor(() => energy.seen.length >= 2, "the move past the deadband");
    await scans(2);
    // -5e9 is [0xfffffffe, 0xd5fa0e00]; 5e9 is [1, 0x2a05f200]; 5e9 + 1 is [1, 0x2a05f201].
    expect(energy.seen).toEqual(["Good [4294967294,3589934592]", "Good [1,705032705]"]);
    await energy.item.terminate();
  }, 30_000);
});
