import { defineTags, KilnError, silentLogger } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import { describe, expect, test } from "vitest";
import { parseNodeAddress } from "./opcua-node-id";
import { OpcuaTagSubscription, type SubscriptionConnection } from "./opcua-tag-subscription";

const tags = defineTags({ "kiln.a": { dataType: "int32", address: "ns=1;s=Kiln.A" } }).list();

describe("OpcuaTagSubscription", () => {
  // Issue 13, M/L-4 (pass on fix13d; supersedes the refusal of MEDIUM-2 of fix13c): a server that
  // grants a session timeout below three publishing intervals used to make subscribe() fail with
  // KILN_VALIDATION. The publishing interval is now lowered to fit it: the request asks for a third
  // of the granted timeout, 3 intervals per keep-alive.
  test("a session timeout below three publishing intervals: the subscription is requested with a third of it", async () => {
    const clock = new SimulatedClock();
    const requests: Record<string, number>[] = [];
    // The subscription is created as node-opcua's ClientSubscription does (fix13h): the session's
    // publish engine, then its CreateSubscription service call.
    const publishEngine: { session?: unknown } = {};
    const session = {
      timeout: 2_000,
      getPublishEngine: () => publishEngine,
      createSubscription: (request: Record<string, number>, callback: (error: Error) => void) => {
        requests.push(request);
        callback(new KilnError("KILN_DEVICE_ERROR", "refused in this test", { retryable: false }));
      },
    };
    publishEngine.session = session;
    const connection = {
      session,
      namespaceArray: ["http://opcfoundation.org/UA/", "urn:kiln"],
      maxMonitoredItemsPerCall: 0,
      generation: 1,
    } as unknown as SubscriptionConnection;
    const subscription = new OpcuaTagSubscription(
      tags,
      tags.map((tag) => parseNodeAddress(tag.address)),
      { samplingIntervalMs: 5_000 },
      () => undefined,
      {
        logger: silentLogger,
        clock,
        retry: { initialDelayMs: 100, maxDelayMs: 400 },
        timing: { maxPublishingIntervalMs: 1_000, keepAliveMs: 5_000 },
        connection: () => connection,
        deleteLater: () => undefined,
        recreationFailed: () => undefined,
        publishingStalled: () => false,
      },
    );
    await subscription.ensure().catch(() => undefined);
    expect(requests).toEqual([
      expect.objectContaining({
        requestedPublishingInterval: 666,
        requestedMaxKeepAliveCount: 3,
        requestedLifetimeCount: 9,
      }),
    ]);
    await subscription.close();
  });
});
