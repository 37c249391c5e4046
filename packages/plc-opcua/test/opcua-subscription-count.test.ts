import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, MemoryStore, type Sample } from "@kiln/core";
import { ObjectIds } from "node-opcua";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../src/index";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, fault 1: every connection loss leaked one subscription on the server. Counted on
// the server: after restarts, proxy-cut outages and session drops there must be exactly one
// subscription per scan group, with exactly its monitored items.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A`, scanGroup: "fast" },
  "kiln.b": { dataType: "int32", address: `nsu=${NS};s=Kiln.B`, scanGroup: "fast" },
  "kiln.c": { dataType: "int32", address: `nsu=${NS};s=Kiln.C`, scanGroup: "fast" },
});
const counter = { kind: "counter" as const, start: 1, step: 1 };

let workDir: string;
let simulator: OpcuaSimulator;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-count-"));
  simulator = new OpcuaSimulator({
    tags,
    signals: { "kiln.a": counter, "kiln.b": counter, "kiln.c": counter },
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(endpointUrl = simulator.endpointUrl): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
}

/** Waits until the server has held exactly `subscriptions`/`monitoredItems` for a while (no late re-creation). */
async function expectServerHolds(subscriptions: number, monitoredItems: number): Promise<void> {
  const want = { subscriptions, monitoredItems };
  const counts = () => {
    const live = simulator.liveSubscriptions();
    return { subscriptions: live.subscriptions, monitoredItems: live.monitoredItems };
  };
  await waitFor(() => JSON.stringify(counts()) === JSON.stringify(want), {
    what: `the server to hold ${JSON.stringify(want)}`,
  });
  // Still so a little later: node-opcua re-creates lost subscriptions asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  expect(counts()).toEqual(want);
}

/** Mimics the core: dispose on link loss, subscribe again once connected. */
async function followLikeTheCore(driver: OpcuaDriver, received: Sample[]): Promise<() => void> {
  let dispose: (() => void) | undefined;
  let wanted = 0;
  const subscribe = async () => {
    const mine = ++wanted;
    const disposer = await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
      received.push(...samples),
    );
    if (mine === wanted) dispose = disposer;
    else disposer(); // the link dropped again while subscribing
  };
  driver.onStatusChange((change) => {
    if (change.to === "reconnecting") {
      wanted++;
      dispose?.();
      dispose = undefined;
    } else if (change.to === "connected" && change.from === "reconnecting") void subscribe().catch(() => undefined);
  });
  await subscribe();
  return () => dispose?.();
}

describe("server-side subscription count", () => {
  test("after two server restarts: one subscription with three items (driver followed like the core)", async () => {
    const driver = newDriver();
    await driver.connect();
    const received: Sample[] = [];
    try {
      await followLikeTheCore(driver, received);
      await expectServerHolds(1, 3);
      for (let restart = 0; restart < 2; restart++) {
        await simulator.stop();
        await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
        await simulator.start();
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
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, () => undefined);
      for (let restart = 0; restart < 2; restart++) {
        await simulator.stop();
        await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
        await simulator.start();
        await waitFor(() => driver.status === "connected", { what: "connected again" });
      }
      await expectServerHolds(1, 3);
    } finally {
      await driver.close();
    }
  }, 60_000);

  // A cut just as the server answers CreateSubscription leaves a subscription on the server
  // whose id the client never learns; the driver finds it by its keep-alive and deletes it.
  test("after two network outages with the server up (TCP proxy cut): one subscription with three items", async () => {
    const proxy = new TcpProxy(simulator.port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const received: Sample[] = [];
    try {
      await followLikeTheCore(driver, received);
      await expectServerHolds(1, 3);
      for (let outage = 0; outage < 2; outage++) {
        proxy.drop();
        await waitFor(() => driver.status === "reconnecting", { what: "reconnecting" });
        proxy.restore();
        await waitFor(() => driver.status === "connected", { what: "connected again" });
      }
      await expectServerHolds(1, 3);
      const mark = received.length;
      await waitFor(() => received.slice(mark).filter((s) => s.quality.severity === "good").length >= 6, {
        what: "fresh values",
      });
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 30_000);

  for (const [service, encodingId] of [
    ["CreateSubscription", ObjectIds.CreateSubscriptionResponse_Encoding_DefaultBinary],
    ["CreateMonitoredItems", ObjectIds.CreateMonitoredItemsResponse_Encoding_DefaultBinary],
  ] as const) {
    for (const follower of ["followed like the core", "kept by the subscriber"] as const) {
      test(`a cut that loses the ${service} reply (subscription ${follower}): one subscription with three items`, async () => {
        const proxy = new TcpProxy(simulator.port);
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
            await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
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
          const mark = received.length;
          await waitFor(() => received.slice(mark).filter((s) => s.quality.severity === "good").length >= 6, {
            what: "fresh values",
          });
        } finally {
          await driver.close();
          await proxy.close();
        }
      }, 30_000);
    }
  }

  test("after the server dropped the session: one subscription with three items", async () => {
    const driver = newDriver();
    await driver.connect();
    try {
      await followLikeTheCore(driver, []);
      await expectServerHolds(1, 3);
      expect(simulator.closeSessions()).toBe(1);
      await waitFor(() => simulator.liveSubscriptions().sessions === 1, { what: "a new session" });
      await expectServerHolds(1, 3);
    } finally {
      await driver.close();
    }
  }, 60_000);

  test("a subscription the server refuses to re-create (BadTooManySubscriptions): tags bad with the reason, the failure reported, retried until it is back", async () => {
    const BadTooManySubscriptions = 0x80770000;
    const driver = newDriver();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await expectServerHolds(1, 3);
      simulator.setMaxSubscriptionsPerSession(0);
      const mark = received.length;
      expect(simulator.closeSessions()).toBe(1);
      // Every tag of the group turns bad with the server's refusal, not just "connection lost".
      const refused = await waitFor(
        () => {
          const bad = received.slice(mark).filter((sample) => sample.quality.code === BadTooManySubscriptions);
          return new Set(bad.map((sample) => sample.tag)).size === 3 && bad;
        },
        { what: "the group's tags bad with BadTooManySubscriptions" },
      );
      expect(refused[0]!.quality.severity).toBe("bad");
      expect(refused[0]!.quality.reason).toMatch(/subscription.*BadTooManySubscriptions/);
      // The failure is reported on the driver's status, with its reason.
      expect(changes.some((change) => change.reason?.includes("BadTooManySubscriptions"))).toBe(true);
      // No value after the refusal looks current while the group has no subscription.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(received.slice(mark).filter((sample) => sample.quality.severity === "good")).toEqual([]);
      expect(simulator.liveSubscriptions().subscriptions).toBe(0);

      simulator.setMaxSubscriptionsPerSession(10);
      const back = received.length;
      await waitFor(() => received.slice(back).filter((sample) => sample.quality.severity === "good").length >= 6, {
        what: "fresh values once the server accepts the subscription again",
      });
      await expectServerHolds(1, 3);
    } finally {
      simulator.setMaxSubscriptionsPerSession(10);
      await driver.close();
    }
  }, 30_000);

  test("a whole Kiln system: restarts and a proxy-cut outage leave one subscription per scan group", async () => {
    const proxy = new TcpProxy(simulator.port);
    const endpointUrl = await proxy.start();
    const system = createControlSystem({
      machineId: "kiln-1",
      tags,
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
        await simulator.stop();
        await waitFor(() => system.health().acquisition.link === "offline", { what: "offline" });
        await simulator.start();
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
