import { defineTags, KilnError } from "@kiln/core";
import {
  AttributeIds,
  type ClientSubscription,
  DataChangeFilter,
  DataChangeTrigger,
  type DataValue,
  DataType,
  DeadbandType,
  HistoryReadRequest,
  ModifyMonitoredItemsRequest,
  ReadRawModifiedDetails,
  type StatusCode,
  StatusCodes,
  TimestampsToReturn,
} from "node-opcua-client";
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from "vitest";
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
 * node-opcua runs a variable's value source (a `bindVariable` getter, a `refreshFunc`) on paths
 * no service catch covers: before a Read and a HistoryRead (its async refresh), in the Read
 * itself, and when a monitored item samples. A source that throws must answer that operation
 * Bad, and the server keeps serving. The source here is a condition's UnshelveTime, whose getter
 * asks the system's alarms (made to fail by the test). These run in the test worker's process:
 * an unhandled rejection fails the file.
 */

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 } },
  "chamber.free": { dataType: "float64" },
  "chamber.label": { dataType: "string" },
});

let pki: TestPki;
let served: ServedTestSystem;
let scada: Awaited<ReturnType<typeof connect>>;
let other: Awaited<ReturnType<typeof connect>>;
let unshelveTime: string;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: { alarms: [{ tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2 }] },
  });
  scada = await connect(served.server, pki.trusted, user("olga"));
  other = await connect(served.server, pki.trusted, user("vic"));
  const condition = `ns=${served.server.namespaceIndex};s=@Alarm.chamber.pressure:HI`;
  unshelveTime = await childOf(await childOf(condition, "ShelvingState"), "UnshelveTime");
}, 120_000);

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  await Promise.all([scada?.close(), other?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

async function childOf(nodeId: string, name: string): Promise<string> {
  const result = await scada.session.browse({ nodeId, browseDirection: 0, resultMask: 63 });
  const reference = result.references?.find((candidate) => candidate.browseName.name === name);
  if (!reference) throw new Error(`no ${name} under ${nodeId}`);
  return reference.nodeId.toString();
}

/** Makes the value source fail: every ask for the system's alarms throws `error`. */
function failSource(error: Error = new Error("alarm engine unavailable")): void {
  vi.spyOn(served.system, "listAlarms").mockImplementation(() => {
    throw error;
  });
}

/** `answer`, or a failure when the server has not answered within 5 s (node-opcua's request hung). */
async function answered<T>(answer: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error("the server did not answer within 5 s")), 5_000);
  });
  try {
    return await Promise.race([answer, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** Another client is still served: a Read of the server's CurrentTime is Good. */
async function otherClientServed(): Promise<void> {
  const value = await answered(other.session.read({ nodeId: "ns=0;i=2258", attributeId: AttributeIds.Value }));
  expect(value.statusCode).toBe(StatusCodes.Good);
}

describe("a value source that throws", () => {
  test("a Read answers BadInternalError for that node alone (node-opcua never answered and rejected unhandled)", async () => {
    served.plc.set("chamber.free", 3);
    await waitFor(() => served.system.cvt.get("chamber.free")?.value === 3, "the CVT to hold 3");
    failSource();
    const values = await answered(
      scada.session.read(
        [
          { nodeId: unshelveTime, attributeId: AttributeIds.Value },
          { nodeId: served.server.nodeIdOf("chamber.free"), attributeId: AttributeIds.Value },
        ],
        0,
      ),
    );
    expect(values.map((value) => value.statusCode)).toEqual([StatusCodes.BadInternalError, StatusCodes.Good]);
    expect(values[1]!.value.value).toBe(3);
    await otherClientServed();
  });

  test("a KilnError from the source answers its own StatusCode (KILN_NOT_CONNECTED: BadNotConnected)", async () => {
    failSource(new KilnError("KILN_NOT_CONNECTED", "alarm store not connected"));
    const value = await answered(scada.session.read({ nodeId: unshelveTime, attributeId: AttributeIds.Value }, 0));
    expect(value.statusCode).toBe(StatusCodes.BadNotConnected);
  });

  test("a HistoryRead naming the node answers for it (its refresh failure broke an assert: no answer, an unhandled rejection)", async () => {
    failSource();
    const response = await answered(
      scada.session.historyRead(
        new HistoryReadRequest({
          historyReadDetails: new ReadRawModifiedDetails({
            startTime: new Date(Date.now() - 60_000),
            endTime: new Date(),
            numValuesPerNode: 10,
          }),
          nodesToRead: [{ nodeId: unshelveTime }],
          timestampsToReturn: TimestampsToReturn.Source,
        }),
      ),
    );
    expect(response.results?.map((result) => result.statusCode)).toEqual([StatusCodes.BadHistoryOperationUnsupported]);
    await otherClientServed();
  });
});

describe("a monitored item whose value source throws", () => {
  let subscription: ClientSubscription | undefined;

  afterEach(async () => {
    await subscription?.terminate().catch(() => undefined);
    subscription = undefined;
  });

  async function monitorUnshelveTime(): Promise<StatusCode[]> {
    subscription = await scada.session.createSubscription2({
      requestedPublishingInterval: 50,
      requestedMaxKeepAliveCount: 20,
      requestedLifetimeCount: 600,
      publishingEnabled: true,
    });
    const item = await subscription.monitor(
      { nodeId: unshelveTime, attributeId: AttributeIds.Value },
      { samplingInterval: 50, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    const seen: StatusCode[] = [];
    item.on("changed", (value: DataValue) => seen.push(value.statusCode));
    return seen;
  }

  test("samples the failure as BadInternalError (node-opcua recorded nothing: the last value stood)", async () => {
    const seen = await monitorUnshelveTime();
    // Not shelved: UnshelveTime answers BadConditionNotShelved.
    await waitFor(() => seen.includes(StatusCodes.BadConditionNotShelved), "the item's first value");
    failSource();
    await waitFor(() => seen.includes(StatusCodes.BadInternalError), "the failure to be sampled");
    vi.restoreAllMocks();
    await waitFor(() => seen.at(-1) === StatusCodes.BadConditionNotShelved, "the source's recovery");
    await otherClientServed();
  });

  test("an item created while the source fails gets BadInternalError as its first value, not nothing", async () => {
    failSource();
    const seen = await monitorUnshelveTime();
    await waitFor(() => seen.length > 0, "the item's first value");
    expect(seen[0]).toBe(StatusCodes.BadInternalError);
  });
});

describe("ModifyMonitoredItems with a filter node-opcua refuses", () => {
  let subscription: ClientSubscription | undefined;

  afterEach(async () => {
    await subscription?.terminate().catch(() => undefined);
    subscription = undefined;
  });

  /** Monitors `tag` (every change, no filter), modifies it with `filter`; the modify's StatusCode and the values seen. */
  async function refusedModify(
    tag: string,
    filter: DataChangeFilter,
  ): Promise<{ statusCode: StatusCode; seen: unknown[] }> {
    subscription = await scada.session.createSubscription2({
      requestedPublishingInterval: 50,
      requestedMaxKeepAliveCount: 20,
      requestedLifetimeCount: 600,
      publishingEnabled: true,
    });
    const item = await subscription.monitor(
      { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
      { samplingInterval: 0, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    const seen: unknown[] = [];
    item.on("changed", (value: DataValue) => seen.push(value.value.value));
    const response = await (
      scada.session as unknown as {
        modifyMonitoredItems(request: ModifyMonitoredItemsRequest): Promise<{ results?: { statusCode: StatusCode }[] }>;
      }
    ).modifyMonitoredItems(
      new ModifyMonitoredItemsRequest({
        subscriptionId: subscription.subscriptionId,
        timestampsToReturn: TimestampsToReturn.Both,
        itemsToModify: [
          {
            monitoredItemId: item.monitoredItemId,
            requestedParameters: {
              clientHandle: 0,
              samplingInterval: 5_000,
              queueSize: 1,
              discardOldest: true,
              filter,
            },
          },
        ],
      }),
    );
    return { statusCode: response.results![0]!.statusCode, seen };
  }

  test("a Percent deadband on a tag without EURange is refused and the item keeps its filter: value changes are still reported", async () => {
    const { statusCode, seen } = await refusedModify(
      "chamber.free",
      // trigger Status: applied, it would report status changes only.
      new DataChangeFilter({
        trigger: DataChangeTrigger.Status,
        deadbandType: DeadbandType.Percent,
        deadbandValue: 10,
      }),
    );
    expect(statusCode).toBe(StatusCodes.BadMonitoredItemFilterUnsupported);
    served.plc.set("chamber.free", 41);
    await waitFor(() => seen.includes(41), "the change to 41 to be reported");
  });

  test("a deadband on a String tag is refused BadFilterNotAllowed and changes nothing", async () => {
    const { statusCode, seen } = await refusedModify(
      "chamber.label",
      new DataChangeFilter({
        trigger: DataChangeTrigger.Status,
        deadbandType: DeadbandType.Absolute,
        deadbandValue: 1,
      }),
    );
    expect(statusCode).toBe(StatusCodes.BadFilterNotAllowed);
    served.plc.set("chamber.label", "ALD-9");
    await waitFor(() => seen.includes("ALD-9"), "the change to ALD-9 to be reported");
  });
});

describe("Call of a namespace-0 Method with arguments of the wrong type or count (OPC UA Part 4, 5.11.2)", () => {
  const call = (methodId: string, inputArguments: { dataType: DataType; value: unknown }[]) =>
    scada.session.call({ objectId: "ns=0;i=2253", methodId, inputArguments });

  test("answers BadTypeMismatch, BadArgumentsMissing or BadTooManyArguments, never BadInternalError", async () => {
    const getMonitoredItems = "ns=0;i=11492";
    const wrongType = await call(getMonitoredItems, [{ dataType: DataType.String, value: "1" }]);
    expect(wrongType.statusCode).toBe(StatusCodes.BadTypeMismatch);
    expect(wrongType.inputArgumentResults).toEqual([StatusCodes.BadTypeMismatch]);
    expect((await call(getMonitoredItems, [])).statusCode).toBe(StatusCodes.BadArgumentsMissing);
    const two = [
      { dataType: DataType.UInt32, value: 1 },
      { dataType: DataType.UInt32, value: 1 },
    ];
    expect((await call(getMonitoredItems, two)).statusCode).toBe(StatusCodes.BadTooManyArguments);
    const resendData = await call("ns=0;i=12873", [{ dataType: DataType.Int32, value: 1 }]);
    expect(resendData.statusCode).toBe(StatusCodes.BadTypeMismatch);
    const durable = await call("ns=0;i=12749", [
      { dataType: DataType.UInt32, value: 1 },
      { dataType: DataType.String, value: "forever" },
    ]);
    expect(durable.inputArgumentResults).toEqual([StatusCodes.Good, StatusCodes.BadTypeMismatch]);
    const stateChange = await call("ns=0;i=12886", [{ dataType: DataType.Null, value: null }]);
    expect(stateChange.statusCode).toBe(StatusCodes.BadArgumentsMissing);
  });
});
