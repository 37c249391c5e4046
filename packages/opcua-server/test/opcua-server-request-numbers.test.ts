import { defineTags } from "@kiln/core";
import {
  AggregateFilter,
  AttributeIds,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  type CreateSubscriptionResponse,
  type DataValue,
  DataChangeFilter,
  DataChangeTrigger,
  DeadbandType,
  MessageSecurityMode,
  ModifyMonitoredItemsRequest,
  MonitoringMode,
  OPCUAClient,
  PublishRequest,
  SecurityPolicy,
  StatusCodes,
  type StatusCode,
  TimestampsToReturn,
  UserTokenType,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  identify as baseIdentify,
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
} from "./support/opcua-fixture";
import { rawSession } from "./support/opcua-raw";

/**
 * node-opcua's server asserts that a monitored item's numbers are finite (samplingInterval,
 * deadbandValue, the difference of two values under a deadband); a failed assert is an exception
 * out of the service handler or a value callback, which ended the process. These run in the test
 * worker's process: a crash fails the file.
 */

const tags = defineTags({
  "chamber.free": { dataType: "float64" },
  "chamber.ranged": { dataType: "float64", range: { min: 0, max: 1000 } },
  "chamber.label": { dataType: "string" },
});

let pki: TestPki;
let served: ServedTestSystem;
let vic: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki });
  vic = await connect(served.server, pki.trusted, user("vic")); // a viewer: any signed-in user
}, 60_000);

afterAll(async () => {
  await vic?.close();
  await served?.dispose();
  await pki?.dispose();
});

interface ItemAnswer {
  statusCode: StatusCode;
  monitoredItemId: number;
  revisedSamplingInterval: number;
  revisedQueueSize: number;
}

const session = () =>
  vic.session as unknown as {
    performMessageTransaction(request: unknown): Promise<unknown>;
    createMonitoredItems(request: CreateMonitoredItemsRequest): Promise<{ results: ItemAnswer[] }>;
    modifyMonitoredItems(request: ModifyMonitoredItemsRequest): Promise<{ results: ItemAnswer[] }>;
  };

async function subscription(requestedPublishingInterval = 100): Promise<CreateSubscriptionResponse> {
  return (await session().performMessageTransaction(
    new CreateSubscriptionRequest({
      requestedPublishingInterval,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    }),
  )) as CreateSubscriptionResponse;
}

const parameters = (
  samplingInterval: number,
  filter: DataChangeFilter | AggregateFilter | null = null,
  queueSize = 10,
  clientHandle = 1,
) => ({
  clientHandle,
  samplingInterval,
  queueSize,
  discardOldest: true,
  filter,
});

async function create(
  subscriptionId: number,
  tag: string,
  samplingInterval: number,
  filter: DataChangeFilter | AggregateFilter | null = null,
  queueSize = 10,
  clientHandle = 1,
): Promise<ItemAnswer> {
  const answer = await session().createMonitoredItems(
    new CreateMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Both,
      itemsToCreate: [
        {
          itemToMonitor: { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
          monitoringMode: MonitoringMode.Reporting,
          requestedParameters: parameters(samplingInterval, filter, queueSize, clientHandle),
        },
      ],
    }),
  );
  return answer.results[0]!;
}

async function modify(
  subscriptionId: number,
  monitoredItemId: number,
  samplingInterval: number,
  filter: DataChangeFilter | AggregateFilter | null = null,
): Promise<ItemAnswer> {
  const answer = await session().modifyMonitoredItems(
    new ModifyMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Both,
      itemsToModify: [{ monitoredItemId, requestedParameters: parameters(samplingInterval, filter) }],
    }),
  );
  return answer.results[0]!;
}

const deadband = (deadbandType: DeadbandType, deadbandValue: number) =>
  new DataChangeFilter({ trigger: DataChangeTrigger.StatusValue, deadbandType, deadbandValue });

/** The server still answers: a Read of a tag is Good. */
async function stillServing(): Promise<void> {
  const [value] = await vic.session.read([{ nodeId: served.server.nodeIdOf("chamber.free"), attributeId: 13 }]);
  expect(value!.statusCode.isGoodish() || value!.statusCode.isBad()).toBe(true);
}

describe("sampling interval and queue size", () => {
  test("CreateMonitoredItems with samplingInterval NaN is revised to the publishing interval, not a crash", async () => {
    const { subscriptionId, revisedPublishingInterval } = await subscription();
    const created = await create(subscriptionId, "chamber.free", Number.NaN);
    expect(created.statusCode).toBe(StatusCodes.Good);
    expect(created.revisedSamplingInterval).toBe(revisedPublishingInterval);
    await stillServing();
  });

  test("ModifyMonitoredItems with samplingInterval NaN, −5, −∞ or +∞ is revised, not a crash", async () => {
    const { subscriptionId, revisedPublishingInterval } = await subscription();
    const created = await create(subscriptionId, "chamber.free", 100);
    for (const requested of [Number.NaN, -5, Number.NEGATIVE_INFINITY]) {
      const modified = await modify(subscriptionId, created.monitoredItemId, requested);
      expect(modified.statusCode).toBe(StatusCodes.Good);
      expect(modified.revisedSamplingInterval).toBe(revisedPublishingInterval);
    }
    const slowest = await modify(subscriptionId, created.monitoredItemId, Number.POSITIVE_INFINITY);
    expect(slowest.statusCode).toBe(StatusCodes.Good);
    expect(Number.isFinite(slowest.revisedSamplingInterval)).toBe(true);
    await stillServing();
  });

  test("a queue size of 2^32−1 is revised down; a publishing interval NaN in CreateSubscription is revised", async () => {
    const { subscriptionId, revisedPublishingInterval } = await subscription(Number.NaN);
    expect(Number.isFinite(revisedPublishingInterval)).toBe(true);
    const created = await create(subscriptionId, "chamber.free", 100, null, 0xffffffff);
    expect(created.statusCode).toBe(StatusCodes.Good);
    expect(created.revisedQueueSize).toBeLessThanOrEqual(100);
    await stillServing();
  });
});

describe("deadband filters", () => {
  test("an absolute deadband NaN (or −1, or +∞) is refused BadDeadbandFilterInvalid on create and on modify", async () => {
    const { subscriptionId } = await subscription();
    for (const value of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      expect((await create(subscriptionId, "chamber.free", 0, deadband(DeadbandType.Absolute, value))).statusCode).toBe(
        StatusCodes.BadDeadbandFilterInvalid,
      );
    }
    const created = await create(subscriptionId, "chamber.free", 0, deadband(DeadbandType.Absolute, 1));
    expect(created.statusCode).toBe(StatusCodes.Good);
    const modified = await modify(
      subscriptionId,
      created.monitoredItemId,
      0,
      deadband(DeadbandType.Absolute, Number.NaN),
    );
    expect(modified.statusCode).toBe(StatusCodes.BadDeadbandFilterInvalid);
    served.plc.set("chamber.free", 11);
    served.plc.set("chamber.free", 12);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await stillServing();
  });

  test("an AggregateFilter (which node-opcua does not compute: raw values would arrive as aggregates) is refused BadMonitoredItemFilterUnsupported on create and on modify", async () => {
    const { subscriptionId } = await subscription();
    const average = () =>
      new AggregateFilter({
        startTime: new Date(Date.now() - 60_000),
        aggregateType: "i=2342", // Average (Part 13, 5.4.3.7)
        processingInterval: 1_000,
      });
    expect((await create(subscriptionId, "chamber.free", 0, average())).statusCode).toBe(
      StatusCodes.BadMonitoredItemFilterUnsupported,
    );
    const created = await create(subscriptionId, "chamber.free", 0);
    expect(created.statusCode).toBe(StatusCodes.Good);
    expect((await modify(subscriptionId, created.monitoredItemId, 0, average())).statusCode).toBe(
      StatusCodes.BadMonitoredItemFilterUnsupported,
    );
    await stillServing();
  });

  test("a percent deadband NaN on a ranged tag is refused BadDeadbandFilterInvalid", async () => {
    const { subscriptionId } = await subscription();
    const created = await create(subscriptionId, "chamber.ranged", 0, deadband(DeadbandType.Percent, Number.NaN));
    expect(created.statusCode).toBe(StatusCodes.BadDeadbandFilterInvalid);
    served.plc.set("chamber.ranged", 50);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await stillServing();
  });

  test("a queue that overflows with a bad value at its head (a device's NaN) keeps serving: the Overflow bit is set on that bad value (node-opcua asserted it was Good and ended the process)", async () => {
    served.plc.set("chamber.free", 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { subscriptionId } = await subscription(1_000);
    const item = await create(subscriptionId, "chamber.free", 0, null, 2, 88);
    expect(item.statusCode).toBe(StatusCodes.Good);
    for (const value of [Number.NaN, 2, 3, 4]) {
      served.plc.set("chamber.free", value);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    const seen: { value: unknown; statusCode: StatusCode }[] = [];
    // A Publish answers for any of the session's subscriptions (earlier tests left theirs).
    for (let attempt = 0; attempt < 30 && seen.length === 0; attempt++) {
      const answer = await rawSession(vic.session).publish(new PublishRequest({ subscriptionAcknowledgements: [] }));
      if (answer.subscriptionId !== subscriptionId) continue;
      for (const data of answer.notificationMessage.notificationData ?? []) {
        for (const queued of data?.monitoredItems ?? [])
          if (queued.clientHandle === 88)
            seen.push({ value: queued.value.value?.value, statusCode: queued.value.statusCode });
      }
    }
    expect(seen.map((each) => each.value)).toEqual([3, 4]);
    expect(seen[0]!.statusCode.hasOverflowBit).toBe(true);
    // A bad value at the head: the bit is set on it, and its severity kept.
    served.plc.set("chamber.free", Number.NaN);
    await new Promise((resolve) => setTimeout(resolve, 150));
    for (const value of [5, 6]) {
      served.plc.set("chamber.free", value);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    await stillServing();
  });

  test("a two-dimensional IndexRange on a String (a Kiln tag or BuildInfo's ProductName) answers BadIndexRangeInvalid on Read and on a monitored item, not a crash", async () => {
    served.plc.set("chamber.label", "ALD-7");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const label = served.server.nodeIdOf("chamber.label");
    const answers = (await vic.session.read([
      { nodeId: "i=2261", attributeId: AttributeIds.Value, indexRange: "0,0" },
      { nodeId: label, attributeId: AttributeIds.Value, indexRange: "0:1,0:1" },
      { nodeId: label, attributeId: AttributeIds.Value, indexRange: "1:2" }, // one dimension: a substring
    ] as never)) as unknown as DataValue[];
    expect(answers.map((answer) => answer.statusCode)).toEqual([
      StatusCodes.BadIndexRangeInvalid,
      StatusCodes.BadIndexRangeInvalid,
      StatusCodes.Good,
    ]);
    expect(answers[2]!.value.value).toBe("LD");
    const { subscriptionId } = await subscription(100);
    const answer = await session().createMonitoredItems(
      new CreateMonitoredItemsRequest({
        subscriptionId,
        timestampsToReturn: TimestampsToReturn.Both,
        itemsToCreate: [
          {
            itemToMonitor: { nodeId: label, attributeId: AttributeIds.Value, indexRange: "0,0" },
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: parameters(0),
          },
        ],
      } as never),
    );
    expect(answer.results[0]!.statusCode).toBe(StatusCodes.BadIndexRangeInvalid);
    served.plc.set("chamber.label", "ALD-8");
    await new Promise((resolve) => setTimeout(resolve, 300));
    await stillServing();
  });

  test("an IndexRange on a scalar numeric tag, or of invalid syntax, answers BadIndexRangeInvalid on Read and CreateMonitoredItems, never the whole value as Good", async () => {
    served.plc.set("chamber.free", 12.5);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const free = served.server.nodeIdOf("chamber.free");
    const ranges = ["0:1,0:1", "3", "1:0", "abc", "-1"];
    const answers = (await vic.session.read(
      ranges.map((indexRange) => ({ nodeId: free, attributeId: AttributeIds.Value, indexRange })) as never,
    )) as unknown as DataValue[];
    expect(answers.map((answer) => answer.statusCode)).toEqual(ranges.map(() => StatusCodes.BadIndexRangeInvalid));
    expect(answers.every((answer) => answer.value.value === null)).toBe(true);
    const { subscriptionId } = await subscription(100);
    const answer = await session().createMonitoredItems(
      new CreateMonitoredItemsRequest({
        subscriptionId,
        timestampsToReturn: TimestampsToReturn.Both,
        itemsToCreate: [
          {
            itemToMonitor: { nodeId: free, attributeId: AttributeIds.Value, indexRange: "3" },
            monitoringMode: MonitoringMode.Reporting,
            requestedParameters: parameters(0),
          },
        ],
      } as never),
    );
    expect(answer.results[0]!.statusCode).toBe(StatusCodes.BadIndexRangeInvalid);
  });

  test("without an IndexRange the scalar reads Good, and a String's syntactically invalid range answers BadIndexRangeInvalid", async () => {
    const answers = (await vic.session.read([
      { nodeId: served.server.nodeIdOf("chamber.free"), attributeId: AttributeIds.Value },
      { nodeId: served.server.nodeIdOf("chamber.label"), attributeId: AttributeIds.Value, indexRange: "2:1" },
    ] as never)) as unknown as DataValue[];
    expect(answers.map((answer) => answer.statusCode)).toEqual([StatusCodes.Good, StatusCodes.BadIndexRangeInvalid]);
    expect(answers[0]!.value.value).toBe(12.5);
  });

  test("through a RegisterNodes alias an IndexRange on a scalar answers BadIndexRangeInvalid as by its NodeId, never the whole value as Good (adversarial review 20s)", async () => {
    served.plc.set("chamber.free", 12.5);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const free = served.server.nodeIdOf("chamber.free");
    const [alias] = await vic.session.registerNodes([free] as never);
    expect(alias!.toString()).not.toBe(free);
    const answers = (await vic.session.read([
      { nodeId: alias, attributeId: AttributeIds.Value, indexRange: "0:1" },
      { nodeId: free, attributeId: AttributeIds.Value, indexRange: "0:1" },
      { nodeId: alias, attributeId: AttributeIds.Value },
    ] as never)) as unknown as DataValue[];
    expect(answers.map((answer) => answer.statusCode)).toEqual([
      StatusCodes.BadIndexRangeInvalid,
      StatusCodes.BadIndexRangeInvalid,
      StatusCodes.Good,
    ]);
    expect(answers[0]!.value.value).toBeNull();
    expect(answers[2]!.value.value).toBe(12.5);
    await vic.session.unregisterNodes([alias] as never);
  });

  test("a monitored item created through a RegisterNodes alias is checked as one on its node: an IndexRange on the scalar is refused, without one it is created (node-opcua answered BadNodeIdUnknown)", async () => {
    const free = served.server.nodeIdOf("chamber.free");
    const [alias] = await vic.session.registerNodes([free] as never);
    const { subscriptionId } = await subscription(100);
    const item = (indexRange: string | undefined, clientHandle: number) => ({
      itemToMonitor: { nodeId: alias, attributeId: AttributeIds.Value, ...(indexRange ? { indexRange } : {}) },
      monitoringMode: MonitoringMode.Reporting,
      requestedParameters: { ...parameters(0), clientHandle },
    });
    const answer = await session().createMonitoredItems(
      new CreateMonitoredItemsRequest({
        subscriptionId,
        timestampsToReturn: TimestampsToReturn.Both,
        itemsToCreate: [item("3", 1), item(undefined, 2)],
      } as never),
    );
    expect(answer.results.map((result) => result.statusCode)).toEqual([
      StatusCodes.BadIndexRangeInvalid,
      StatusCodes.Good,
    ]);
    // The session holds a few subscriptions (maxSubscriptionsPerSession): give this one back.
    await (
      vic.session as unknown as { deleteSubscriptions(request: { subscriptionIds: number[] }): Promise<unknown> }
    ).deleteSubscriptions({ subscriptionIds: [subscriptionId] });
    await vic.session.unregisterNodes([alias] as never);
  });

  test("device values +∞, −∞, NaN and back to finite under a deadband are each reported (Bad, without a value), never a crash", async () => {
    served.plc.set("chamber.free", 1);
    served.plc.set("chamber.ranged", 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { subscriptionId } = await subscription(50);
    const free = await create(subscriptionId, "chamber.free", 0, deadband(DeadbandType.Absolute, 1), 10, 77);
    const ranged = await create(subscriptionId, "chamber.ranged", 0, deadband(DeadbandType.Percent, 10), 10, 77);
    expect([free.statusCode, ranged.statusCode]).toEqual([StatusCodes.Good, StatusCodes.Good]);
    const seen: { readonly status: number; readonly value: unknown }[] = [];
    const drain = async (): Promise<void> => {
      for (let attempt = 0; attempt < 4; attempt++) {
        const { notificationMessage } = await rawSession(vic.session).publish(
          new PublishRequest({ subscriptionAcknowledgements: [] }),
        );
        for (const data of notificationMessage.notificationData ?? []) {
          for (const item of data?.monitoredItems ?? [])
            if (item.clientHandle === 77)
              seen.push({ status: item.value.statusCode.value, value: item.value.value?.value });
        }
      }
    };
    const steps = [
      Number.POSITIVE_INFINITY,
      5,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
      Number.NaN, // unchanged: not reported again
      Number.POSITIVE_INFINITY,
      5.5, // back to finite
    ];
    for (const value of steps) {
      served.plc.set("chamber.free", value);
      served.plc.set("chamber.ranged", value);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    await drain();
    // Both items (client handle 77) report every change to or from a non-finite value. The core
    // turns a non-finite device value Bad (BadOutOfRange for ±∞, Bad for NaN), and a Bad value is
    // served without one (Part 4, 7.7.1): each change shows as a change of StatusCode.
    const count = (status: number, value: unknown) =>
      seen.filter((notification) => notification.status === status && Object.is(notification.value, value)).length;
    expect(count(StatusCodes.BadOutOfRange.value, null)).toBe(6); // +∞, −∞, +∞ on both items
    expect(count(StatusCodes.Bad.value, null)).toBe(2); // NaN once per item: unchanged NaN is not reported again
    expect(count(StatusCodes.Good.value, 5)).toBe(2);
    expect(count(StatusCodes.Good.value, 5.5)).toBe(2);
    expect(
      seen.filter((notification) => notification.status !== StatusCodes.Good.value && notification.value !== null),
    ).toEqual([]);
    await stillServing();
  });
});

describe("failed-login throttle under concurrent logins", () => {
  test("wrong passwords sent at once with a slow identify reach identify at most maxFailedLogins times", async () => {
    const slowPki = await makeTestPki();
    let asked = 0;
    const slow = await servedSystem({
      tags,
      pki: slowPki,
      server: {
        limits: { maxFailedLogins: 3, failedLoginWindowMs: 60_000, maxUnactivatedSessions: 20 },
        identify: async (identity) => {
          asked += 1;
          await new Promise((resolve) => setTimeout(resolve, 300));
          return baseIdentify(identity);
        },
      },
    });
    const clients: OPCUAClient[] = [];
    try {
      for (let index = 0; index < 10; index++) {
        const client = OPCUAClient.create({
          applicationName: "trusted",
          applicationUri: "urn:kiln-test:trusted",
          clientCertificateManager: slowPki.trusted.manager,
          securityMode: MessageSecurityMode.SignAndEncrypt,
          securityPolicy: SecurityPolicy.Basic256Sha256,
          endpointMustExist: false,
          connectionStrategy: { maxRetry: 0 },
        });
        await client.connect(slow.server.endpointUrl);
        clients.push(client);
      }
      const answers = await Promise.all(
        clients.map((client, index) =>
          client.createSession({ type: UserTokenType.UserName, userName: "olga", password: `guess-${index}` }).then(
            () => "activated",
            (error: unknown) => /Bad\w+/.exec(String(error))?.[0] ?? String(error),
          ),
        ),
      );
      expect(answers.every((answer) => answer === "BadUserAccessDenied")).toBe(true);
      expect(asked).toBeLessThanOrEqual(3);
      const right = await clients[0]!.createSession(user("olga")).then(
        () => "activated",
        (error: unknown) => /Bad\w+/.exec(String(error))?.[0] ?? String(error),
      );
      expect(right).toBe("BadUserAccessDenied"); // throttled: identify not asked
      expect(asked).toBeLessThanOrEqual(3);
    } finally {
      await Promise.all(clients.map((client) => client.disconnect()));
      await slow.dispose();
      await slowPki.dispose();
    }
  }, 60_000);

  test("a successful login gives its count back: logins that succeed never throttle", async () => {
    const okPki = await makeTestPki();
    const ok = await servedSystem({
      tags,
      pki: okPki,
      server: { limits: { maxFailedLogins: 2, failedLoginWindowMs: 60_000 } },
    });
    try {
      for (let index = 0; index < 4; index++) {
        const session = await connect(ok.server, okPki.trusted, user("olga"));
        await session.close();
      }
    } finally {
      await ok.dispose();
      await okPki.dispose();
    }
  }, 60_000);
});
