import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Logger, type Sample } from "@kiln/core";
import { afterAll, beforeAll, expect } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator } from "../../src/index";
import { waitFor } from "./wait-for";

// Issue 13, fault 1: every connection loss leaked one subscription on the server. The fixture of
// the cases that count on the server (packages/plc-opcua/test/opcua-subscription-count.test.ts in
// `npm test`, faults/opcua-subscription-count.test.ts for the restarts and lost replies).
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
/**
 * Subscription timings whose lifetime (3 × keepAliveMs = 4.5 s instead of the default 15 s) a test
 * can wait out when a stalled session leaves its subscription on the server.
 */
export const SHORT_SUBSCRIPTION_LIFETIME = { maxPublishingIntervalMs: 500, keepAliveMs: 1_500 } as const;

/** Three counting tags of one subscribed scan group. */
export const countTags = defineTags({
  "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A`, scanGroup: "fast" },
  "kiln.b": { dataType: "int32", address: `nsu=${NS};s=Kiln.B`, scanGroup: "fast" },
  "kiln.c": { dataType: "int32", address: `nsu=${NS};s=Kiln.C`, scanGroup: "fast" },
});

/** What {@link subscriptionCountFixture} gives a test file. */
export interface SubscriptionCountFixture {
  /** The simulator of the file, started before its tests and disposed after them. */
  readonly simulator: () => OpcuaSimulator;
  /**
   * A driver with short backoffs, at the simulator or at `endpointUrl` (a proxy); `connectMs`
   * shortens the repair watchdog (connectionStrategy.maxDelayMs + timeouts.connectMs); `logger`
   * records; `requestMs` (default 3000) and `keepAliveMs` (default 1000) set those timeouts;
   * `subscriptions` sets the driver's option of that name (a test that waits for a subscription
   * left behind on the server to expire shortens its lifetime, 3 × `subscriptions.keepAliveMs`).
   */
  readonly newDriver: (
    endpointUrl?: string,
    extra?: {
      connectMs?: number;
      requestMs?: number;
      keepAliveMs?: number;
      logger?: Logger;
      subscriptions?: { maxPublishingIntervalMs: number; keepAliveMs: number };
    },
  ) => OpcuaDriver;
  /**
   * Waits (up to `withinMs`, default 15 s) until the server has held exactly these counts for a
   * while (no late re-creation).
   */
  readonly expectServerHolds: (subscriptions: number, monitoredItems: number, withinMs?: number) => Promise<void>;
}

/** Registers beforeAll/afterAll that start one simulator for the calling test file. */
export function subscriptionCountFixture(): SubscriptionCountFixture {
  let workDir: string;
  let simulator: OpcuaSimulator | undefined;
  const counter = { kind: "counter" as const, start: 1, step: 1 };
  beforeAll(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-count-"));
    simulator = new OpcuaSimulator({
      tags: countTags,
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
  const started = (): OpcuaSimulator => {
    if (simulator === undefined) throw new Error("the simulator starts in beforeAll");
    return simulator;
  };
  return {
    simulator: started,
    newDriver: (
      endpointUrl = started().endpointUrl,
      { connectMs, requestMs = 3_000, keepAliveMs = 1_000, logger, subscriptions } = {},
    ) =>
      new OpcuaDriver({
        endpointUrl,
        security: { mode: "None" },
        pki: { dir: path.join(workDir, "client") },
        connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
        timeouts: { keepAliveMs, requestMs, ...(connectMs === undefined ? {} : { connectMs }) },
        ...(logger ? { logger } : {}),
        monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
        ...(subscriptions ? { subscriptions } : {}),
      }),
    expectServerHolds: async (subscriptions, monitoredItems, withinMs) => {
      const want = { subscriptions, monitoredItems };
      const counts = () => {
        const live = started().liveSubscriptions();
        return { subscriptions: live.subscriptions, monitoredItems: live.monitoredItems };
      };
      await waitFor(() => JSON.stringify(counts()) === JSON.stringify(want), {
        what: `the server to hold ${JSON.stringify(want)}`,
        ...(withinMs === undefined ? {} : { timeoutMs: withinMs }),
      });
      // Still so a little later: node-opcua re-creates lost subscriptions asynchronously.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(counts()).toEqual(want);
    },
  };
}

/** Waits for `count` good samples received from now on (the subscription delivers again). */
export async function freshValues(received: readonly Sample[], what = "fresh values", count = 6): Promise<void> {
  const mark = received.length;
  await waitFor(() => received.slice(mark).filter((sample) => sample.quality.severity === "good").length >= count, {
    what,
  });
}

/** Mimics the core: dispose on link loss, subscribe again once connected. Returns the disposer. */
export async function followLikeTheCore(driver: OpcuaDriver, received: Sample[]): Promise<() => void> {
  let dispose: (() => void) | undefined;
  let wanted = 0;
  const subscribe = async () => {
    const mine = ++wanted;
    const disposer = await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) =>
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
