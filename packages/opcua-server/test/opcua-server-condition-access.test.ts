import { defaultRoleTable, defineTags } from "@kiln/core";
import {
  AttributeIds,
  type ClientSession,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  MonitoringMode,
  PublishRequest,
  RepublishRequest,
  StatusCodes,
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
  revocableRead,
} from "./support/opcua-fixture";
import { rawEventSubscription, rawSession } from "./support/opcua-raw";

/**
 * An alarm condition mirrors its source tag's value (a BOOL alarm's ActiveState IS the tag's
 * value; a limit alarm's tells which side of the limit it is): its nodes are readable, and its
 * events delivered, only to a principal that may read the tag (ADR 0036, condition addendum).
 * rita (role chamber-reader) may read chamber.* only; olga (operator) may read every tag.
 */

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 }, unit: "bar" },
  "door.open": { dataType: "bool" },
});

const PRESSURE_HI = "chamber.pressure:HI";
const DOOR = "door.open:BOOL";
const FIELDS = ["EventId", "ConditionId", "ActiveState.Id", "Message", "Quality"] as const;

let pki: TestPki;
let served: ServedTestSystem;
let olga: Awaited<ReturnType<typeof connect>>;
let rita: Awaited<ReturnType<typeof connect>>;
/** Tags whose `read` the test revoked (the `authorizer` option asks it, then the role table). */
const revoked = new Set<string>();

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: {
      alarms: [
        { tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2, message: "chamber pressure high" },
        { tag: "door.open", kind: "BOOL", priority: 1, message: "door open" },
      ],
      authorization: {
        roles: { ...defaultRoleTable(), "chamber-reader": [{ permission: "read", targets: ["chamber.*"] }] },
      },
    },
    server: {
      authorizer: revocableRead(() => served.system, revoked),
    },
  });
  olga = await connect(served.server, pki.trusted, user("olga"));
  rita = await connect(served.server, pki.trusted, user("rita"));
}, 60_000);

afterAll(async () => {
  await Promise.all([olga?.close(), rita?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

function conditionId(alarmId: string): string {
  return `ns=${served.server.namespaceIndex};s=@Alarm.${alarmId}`;
}

/** The NodeId at a browse path of names under `nodeId` (Browse is not hidden: rita browses too). */
async function pathOf(session: ClientSession, nodeId: string, ...names: string[]): Promise<string> {
  let current = nodeId;
  for (const name of names) {
    const result = await session.browse({ nodeId: current, browseDirection: 0, resultMask: 63 });
    const reference = result.references?.find((candidate) => candidate.browseName.name === name);
    if (!reference) throw new Error(`no ${name} under ${current}`);
    current = reference.nodeId.toString();
  }
  return current;
}

async function readValues(session: ClientSession, nodeIds: string[]) {
  return session.read(nodeIds.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })));
}

const raw = rawSession;

/** A raw event subscription on the Server object (ns=0;i=2253) with {@link FIELDS}. */
async function eventSubscription(session: ClientSession): Promise<number> {
  return (await rawEventSubscription(session, FIELDS, 5)).subscriptionId;
}

interface Received {
  sequenceNumber: number;
  conditions: string[];
}

/** Publishes until `until` holds of what came (or `publishes` responses), acknowledging nothing. */
async function publishEvents(session: ClientSession, publishes: number, until?: (all: Received[]) => boolean) {
  const received: Received[] = [];
  for (let index = 0; index < publishes; index++) {
    const { notificationMessage } = await raw(session).publish(
      new PublishRequest({ subscriptionAcknowledgements: [] }),
    );
    const conditions = (notificationMessage.notificationData ?? [])
      .flatMap((data) => data?.events ?? [])
      .map((event) => String(event.eventFields?.[1]?.value));
    received.push({ sequenceNumber: notificationMessage.sequenceNumber, conditions });
    if (until?.(received)) break;
  }
  return received;
}

const conditionsIn = (received: Received[]) => received.flatMap((message) => message.conditions);

describe("an alarm condition is readable only by a principal that may read its source tag", () => {
  test("Read of the door condition's ActiveState/Id, Message and Quality: BadUserAccessDenied for rita, values for olga; the chamber's condition rita reads", async () => {
    served.plc.set("door.open", true);
    await waitFor(
      () => served.system.listAlarms().find((alarm) => alarm.id === DOOR)?.state.name === "unacknowledged",
      "the door alarm",
    );
    const door = [
      await pathOf(rita.session, conditionId(DOOR), "ActiveState", "Id"),
      await pathOf(rita.session, conditionId(DOOR), "Message"),
      await pathOf(rita.session, conditionId(DOOR), "Quality"),
    ];
    expect((await readValues(rita.session, door)).map((value) => value.statusCode)).toEqual(
      door.map(() => StatusCodes.BadUserAccessDenied),
    );
    const olgaReads = await readValues(olga.session, door);
    expect(olgaReads.map((value) => value.statusCode)).toEqual(door.map(() => StatusCodes.Good));
    expect(olgaReads[0]!.value.value).toBe(true);
    const chamber = await pathOf(rita.session, conditionId(PRESSURE_HI), "ActiveState", "Id");
    expect((await readValues(rita.session, [chamber]))[0]!.statusCode).toBe(StatusCodes.Good);
  });

  test("the limit alarm's LimitState and HighLimit follow its tag too: refused once rita's `read` of the chamber is revoked", async () => {
    const nodes = [
      await pathOf(rita.session, conditionId(PRESSURE_HI), "LimitState", "CurrentState"),
      await pathOf(rita.session, conditionId(PRESSURE_HI), "HighLimit"),
    ];
    expect((await readValues(rita.session, nodes)).map((value) => value.statusCode.isGood())).toEqual([true, true]);
    revoked.add("chamber.pressure");
    try {
      expect((await readValues(rita.session, nodes)).map((value) => value.statusCode)).toEqual(
        nodes.map(() => StatusCodes.BadUserAccessDenied),
      );
    } finally {
      revoked.delete("chamber.pressure");
    }
  });

  test("a monitored item on the door condition's ActiveState/Id is refused BadUserAccessDenied for rita", async () => {
    const { subscriptionId } = await raw(rita.session).createSubscription(
      new CreateSubscriptionRequest({
        requestedPublishingInterval: 100,
        requestedLifetimeCount: 600,
        requestedMaxKeepAliveCount: 5,
        publishingEnabled: true,
      }),
    );
    const created = await raw(rita.session).createMonitoredItems(
      new CreateMonitoredItemsRequest({
        subscriptionId,
        timestampsToReturn: TimestampsToReturn.Both,
        itemsToCreate: [
          {
            itemToMonitor: {
              nodeId: await pathOf(rita.session, conditionId(DOOR), "ActiveState", "Id"),
              attributeId: AttributeIds.Value,
            },
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: { clientHandle: 1, samplingInterval: 0, queueSize: 1, discardOldest: true },
          },
        ],
      }),
    );
    expect(created.results?.[0]?.statusCode).toBe(StatusCodes.BadUserAccessDenied);
  });
});

describe("condition events go only to sessions whose principal may read the alarm's source tag", () => {
  test("the door's events reach olga, not rita; the chamber's reach both", async () => {
    await eventSubscription(olga.session);
    await eventSubscription(rita.session);
    await publishEvents(olga.session, 3);
    await publishEvents(rita.session, 3);
    served.plc.set("door.open", false);
    served.plc.set("chamber.pressure", 7);
    const forOlga = await publishEvents(olga.session, 30, (all) =>
      [conditionId(DOOR), conditionId(PRESSURE_HI)].every((id) => conditionsIn(all).includes(id)),
    );
    expect(conditionsIn(forOlga)).toEqual(expect.arrayContaining([conditionId(DOOR), conditionId(PRESSURE_HI)]));
    const forRita = await publishEvents(rita.session, 30, (all) =>
      conditionsIn(all).includes(conditionId(PRESSURE_HI)),
    );
    expect(conditionsIn(forRita)).toContain(conditionId(PRESSURE_HI));
    expect(conditionsIn(forRita)).not.toContain(conditionId(DOOR));
  });

  test("ConditionRefresh sends rita the chamber's condition, not the door's", async () => {
    served.plc.set("door.open", true);
    await waitFor(
      () => served.system.listAlarms().find((alarm) => alarm.id === DOOR)?.state.name !== "normal",
      "the door alarm",
    );
    const subscriptionId = await eventSubscription(rita.session);
    await rita.session.call({
      objectId: "ns=0;i=2782", // ConditionType
      methodId: "ns=0;i=3875", // ConditionRefresh
      inputArguments: [{ dataType: 7, value: subscriptionId }],
    });
    const refreshed = await publishEvents(rita.session, 30, (all) =>
      conditionsIn(all).includes(conditionId(PRESSURE_HI)),
    );
    expect(conditionsIn(refreshed)).toContain(conditionId(PRESSURE_HI));
    expect(conditionsIn(refreshed)).not.toContain(conditionId(DOOR));
  });

  test("an event delivered before `read` of its tag is revoked is not republished after", async () => {
    const session = (await connect(served.server, pki.trusted, user("olga"))).session;
    try {
      const subscriptionId = await eventSubscription(session);
      await publishEvents(session, 2);
      served.plc.set("door.open", false);
      const received = await publishEvents(session, 30, (all) => conditionsIn(all).includes(conditionId(DOOR)));
      const message = received.find((candidate) => candidate.conditions.includes(conditionId(DOOR)))!;
      await expect(
        raw(session).republish(
          new RepublishRequest({ subscriptionId, retransmitSequenceNumber: message.sequenceNumber }),
        ),
      ).resolves.toBeDefined();
      revoked.add("door.open");
      await expect(
        raw(session).republish(
          new RepublishRequest({ subscriptionId, retransmitSequenceNumber: message.sequenceNumber }),
        ),
      ).rejects.toThrow(/BadMessageNotAvailable/);
    } finally {
      revoked.delete("door.open");
      await session.close().catch(() => undefined);
    }
  });
});
