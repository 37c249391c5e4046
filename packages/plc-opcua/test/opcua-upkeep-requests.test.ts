import { defineTags, type Sample } from "@kiln/core";
import type { DriverStatusChange } from "@kiln/core/driver-kit";
import { ObjectIds } from "node-opcua-client";
import { OPCUAServer } from "node-opcua-server";
import { afterEach, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, type OpcuaDriver } from "../src/index";
import {
  countTags,
  freshValues,
  SHORT_SUBSCRIPTION_LIFETIME,
  subscriptionCountFixture,
} from "./support/subscription-count";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13, adv13s MEDIUM-1 and adv13p MEDIUM-1 (docs/adr/0022, amendment fix13u): a request the
// driver or node-opcua sent on its own behalf (upkeep: a subscription re-created after its
// keep-alive watchdog expired, a refused monitored item created again, a subscription deleted
// after the application let it go) was waited for until its deadline (timeouts.requestMs) when
// the link froze while it was out: tags stayed good and frozen for requestMs (10 s here) instead
// of the stall bound (2 keep-alive periods + the response time: about 2 s with keepAliveMs 1000).
// Only requests of an application's call (read, write, browse, subscribe) keep requestMs.
const { simulator, newDriver } = subscriptionCountFixture();
const REQUEST_MS = 10_000;
const STALL_BOUND_MS = 2_000;
const SLACK_MS = 1_200;
const STALLED = /no answer from the OPC UA server .*link stalled/;

const proxies: TcpProxy[] = [];
const drivers: OpcuaDriver[] = [];
const restore: (() => void)[] = [];
afterEach(async () => {
  for (const undo of restore.splice(0)) undo();
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/** A driver (keepAliveMs 1000, requestMs 10 s) behind a new proxy, connected; its status changes stamped. */
async function connectedThroughProxy(extra: Parameters<typeof newDriver>[1] = {}) {
  const proxy = new TcpProxy(simulator().port);
  proxies.push(proxy);
  const driver = newDriver(await proxy.start(), { requestMs: REQUEST_MS, ...extra });
  drivers.push(driver);
  const statuses: (DriverStatusChange & { at: number })[] = [];
  driver.onStatusChange((change) => statuses.push({ ...change, at: Date.now() }));
  await driver.connect();
  return { proxy, driver, statuses };
}

/** ms from `from` until a sample of `tags` received after `mark` is not good. */
async function untilNotGood(received: readonly Sample[], mark: number, from: number, tags: readonly string[]) {
  await waitFor(
    () => received.slice(mark).some((sample) => tags.includes(sample.tag) && sample.quality.severity !== "good"),
    { what: "a sample that is not good", timeoutMs: 20_000 },
  );
  return Date.now() - from;
}

/** ms from `from` until the driver declares the link stalled. */
async function untilStallDeclared(statuses: readonly (DriverStatusChange & { at: number })[], from: number) {
  const stall = await waitFor(
    () =>
      statuses.find((change) => change.at >= from && change.to === "reconnecting" && STALLED.test(change.reason ?? "")),
    { what: "the link declared stalled", timeoutMs: 20_000 },
  );
  return stall.at - from;
}

describe("upkeep requests are bounded by the link stall bound, not requestMs (adv13s M1, adv13p M1)", () => {
  test("a link frozen on the DeleteSubscriptions of an unsubscribe: the other subscription's tags turn uncertain within the bound", async () => {
    const { proxy, driver } = await connectedThroughProxy();
    const received: Sample[] = [];
    await driver.subscribe(countTags.list().slice(0, 2), { samplingIntervalMs: 50 }, (samples) =>
      received.push(...samples),
    );
    const dispose = await driver.subscribe(countTags.list().slice(2), { samplingIntervalMs: 50 }, () => undefined);
    await freshValues(received);
    const frozen = proxy.freezeOnRequest(ObjectIds.DeleteSubscriptionsRequest_Encoding_DefaultBinary, "swallow");
    dispose(); // fire and forget: nobody waits for the DeleteSubscriptions
    await frozen;
    const mark = received.length;
    const at = Date.now();
    expect(await untilNotGood(received, mark, at, ["kiln.a", "kiln.b"])).toBeLessThan(STALL_BOUND_MS + SLACK_MS);
  }, 40_000);

  test("a link frozen on the CreateMonitoredItems that retries a refused item: the good tags turn uncertain within the bound", async () => {
    const tags = defineTags({
      "kiln.a": { dataType: "int32", address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Kiln.A` },
      "kiln.b": { dataType: "int32", address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Kiln.B` },
      "kiln.nowhere": { dataType: "int32", address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Kiln.Nowhere` },
    });
    const { proxy, driver } = await connectedThroughProxy();
    const received: Sample[] = [];
    await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
    await freshValues(received);
    expect(received.find((sample) => sample.tag === "kiln.nowhere")?.quality.severity).toBe("bad");
    // The refused item is created again on the monitoredItemRetry backoff (100-400 ms).
    const frozen = proxy.freezeOnRequest(ObjectIds.CreateMonitoredItemsRequest_Encoding_DefaultBinary, "swallow");
    await frozen;
    const mark = received.length;
    const at = Date.now();
    expect(await untilNotGood(received, mark, at, ["kiln.a", "kiln.b"])).toBeLessThan(STALL_BOUND_MS + SLACK_MS);
  }, 40_000);

  test("a link frozen on the CreateSubscription that re-creates a subscription after its watchdog expired: the stall is declared within the bound", async () => {
    const { proxy, driver, statuses } = await connectedThroughProxy({ subscriptions: SHORT_SUBSCRIPTION_LIFETIME });
    const received: Sample[] = [];
    await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
    await freshValues(received);
    // The server stops answering Publish on the driver's session (Reads still answered, so the
    // link looks alive): the subscription's keep-alive watchdog expires and re-creates it.
    const prototype = OPCUAServer.prototype as unknown as {
      _on_PublishRequest: (this: unknown, message: unknown, channel: unknown) => unknown;
    };
    const original = prototype._on_PublishRequest;
    prototype._on_PublishRequest = () => undefined;
    restore.push(() => {
      prototype._on_PublishRequest = original;
    });
    await proxy.freezeOnRequest(ObjectIds.CreateSubscriptionRequest_Encoding_DefaultBinary, "swallow");
    const at = Date.now();
    expect(await untilStallDeclared(statuses, at)).toBeLessThan(STALL_BOUND_MS + SLACK_MS);
  }, 40_000);

  // Sibling: the application's own requests keep requestMs. A subscribe() whose CreateMonitoredItems
  // a slow path holds for 2.6 s (past the stall bound, within requestMs) succeeds with no loss.
  test("the CreateMonitoredItems of an application's subscribe() held 2.6 s is no stall: it keeps requestMs", async () => {
    const { proxy, driver, statuses } = await connectedThroughProxy();
    const received: Sample[] = [];
    const held = proxy.freezeOnRequest(ObjectIds.CreateMonitoredItemsRequest_Encoding_DefaultBinary, "hold");
    const subscribing = driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) =>
      received.push(...samples),
    );
    await held;
    await new Promise((resolve) => setTimeout(resolve, 2_600));
    proxy.restore();
    await subscribing;
    await freshValues(received);
    expect(statuses.filter((change) => change.to === "reconnecting")).toEqual([]);
  }, 40_000);
});

// adv13s LOW-2: the driver's rebuild (after a stalled repair, or when it stops trusting a session's
// publishing) opened each new connection with its connect stages (TCP, HEL/ACK) bounded by
// timeouts.connectMs, and first waited requestMs for the old session's CloseSession: an attempt
// sent while the link was still stalled hung for the full connectMs after the link came back. A
// rebuild's stages are now bounded like node-opcua's reconnect attempts (2 keep-alives + 2 response
// times, doubling per failed attempt up to connectMs), the old session's close by the stall bound.
describe("a rebuild into a stalled link (adv13s L2)", () => {
  test("the link comes back while the rebuild's first attempt is out: connected within the stage bound, not connectMs", async () => {
    const { proxy, driver, statuses } = await connectedThroughProxy({
      connectMs: 8_000,
      requestMs: 3_000,
      subscriptions: SHORT_SUBSCRIPTION_LIFETIME,
    });
    const received: Sample[] = [];
    await driver.subscribe(countTags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
    await freshValues(received);
    driver.onStatusChange((change) => {
      // The link stalls just as the driver opens a new session.
      if (change.to === "reconnecting" && /opening a new session/.test(change.reason ?? "")) proxy.blackhole();
    });
    // The server stops answering Publish on this session: the second watchdog expiry in a row
    // opens a new session (fix13r).
    const prototype = OPCUAServer.prototype as unknown as {
      _on_PublishRequest: (this: unknown, message: unknown, channel: unknown) => unknown;
    };
    const original = prototype._on_PublishRequest;
    let muted: string | undefined;
    prototype._on_PublishRequest = function (message, channel) {
      const token = String(
        (message as { request: { requestHeader: { authenticationToken: unknown } } }).request.requestHeader
          .authenticationToken,
      );
      muted ??= token;
      return token === muted ? undefined : original.call(this, message, channel);
    };
    restore.push(() => {
      prototype._on_PublishRequest = original;
    });
    await waitFor(
      () =>
        statuses.find((change) => change.to === "reconnecting" && /opening a new session/.test(change.reason ?? "")),
      { what: "the rebuild", timeoutMs: 30_000 },
    );
    // Past the old session's close (bounded) and into the first attempts of the new one.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    proxy.restore();
    const at = Date.now();
    await waitFor(() => driver.status === "connected", { what: "connected again", timeoutMs: 20_000 });
    expect(Date.now() - at).toBeLessThan(5_000);
    await freshValues(received);
  }, 80_000);
});
