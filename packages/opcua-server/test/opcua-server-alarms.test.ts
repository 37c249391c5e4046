import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  type ClientMonitoredItem,
  type ClientSubscription,
  constructEventFilter,
  DataType,
  StatusCodes,
  TimestampsToReturn,
  type Variant,
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
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 }, unit: "bar" },
  "door.open": { dataType: "bool" },
});

/** The fields a SCADA selects on the Server object's EventNotifier. */
const FIELDS = [
  "EventId",
  "EventType",
  "SourceName",
  "Message",
  "Severity",
  "ActiveState",
  "ActiveState.Id",
  "AckedState",
  "AckedState.Id",
  "Retain",
  "ShelvingState.CurrentState",
  "EnabledState.Id",
  "ClientUserId",
  "Comment",
  "Quality",
  "ConditionId",
] as const;

type Field = (typeof FIELDS)[number];
type ConditionEvent = Record<Field, unknown>;

const PRESSURE_HI = "chamber.pressure:HI";
const DOOR = "door.open:BOOL";
const REFRESH_START = "ns=0;i=2787";
const REFRESH_END = "ns=0;i=2788";

let pki: TestPki;
let served: ServedTestSystem;
let operator: Awaited<ReturnType<typeof connect>>;
let viewer: Awaited<ReturnType<typeof connect>>;
let admin: Awaited<ReturnType<typeof connect>>;
let scada: { subscription: ClientSubscription; item: ClientMonitoredItem; events: ConditionEvent[] };

async function subscribeToServerEvents(session: (typeof operator)["session"]): Promise<typeof scada> {
  const subscription = await session.createSubscription2({
    requestedPublishingInterval: 50,
    requestedMaxKeepAliveCount: 20,
    requestedLifetimeCount: 600,
    publishingEnabled: true,
  });
  const item = await subscription.monitor(
    { nodeId: "ns=0;i=2253", attributeId: AttributeIds.EventNotifier },
    { samplingInterval: 0, queueSize: 1000, filter: constructEventFilter([...FIELDS]) },
    TimestampsToReturn.Neither,
  );
  const events: ConditionEvent[] = [];
  item.on("changed", (fields: unknown) => {
    const values = fields as Variant[];
    const event = Object.fromEntries(FIELDS.map((name, index) => [name, values[index]?.value])) as ConditionEvent;
    events.push(event);
  });
  return { subscription, item, events };
}

function conditionId(alarmId: string): string {
  return `ns=${served.server.namespaceIndex};s=@Alarm.${alarmId}`;
}

async function childOf(nodeId: string, name: string): Promise<string> {
  const result = await operator.session.browse({ nodeId, browseDirection: 0, resultMask: 63 });
  const reference = result.references?.find((candidate) => candidate.browseName.name === name);
  if (!reference) throw new Error(`no ${name} under ${nodeId}`);
  return reference.nodeId.toString();
}

function shelvingStateOf(alarmId: string): Promise<string> {
  return childOf(conditionId(alarmId), "ShelvingState");
}

function eventsOf(alarmId: string, events: readonly ConditionEvent[] = scada.events): ConditionEvent[] {
  return events.filter((event) => String(event.ConditionId) === conditionId(alarmId));
}

function lastEventOf(alarmId: string): ConditionEvent | undefined {
  return eventsOf(alarmId).at(-1);
}

function kilnAlarm(alarmId: string) {
  return served.system.listAlarms().find((alarm) => alarm.id === alarmId)!;
}

async function audit(action: string): Promise<AuditEntry[]> {
  return (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) => entry.action === action);
}

async function acknowledge(client: typeof operator, alarmId: string, eventId: unknown, comment: string) {
  return client.session.call({
    objectId: conditionId(alarmId),
    methodId: "ns=0;i=9111", // AcknowledgeableConditionType.Acknowledge, as SCADAs call it
    inputArguments: [
      { dataType: DataType.ByteString, value: eventId },
      { dataType: DataType.LocalizedText, value: { text: comment } },
    ],
  });
}

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: {
      alarms: [
        {
          tag: "chamber.pressure",
          kind: "HI",
          setpoint: 5,
          deadband: 1,
          priority: 2,
          message: "chamber pressure high",
        },
        { tag: "chamber.pressure", kind: "HIHI", setpoint: 9, priority: 1 },
        { tag: "chamber.pressure", kind: "LO", setpoint: 0, priority: 4 },
        { tag: "door.open", kind: "BOOL", priority: 1, message: "door open" },
      ],
    },
  });
  operator = await connect(served.server, pki.trusted, user("olga"));
  viewer = await connect(served.server, pki.trusted, user("vic"));
  admin = await connect(served.server, pki.trusted, user("ada"));
  scada = await subscribeToServerEvents(operator.session);
}, 60_000);

afterAll(async () => {
  await scada?.subscription.terminate().catch(() => undefined);
  await Promise.all([operator?.close(), viewer?.close(), admin?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

describe("Kiln alarms as OPC UA Part 9 conditions", () => {
  test("each alarm is a condition of its tag's variable, of the Part 9 type for its kind", async () => {
    const pressure = `ns=${served.server.namespaceIndex};s=chamber.pressure`;
    const references = await operator.session.browse({
      nodeId: pressure,
      referenceTypeId: "ns=0;i=9006", // HasCondition
      browseDirection: 0,
      resultMask: 63,
    });
    expect(references.references?.map((reference) => reference.nodeId.toString()).sort()).toEqual(
      [conditionId(PRESSURE_HI), conditionId("chamber.pressure:HIHI"), conditionId("chamber.pressure:LO")].sort(),
    );
    const types = await operator.session.read([
      { nodeId: `${conditionId(PRESSURE_HI)}`, attributeId: AttributeIds.BrowseName },
      { nodeId: `${conditionId(DOOR)}`, attributeId: AttributeIds.BrowseName },
    ]);
    expect(types.map((value) => value.statusCode.isGood())).toEqual([true, true]);
    const typeOf = async (nodeId: string) =>
      (
        await operator.session.browse({ nodeId, referenceTypeId: "ns=0;i=40", browseDirection: 0, resultMask: 63 })
      ).references?.[0]?.nodeId.toString();
    expect(await typeOf(conditionId(PRESSURE_HI))).toBe("ns=0;i=9341"); // ExclusiveLimitAlarmType
    expect(await typeOf(conditionId("chamber.pressure:LO"))).toBe("ns=0;i=9341");
    expect(await typeOf(conditionId(DOOR))).toBe("ns=0;i=10637"); // OffNormalAlarmType
    // Each condition's SourceName variable holds its tag's whole name (a client reading it, not only the events).
    const sourceNames = await operator.session.read(
      await Promise.all(
        [PRESSURE_HI, DOOR].map(async (id) => ({
          nodeId: await childOf(conditionId(id), "SourceName"),
          attributeId: AttributeIds.Value,
        })),
      ),
    );
    expect(sourceNames.map((value) => value.value.value)).toEqual(["chamber.pressure", "door.open"]);
  });

  test("a value past the limit raises an event with the condition's fields", async () => {
    served.plc.set("chamber.pressure", 7);
    await waitFor(() => lastEventOf(PRESSURE_HI)?.["ActiveState.Id"] === true, "the raise event");
    const event = lastEventOf(PRESSURE_HI)!;
    expect(event).toMatchObject({
      "ActiveState.Id": true,
      "AckedState.Id": false,
      Retain: true,
      Severity: 700,
      "EnabledState.Id": true,
    });
    expect((event.Message as { text: string }).text).toBe("chamber pressure high");
    // SourceName is the tag's name, as an alarm list shows it (adv20k L1: it was the BrowseName "2:pressure").
    expect(event.SourceName).toBe("chamber.pressure");
    expect(String(event.EventType)).toBe("ns=0;i=9341");
    expect(Buffer.isBuffer(event.EventId)).toBe(true);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("unacknowledged");
    // Kiln's HIHI (setpoint 9) stays inactive at 7: each limit is its own condition.
    expect(eventsOf("chamber.pressure:HIHI")).toHaveLength(0);
  });

  test("a viewer's Acknowledge is refused BadUserAccessDenied, audited denied, and changes nothing", async () => {
    const before = eventsOf(PRESSURE_HI).length;
    const eventId = lastEventOf(PRESSURE_HI)!.EventId;
    const result = await acknowledge(viewer, PRESSURE_HI, eventId, "not mine to ack");
    expect(result.statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("unacknowledged");
    const entries = await audit("alarm.acknowledge");
    expect(entries.map((entry) => [entry.principal, entry.outcome])).toContainEqual(["vic", "denied"]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(eventsOf(PRESSURE_HI)).toHaveLength(before);
  });

  test("an operator's Acknowledge with the EventId acknowledges the Kiln alarm, audited with the session as source", async () => {
    const eventId = lastEventOf(PRESSURE_HI)!.EventId;
    const result = await acknowledge(operator, PRESSURE_HI, eventId, "seen, venting");
    expect(result.statusCode.value).toBe(StatusCodes.Good.value);
    expect(kilnAlarm(PRESSURE_HI)).toMatchObject({ state: { name: "acknowledged" }, ackedBy: "olga" });
    const allowed = (await audit("alarm.acknowledge")).filter((entry) => entry.outcome === "allowed");
    expect(allowed).toHaveLength(1);
    expect(allowed[0]!.principal).toBe("olga");
    expect(allowed[0]!.source).toMatch(/^opcua:session \S+ from [^ ]+ client urn:kiln-test:scada$/);
    await waitFor(() => lastEventOf(PRESSURE_HI)?.["AckedState.Id"] === true, "the acknowledge event");
    const event = lastEventOf(PRESSURE_HI)!;
    expect(event).toMatchObject({ "ActiveState.Id": true, Retain: true, ClientUserId: "olga" });
    expect((event.Comment as { text: string }).text).toBe("seen, venting");
    expect(allowed[0]!.reason).toBe("seen, venting");
  });

  test("acknowledging again, or with an unknown EventId, is refused and changes nothing", async () => {
    const eventId = lastEventOf(PRESSURE_HI)!.EventId;
    const again = await acknowledge(operator, PRESSURE_HI, eventId, "again");
    expect(again.statusCode.value).toBe(StatusCodes.BadConditionBranchAlreadyAcked.value);
    const unknown = await acknowledge(operator, PRESSURE_HI, Buffer.from("not an event id"), "?");
    expect(unknown.statusCode.value).toBe(StatusCodes.BadEventIdUnknown.value);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("acknowledged");
  });

  test("an Acknowledge with an unknown EventId is audited denied naming principal, alarm and reason; a viewer's is refused BadUserAccessDenied, audited too", async () => {
    const before = (await audit("alarm.acknowledge")).length;
    // The same kind of refusal as the test above's (another alarm) within 10 s: olga's is coalesced
    // into that window's summary (refusals are coalesced by what is refused, not by target).
    const unknown = await acknowledge(operator, "chamber.pressure:LO", Buffer.from("forged event id"), "?");
    expect(unknown.statusCode.value).toBe(StatusCodes.BadEventIdUnknown.value);
    const byViewer = await acknowledge(viewer, "chamber.pressure:LO", Buffer.from("forged event id"), "?");
    expect(byViewer.statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    // Each principal's first refusal of this kind has its entry (here or in an earlier test):
    // the same kind again within 10 s is counted in that window's summary, whatever the alarm.
    const entries = await audit("alarm.acknowledge");
    expect(before).toBeGreaterThan(0);
    const olgas = entries.filter((entry) => entry.principal === "olga" && /EventId/.test(entry.reason ?? ""));
    expect(olgas[0]).toMatchObject({ outcome: "denied" });
    expect(olgas[0]!.source).toMatch(/^opcua:session \S+ from [^ ]+ client urn:kiln-test:scada$/);
    const vics = entries.filter((entry) => entry.principal === "vic" && /KILN_FORBIDDEN/.test(entry.reason ?? ""));
    expect(vics[0]).toMatchObject({ outcome: "denied" });
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("acknowledged");
  });

  test("Confirm is not supported (Kiln's alarms have no confirmed state): BadNotSupported, audited; a viewer's BadUserAccessDenied, audited", async () => {
    const confirm = (client: typeof operator) =>
      client.session.call({
        objectId: conditionId(PRESSURE_HI),
        methodId: "ns=0;i=9113", // AcknowledgeableConditionType.Confirm
        inputArguments: [
          { dataType: DataType.ByteString, value: lastEventOf(PRESSURE_HI)!.EventId },
          { dataType: DataType.LocalizedText, value: { text: "confirmed" } },
        ],
      });
    expect((await confirm(operator)).statusCode.value).toBe(StatusCodes.BadNotSupported.value);
    expect((await confirm(viewer)).statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(await audit("alarm.confirm")).toMatchObject([
      {
        principal: "olga",
        target: PRESSURE_HI,
        outcome: "failed",
        reason: expect.stringMatching(/KILN_NOT_SUPPORTED/),
      },
      { principal: "vic", target: PRESSURE_HI, outcome: "denied", reason: expect.stringMatching(/KILN_FORBIDDEN/) },
    ]);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("acknowledged");
  });

  test("each limit alarm's limit Property (HighLimit, HighHighLimit, LowLimit) reads its definition's setpoint", async () => {
    for (const [alarmId, property, setpoint] of [
      [PRESSURE_HI, "HighLimit", 5],
      ["chamber.pressure:HIHI", "HighHighLimit", 9],
      ["chamber.pressure:LO", "LowLimit", 0],
    ] as const) {
      const nodeId = await childOf(conditionId(alarmId), property);
      const read = await viewer.session.read({ nodeId, attributeId: AttributeIds.Value });
      expect(read.statusCode, property).toBe(StatusCodes.Good);
      expect(read.value.value, property).toBe(setpoint);
    }
  });

  test("a value back under the limit clears: an event with ActiveState false and Retain false", async () => {
    // Under the setpoint but inside Kiln's deadband: Kiln keeps the alarm active, and so does the
    // condition (node-opcua's own limit check, which knows no deadband, is off).
    const before = eventsOf(PRESSURE_HI).length;
    served.plc.set("chamber.pressure", 4.5);
    await waitFor(() => served.system.cvt.get("chamber.pressure")?.value === 4.5, "the CVT at 4.5");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(kilnAlarm(PRESSURE_HI).active).toBe(true);
    expect(eventsOf(PRESSURE_HI)).toHaveLength(before);
    served.plc.set("chamber.pressure", 1);
    await waitFor(() => lastEventOf(PRESSURE_HI)?.["ActiveState.Id"] === false, "the clear event");
    expect(lastEventOf(PRESSURE_HI)).toMatchObject({ "AckedState.Id": true, Retain: false });
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("normal");
  });

  test("TimedShelve and Unshelve act on the Kiln alarm; a shelve beyond 365 days is refused", async () => {
    served.plc.set("door.open", true);
    await waitFor(() => lastEventOf(DOOR)?.["ActiveState.Id"] === true, "the door alarm");
    expect(lastEventOf(DOOR)!.Severity).toBe(900);
    const shelvingState = await shelvingStateOf(DOOR);
    const shelve = (durationMs: number) =>
      operator.session.call({
        objectId: shelvingState,
        methodId: "ns=0;i=2949", // ShelvedStateMachineType.TimedShelve
        inputArguments: [{ dataType: DataType.Double, value: durationMs }],
      });

    const tooLong = await shelve(366 * 24 * 60 * 60 * 1_000);
    expect(tooLong.statusCode.value).toBe(StatusCodes.BadShelvingTimeOutOfRange.value);
    expect(kilnAlarm(DOOR).state.name).toBe("unacknowledged");

    const byViewer = await viewer.session.call({
      objectId: shelvingState,
      methodId: "ns=0;i=2949",
      inputArguments: [{ dataType: DataType.Double, value: 60_000 }],
    });
    expect(byViewer.statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);

    const shelved = await shelve(60_000);
    expect(shelved.statusCode.value).toBe(StatusCodes.Good.value);
    expect(kilnAlarm(DOOR).state).toMatchObject({ name: "shelved", shelf: { mode: "timed", durationMs: 60_000 } });
    await waitFor(
      () => (lastEventOf(DOOR)?.["ShelvingState.CurrentState"] as { text?: string })?.text === "TimedShelved",
      "the shelve event",
    );

    const unshelved = await operator.session.call({
      objectId: shelvingState,
      methodId: "ns=0;i=2947", // ShelvedStateMachineType.Unshelve
      inputArguments: [],
    });
    expect(unshelved.statusCode.value).toBe(StatusCodes.Good.value);
    // ISA-18.2: an alarm unshelved by hand while active shows acknowledged (the operator has seen it).
    expect(kilnAlarm(DOOR).state.name).toBe("acknowledged");
    await waitFor(
      () => (lastEventOf(DOOR)?.["ShelvingState.CurrentState"] as { text?: string })?.text === "Unshelved",
      "the unshelve event",
    );
    const shelves = await audit("alarm.shelve");
    expect(shelves.map((entry) => [entry.principal, entry.outcome])).toEqual([
      ["olga", "denied"],
      ["vic", "denied"],
      ["olga", "allowed"],
    ]);
    expect((await audit("alarm.unshelve")).map((entry) => entry.outcome)).toEqual(["allowed"]);
  });

  test("a client that connects late gets the active conditions from ConditionRefresh", async () => {
    expect(kilnAlarm(DOOR).active).toBe(true);
    const late = await connect(served.server, pki.trusted, user("vic"));
    try {
      const subscriber = await subscribeToServerEvents(late.session);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(eventsOf(DOOR, subscriber.events)).toHaveLength(0);
      const result = await late.session.call({
        objectId: "ns=0;i=2782", // ConditionType
        methodId: "ns=0;i=3875", // ConditionType.ConditionRefresh
        inputArguments: [{ dataType: DataType.UInt32, value: subscriber.subscription.subscriptionId }],
      });
      expect(result.statusCode.value).toBe(StatusCodes.Good.value);
      await waitFor(
        () => subscriber.events.some((event) => String(event.EventType) === REFRESH_END),
        "RefreshEndEvent",
      );
      const types = subscriber.events.map((event) => String(event.EventType));
      const start = types.indexOf(REFRESH_START);
      const end = types.indexOf(REFRESH_END);
      expect(start).toBeGreaterThanOrEqual(0);
      const between = subscriber.events.slice(start + 1, end);
      const door = eventsOf(DOOR, between);
      expect(door).toHaveLength(1);
      expect(door[0]).toMatchObject({
        "ActiveState.Id": true,
        "AckedState.Id": true,
        Retain: true,
        Severity: 900,
        SourceName: "door.open",
      });
      // The cleared, acknowledged pressure alarm has Retain false: not resent.
      expect(eventsOf(PRESSURE_HI, between)).toHaveLength(0);
      await subscriber.subscription.terminate();
    } finally {
      await late.close();
    }
  });

  test("a timed shelf that runs out unshelves on Kiln's timer: an event shows the alarm unacknowledged again", async () => {
    const shelvingState = await shelvingStateOf(DOOR);
    const result = await operator.session.call({
      objectId: shelvingState,
      methodId: "ns=0;i=2949",
      inputArguments: [{ dataType: DataType.Double, value: 300 }],
    });
    expect(result.statusCode.value).toBe(StatusCodes.Good.value);
    await waitFor(
      () => (lastEventOf(DOOR)?.["ShelvingState.CurrentState"] as { text?: string })?.text === "TimedShelved",
      "the shelve event",
    );
    await waitFor(
      () => (lastEventOf(DOOR)?.["ShelvingState.CurrentState"] as { text?: string })?.text === "Unshelved",
      "the expiry event",
    );
    // ISA-18.2: a shelf that expires on an active alarm shows it unacknowledged; no user caused it.
    expect(kilnAlarm(DOOR).state.name).toBe("unacknowledged");
    expect(lastEventOf(DOOR)).toMatchObject({ "ActiveState.Id": true, "AckedState.Id": false, ClientUserId: "" });
  });

  test("Disable takes the Kiln alarm out of service (alarm.out-of-service), Enable returns it", async () => {
    const method = (client: typeof operator, id: number) =>
      client.session.call({ objectId: conditionId(PRESSURE_HI), methodId: `ns=0;i=${id}`, inputArguments: [] });
    const DISABLE = 9028; // ConditionType.Disable
    const ENABLE = 9027; // ConditionType.Enable
    expect((await method(operator, DISABLE)).statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("normal");
    expect((await method(admin, DISABLE)).statusCode.value).toBe(StatusCodes.Good.value);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("out-of-service");
    await waitFor(() => lastEventOf(PRESSURE_HI)?.["EnabledState.Id"] === false, "the disable event");
    expect((await method(admin, DISABLE)).statusCode.value).toBe(StatusCodes.BadConditionAlreadyDisabled.value);
    const eventId = lastEventOf(PRESSURE_HI)!.EventId;
    expect((await acknowledge(operator, PRESSURE_HI, eventId, "x")).statusCode.value).toBe(
      StatusCodes.BadConditionDisabled.value,
    );
    // A refusal made before Kiln's command is authorized first and audited all the same: the
    // viewer learns nothing of the condition's state.
    expect((await acknowledge(viewer, PRESSURE_HI, eventId, "x")).statusCode.value).toBe(
      StatusCodes.BadUserAccessDenied.value,
    );
    const oneShot = await operator.session.call({
      objectId: await shelvingStateOf(PRESSURE_HI),
      methodId: "ns=0;i=2948", // ShelvedStateMachineType.OneShotShelve
      inputArguments: [],
    });
    expect(oneShot.statusCode.value).toBe(StatusCodes.BadConditionDisabled.value);
    expect((await audit("opcua.Acknowledge")).map((entry) => [entry.principal, entry.target, entry.outcome])).toEqual([
      ["olga", PRESSURE_HI, expect.any(String)],
      ["vic", PRESSURE_HI, "denied"],
    ]);
    expect((await audit("opcua.OneShotShelve")).map((entry) => [entry.principal, entry.target])).toEqual([
      ["olga", PRESSURE_HI],
    ]);
    expect((await method(admin, ENABLE)).statusCode.value).toBe(StatusCodes.Good.value);
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("normal");
    await waitFor(() => lastEventOf(PRESSURE_HI)?.["EnabledState.Id"] === true, "the enable event");
    expect((await audit("alarm.out-of-service")).map((entry) => [entry.principal, entry.outcome])).toEqual([
      ["olga", "denied"],
      ["ada", "allowed"],
      ["ada", "denied"],
      ["ada", "allowed"],
    ]);
  });

  test("a condition Method of a type called on an object that is no condition answers BadNodeIdInvalid, audited; a machine Method called on another object answers BadMethodInvalid, audited, and runs nothing", async () => {
    const machine = `ns=${served.server.namespaceIndex};s=@Machine`;
    const calls = [
      {
        objectId: machine, // Acknowledge on the machine object
        methodId: "ns=0;i=9111",
        inputArguments: [
          { dataType: DataType.ByteString, value: Buffer.alloc(16) },
          { dataType: DataType.LocalizedText, value: { text: "x" } },
        ],
      },
      { objectId: "ns=0;i=2253", methodId: "ns=0;i=9028", inputArguments: [] }, // Disable on the Server object
    ];
    for (const call of calls) {
      const result = await admin.session.call(call);
      expect(result.statusCode.value, call.methodId).toBe(StatusCodes.BadNodeIdInvalid.value);
    }
    expect((await audit("opcua.Acknowledge")).filter((entry) => entry.target === machine)).toMatchObject([
      { principal: "ada" },
    ]);
    expect(await audit("opcua.Disable")).toMatchObject([{ principal: "ada", target: "ns=0;i=2253" }]);
    // Authorized first: an operator (no alarm.out-of-service) is refused BadUserAccessDenied, audited.
    const denied = await operator.session.call(calls[1]!);
    expect(denied.statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    expect((await audit("opcua.Disable")).map((entry) => entry.principal)).toEqual(["ada", "olga"]);
    const pause = await admin.session.call({
      objectId: "ns=0;i=2253",
      methodId: `ns=${served.server.namespaceIndex};s=@Machine.Pause`,
      inputArguments: [],
    });
    expect(pause.statusCode.value).toBe(StatusCodes.BadMethodInvalid.value);
    expect(await audit("opcua.Pause")).toMatchObject([{ principal: "ada", target: "ns=0;i=2253" }]);
    expect(await audit("recipe.pause")).toEqual([]);
  });

  test("each condition Method only on the object that declares it: Disable on the ShelvingState and TimedShelve on the condition answer BadMethodInvalid, audited, and act on nothing", async () => {
    const shelving = await shelvingStateOf(DOOR);
    const disable = await admin.session.call({ objectId: shelving, methodId: "ns=0;i=9028", inputArguments: [] });
    expect(disable.statusCode.value).toBe(StatusCodes.BadMethodInvalid.value);
    const shelve = await admin.session.call({
      objectId: conditionId(DOOR),
      methodId: "ns=0;i=2949", // ShelvedStateMachineType.TimedShelve
      inputArguments: [{ dataType: DataType.Double, value: 60_000 }],
    });
    expect(shelve.statusCode.value).toBe(StatusCodes.BadMethodInvalid.value);
    expect((await audit("opcua.Disable")).filter((entry) => entry.target === shelving)).toMatchObject([
      { principal: "ada" },
    ]);
    expect((await audit("opcua.TimedShelve")).filter((entry) => entry.target === conditionId(DOOR))).toMatchObject([
      { principal: "ada" },
    ]);
  });

  test("a call node-opcua refuses for its input arguments (missing, too many, wrong DataType) leaves one audit entry; a viewer's answers BadUserAccessDenied", async () => {
    const machine = `ns=${served.server.namespaceIndex};s=@Machine`;
    const missing = await operator.session.call({
      objectId: machine,
      methodId: `${machine}.StartRecipe`,
      inputArguments: [],
    });
    expect(missing.statusCode.value).toBe(StatusCodes.BadArgumentsMissing.value);
    const extra = await operator.session.call({
      objectId: machine,
      methodId: `${machine}.Pause`,
      inputArguments: [{ dataType: DataType.String, value: "x" }],
    });
    expect(extra.statusCode.value).toBe(StatusCodes.BadTooManyArguments.value);
    const wrongType = await operator.session.call({
      objectId: conditionId(DOOR),
      methodId: "ns=0;i=9111",
      inputArguments: [
        { dataType: DataType.String, value: "not an EventId" },
        { dataType: DataType.LocalizedText, value: { text: "x" } },
      ],
    });
    expect(wrongType.statusCode.value).not.toBe(StatusCodes.Good.value);
    const viewers = await viewer.session.call({
      objectId: machine,
      methodId: `${machine}.StartRecipe`,
      inputArguments: [],
    });
    expect(viewers.statusCode.value).toBe(StatusCodes.BadUserAccessDenied.value);
    expect((await audit("opcua.StartRecipe")).map((entry) => [entry.principal, entry.outcome])).toEqual([
      ["olga", expect.any(String)],
      ["vic", "denied"],
    ]);
    // The first refusal of its kind by the principal has its entry (it may name another target:
    // an earlier test's refusal of the same kind opened the window this one is counted in).
    expect((await audit("opcua.Pause")).filter((entry) => entry.principal === "olga").length).toBeGreaterThanOrEqual(1);
    expect((await audit("opcua.Acknowledge")).filter((entry) => entry.target === conditionId(DOOR))).toHaveLength(1);
    expect(await audit("recipe.start")).toEqual([]);
    // node-opcua's refusal of the object (a variable is no object to call on) is audited the same way.
    const pressure = served.server.nodeIdOf("chamber.pressure");
    const onVariable = await admin.session.call({ objectId: pressure, methodId: "ns=0;i=9028", inputArguments: [] });
    expect(onVariable.statusCode.value).toBe(StatusCodes.BadNodeIdInvalid.value);
    expect((await audit("opcua.Disable")).filter((entry) => entry.principal === "ada").length).toBeGreaterThanOrEqual(
      1,
    );
  });

  test("AddComment is not supported (Kiln keeps comments on its commands) and changes nothing", async () => {
    const eventId = lastEventOf(DOOR)!.EventId;
    const result = await operator.session.call({
      objectId: conditionId(DOOR),
      methodId: "ns=0;i=9029", // ConditionType.AddComment
      inputArguments: [
        { dataType: DataType.ByteString, value: eventId },
        { dataType: DataType.LocalizedText, value: { text: "note" } },
      ],
    });
    expect(result.statusCode.value).toBe(StatusCodes.BadNotSupported.value);
    expect(await audit("alarm.comment")).toMatchObject([
      { principal: "olga", target: DOOR, outcome: "failed", reason: expect.stringMatching(/KILN_NOT_SUPPORTED/) },
    ]);
  });
  test("OneShotShelve hides the next activation; the shelf ends when the alarm clears (Kiln's one-shot rule)", async () => {
    const shelvingState = await shelvingStateOf(PRESSURE_HI);
    const result = await operator.session.call({
      objectId: shelvingState,
      methodId: "ns=0;i=2948", // ShelvedStateMachineType.OneShotShelve
      inputArguments: [],
    });
    expect(result.statusCode.value).toBe(StatusCodes.Good.value);
    expect(kilnAlarm(PRESSURE_HI).state).toMatchObject({ name: "shelved", shelf: { mode: "one-shot" } });
    // UnshelveTime: a one-shot shelf is time-limited too, to 365 days (ISA-18.2), on Kiln's clock.
    const unshelveTime = await operator.session.read({
      nodeId: await childOf(shelvingState, "UnshelveTime"),
      attributeId: AttributeIds.Value,
    });
    expect(unshelveTime.statusCode.value).toBe(StatusCodes.Good.value);
    expect(unshelveTime.value.value).toBeGreaterThan(364 * 24 * 60 * 60 * 1_000);
    expect(unshelveTime.value.value).toBeLessThanOrEqual(365 * 24 * 60 * 60 * 1_000);
    served.plc.set("chamber.pressure", 7);
    await waitFor(() => lastEventOf(PRESSURE_HI)?.["ActiveState.Id"] === true, "the shelved raise");
    expect((lastEventOf(PRESSURE_HI)!["ShelvingState.CurrentState"] as { text: string }).text).toBe("OneShotShelved");
    served.plc.set("chamber.pressure", 1);
    await waitFor(
      () => (lastEventOf(PRESSURE_HI)?.["ShelvingState.CurrentState"] as { text?: string })?.text === "Unshelved",
      "the one-shot shelf ending",
    );
    expect(kilnAlarm(PRESSURE_HI).state.name).toBe("normal");
  });
});
