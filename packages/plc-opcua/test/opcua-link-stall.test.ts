import { createControlSystem, defineTags, KilnError, MemoryStore, type Sample } from "@kiln/core";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI } from "../src/index";
import { countTags, freshValues, subscriptionCountFixture } from "./support/subscription-count";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adversarial pass on fix13d, MEDIUM-2 and MEDIUM-3: a link that stalls (the TCP
// connection stays open, the proxy stops forwarding in both directions) left subscribed values
// frozen good until node-opcua's keep-alive read timed out (max(5 s, timeouts.requestMs) after up
// to one keep-alive period: about 5.5 s here, 13 s by default), and node-opcua's repair then
// waited on a HEL that a stalled link never answers, until the driver's repair watchdog (15.4 s
// here, 35 s by default). Now silence for 2 keep-alive periods (2 s here) proves the link dead:
// tags uncertain with the reason, reads fail, the channel is broken, and each repair attempt is
// bounded by the same silence, so recovery follows the restore within one backoff step
// (docs/adr/0022, amendment fix13e). With a request in flight, not before its deadline
// (timeouts.requestMs): a live server may be that slow (amendment fix13f).
const { simulator, newDriver, expectServerHolds } = subscriptionCountFixture();
/** timeouts.keepAliveMs of the fixture's driver (1 s): the link silence bound is twice that. */
const SILENCE_BOUND_MS = 2_000;
/**
 * timeouts.requestMs of the fixture's driver (3 s): silence while a request is in flight is no
 * stall before its deadline (a live server may take that long: amendment fix13f).
 */
const REQUEST_MS = 3_000;
/** The link watchdog checks at the bound; timers and the test's polling add a little. */
const SLACK_MS = 1_000;

describe("a stalled link (TCP open, no bytes)", () => {
  test("subscribed tags turn uncertain with the reason, and reads fail, by the deadline of the read in flight", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    const received: (Sample & { at: number })[] = [];
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) =>
        received.push(...samples.map((sample) => ({ ...sample, at: Date.now() }))),
      );
      await freshValues(received);
      const stalledAt = Date.now();
      proxy.blackhole();
      // A polled read in flight when the link stalls.
      const inFlight = driver.read(countTags.list()).then(
        () => undefined,
        (error: unknown) => ({ error, at: Date.now() }),
      );
      const lost = await waitFor(
        () => {
          const after = received.filter((sample) => sample.at >= stalledAt && sample.quality.severity !== "good");
          return new Set(after.map((sample) => sample.tag)).size === 3 && after;
        },
        { what: "every subscribed tag not good" },
      );
      for (const sample of lost) {
        expect(sample.at - stalledAt).toBeLessThan(REQUEST_MS + SLACK_MS);
        expect(sample.quality).toMatchObject({ severity: "uncertain" });
        expect(sample.quality.reason).toMatch(/no answer from the OPC UA server for \d+ ms \(link stalled/);
      }
      // No good value after the loss until the link is back.
      const failed = await inFlight;
      expect(failed).toBeDefined();
      expect(failed!.at - stalledAt).toBeLessThan(REQUEST_MS + SLACK_MS);
      // Both bounds fall due together: the request's own (requestMs, fix13ae: KILN_TIMEOUT) and the
      // watchdog's stall (KILN_CONNECTION_FAILED naming it); which ends the read first is a race.
      const error = failed!.error as KilnError;
      expect(KilnError.is(error, "KILN_CONNECTION_FAILED") || KilnError.is(error, "KILN_TIMEOUT")).toBe(true);
      expect(error.retryable).toBe(true);
      if (KilnError.is(error, "KILN_CONNECTION_FAILED")) expect(error.message).toMatch(/link stalled/);
      // A read while it lasts fails at once with the reason.
      const refused = await driver.read(countTags.list()).catch((error: unknown) => error);
      expect(KilnError.is(refused, "KILN_CONNECTION_FAILED")).toBe(true);
      expect((refused as KilnError).message).toMatch(/link stalled/);
      expect(changes.find((change) => change.to === "reconnecting")?.reason).toMatch(/link stalled/);
      const firstLost = received.indexOf(lost[0]!);
      expect(received.slice(firstLost).filter((sample) => sample.quality.severity === "good")).toEqual([]);
    } finally {
      await driver.close();
      await proxy.close();
      // The stalled session cannot be closed by its client: the server closes it, with its
      // subscription, as a session timeout would (the next test counts the server's subscriptions).
      simulator().closeSessions();
    }
  }, 60_000);

  test("after a stall outlasting the detection, the link is back within one bounded attempt of the restore, same subscription", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    await driver.connect();
    const received: Sample[] = [];
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      // The previous test's stalled session may still hold its subscription until its lifetime
      // ends (15 s): the first test closes it on the server side when it ends.
      await expectServerHolds(1, 3, 45_000);
      proxy.blackhole();
      await waitFor(() => driver.status === "reconnecting", { what: "reconnecting", timeoutMs: 10_000 });
      // Long enough for node-opcua's repair to be dialling through the stalled link.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      const restoredAt = Date.now();
      proxy.restore();
      await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 30_000 });
      // A hung attempt ends within the silence bound, then one backoff step (≤ 400 ms here).
      expect(Date.now() - restoredAt).toBeLessThan(SILENCE_BOUND_MS + 400 + 2 * SLACK_MS);
      await freshValues(received);
      await expectServerHolds(1, 3);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 60_000);

  // Sibling: a TCP path that stalls for less than the bound and then delivers what it held is no loss.
  test("a pause shorter than the bound (bytes delayed, none lost) costs nothing: no status change, no value not good", async () => {
    const proxy = new TcpProxy(simulator().port);
    const driver = newDriver(await proxy.start());
    const changes: DriverStatusChange[] = [];
    await driver.connect();
    driver.onStatusChange((change) => changes.push(change));
    const received: Sample[] = [];
    try {
      await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
      await freshValues(received);
      proxy.pause();
      await new Promise((resolve) => setTimeout(resolve, SILENCE_BOUND_MS / 2));
      proxy.restore();
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      expect(changes).toEqual([]);
      expect(received.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
    } finally {
      await driver.close();
      await proxy.close();
    }
  }, 60_000);

  // The same through a Kiln system, for a subscribed and a polled group; health() names the stall
  // while it lasts and no longer once the link is back.
  test("a Kiln system: subscribed and polled tags not good within the bound, the reason in health(), cleared after recovery", async () => {
    const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
    const systemTags = defineTags({
      "kiln.a": { dataType: "int32", address: `nsu=${NS};s=Kiln.A`, scanGroup: "fast" },
      "kiln.b": { dataType: "int32", address: `nsu=${NS};s=Kiln.B`, scanGroup: "slow" },
    });
    const proxy = new TcpProxy(simulator().port);
    const system = createControlSystem({
      machineId: "stall-1",
      tags: systemTags,
      store: new MemoryStore(),
      driver: newDriver(await proxy.start()),
      scanGroups: { fast: { periodMs: 50, mode: "subscribe" }, slow: { periodMs: 200 } },
      acquisition: { timeoutMs: 5_000, reconnect: { initialDelayMs: 100, maxDelayMs: 400 } },
      logging: { maxLatencyMs: 100 },
    });
    try {
      await system.start();
      const good = (name: string) => system.read(name)?.quality.severity === "good";
      await waitFor(() => good("kiln.a") && good("kiln.b"), { what: "good values" });
      const stalledAt = Date.now();
      proxy.blackhole();
      await waitFor(() => !good("kiln.a") && !good("kiln.b"), { what: "both groups not good" });
      // A polled read is in flight: the deadline of the read (requestMs) bounds the detection.
      expect(Date.now() - stalledAt).toBeLessThan(REQUEST_MS + SLACK_MS);
      expect(system.health().acquisition.lastError).toMatch(/link stalled/);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      proxy.restore();
      await waitFor(() => system.health().acquisition.link === "online" && good("kiln.a") && good("kiln.b"), {
        what: "recovery",
      });
      expect(system.health().acquisition.lastError).toBeUndefined();
    } finally {
      await system.stop();
      await proxy.close();
    }
  }, 60_000);
});
