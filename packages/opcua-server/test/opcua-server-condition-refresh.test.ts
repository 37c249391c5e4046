import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { type ClientSession, DataType, PublishRequest, type StatusCode, StatusCodes } from "node-opcua-client";
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
import { rawEventSubscription, rawSession } from "./support/opcua-raw";

/**
 * ConditionRefresh and ConditionRefresh2 (OPC UA Part 9, 5.5.7, 5.5.8) act on the caller's own
 * subscription only: node-opcua's check of the subscription id is a stub, and its refresh went to
 * every session's event items (pushing real alarm events out of their queues), unaudited.
 */

const tags = defineTags({ "door.open": { dataType: "bool" } });
const REFRESH_START = "ns=0;i=2787";
const REFRESH_END = "ns=0;i=2788";
const CONDITION_TYPE = "ns=0;i=2782";
const CONDITION_REFRESH = "ns=0;i=3875";
const CONDITION_REFRESH2 = "ns=0;i=12912";

let pki: TestPki;
let served: ServedTestSystem;
let olga: Awaited<ReturnType<typeof connect>>;
let ada: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: { alarms: [{ tag: "door.open", kind: "BOOL", priority: 1, message: "door open" }] },
    server: { limits: { minConditionRefreshIntervalMs: 60_000 } },
  });
  served.plc.set("door.open", true);
  await waitFor(() => served.system.listAlarms().some((alarm) => alarm.state.name !== "normal"), "the door alarm");
  olga = await connect(served.server, pki.trusted, user("olga"));
  ada = await connect(served.server, pki.trusted, user("ada"));
}, 60_000);

afterAll(async () => {
  await Promise.all([olga?.close(), ada?.close()]);
  await served?.dispose();
  await pki?.dispose();
});

/** A subscription with one event item on the Server object (EventType, ConditionId); its ids. */
function eventSubscription(session: ClientSession): Promise<{ subscriptionId: number; itemId: number }> {
  return rawEventSubscription(session, ["EventType", "ConditionId"], 4);
}

/** The events the session's subscriptions deliver in `publishes` Publish responses: `<subscriptionId> <EventType>`. */
async function eventTypes(session: ClientSession, publishes: number): Promise<string[]> {
  const types: string[] = [];
  for (let index = 0; index < publishes; index++) {
    const response = (await rawSession(session).publish(
      new PublishRequest({ subscriptionAcknowledgements: [] }),
    )) as Awaited<ReturnType<ReturnType<typeof rawSession>["publish"]>> & { subscriptionId: number };
    for (const data of response.notificationMessage.notificationData ?? []) {
      for (const event of data?.events ?? []) {
        types.push(`${response.subscriptionId} ${String(event.eventFields?.[0]?.value)}`);
      }
    }
  }
  return types;
}

async function refresh(session: ClientSession, ...ids: number[]): Promise<StatusCode> {
  const result = await session.call({
    objectId: CONDITION_TYPE,
    methodId: ids.length === 1 ? CONDITION_REFRESH : CONDITION_REFRESH2,
    inputArguments: ids.map((value) => ({ dataType: DataType.UInt32, value })),
  });
  return result.statusCode;
}

async function audited(action: string): Promise<AuditEntry[]> {
  return (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) => entry.action === action);
}

describe("ConditionRefresh acts on the caller's own subscription only", () => {
  test("another session's subscription id: BadSubscriptionIdInvalid, its owner receives nothing, audited once however often", async () => {
    const victim = await eventSubscription(ada.session);
    await eventTypes(ada.session, 2); // whatever the creation brought
    const before = (await audited("opcua.ConditionRefresh")).length;
    for (let index = 0; index < 5; index++) {
      expect(await refresh(olga.session, victim.subscriptionId)).toBe(StatusCodes.BadSubscriptionIdInvalid);
    }
    expect(await eventTypes(ada.session, 2)).not.toContain(`${victim.subscriptionId} ${REFRESH_START}`);
    const entries = (await audited("opcua.ConditionRefresh")).slice(before);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.principal).toBe("olga");
  });

  test("a refresh of the caller's own subscription reaches it, not the caller's other subscription; a second one within the interval is BadRefreshInProgress", async () => {
    const mine = await eventSubscription(olga.session);
    const other = await eventSubscription(olga.session);
    await eventTypes(olga.session, 2);
    expect(await refresh(olga.session, mine.subscriptionId)).toBe(StatusCodes.Good);
    const types = await eventTypes(olga.session, 6);
    expect(types).toContain(`${mine.subscriptionId} ${REFRESH_START}`);
    expect(types).toContain(`${mine.subscriptionId} ${REFRESH_END}`);
    expect(types.filter((type) => type.startsWith(`${other.subscriptionId} `))).toEqual([]);
    expect(await refresh(olga.session, mine.subscriptionId)).toBe(StatusCodes.BadRefreshInProgress);
  });

  test("ConditionRefresh2 with another session's monitored item id: BadMonitoredItemIdInvalid", async () => {
    const victim = await eventSubscription(ada.session);
    const own = await eventSubscription(ada.session);
    // vic has no subscription of ada's: the subscription id is checked first.
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      expect(await refresh(vic.session, victim.subscriptionId, victim.itemId)).toBe(
        StatusCodes.BadSubscriptionIdInvalid,
      );
    } finally {
      await vic.close();
    }
    expect(await refresh(ada.session, own.subscriptionId, victim.itemId)).toBe(StatusCodes.BadMonitoredItemIdInvalid);
  });
});
