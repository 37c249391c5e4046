import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Sample } from "@kiln/core";
import { KilnError } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver, type OpcuaDriverOptions } from "../src/index";
import { countTags, subscriptionCountFixture } from "./support/subscription-count";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, MEDIUM-1 and MEDIUM-2 (adversarial pass on fix13): the subscription's publishing
// interval was the group's period, so the keep-alive and lifetime grew with it. A 5 s group's
// subscription left on the server after a cut lived 12 × 5 s after its session timed out
// (holding a small PLC's slots), and a group of about 22 s or slower was refused by node-opcua's
// NODE-OPCUA-W09 check and retried forever as a "timeout". Now the publishing interval is bounded
// (subscriptions.maxPublishingIntervalMs), the items still sample at the group's period, and the
// lifetime is 3 × subscriptions.keepAliveMs (docs/adr/0022, amendment fix13c). Counted on the server.
const { simulator, expectServerHolds } = subscriptionCountFixture();

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-timing-"));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

function newDriver(endpointUrl: string, extra: Partial<OpcuaDriverOptions> = {}): OpcuaDriver {
  return new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    connectionStrategy: { maxRetry: 1_000, initialDelayMs: 100, maxDelayMs: 400, randomisationFactor: 0.1 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
    ...extra,
  });
}

describe("subscription timing", () => {
  test("a 5 s group's subscription orphaned by a cut expires within session timeout + 3 keep-alives (+ the server's 5 s minimum lifetime)", async () => {
    const sessionMs = 3_000;
    const keepAliveMs = 1_000;
    // node-opcua's server keeps every subscription at least 5 s (Subscription.minimumLifetimeDuration).
    const lifetimeMs = Math.max(3 * keepAliveMs, 5_000);
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start(), {
      timeouts: { sessionMs, keepAliveMs: 1_000, requestMs: 2_000 },
      subscriptions: { maxPublishingIntervalMs: 200, keepAliveMs },
    });
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 5_000 }, (samples) => received.push(...samples));
      await expectServerHolds(1, 3);
      proxy.drop();
      const cutAt = Date.now();
      // The server times the session out; its subscription stays as an orphan.
      await waitFor(() => simulator().liveSubscriptions().sessions === 0, { what: "the session timed out" });
      proxy.restore();
      // node-opcua's repair opens a new session and re-creates the group (transfers are refused):
      // the orphan and its items are counted next to the new one.
      await waitFor(
        () => {
          const live = simulator().liveSubscriptions();
          return live.subscriptions === 2 && live.monitoredItems === 6;
        },
        { what: "the orphan (with its 3 items) next to the re-created subscription" },
      );
      await waitFor(
        () => {
          const live = simulator().liveSubscriptions();
          return live.subscriptions === 1 && live.monitoredItems === 3;
        },
        { what: "the orphan expired", timeoutMs: 30_000 },
      );
      const lingeredMs = Date.now() - cutAt;
      // Bound: the session timeout, then the lifetime, plus one keep-alive for the server to
      // notice no Publish request is left and one publishing interval of polling slack.
      expect(lingeredMs).toBeLessThanOrEqual(sessionMs + lifetimeMs + keepAliveMs + 2_000);
      await expectServerHolds(1, 3);
      const mark = received.length;
      await waitFor(() => received.slice(mark).some((sample) => sample.quality.severity === "good"), {
        what: "values from the re-created subscription",
      });
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 60_000);

  test("a live subscription with no changes stays alive (keep-alives) over several lifetimes", async () => {
    // A 30 s sampling interval: the items report their first value, then nothing for 30 s; the
    // subscription only answers with keep-alives. It must not expire (3 × 1 s lifetime).
    const driver = newDriver(simulator().endpointUrl, {
      timeouts: { sessionMs: 3_000, keepAliveMs: 1_000, requestMs: 2_000 },
      subscriptions: { maxPublishingIntervalMs: 200, keepAliveMs: 1_000 },
    });
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 30_000 }, (samples) => received.push(...samples));
      await waitFor(() => new Set(received.map((sample) => sample.tag)).size === 3, { what: "first values" });
      const start = Date.now();
      // Count on the server for 3 lifetimes (about 9 s): the same subscription throughout.
      await waitFor(
        () => {
          const live = simulator().liveSubscriptions();
          expect(live).toMatchObject({ subscriptions: 1, monitoredItems: 3 });
          return Date.now() - start > 9_000;
        },
        { what: "three lifetimes", timeoutMs: 15_000, intervalMs: 200 },
      );
      expect(received.every((sample) => sample.quality.severity === "good")).toBe(true);
    } finally {
      await driver.close();
    }
  }, 30_000);

  test("a 30 s group subscribes with the default session timeout and delivers values", async () => {
    const driver = newDriver(simulator().endpointUrl);
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 30_000 }, (samples) => received.push(...samples));
      await waitFor(
        () =>
          new Set(received.filter((sample) => sample.quality.severity === "good").map((sample) => sample.tag)).size ===
          3,
        { what: "a good value for each tag of the 30 s group" },
      );
      await expectServerHolds(1, 3);
    } finally {
      await driver.close();
    }
  }, 30_000);

  test("a session timeout the subscription cannot fit in is refused at once, typed, naming the option", () => {
    let caught: unknown;
    try {
      newDriver("opc.tcp://127.0.0.1:4840", {
        timeouts: { sessionMs: 2_000 },
        subscriptions: { maxPublishingIntervalMs: 1_000, keepAliveMs: 5_000 },
      });
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect(JSON.stringify((caught as KilnError).details)).toContain("subscriptions");
  });
});
