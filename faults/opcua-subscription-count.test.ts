import { createControlSystem, MemoryStore, type Sample } from "@kiln/core";
import { ObjectIds } from "node-opcua";
import { describe, test } from "vitest";
import {
  countTags,
  followLikeTheCore,
  freshValues,
  subscriptionCountFixture,
} from "../packages/plc-opcua/test/support/subscription-count";
import { TcpProxy } from "../packages/plc-opcua/test/support/tcp-proxy";
import { waitFor } from "../packages/plc-opcua/test/support/wait-for";
// node-opcua's console output through Kiln's logger, as in the plc-opcua test project.
import "../packages/plc-opcua/test/support/node-opcua-logs-setup";

// Issue 13, fault 1, the slow half: server restarts, a cut that loses the reply to
// CreateSubscription or CreateMonitoredItems, and a whole Kiln system through restarts and an
// outage leave exactly one subscription per scan group with exactly its monitored items, counted
// on the server. The quick cases (proxy outage, session drop, refusal) run in `npm test`
// (packages/plc-opcua/test/opcua-subscription-count.test.ts).
const { simulator, newDriver, expectServerHolds } = subscriptionCountFixture();

describe("OPC UA server-side subscription count through restarts and lost replies", () => {
  test("after two server restarts: one subscription with three items (driver followed like the core)", async () => {
    const driver = newDriver();
    await driver.connect();
    const received: Sample[] = [];
    try {
      await followLikeTheCore(driver, received);
      await expectServerHolds(1, 3);
      for (let restart = 0; restart < 2; restart++) {
        await simulator().stop();
        await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
        await simulator().start();
        await waitFor(() => driver.status === "connected", { what: "connected again" });
      }
      await expectServerHolds(1, 3);
    } finally {
      await driver.close();
    }
    await expectServerHolds(0, 0);
  }, 60_000);

  test("after two server restarts: a subscription the driver keeps is re-created once", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, () => undefined);
      for (let restart = 0; restart < 2; restart++) {
        await simulator().stop();
        await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
        await simulator().start();
        await waitFor(() => driver.status === "connected", { what: "connected again" });
      }
      await expectServerHolds(1, 3);
    } finally {
      await driver.close();
    }
  }, 60_000);

  // A cut just as the server answers CreateSubscription leaves a subscription on the server
  // whose id the client never learns; the driver finds it by its keep-alive and deletes it.
  for (const [service, encodingId] of [
    ["CreateSubscription", ObjectIds.CreateSubscriptionResponse_Encoding_DefaultBinary],
    ["CreateMonitoredItems", ObjectIds.CreateMonitoredItemsResponse_Encoding_DefaultBinary],
  ] as const) {
    for (const follower of ["followed like the core", "kept by the subscriber"] as const) {
      test(`a cut that loses the ${service} reply (subscription ${follower}): one subscription with three items`, async () => {
        const proxy = new TcpProxy(simulator().port);
        const driver = newDriver(await proxy.start());
        await driver.connect();
        const received: Sample[] = [];
        try {
          if (follower === "followed like the core") {
            await followLikeTheCore(driver, received);
            await expectServerHolds(1, 3);
          } else {
            // Subscribed during an outage: the driver creates it alone once the session is repaired.
            proxy.drop();
            await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
            await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) =>
              received.push(...samples),
            );
          }
          // The (re-)creation after this outage loses its reply in a second cut.
          const lost = proxy.dropOnResponse(encodingId);
          if (follower === "followed like the core") {
            proxy.drop();
            await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
          }
          proxy.restore();
          await lost;
          await waitFor(() => driver.status === "reconnecting", { what: "reconnecting after the lost reply" });
          proxy.restore();
          await waitFor(() => driver.status === "connected", { what: "connected again" });
          await expectServerHolds(1, 3);
          await freshValues(received);
        } finally {
          await driver.close();
          await proxy.close();
        }
      }, 30_000);
    }
  }

  test("a whole Kiln system: restarts and a proxy-cut outage leave one subscription per scan group", async () => {
    const proxy = new TcpProxy(simulator().port);
    const endpointUrl = await proxy.start();
    const system = createControlSystem({
      machineId: "kiln-1",
      tags: countTags,
      store: new MemoryStore(),
      driver: newDriver(endpointUrl),
      scanGroups: { fast: { periodMs: 50, mode: "subscribe" } },
      acquisition: { timeoutMs: 2_000, reconnect: { initialDelayMs: 100, maxDelayMs: 500 } },
      logging: { maxLatencyMs: 100 },
    });
    await system.start();
    const online = () =>
      waitFor(
        () => system.health().acquisition.link === "online" && system.read("kiln.a")?.quality.severity === "good",
        {
          what: "the system online with good values",
        },
      );
    try {
      await online();
      await expectServerHolds(1, 3);
      for (let restart = 0; restart < 2; restart++) {
        await simulator().stop();
        await waitFor(() => system.health().acquisition.link === "offline", { what: "offline" });
        await simulator().start();
        await online();
      }
      await expectServerHolds(1, 3);
      proxy.drop();
      await waitFor(() => system.health().acquisition.link === "offline", { what: "offline" });
      proxy.restore();
      await online();
      await expectServerHolds(1, 3);
    } finally {
      await system.stop();
      await proxy.close();
    }
  }, 90_000);
});
