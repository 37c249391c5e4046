import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { type RawChannel, type RawOpcuaServer, startRawOpcuaServer } from "./support/raw-opcua-server";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass adv13g (HIGH): a CreateSubscription outstanding when the secure channel
// broke was never settled by node-opcua (no time bound, not ended by the disconnect), so it stayed at
// the head of the subscription's serialised ensure() queue and every later rebuild attempt opened a
// session and was abandoned at its progress bound, for ever, with no subscription on the server. The
// late answer could also throw `expecting a valid session` inside node-opcua's own event handler.
// Here the server breaks the channel (destroys the socket) as it receives a request of the given
// kind, twice in a row, then behaves. Siblings: CreateMonitoredItems, and a request of a rebuild.
const NS = "urn:kiln:test:break-on-create-subscription";
const tags = defineTags({
  x: { dataType: "float64", address: `nsu=${NS};s=X`, scanGroup: "fast" },
});

let raw: RawOpcuaServer;
/** The request kind whose arrival breaks the channel, and how many more times it does. */
let breakOn: { readonly request: string; remaining: number } | undefined;
let breaks = 0;
/** How many more CreateSubscription calls node-opcua's client session holds for ever (each breaking the channel). */
let holdCreateSubscription = 0;
const held: ((error: Error) => void)[] = [];
/** The server's live secure channels (broken with `abruptlyInterrupt`: node-opcua keeps the socket private). */
const channels = new Set<RawChannel>();

beforeAll(async () => {
  raw = await startRawOpcuaServer({ namespaceUri: NS });
  raw.onRequest((request, channel) => {
    const name = request?.constructor.name;
    if (!breakOn || breakOn.remaining <= 0 || name !== breakOn.request) return;
    breakOn.remaining--;
    breaks++;
    // The server carries the request out (a subscription made on the session), the answer never leaves.
    channel.abruptlyInterrupt!();
  });
  // node-opcua's CreateSubscription held inside the client session, above the driver's request
  // bound: neither answered nor ended by the disconnect, as adv13g saw node-opcua's createSubscription2
  // (no time bound, not ended by disconnect). Released (failed) only when the test ends.
  const { ClientSessionImpl } = createRequire(import.meta.url)(
    "node-opcua-client/dist/private/client_session_impl.js",
  ) as { ClientSessionImpl: { prototype: Record<string, (request: object, callback: unknown) => unknown> } };
  const createSubscription = ClientSessionImpl.prototype.createSubscription!;
  ClientSessionImpl.prototype.createSubscription = function (this: unknown, request, callback) {
    if (holdCreateSubscription > 0) {
      holdCreateSubscription--;
      held.push(callback as (error: Error) => void);
      // The server's side of the break: every channel's socket destroyed.
      for (const channel of channels) channel.abruptlyInterrupt!();
      return undefined;
    }
    return createSubscription.call(this, request, callback);
  };
  raw.server.on("newChannel", (channel) => channels.add(channel as unknown as RawChannel));
  raw.server.on("closeChannel", (channel) => channels.delete(channel as unknown as RawChannel));
});

afterAll(async () => {
  await raw?.close();
});

/** Subscriptions and monitored items the server holds, over its live sessions. */
const serverHolds = (): { sessions: number; subscriptions: number; items: number } => raw.holds();

/** Connected again within this after the server behaves: a few backoff steps and one bounded attempt. */
const RECOVERY_MS = 15_000;
const SESSION_MS = 4_000;

function newDriver(): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl: raw.url,
    security: { mode: "None" },
    pki: { dir: path.join(raw.workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 200, maxDelayMs: 1_000, randomisationFactor: 0 },
    timeouts: { keepAliveMs: 1_000, requestMs: 2_000, connectMs: 3_000, sessionMs: SESSION_MS },
    subscriptions: { maxPublishingIntervalMs: 500, keepAliveMs: 1_500 },
    monitoredItemRetry: { initialDelayMs: 200, maxDelayMs: 1_000 },
  });
}

interface Case {
  readonly request: string;
  /** How the re-creation is started: the server drops the session, or the driver rebuilds. */
  readonly trigger: "close-session" | "subscribe";
}

const cases: Case[] = [
  { request: "CreateSubscriptionRequest", trigger: "close-session" },
  { request: "CreateSubscriptionRequest", trigger: "subscribe" },
  { request: "CreateMonitoredItemsRequest", trigger: "close-session" },
  { request: "CreateMonitoredItemsRequest", trigger: "subscribe" },
];

describe("the channel breaks at a subscription request, twice, then the server behaves (adv13g HIGH)", () => {
  test.each(cases.map((each) => [`${each.request} (${each.trigger})`, each] as const))(
    "%s: connected soon after, one subscription with its items, fresh good values, no uncaught exception",
    async (_name, { request, trigger }) => {
      const uncaught: unknown[] = [];
      const onUncaught = (error: unknown): void => void uncaught.push(error);
      process.on("uncaughtException", onUncaught);
      process.on("unhandledRejection", onUncaught);
      const driver = newDriver();
      const changes: DriverStatusChange[] = [];
      driver.onStatusChange((change) => changes.push(change));
      const received: Sample[] = [];
      breaks = 0;
      try {
        await driver.connect();
        breakOn = { request, remaining: 2 };
        if (trigger === "close-session") {
          await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
          breakOn.remaining = 0;
          expect(serverHolds()).toMatchObject({ sessions: 1, subscriptions: 1, items: 1 });
          breakOn.remaining = 2;
          raw.server.engine.closeSession(raw.server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
        } else {
          // The application subscribes until a subscribe() resolves (one may fail: the connection broke under it).
          await waitFor(
            () =>
              driver
                .subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples))
                .then(
                  () => true,
                  () => false,
                ),
            { what: `a subscribe() that resolves (status ${driver.status})`, timeoutMs: 30_000, intervalMs: 500 },
          );
        }
        // A subscribe() answered on the repaired channel (node-opcua sends the held request again) meets one break only.
        await waitFor(() => breaks >= (trigger === "subscribe" ? 1 : 2), {
          what: `the server broke the channel (${breaks})`,
          timeoutMs: 20_000,
        });
        const start = performance.now();
        await waitFor(() => driver.status === "connected", {
          what: `connected after the server behaves (status ${driver.status}: ${changes.at(-1)?.reason})`,
          timeoutMs: RECOVERY_MS,
        });
        const mark = received.length;
        await waitFor(() => received.slice(mark).some((fresh) => fresh.quality.severity === "good"), {
          what: `fresh good subscribed values (server holds ${JSON.stringify(serverHolds())})`,
          timeoutMs: RECOVERY_MS,
        });
        await waitFor(
          () => JSON.stringify(serverHolds()) === JSON.stringify({ sessions: 1, subscriptions: 1, items: 1 }),
          {
            what: `one session, one subscription, one item on the server (holds ${JSON.stringify(serverHolds())})`,
            timeoutMs: SESSION_MS + 5_000,
          },
        );
        expect(performance.now() - start).toBeLessThan(RECOVERY_MS + SESSION_MS + 5_000);
        expect(driver.status).toBe("connected");
        // Still delivering a while later (no queue held by a request that never ended).
        const later = received.length;
        await waitFor(() => received.slice(later).some((fresh) => fresh.quality.severity === "good"), {
          what: "values still delivered",
        });
        expect(uncaught.map((error) => String(error))).toEqual([]);
        // A break during the re-creation is named as one (adv13h LOW), not node-opcua's bare
        // "Cannot connect … client or session is not usable anymore" with the server reachable.
        expect(
          changes
            .map((change) => change.reason)
            .filter((reason) => /^Cannot connect.*not usable anymore/.test(reason ?? "")),
        ).toEqual([]);
      } finally {
        breakOn = undefined;
        process.off("uncaughtException", onUncaught);
        process.off("unhandledRejection", onUncaught);
        await driver.close();
      }
    },
    90_000,
  );
});

describe("node-opcua holds a CreateSubscription for ever while the channel breaks, twice (adv13g HIGH)", () => {
  test("the subscription's queue moves on: connected, one subscription with its item, fresh good values, no uncaught exception", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    const driver = newDriver();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    const received: Sample[] = [];
    try {
      await driver.connect();
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      expect(serverHolds()).toMatchObject({ sessions: 1, subscriptions: 1, items: 1 });
      holdCreateSubscription = 2;
      // The server drops the session and the channel: every way back re-creates the subscription.
      raw.server.engine.closeSession(raw.server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
      for (const channel of channels) channel.abruptlyInterrupt!();
      await waitFor(() => holdCreateSubscription === 0, {
        what: `two CreateSubscription calls held (${holdCreateSubscription} to go; status ${driver.status}: ${changes.at(-1)?.reason})`,
        timeoutMs: 40_000,
      });
      const mark = received.length;
      await waitFor(() => driver.status === "connected", {
        what: `connected after the holds (status ${driver.status}: ${changes.at(-1)?.reason})`,
        timeoutMs: 30_000,
      });
      await waitFor(() => received.slice(mark).some((fresh) => fresh.quality.severity === "good"), {
        what: `fresh good subscribed values (server holds ${JSON.stringify(serverHolds())}, status ${driver.status}: ${changes.at(-1)?.reason})`,
        timeoutMs: 20_000,
      });
      await waitFor(
        () => JSON.stringify(serverHolds()) === JSON.stringify({ sessions: 1, subscriptions: 1, items: 1 }),
        {
          what: `one session, one subscription, one item on the server (holds ${JSON.stringify(serverHolds())})`,
          timeoutMs: SESSION_MS + 5_000,
        },
      );
      expect(uncaught.map((error) => String(error))).toEqual([]);
    } finally {
      holdCreateSubscription = 0;
      for (const callback of held.splice(0)) callback(new Error("released by the test"));
      process.off("uncaughtException", onUncaught);
      process.off("unhandledRejection", onUncaught);
      await driver.close();
    }
  }, 120_000);
});

describe("a rebuild whose CreateMonitoredItems breaks the channel (adv13g LOW)", () => {
  test("a rebuild whose CreateMonitoredItems broke the channel recovers: connected, fresh good values, one subscription on the server", async () => {
    const driver = newDriver();
    const changes: (DriverStatusChange & { at: number })[] = [];
    driver.onStatusChange((change) => changes.push({ ...change, at: performance.now() }));
    const received: Sample[] = [];
    try {
      await driver.connect();
      await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      // node-opcua's repair holds its re-creation for ever: the repair watchdog leads to a rebuild,
      // whose CreateMonitoredItems meets a broken channel.
      holdCreateSubscription = 1;
      raw.server.engine.closeSession(raw.server.engine.getSessions()[0]!.authenticationToken, true, "Terminated");
      for (const channel of channels) channel.abruptlyInterrupt!();
      await waitFor(() => holdCreateSubscription === 0, { what: "the repair's CreateSubscription held" });
      breaks = 0;
      breakOn = { request: "CreateMonitoredItemsRequest", remaining: 1 };
      await waitFor(() => breaks === 1, {
        what: "the rebuild's CreateMonitoredItems broke the channel",
        timeoutMs: 30_000,
      });
      const mark = received.length;
      await waitFor(() => driver.status === "connected", {
        what: `connected (status ${driver.status}: ${changes.at(-1)?.reason})`,
        timeoutMs: RECOVERY_MS,
      });
      await waitFor(() => received.slice(mark).some((fresh) => fresh.quality.severity === "good"), {
        what: "fresh good subscribed values",
      });
      // Open (adv13h, LOW): with the channel really broken (abruptlyInterrupt), `connected` ("session
      // re-created after 1 attempt") is still reported ~1 ms before node-opcua reports the loss and
      // repairs; fix13h's check (the session's channel not valid) does not see it yet. What holds:
      // the driver recovers, and the server holds exactly what it subscribed. See ADR 0022, fix13h.
      await waitFor(() => raw.holds().subscriptions === 1 && raw.holds().items === 1, {
        what: `one subscription with its item on the server (${JSON.stringify(raw.holds())})`,
        timeoutMs: SESSION_MS * 3,
      });
    } finally {
      holdCreateSubscription = 0;
      breakOn = undefined;
      for (const callback of held.splice(0)) callback(new Error("released by the test"));
      await driver.close();
    }
  }, 90_000);
});
