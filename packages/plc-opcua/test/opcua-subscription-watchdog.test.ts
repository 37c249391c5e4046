import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample } from "@kiln/core";
import { DataType, Variant } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer, Subscription } from "node-opcua-server";
import { afterAll, beforeAll, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";
import { TcpProxy } from "./support/tcp-proxy";
import { waitFor } from "./support/wait-for";

// Issue 13d, HIGH-2: a subscription the server deleted (or gave to another session) while the
// session and the link stayed up was never noticed: node-opcua reports nothing, so the group's
// values stayed frozen but good. A keep-alive watchdog per subscription (2 keep-alive periods,
// docs/adr/0022, amendment fix13d) now turns the tags bad with the reason and re-creates it.
const NS = "urn:kiln:test:watchdog";
const tags = defineTags({
  count: { dataType: "float64", address: `nsu=${NS};s=Count`, scanGroup: "fast" },
});
const quietTags = defineTags({
  still: { dataType: "float64", address: `nsu=${NS};s=Still`, scanGroup: "slow" },
});

let workDir: string;
let server: OPCUAServer;
let counter = 0;
let timer: NodeJS.Timeout;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-watchdog-"));
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port: free } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(free));
    });
  });
  server = new OPCUAServer({ port, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  addressSpace.registerNamespace(NS);
  addressSpace.getNamespace(NS)!.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "Count",
    nodeId: "s=Count",
    dataType: "Double",
    minimumSamplingInterval: 50,
    value: { get: () => new Variant({ dataType: DataType.Double, value: counter }) },
  });
  addressSpace.getNamespace(NS)!.addVariable({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "Still",
    nodeId: "s=Still",
    dataType: "Double",
    minimumSamplingInterval: 50,
    value: { get: () => new Variant({ dataType: DataType.Double, value: 42 }) },
  });
  timer = setInterval(() => counter++, 50);
  await server.start();
});

afterAll(async () => {
  clearInterval(timer);
  await server?.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

/** Deletes every subscription of every session on the server; the sessions stay open. */
function deleteSessionSubscriptions(): number {
  let deleted = 0;
  for (const session of server.engine.getSessions()) {
    const engine = (session as unknown as { publishEngine: { subscriptions: { id: number }[] } }).publishEngine;
    for (const { id } of [...engine.subscriptions]) {
      session.deleteSubscription(id);
      deleted++;
    }
  }
  return deleted;
}

const newDriver = () =>
  new OpcuaDriver({
    endpointUrl: server.getEndpointUrl(),
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    subscriptions: { keepAliveMs: 600, maxPublishingIntervalMs: 200 },
    monitoredItemRetry: { initialDelayMs: 100, maxDelayMs: 400 },
  });

/**
 * Makes the server grant at most `grantedMs` as session timeout (node-opcua's server has no option
 * for it; a PLC may grant a few seconds). Returns the undo.
 */
function grantSessionTimeout(grantedMs: number, onCreate?: () => void): () => void {
  const internals = server as unknown as Record<string, unknown>;
  const original = internals._on_CreateSessionRequest as (message: unknown, channel: unknown) => unknown;
  internals._on_CreateSessionRequest = function (
    this: unknown,
    message: { request: { requestedSessionTimeout: number } },
    channel: unknown,
  ) {
    message.request.requestedSessionTimeout = Math.min(message.request.requestedSessionTimeout, grantedMs);
    onCreate?.();
    return original.call(this, message, channel);
  };
  return () => {
    internals._on_CreateSessionRequest = original;
  };
}

/** The server's subscriptions, with their publishing-cycle counters. */
function serverSubscriptions(): { id: number; publishIntervalCount: number; maxKeepAliveCount: number }[] {
  return server.engine.getSessions().flatMap(
    (session) =>
      (
        session as unknown as {
          publishEngine: { subscriptions: { id: number; publishIntervalCount: number; maxKeepAliveCount: number }[] };
        }
      ).publishEngine.subscriptions,
  );
}

test("the server deletes the session's subscription: the tags go bad with the reason, then it is re-created", async () => {
  const driver = newDriver();
  await driver.connect();
  const received: Sample[] = [];
  try {
    await driver.subscribe(tags.list(), { samplingIntervalMs: 100 }, (samples) => received.push(...samples));
    await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "values" });
    expect(deleteSessionSubscriptions()).toBe(1);
    const mark = received.length;
    const lost = await waitFor(() => received.slice(mark).find((sample) => sample.quality.severity !== "good"), {
      what: "the tag bad after the subscription vanished",
    });
    expect(lost.quality).toMatchObject({ severity: "bad" });
    expect(lost.quality.reason).toMatch(/no notification or keep-alive/);
    const lostAt = received.indexOf(lost);
    const fresh = await waitFor(() => received.slice(lostAt).find((sample) => sample.quality.severity === "good"), {
      what: "values from the re-created subscription",
    });
    expect(fresh.timestamp).toBeGreaterThanOrEqual(lost.timestamp);
    await waitFor(() => server.engine.currentSubscriptionCount === 1, { what: "one subscription on the server" });
  } finally {
    await driver.close();
  }
}, 30_000);

// Sibling: a group whose values never change gets only keep-alives; they keep the watchdog quiet.
test("a quiet subscription (keep-alives only) is not re-created", async () => {
  const driver = newDriver();
  await driver.connect();
  const received: Sample[] = [];
  try {
    await driver.subscribe(quietTags.list(), { samplingIntervalMs: 100 }, (samples) => received.push(...samples));
    await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "the first value" });
    const [subscription] = serverSubscriptions();
    const start = subscription!.publishIntervalCount;
    // Five keep-alive periods counted on the server: two and a half watchdog periods.
    await waitFor(() => subscription!.publishIntervalCount >= start + 5 * subscription!.maxKeepAliveCount, {
      what: "five keep-alive periods on the server",
    });
    expect(serverSubscriptions().map(({ id }) => id)).toEqual([subscription!.id]);
    expect(received.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
  } finally {
    await driver.close();
  }
}, 30_000);

// Issue 13d, HIGH-1: a server whose minimum publishing interval is far above the request made
// node-opcua's W09 check of the revised values throw inside its CreateSubscription response
// callback: subscribe() never settled and every retry leaked a subscription on the server.
test("a server that revises the publishing interval far upwards: subscribe() resolves, one subscription, values good", async () => {
  const minimum = Subscription.minimumPublishingInterval;
  Subscription.minimumPublishingInterval = 1_000;
  const driver = new OpcuaDriver({
    endpointUrl: server.getEndpointUrl(),
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000, sessionMs: 10_000 },
  });
  await driver.connect();
  const received: Sample[] = [];
  try {
    await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) => received.push(...samples));
    await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "values" });
    // Issue 13, LOW (pass on fix13d): the requested keep-alive count (100 for 50 ms) stayed, so the
    // keep-alive period was 100 s, and the watchdog 200 s. It is lowered with ModifySubscription to
    // keep the keep-alive period of 5 s (docs/adr/0022, amendment fix13e).
    await waitFor(() => serverSubscriptions()[0]?.maxKeepAliveCount === 5, {
      what: "the keep-alive count lowered to 5 on the server",
    });
    expect(serverSubscriptions()).toEqual([
      expect.objectContaining({ publishingInterval: 1_000, maxKeepAliveCount: 5 }),
    ]);
    const mark = received.length;
    await waitFor(() => received.length > mark, { what: "values after the modification" });
  } finally {
    Subscription.minimumPublishingInterval = minimum;
    await driver.close();
  }
}, 30_000);

// Issue 13, M/L-4 (pass on fix13d): a server granting a session timeout below three publishing
// intervals made subscribe() fail with KILN_VALIDATION, and the session keep-alive stayed at
// timeouts.keepAliveMs, longer than the granted timeout. Both now derive from the granted value
// (docs/adr/0022, amendment fix13e).
test("a server granting a 1.5 s session timeout: the subscription publishes faster to fit, values good", async () => {
  const undo = grantSessionTimeout(1_500);
  const driver = new OpcuaDriver({
    endpointUrl: server.getEndpointUrl(),
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
  });
  const received: Sample[] = [];
  try {
    await driver.connect();
    await driver.subscribe(quietTags.list(), { samplingIntervalMs: 2_000 }, (samples) => received.push(...samples));
    await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "a value" });
    const [subscription] = serverSubscriptions() as unknown as {
      publishingInterval: number;
      maxKeepAliveCount: number;
    }[];
    expect(subscription!.publishingInterval * subscription!.maxKeepAliveCount).toBeLessThanOrEqual(1_500);
  } finally {
    undo();
    await driver.close();
  }
}, 30_000);

// Sibling: an idle session (reads every few seconds, no subscription) must not expire on the
// server between keep-alives of timeouts.keepAliveMs (5 s) when the server granted 1.5 s.
test("a server granting a 1.5 s session timeout: an idle session is kept alive (no reconnect)", async () => {
  const undo = grantSessionTimeout(1_500);
  const driver = new OpcuaDriver({
    endpointUrl: server.getEndpointUrl(),
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
  });
  const statuses: string[] = [];
  try {
    await driver.connect();
    driver.onStatusChange((change) => statuses.push(`${change.to}: ${change.reason ?? ""}`));
    const sessionIds = () => server.engine.getSessions().map((session) => session.nodeId.toString());
    const before = sessionIds();
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    const [sample] = await driver.read(quietTags.list());
    expect(sample!.quality.severity).toBe("good");
    expect(statuses).toEqual([]);
    expect(sessionIds()).toEqual(before);
  } finally {
    undo();
    await driver.close();
  }
}, 30_000);

// Issue 13, MEDIUM-1 (pass on fix13e): the keep-alive was adapted to the granted session timeout
// only when the session was opened. A server that re-created the session (after a restart, or
// having dropped it) with a shorter timeout got keep-alives at the old period: the session
// expired between them and each poll logged in again. Now every restored session adapts it
// (docs/adr/0022, amendment fix13f).
test("a session re-created with a shorter granted timeout (1 s): the keep-alive follows it, one re-creation, polls good", async () => {
  const driver = new OpcuaDriver({
    endpointUrl: server.getEndpointUrl(),
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { requestMs: 3_000 },
  });
  let creations = 0;
  let undo = () => undefined as void;
  try {
    await driver.connect();
    undo = grantSessionTimeout(1_000, () => creations++);
    for (const session of server.engine.getSessions()) {
      server.engine.closeSession(session.authenticationToken, true, "Terminated");
    }
    await driver.read(quietTags.list()).catch(() => undefined);
    await waitFor(() => creations === 1 && driver.status === "connected", { what: "the session re-created" });
    const polls: string[] = [];
    // Polls further apart than the granted timeout: only the keep-alive holds the session.
    for (let poll = 0; poll < 3; poll++) {
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const [sample] = await driver.read(quietTags.list());
      polls.push(sample!.quality.severity);
    }
    expect(polls).toEqual(["good", "good", "good"]);
    expect(creations).toBe(1);
  } finally {
    undo();
    await driver.close();
  }
}, 30_000);

// Issue 13, LOW-5 (pass on fix13e): a publishing interval revised downwards (server maximum
// 50 ms, request 200 ms) shrank the subscription's keep-alive period to 150 ms and its watchdog to
// 300 ms: half a second of silence that the link allows (2 keep-alive periods) re-created the
// subscription. The watchdog now waits at least the link silence bound (amendment fix13f).
test("a publishing interval revised downwards: a pause the link allows does not re-create the subscription", async () => {
  const maximum = Subscription.maximumPublishingInterval;
  Subscription.maximumPublishingInterval = 50;
  const proxy = new TcpProxy(Number(new URL(server.getEndpointUrl().replace("opc.tcp", "http")).port));
  const driver = new OpcuaDriver({
    endpointUrl: await proxy.start(),
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 3_000 },
    subscriptions: { keepAliveMs: 600, maxPublishingIntervalMs: 200 },
  });
  const received: Sample[] = [];
  try {
    await driver.connect();
    await driver.subscribe(tags.list(), { samplingIntervalMs: 1_000 }, (samples) => received.push(...samples));
    await waitFor(() => received.some((sample) => sample.quality.severity === "good"), { what: "values" });
    const [subscription] = serverSubscriptions();
    proxy.pause();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    proxy.restore();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(received.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
    expect(serverSubscriptions().map(({ id }) => id)).toEqual([subscription!.id]);
  } finally {
    Subscription.maximumPublishingInterval = maximum;
    await driver.close();
    await proxy.close();
  }
}, 30_000);
