import { defaultRoleTable, defineTags, QualityCodes, type Sample } from "@kiln/core";
import {
  AttributeIds,
  BrowseDirection,
  ClientSubscription,
  CreateMonitoredItemsRequest,
  type DataValue,
  HistoryReadRequest,
  MonitoringMode,
  ReadRawModifiedDetails,
  ReadRequest,
  type ReadResponse,
  StatusCodes,
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

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 } },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
  "cycle.count": { dataType: "uint64" },
  "recipe.name": { dataType: "string", scanGroup: "slow" },
});

let pki: TestPki;
let served: ServedTestSystem;
let client: Awaited<ReturnType<typeof connect>>;
/** Every sample the CVT took, by tag, as the test observed it. */
const cvtSamples = new Map<string, Sample[]>();
/** When (Date.now(), ms) each observed sample entered the CVT. */
const enteredAt = new Map<Sample, number>();

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    sources: {
      "chamber.pressure": { kind: "sine", amplitude: 4, offset: 5, periodMs: 1_000 },
      "cycle.count": { kind: "counter", start: 2 ** 40 },
      "recipe.name": () => "ald-200",
    },
    system: {
      scanGroups: { default: { periodMs: 50 }, slow: { periodMs: 600_000 } },
      // rita may read the chamber's tags and nothing else; no `authorizer` is given to the
      // server: it decides `read` by the system's own role table.
      authorization: {
        roles: { ...defaultRoleTable(), "chamber-reader": [{ permission: "read", targets: ["chamber.*"] }] },
      },
    },
  });
  for (const sample of served.system.cvt.snapshot()) cvtSamples.set(sample.tag, [sample]);
  served.system.cvt.observeAll((change) => {
    const list = cvtSamples.get(change.sample.tag) ?? [];
    list.push(change.sample);
    enteredAt.set(change.sample, Date.now());
    cvtSamples.set(change.sample.tag, list);
  });
  client = await connect(served.server, pki.trusted, user("vic"));
});

afterAll(async () => {
  await client?.close();
  await served?.dispose();
  await pki?.dispose();
});

/** The CVT sample with this source timestamp. */
function cvtSampleAt(tag: string, timestamp: Date | null): Sample | undefined {
  return cvtSamples.get(tag)?.find((sample) => sample.timestamp === timestamp?.getTime());
}

async function subscribe(
  tag: string,
  samplingInterval: number,
  filter?: DataChangeFilter,
): Promise<{ values: DataValue[]; stop(): Promise<void> }> {
  const subscription = ClientSubscription.create(client.session, {
    requestedPublishingInterval: 50,
    requestedLifetimeCount: 600,
    requestedMaxKeepAliveCount: 10,
    publishingEnabled: true,
  });
  const item = await subscription.monitor(
    { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
    { samplingInterval, queueSize: 100, discardOldest: true, ...(filter ? { filter } : {}) },
    TimestampsToReturn.Both,
  );
  const values: DataValue[] = [];
  item.on("changed", (value: DataValue) => void values.push(value));
  return {
    values,
    async stop() {
      await subscription.terminate();
    },
  };
}

describe("OpcuaServer values", () => {
  test("a read gives the CVT's value with its source timestamp; the server timestamp is when the server took it", async () => {
    const before = Date.now();
    const [pressure, count, name] = await client.session.read(
      ["chamber.pressure", "cycle.count", "recipe.name"].map((tag) => ({
        nodeId: served.server.nodeIdOf(tag),
        attributeId: AttributeIds.Value,
      })),
      0,
    );
    for (const [tag, dataValue] of [
      ["chamber.pressure", pressure!],
      ["cycle.count", count!],
      ["recipe.name", name!],
    ] as const) {
      expect(dataValue.statusCode.value, tag).toBe(QualityCodes.Good);
      const sample = cvtSampleAt(tag, dataValue.sourceTimestamp);
      expect(sample, `${tag}: a CVT sample with the source timestamp`).toBeDefined();
      // it was the CVT's current sample during the read: the sample after it came in after the read began
      const history = cvtSamples.get(tag)!;
      const next = history[history.indexOf(sample!) + 1];
      if (next) expect(enteredAt.get(next), `${tag}: replaced before the read`).toBeGreaterThanOrEqual(before);
      const served64 = dataValue.value.value as unknown;
      const value = tag === "cycle.count" ? words(served64) : served64;
      expect(value, tag).toEqual(tag === "cycle.count" ? BigInt(sample!.value as number) : sample!.value);
      expect(dataValue.serverTimestamp!.getTime(), tag).toBeGreaterThanOrEqual(sample!.timestamp);
      expect(dataValue.serverTimestamp!.getTime(), tag).toBeLessThanOrEqual(before + 1_000);
    }
    expect(name!.value.value).toBe("ald-200");
  });

  test("TimestampsToReturn is honoured on Read: Source, Server, Both, Neither", async () => {
    const read = async (timestampsToReturn: TimestampsToReturn): Promise<DataValue> => {
      const session = client.session as unknown as {
        performMessageTransaction(request: ReadRequest): Promise<ReadResponse>;
      };
      const response = await session.performMessageTransaction(
        new ReadRequest({
          maxAge: 0,
          timestampsToReturn,
          nodesToRead: [{ nodeId: served.server.nodeIdOf("chamber.pressure"), attributeId: AttributeIds.Value }],
        }),
      );
      return response.results![0]!;
    };
    const shown = async (timestampsToReturn: TimestampsToReturn) => {
      const dataValue = await read(timestampsToReturn);
      expect(dataValue.statusCode.value).toBe(QualityCodes.Good);
      return { source: dataValue.sourceTimestamp !== null, server: dataValue.serverTimestamp !== null };
    };
    expect(await shown(TimestampsToReturn.Source)).toEqual({ source: true, server: false });
    expect(await shown(TimestampsToReturn.Server)).toEqual({ source: false, server: true });
    expect(await shown(TimestampsToReturn.Both)).toEqual({ source: true, server: true });
    expect(await shown(TimestampsToReturn.Neither)).toEqual({ source: false, server: false });
    const source = await read(TimestampsToReturn.Source);
    expect(
      cvtSampleAt("chamber.pressure", source.sourceTimestamp),
      "the CVT sample of the source timestamp",
    ).toBeDefined();
  });

  test("a bad sample with a device StatusCode is served with that code, its source time and a fresh server time", async () => {
    // Newer than the slow group's one sample (an older one would be restamped by the CVT), older than now.
    const old = served.system.cvt.get("recipe.name")!.timestamp + 1;
    const BadSensorFailure = 0x808c0000;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const injectedAt = Date.now();
    served.system.unchecked.cvt.update([
      {
        tag: "recipe.name",
        value: null,
        timestamp: old,
        quality: { severity: "bad", code: BadSensorFailure, reason: "sensor broken" },
      },
    ]);
    const dataValue = await client.session.read({
      nodeId: served.server.nodeIdOf("recipe.name"),
      attributeId: AttributeIds.Value,
    });
    expect(dataValue.statusCode.value).toBe(BadSensorFailure);
    expect(dataValue.sourceTimestamp!.getTime()).toBe(old);
    expect(served.system.cvt.get("recipe.name")!.timestamp).toBe(old);
    expect(dataValue.serverTimestamp!.getTime()).toBeGreaterThanOrEqual(injectedAt);
    expect(dataValue.value.value).toBeNull();
  });

  test("a subscription delivers the CVT's changes (exception-based) and a bad quality as a bad StatusCode, never a good one", async () => {
    const subscription = await subscribe("chamber.pressure", 0);
    await waitFor(() => subscription.values.length >= 10, "ten notifications");
    served.plc.faults.badQuality.add("chamber.pressure");
    const firstBad = subscription.values.length;
    // Bad samples carry no value (Part 4, 7.7.1): while the fault lasts nothing changes, one notification.
    await waitFor(
      () => subscription.values.slice(firstBad).filter((value) => value.statusCode.isNotGood()).length >= 1,
      "a bad notification",
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    served.plc.faults.badQuality.delete("chamber.pressure");
    await waitFor(() => subscription.values.at(-1)!.statusCode.value === QualityCodes.Good, "good again");
    await subscription.stop();

    let bad = 0;
    for (const dataValue of subscription.values) {
      const sample = cvtSampleAt("chamber.pressure", dataValue.sourceTimestamp);
      expect(sample, "every notification is a CVT sample").toBeDefined();
      if (sample!.quality.severity === "bad") {
        bad++;
        expect(dataValue.statusCode.value).toBe(QualityCodes.BadDeviceFailure);
        // The simulator's bad sample keeps its reading; a Bad DataValue carries none (Part 4, 7.7.1).
        expect(sample!.value).not.toBeNull();
        expect(dataValue.value.value ?? null).toBeNull();
      } else {
        expect(dataValue.value.value).toBe(sample!.value);
        expect(dataValue.statusCode.value).toBe(QualityCodes.Good);
      }
    }
    expect(bad).toBe(1);
  });

  test("a Read of a bad sample that holds a value answers its Bad code with a Null value (Part 4, 7.7.1)", async () => {
    served.plc.faults.badQuality.add("chamber.pressure");
    try {
      await waitFor(() => served.system.cvt.get("chamber.pressure")?.quality.severity === "bad", "a bad sample");
      expect(served.system.cvt.get("chamber.pressure")!.value).not.toBeNull();
      const [read] = await client.session.read([
        { nodeId: served.server.nodeIdOf("chamber.pressure"), attributeId: AttributeIds.Value },
      ]);
      expect(read!.statusCode.value).toBe(QualityCodes.BadDeviceFailure);
      expect(read!.value.value ?? null).toBeNull();
    } finally {
      served.plc.faults.badQuality.delete("chamber.pressure");
    }
  });

  test("the client's sampling interval is honoured: a 250 ms item gets about a quarter of the 50 ms scans", async () => {
    const fast = await subscribe("chamber.pressure", 0);
    const slow = await subscribe("chamber.pressure", 250);
    const start = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await Promise.all([fast.stop(), slow.stop()]);
    const seconds = (Date.now() - start) / 1_000;
    expect(fast.values.length / seconds).toBeGreaterThan(12); // ~20 scans/s
    expect(slow.values.length / seconds).toBeLessThanOrEqual(5.5); // at most 4/s (+ the initial value)
    expect(slow.values.length).toBeGreaterThanOrEqual(3);
  });

  test("an absolute deadband filter drops changes smaller than the deadband", async () => {
    const filter = new DataChangeFilter({
      trigger: DataChangeTrigger.StatusValue,
      deadbandType: DeadbandType.Absolute,
      deadbandValue: 2,
    });
    const filtered = await subscribe("chamber.pressure", 0, filter);
    const all = await subscribe("chamber.pressure", 0);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await Promise.all([filtered.stop(), all.stop()]);
    expect(filtered.values.length).toBeGreaterThanOrEqual(3);
    expect(filtered.values.length).toBeLessThan(all.values.length / 2);
    const values = filtered.values.map((value) => value.value.value as number);
    for (let index = 1; index < values.length; index++) {
      expect(Math.abs(values[index]! - values[index - 1]!)).toBeGreaterThan(2);
    }
  });

  test("while the control system is stopped its frozen values are served uncertain (last usable value), good again once it runs", async () => {
    const read = () =>
      client.session.read({ nodeId: served.server.nodeIdOf("valve.ald1"), attributeId: AttributeIds.Value });
    expect((await read()).statusCode.value).toBe(QualityCodes.Good);
    await served.system.stop();
    const deadline = Date.now() + 3_000;
    let status = (await read()).statusCode.value;
    while (status === QualityCodes.Good && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = (await read()).statusCode.value;
    }
    expect(status).toBe(QualityCodes.UncertainNoCommunicationLastUsableValue);
    expect((await read()).value.value).toBe(false);
    await served.system.start();
    await waitFor(() => served.system.state === "running", "running");
    const until = Date.now() + 3_000;
    while ((await read()).statusCode.value !== QualityCodes.Good && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await read()).statusCode.value).toBe(QualityCodes.Good);
  });
});

describe("OpcuaServer authorizes reading (`read` of the system's role table) for Read, subscriptions and HistoryRead", () => {
  let rita: Awaited<ReturnType<typeof connect>>;
  beforeAll(async () => {
    rita = await connect(served.server, pki.trusted, user("rita"));
  });
  afterAll(async () => {
    await rita?.close();
  });
  const value = (tag: string) => ({ nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value });

  test("a Read of a tag's Value without `read` answers BadUserAccessDenied; the tag she may read answers its value", async () => {
    const [pressure, valve] = await rita.session.read([value("chamber.pressure"), value("valve.ald1")]);
    expect(pressure!.statusCode.value).toBe(QualityCodes.Good);
    expect(typeof pressure!.value.value).toBe("number");
    expect(valve!.statusCode).toBe(StatusCodes.BadUserAccessDenied);
    expect(valve!.value.value).toBeNull();
    // The viewer (read on every tag) still reads the valve.
    const [viewed] = await client.session.read([value("valve.ald1")]);
    expect(viewed!.statusCode.value).toBe(QualityCodes.Good);
  });

  test("she browses both tags (their nodes are not hidden) and reads their DisplayName; only the Value is guarded", async () => {
    for (const folder of ["chamber", "valve"]) {
      const browsed = await rita.session.browse({
        nodeId: `ns=${served.server.namespaceIndex};s=#${folder}`,
        browseDirection: BrowseDirection.Forward,
      });
      expect(browsed.statusCode, folder).toBe(StatusCodes.Good);
      expect(browsed.references?.map((reference) => reference.nodeId.toString())).toContain(
        served.server.nodeIdOf(folder === "chamber" ? "chamber.pressure" : "valve.ald1"),
      );
    }
    const [name] = await rita.session.read([
      { nodeId: served.server.nodeIdOf("valve.ald1"), attributeId: AttributeIds.DisplayName },
    ]);
    expect(name!.statusCode).toBe(StatusCodes.Good);
    // UserAccessLevel tells her before she reads: CurrentRead (bit 0) only on the chamber's tag.
    const levels = await rita.session.read(
      ["chamber.pressure", "valve.ald1"].map((tag) => ({
        nodeId: served.server.nodeIdOf(tag),
        attributeId: AttributeIds.UserAccessLevel,
      })),
    );
    expect(levels.map((level) => (level.value.value as number) & 1)).toEqual([1, 0]);
  });

  test("one CreateMonitoredItems call on both: the readable item is created and delivers, the other is refused BadUserAccessDenied", async () => {
    const subscription = await rita.session.createSubscription2({
      requestedPublishingInterval: 50,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    });
    try {
      // node-opcua's ClientSession type hides the raw service call its implementation has.
      const session = rita.session as unknown as {
        createMonitoredItems(request: CreateMonitoredItemsRequest): Promise<{
          results?: { statusCode: typeof StatusCodes.Good; monitoredItemId: number }[] | null;
        }>;
      };
      const response = await session.createMonitoredItems(
        new CreateMonitoredItemsRequest({
          subscriptionId: subscription.subscriptionId,
          timestampsToReturn: TimestampsToReturn.Both,
          itemsToCreate: ["chamber.pressure", "valve.ald1"].map((tag, index) => ({
            itemToMonitor: value(tag),
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: { clientHandle: index + 1, samplingInterval: 50, queueSize: 10, discardOldest: true },
          })),
        }),
      );
      const [pressure, valve] = response.results ?? [];
      expect(pressure!.statusCode).toBe(StatusCodes.Good);
      expect(pressure!.monitoredItemId).toBeGreaterThan(0);
      expect(valve!.statusCode).toBe(StatusCodes.BadUserAccessDenied);
      // The created one is sampled with her session: its values are the chamber's, good.
      const delivered = await subscription.monitor(
        value("chamber.pressure"),
        { samplingInterval: 50, queueSize: 10 },
        TimestampsToReturn.Both,
      );
      const first = await new Promise<DataValue>((resolve) => delivered.once("changed", resolve));
      expect(first.statusCode.value).toBe(QualityCodes.Good);
    } finally {
      await subscription.terminate();
    }
  });

  test("a HistoryRead of the tag without `read` answers BadUserAccessDenied, the chamber's does not (same role table, no `authorizer` option)", async () => {
    const now = Date.now();
    const response = await rita.session.historyRead(
      new HistoryReadRequest({
        historyReadDetails: new ReadRawModifiedDetails({
          startTime: new Date(now - 60_000),
          endTime: new Date(now),
          numValuesPerNode: 0,
          isReadModified: false,
          returnBounds: false,
        }),
        nodesToRead: [
          { nodeId: served.server.nodeIdOf("chamber.pressure") },
          { nodeId: served.server.nodeIdOf("valve.ald1") },
        ],
        timestampsToReturn: TimestampsToReturn.Source,
        releaseContinuationPoints: false,
      }),
    );
    const [pressure, valve] = response.results ?? [];
    expect(pressure!.statusCode).not.toBe(StatusCodes.BadUserAccessDenied);
    expect(valve!.statusCode).toBe(StatusCodes.BadUserAccessDenied);
  });
});

/** node-opcua's [high, low] words of a 64-bit integer as a bigint. */
function words(value: unknown): bigint {
  const [high, low] = value as [number, number];
  return (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
}
