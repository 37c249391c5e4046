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
    expect(serverSubscriptions()).toEqual([expect.objectContaining({ publishingInterval: 1_000 })]);
  } finally {
    Subscription.minimumPublishingInterval = minimum;
    await driver.close();
  }
}, 30_000);
