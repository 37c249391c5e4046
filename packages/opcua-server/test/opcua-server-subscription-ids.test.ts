import { defaultRoleTable, defineTags } from "@kiln/core";
import {
  AttributeIds,
  type ClientSession,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  DataType,
  DeleteMonitoredItemsRequest,
  DeleteSubscriptionsRequest,
  ModifyMonitoredItemsRequest,
  MonitoringMode,
  RepublishRequest,
  SetMonitoringModeRequest,
  SetTriggeringRequest,
  TimestampsToReturn,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { connect, makeTestPki, servedSystem, type ServedTestSystem, type TestPki, user } from "./support/opcua-fixture";
import { rawSession } from "./support/opcua-raw";

/**
 * Another session's subscription (and its monitored items) does not exist for a session: every
 * service or Server method taking a subscription or monitored item id answers for another
 * session's id exactly as for an id never used (ADR 0036, fix20i). node-opcua answered
 * BadUserAccessDenied for a live foreign id and BadSubscriptionIdInvalid for an unused one, and
 * ids count up, so a session could list which subscriptions the others hold right now.
 */

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
let pki: TestPki;
let served: ServedTestSystem;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki, system: { authorization: { roles: defaultRoleTable() } } });
}, 60_000);
afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

const GET_MONITORED_ITEMS = "ns=0;i=11492";
const RESEND_DATA = "ns=0;i=12873";
const SET_SUBSCRIPTION_DURABLE = "ns=0;i=12749";

async function subscribe(session: ClientSession): Promise<{ subscriptionId: number; itemId: number }> {
  const raw = rawSession(session);
  const { subscriptionId } = await raw.createSubscription(
    new CreateSubscriptionRequest({
      requestedPublishingInterval: 1000,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    }),
  );
  const created = await raw.createMonitoredItems(monitor(subscriptionId));
  return { subscriptionId, itemId: created.results?.[0]?.monitoredItemId ?? 0 };
}

function monitor(subscriptionId: number): CreateMonitoredItemsRequest {
  return new CreateMonitoredItemsRequest({
    subscriptionId,
    timestampsToReturn: TimestampsToReturn.Both,
    itemsToCreate: [
      {
        itemToMonitor: { nodeId: "ns=0;i=2258", attributeId: AttributeIds.Value },
        monitoringMode: MonitoringMode.Reporting,
        requestedParameters: { clientHandle: 1, samplingInterval: 1000, queueSize: 1, discardOldest: true },
      },
    ],
  });
}

/** The status names a request answers: the per-operation results, or the service fault's name. */
async function answer(request: () => Promise<unknown>): Promise<string> {
  try {
    const response = (await request()) as {
      statusCode?: { name: string };
      results?: ({ statusCode?: { name: string }; name?: string } | null)[] | null;
      addResults?: { name: string }[] | null;
      removeResults?: { name: string }[] | null;
    };
    const results = response.results?.map((result) => result?.statusCode?.name ?? result?.name);
    return JSON.stringify({
      statusCode: response.statusCode?.name,
      results,
      addResults: response.addResults?.map((result) => result.name),
      removeResults: response.removeResults?.map((result) => result.name),
    });
  } catch (error) {
    return /Bad[A-Za-z]+/.exec(String(error))?.[0] ?? String(error);
  }
}

/** Every call taking a subscription id (and a monitored item id), as `session` makes it. */
function callsWith(session: ClientSession, subscriptionId: number, itemId: number) {
  const raw = session as unknown as Record<string, (request: unknown) => Promise<unknown>>;
  const method = (methodId: string, ...extra: { dataType: DataType; value: number }[]) =>
    session.call({
      objectId: "ns=0;i=2253",
      methodId,
      inputArguments: [{ dataType: DataType.UInt32, value: subscriptionId }, ...extra],
    });
  return {
    GetMonitoredItems: () => method(GET_MONITORED_ITEMS),
    ResendData: () => method(RESEND_DATA),
    SetSubscriptionDurable: () => method(SET_SUBSCRIPTION_DURABLE, { dataType: DataType.UInt32, value: 1 }),
    TransferSubscriptions: () =>
      rawSession(session).transferSubscriptions({ subscriptionIds: [subscriptionId], sendInitialValues: false }),
    CreateMonitoredItems: () => rawSession(session).createMonitoredItems(monitor(subscriptionId)),
    ModifyMonitoredItems: () =>
      raw.modifyMonitoredItems!.call(
        session,
        new ModifyMonitoredItemsRequest({
          subscriptionId,
          timestampsToReturn: TimestampsToReturn.Both,
          itemsToModify: [
            { monitoredItemId: itemId, requestedParameters: { clientHandle: 2, samplingInterval: 500, queueSize: 1 } },
          ],
        }),
      ),
    SetMonitoringMode: () =>
      raw.setMonitoringMode!.call(
        session,
        new SetMonitoringModeRequest({
          subscriptionId,
          monitoringMode: MonitoringMode.Sampling,
          monitoredItemIds: [itemId],
        }),
      ),
    SetTriggering: () =>
      raw.setTriggering!.call(
        session,
        new SetTriggeringRequest({ subscriptionId, triggeringItemId: itemId, linksToAdd: [itemId], linksToRemove: [] }),
      ),
    Republish: () =>
      rawSession(session).republish(new RepublishRequest({ subscriptionId, retransmitSequenceNumber: 1 })),
    DeleteMonitoredItems: () =>
      raw.deleteMonitoredItems!.call(
        session,
        new DeleteMonitoredItemsRequest({ subscriptionId, monitoredItemIds: [itemId] }),
      ),
    DeleteSubscriptions: () =>
      raw.deleteSubscriptions!.call(session, new DeleteSubscriptionsRequest({ subscriptionIds: [subscriptionId] })),
  };
}

type CallName = keyof ReturnType<typeof callsWith>;
const SUBSCRIPTION_CALLS: CallName[] = [
  "GetMonitoredItems",
  "ResendData",
  "SetSubscriptionDurable",
  "TransferSubscriptions",
];
const ALL_CALLS: CallName[] = [
  ...SUBSCRIPTION_CALLS,
  "CreateMonitoredItems",
  "ModifyMonitoredItems",
  "SetMonitoringMode",
  "SetTriggering",
  "Republish",
  "DeleteMonitoredItems",
  "DeleteSubscriptions",
];

async function answers(
  session: ClientSession,
  subscriptionId: number,
  itemId: number,
  names: readonly CallName[],
): Promise<Record<string, string>> {
  const calls = callsWith(session, subscriptionId, itemId);
  const out: Record<string, string> = {};
  for (const name of names) out[name] = await answer(calls[name]);
  return out;
}

describe("another session's subscription answers as an id never used (ADR 0036, fix20i)", () => {
  test("GetMonitoredItems, ResendData, SetSubscriptionDurable and TransferSubscriptions with another user's live subscription id answer as for an unused id", async () => {
    const olga = await connect(served.server, pki.trusted, user("olga"));
    const ada = await connect(served.server, pki.trusted, user("ada"));
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const others = [await subscribe(olga.session), await subscribe(ada.session)];
      const own = await subscribe(vic.session);
      const unused = { subscriptionId: own.subscriptionId + 100_000, itemId: own.itemId + 100_000 };
      const never = await answers(vic.session, unused.subscriptionId, unused.itemId, SUBSCRIPTION_CALLS);
      expect(never.GetMonitoredItems).toContain("BadSubscriptionIdInvalid");
      for (const other of others) {
        expect(await answers(vic.session, other.subscriptionId, other.itemId, SUBSCRIPTION_CALLS)).toEqual(never);
      }
      // The other sessions' subscriptions are untouched, and one's own still answers.
      for (const [session, other] of [
        [olga, others[0]!],
        [ada, others[1]!],
      ] as const) {
        const listed = await session.session.call({
          objectId: "ns=0;i=2253",
          methodId: GET_MONITORED_ITEMS,
          inputArguments: [{ dataType: DataType.UInt32, value: other.subscriptionId }],
        });
        expect(listed.statusCode.name).toBe("Good");
        expect(listed.outputArguments?.[0]?.value).toEqual(new Uint32Array([other.itemId]));
      }
      const mine = await answers(vic.session, own.subscriptionId, own.itemId, ["GetMonitoredItems"]);
      expect(mine.GetMonitoredItems).toContain("Good");
    } finally {
      await Promise.all([olga.close(), ada.close(), vic.close()]);
    }
  }, 60_000);

  test("every call taking a subscription or monitored item id answers as for unused ids: with another session's live or deleted subscription, and with another session's item id in one's own subscription; the other's subscription is untouched", async () => {
    const olga = await connect(served.server, pki.trusted, user("olga"));
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const other = await subscribe(olga.session);
      const deleted = await subscribe(olga.session);
      await answer(() =>
        (olga.session as unknown as { deleteSubscriptions(r: unknown): Promise<unknown> }).deleteSubscriptions(
          new DeleteSubscriptionsRequest({ subscriptionIds: [deleted.subscriptionId] }),
        ),
      );
      const own = await subscribe(vic.session);
      const unused = { subscriptionId: own.subscriptionId + 100_000, itemId: own.itemId + 100_000 };
      const never = await answers(vic.session, unused.subscriptionId, unused.itemId, ALL_CALLS);
      expect(await answers(vic.session, deleted.subscriptionId, deleted.itemId, ALL_CALLS)).toEqual(never);
      expect(await answers(vic.session, other.subscriptionId, other.itemId, ALL_CALLS)).toEqual(never);
      // Another session's item id inside one's own subscription is an unknown item id. (The
      // subscription-wide calls are left out: they act on one's own subscription.)
      const itemCalls: CallName[] = [
        "ModifyMonitoredItems",
        "SetMonitoringMode",
        "SetTriggering",
        "DeleteMonitoredItems",
      ];
      const ownNever = await answers(vic.session, own.subscriptionId, unused.itemId, itemCalls);
      expect(await answers(vic.session, own.subscriptionId, other.itemId, itemCalls)).toEqual(ownNever);
      const listed = await olga.session.call({
        objectId: "ns=0;i=2253",
        methodId: GET_MONITORED_ITEMS,
        inputArguments: [{ dataType: DataType.UInt32, value: other.subscriptionId }],
      });
      expect(listed.statusCode.name).toBe("Good");
      expect(listed.outputArguments?.[0]?.value).toEqual(new Uint32Array([other.itemId]));
    } finally {
      await Promise.all([olga.close(), vic.close()]);
    }
  }, 60_000);

  test("a second session of the same user may still take over the subscription (OPC UA Part 4, 5.13.7)", async () => {
    const first = await connect(served.server, pki.trusted, user("vic"));
    const second = await connect(served.server, pki.trusted, user("vic"));
    try {
      const own = await subscribe(first.session);
      const transferred = await rawSession(second.session).transferSubscriptions({
        subscriptionIds: [own.subscriptionId],
        sendInitialValues: false,
      });
      expect(transferred.results?.[0]?.statusCode.name).toBe("Good");
      const listed = await second.session.call({
        objectId: "ns=0;i=2253",
        methodId: GET_MONITORED_ITEMS,
        inputArguments: [{ dataType: DataType.UInt32, value: own.subscriptionId }],
      });
      expect(listed.statusCode.name).toBe("Good");
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  }, 60_000);
});
