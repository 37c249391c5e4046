import { defineTags, KilnError, silentLogger, type Sample } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import { describe, expect, test } from "vitest";
import { parseNodeAddress } from "./opcua-node-id";
import { OpcuaTagSubscription, type SubscriptionConnection } from "./opcua-tag-subscription";

const tags = defineTags({ "kiln.a": { dataType: "int32", address: "ns=1;s=Kiln.A" } }).list();

describe("OpcuaTagSubscription", () => {
  // Issue 13, MEDIUM-2: a subscription the session cannot hold used to be retried on the backoff
  // forever. A server that grants a session timeout below three publishing intervals makes it
  // impossible until the configuration changes: typed, not retryable, not retried.
  test("a session timeout too short for the subscription fails typed, without a request, and is not retried", async () => {
    const clock = new SimulatedClock();
    let createCalls = 0;
    const session = {
      timeout: 2_000,
      createSubscription2: () => {
        createCalls++;
        return Promise.reject(new Error("not expected"));
      },
    };
    const connection = {
      session,
      namespaceArray: ["http://opcfoundation.org/UA/", "urn:kiln"],
      maxMonitoredItemsPerCall: 0,
      generation: 1,
    } as unknown as SubscriptionConnection;
    const received: Sample[] = [];
    const subscription = new OpcuaTagSubscription(
      tags,
      tags.map((tag) => parseNodeAddress(tag.address)),
      { samplingIntervalMs: 5_000 },
      (samples) => received.push(...samples),
      {
        logger: silentLogger,
        clock,
        retry: { initialDelayMs: 100, maxDelayMs: 400 },
        timing: { maxPublishingIntervalMs: 1_000, keepAliveMs: 5_000 },
        connection: () => connection,
        deleteLater: () => undefined,
        recreationFailed: () => undefined,
      },
    );
    const error = await subscription.ensure().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    expect(error).toMatchObject({ retryable: false });
    expect((error as KilnError).details.issues).toEqual([
      expect.objectContaining({ path: "subscriptions.maxPublishingIntervalMs" }),
    ]);
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(60_000);
    expect(createCalls).toBe(0);
    await subscription.close();
  });
});
