import { defaultRoleTable, defineTags } from "@kiln/core";
import {
  AttributeIds,
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
  revocableRead,
} from "./support/opcua-fixture";
import { type RawNotificationMessage, type RawSession, rawSession } from "./support/opcua-raw";

/**
 * Republish (OPC UA Part 4, 5.13.6) hands out a subscription's retransmission queue: messages
 * produced for the principal the session had then. Each case first shows the message IS
 * available (so a refusal after the change is the check, not an empty queue).
 */

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar" },
  "secret.recipe": { dataType: "float64" },
});

let pki: TestPki;
let served: ServedTestSystem;
/** Tags whose `read` the test revoked (the `authorizer` option asks it, then the role table). */
const revoked = new Set<string>();

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    sources: {
      "chamber.pressure": { kind: "sine", amplitude: 4, offset: 5, periodMs: 1_000 },
      "secret.recipe": { kind: "sine", amplitude: 10, offset: 100, periodMs: 1_000 },
    },
    system: {
      authorization: {
        roles: { ...defaultRoleTable(), "chamber-reader": [{ permission: "read", targets: ["chamber.*"] }] },
      },
    },
    server: {
      authorizer: revocableRead(() => served.system, revoked),
    },
  });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

type Client = Awaited<ReturnType<typeof connect>>;

const raw = (client: Client): RawSession => rawSession(client.session);

/** A subscription with one item on the tag's Value, and the first message with a value (not acknowledged). */
async function subscribed(client: Client, tag: string): Promise<{ subscriptionId: number; sequenceNumber: number }> {
  const { subscriptionId } = await raw(client).createSubscription(
    new CreateSubscriptionRequest({
      requestedPublishingInterval: 100,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    }),
  );
  const created = await raw(client).createMonitoredItems(
    new CreateMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Both,
      itemsToCreate: [
        {
          itemToMonitor: { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
          monitoringMode: MonitoringMode.Reporting,
          requestedParameters: { clientHandle: 1, samplingInterval: 0, queueSize: 10, discardOldest: true },
        },
      ],
    }),
  );
  expect(created.results?.[0]?.statusCode).toBe(StatusCodes.Good);
  // A Publish answers for any subscription of the session: only a message of this one counts (the
  // session's other subscription may answer first, and its sequence number is not this one's).
  for (let attempt = 0; attempt < 10; attempt++) {
    const answer = await raw(client).publish(new PublishRequest({ subscriptionAcknowledgements: [] }));
    const { notificationMessage } = answer;
    if (answer.subscriptionId === subscriptionId && goodValues(notificationMessage).length > 0)
      return { subscriptionId, sequenceNumber: notificationMessage.sequenceNumber };
  }
  throw new Error("no good value published");
}

function goodValues(message: RawNotificationMessage): unknown[] {
  return (message.notificationData ?? [])
    .flatMap((data) => data?.monitoredItems ?? [])
    .filter((item) => item.value.statusCode.isGood())
    .map((item) => item.value.value.value as unknown);
}

/** The good values a Republish hands out, or the StatusCode it was refused with. */
async function republish(
  client: Client,
  subscriptionId: number,
  sequenceNumber: number,
): Promise<{ values: unknown[] } | { refused: string }> {
  try {
    const { notificationMessage } = await raw(client).republish(
      new RepublishRequest({ subscriptionId, retransmitSequenceNumber: sequenceNumber }),
    );
    return { values: goodValues(notificationMessage) };
  } catch (error) {
    return { refused: /Bad\w+/.exec(String(error))?.[0] ?? String(error) };
  }
}

describe("Republish hands out no message produced for another principal or a revoked grant", () => {
  test("after ActivateSession with a principal without `read`, Republish of an earlier message answers BadMessageNotAvailable", async () => {
    const client = await connect(served.server, pki.trusted, user("olga"));
    try {
      const { subscriptionId, sequenceNumber } = await subscribed(client, "secret.recipe");
      const before = await republish(client, subscriptionId, sequenceNumber);
      expect("values" in before && before.values.length).toBeGreaterThan(0);
      // rita (chamber-reader) may read chamber.* only.
      expect(await client.session.changeUser(user("rita"))).toBe(StatusCodes.Good);
      expect(await republish(client, subscriptionId, sequenceNumber)).toEqual({ refused: "BadMessageNotAvailable" });
    } finally {
      await client.close();
    }
  });

  test("after `read` is revoked, Republish of an earlier message answers BadMessageNotAvailable; a readable tag's message is still republished", async () => {
    const client = await connect(served.server, pki.trusted, user("olga"));
    try {
      const secret = await subscribed(client, "secret.recipe");
      const chamber = await subscribed(client, "chamber.pressure");
      revoked.add("secret.recipe");
      expect(await republish(client, secret.subscriptionId, secret.sequenceNumber)).toEqual({
        refused: "BadMessageNotAvailable",
      });
      const still = await republish(client, chamber.subscriptionId, chamber.sequenceNumber);
      expect("values" in still && still.values.length).toBeGreaterThan(0);
    } finally {
      revoked.delete("secret.recipe");
      await client.close();
    }
  });

  test("after ActivateSession with another principal that may read the tag too, the former principal's messages are not republished", async () => {
    const client = await connect(served.server, pki.trusted, user("olga"));
    try {
      const { subscriptionId, sequenceNumber } = await subscribed(client, "chamber.pressure");
      expect(await client.session.changeUser(user("rita"))).toBe(StatusCodes.Good);
      expect(await republish(client, subscriptionId, sequenceNumber)).toEqual({ refused: "BadMessageNotAvailable" });
      // The new principal is served the current value afresh.
      const { notificationMessage } = await raw(client).publish(
        new PublishRequest({ subscriptionAcknowledgements: [] }),
      );
      expect(goodValues(notificationMessage).length).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  });

  test("a reconnect as the same principal (ActivateSession, same user) keeps the retransmission queue", async () => {
    const client = await connect(served.server, pki.trusted, user("olga"));
    try {
      const { subscriptionId, sequenceNumber } = await subscribed(client, "secret.recipe");
      expect(await client.session.changeUser(user("olga"))).toBe(StatusCodes.Good);
      const again = await republish(client, subscriptionId, sequenceNumber);
      expect("values" in again && again.values.length).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  });

  test("values already taken for a Publish but left pending (maxNotificationsPerPublish) are not sent after `read` is revoked", async () => {
    const client = await connect(served.server, pki.trusted, user("olga"));
    try {
      const { subscriptionId } = await raw(client).createSubscription(
        new CreateSubscriptionRequest({
          requestedPublishingInterval: 100,
          requestedLifetimeCount: 600,
          requestedMaxKeepAliveCount: 10,
          maxNotificationsPerPublish: 1,
          publishingEnabled: true,
        }),
      );
      const created = await raw(client).createMonitoredItems(
        new CreateMonitoredItemsRequest({
          subscriptionId,
          timestampsToReturn: TimestampsToReturn.Both,
          itemsToCreate: [1, 2, 3].map((clientHandle) => ({
            itemToMonitor: { nodeId: served.server.nodeIdOf("secret.recipe"), attributeId: AttributeIds.Value },
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: { clientHandle, samplingInterval: 0, queueSize: 10, discardOldest: true },
          })),
        }),
      );
      expect(created.results?.map((result) => result.statusCode)).toEqual([1, 2, 3].map(() => StatusCodes.Good));
      const first = await raw(client).publish(new PublishRequest({ subscriptionAcknowledgements: [] }));
      expect(goodValues(first.notificationMessage)).toHaveLength(1);
      expect(first.moreNotifications).toBe(true); // the other items' values wait in the subscription
      revoked.add("secret.recipe");
      const next = await raw(client).publish(new PublishRequest({ subscriptionAcknowledgements: [] }));
      expect(goodValues(next.notificationMessage)).toEqual([]);
      const refused = (next.notificationMessage.notificationData ?? []).flatMap((data) => data?.monitoredItems ?? []);
      expect(refused.map((item) => item.value.statusCode)).toEqual([StatusCodes.BadUserAccessDenied]);
    } finally {
      revoked.delete("secret.recipe");
      await client.close();
    }
  });

  test("TransferSubscriptions to another user's session is refused as an unknown id (ADR 0036, fix20i): it gets neither the queued messages nor new ones", async () => {
    const olga = await connect(served.server, pki.trusted, user("olga"));
    const rita = await connect(served.server, pki.trusted, user("rita"));
    try {
      const { subscriptionId, sequenceNumber } = await subscribed(olga, "secret.recipe");
      const transferred = await raw(rita).transferSubscriptions({
        subscriptionIds: [subscriptionId],
        sendInitialValues: true,
      });
      expect(transferred.results?.[0]?.statusCode).toBe(StatusCodes.BadSubscriptionIdInvalid);
      expect(await republish(rita, subscriptionId, sequenceNumber)).toEqual({ refused: "BadSubscriptionIdInvalid" });
      const before = await republish(olga, subscriptionId, sequenceNumber);
      expect("values" in before && before.values.length).toBeGreaterThan(0);
    } finally {
      await olga.close();
      await rita.close();
    }
  });
});
