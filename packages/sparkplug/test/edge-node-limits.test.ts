import { SimulatedPlc, createControlSystem, defineTags } from "@kiln/core";
import { afterEach, describe, expect, test, vi } from "vitest";
import {
  encodePayload,
  memoryBdSeqStore,
  SparkplugEdgeNode,
  SparkplugHost,
  type SparkplugEdgeNodeOptions,
} from "../src/index";
import { mosquittoAvailability } from "../src/testing/index";
import { DEVICE, EDGE, GROUP, edgeFixture, type EdgeFixture } from "./support/edge-fixture";
import { openTestDatabase } from "./support/host-harness";
import { dbirthPacketSize, limitedBroker } from "./support/limited-broker";

// ADR 0043, amendment fix19s: births and data too large for the broker, on MQTT 5 and 3.1.1.
vi.setConfig({ testTimeout: 60_000 });

const availability = mosquittoAvailability();
const needs = !availability.available;
if (!availability.available) console.info(`edge-node-limits: skipped, ${availability.reason}`);

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const tag = (metric: string) => `${GROUP}/${EDGE}/${DEVICE}/${metric}`;

async function setUp(maxPacketSize: number): Promise<{ fixture: EdgeFixture; url: string; host: SparkplugHost }> {
  const fixture = await edgeFixture();
  cleanups.push(() => fixture.close());
  const broker = await limitedBroker(maxPacketSize);
  cleanups.push(() => broker.stop());
  const db = await openTestDatabase();
  cleanups.push(() => db.close());
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: "limits",
    groups: [GROUP],
    store: db.store,
    rebirthIntervalMs: 0,
    stopLingerMs: 100,
    batching: { maxDelayMs: 5 },
    mqtt: { protocolVersion: 5 },
  });
  cleanups.push(() => host.stop());
  await host.start();
  return { fixture, url: broker.url, host };
}

function node(fixture: EdgeFixture, options: Partial<SparkplugEdgeNodeOptions>): SparkplugEdgeNode {
  const created = fixture.newNode({ minRebirthIntervalMs: 200, ...options });
  cleanups.push(() => created.stop());
  return created;
}

async function rebirthRequest(url: string): Promise<void> {
  const { connectAsync } = await import("mqtt");
  const commander = await connectAsync(url, { protocolVersion: 5 });
  const bytes = encodePayload({
    timestamp: Date.now(),
    metrics: [{ name: "Node Control/Rebirth", datatype: "Boolean", value: true }],
  });
  await commander.publishAsync(`spBv1.0/${GROUP}/NCMD/${EDGE}`, Buffer.from(bytes), { qos: 1 });
  await commander.endAsync();
}

describe.skipIf(needs)("a rebirth too large for the broker (adversarial review 19s, item 1)", () => {
  test("MQTT 5: a rebirth holding a value too large goes out with that value null and bad; the host shows the next change good, never the old value (needs mosquitto)", async () => {
    const { fixture, url, host } = await setUp(4_000);
    const edge = node(fixture, { brokerUrl: url, mqtt: { protocolVersion: 5 } });
    const births: number[] = [];
    edge.events.on("birth-publish", (event) => void births.push(event.metrics));
    await edge.start();
    fixture.plc.set("heater.setpoint", 10);
    await expect.poll(() => host.latest(tag("heater.setpoint"))?.sample.value, { timeout: 10_000 }).toBe(10);
    fixture.plc.set("recipe.name", "z".repeat(10_000));
    await expect.poll(() => edge.health().metricsNotEncodable, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
    await rebirthRequest(url);
    await expect.poll(() => births.length, { timeout: 5_000 }).toBe(2);
    fixture.plc.set("heater.setpoint", 99);
    await expect
      .poll(() => host.latest(tag("heater.setpoint"))?.sample, { timeout: 10_000 })
      .toMatchObject({ value: 99, quality: { severity: "good" } });
    expect(host.latest(tag("recipe.name"))?.sample).toMatchObject({ value: null, quality: { severity: "bad" } });
    expect(edge.health()).toMatchObject({ publishing: true, link: "connected" });
    expect(edge.health().problems.join("\n")).toMatch(/recipe\.name .*too large/);
  });

  test("sibling: a rebirth too large even with its values null sends DDEATH, so the host marks the device's values stale; the birth is sent once it fits (needs mosquitto)", async () => {
    const fixture0 = await edgeFixture();
    cleanups.push(() => fixture0.close());
    // Room for the birth as it is, not for the reason a null value carries.
    const limit = (await dbirthPacketSize(fixture0)) + 60;
    const { fixture, url, host } = await setUp(limit);
    const edge = node(fixture, { brokerUrl: url, mqtt: { protocolVersion: 5 } });
    await edge.start();
    fixture.plc.set("heater.setpoint", 10);
    await expect
      .poll(() => host.latest(tag("heater.setpoint"))?.sample, { timeout: 10_000 })
      .toMatchObject({ value: 10, quality: { severity: "good" } });
    fixture.plc.set("recipe.name", "z".repeat(10_000));
    await expect.poll(() => edge.health().metricsNotEncodable, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
    await rebirthRequest(url);
    await expect
      .poll(() => edge.health().problems.join("\n"), { timeout: 5_000 })
      .toMatch(/DBIRTH .*over the broker's Maximum Packet Size/);
    expect(edge.health().publishing).toBe(false);
    // Only the value that was too large is blamed: a small value's null, with its reason, is
    // larger than the value, so it is never sent as null (adversarial review 19r).
    const blamed = edge
      .health()
      .problems.filter((problem) => /too large/.test(problem))
      .join("\n");
    expect(blamed).toMatch(/recipe\.name/);
    expect(blamed).not.toMatch(/heater\.setpoint|counter\.total|chamber\.pressure|valve\.ald1|Machine State/);
    fixture.plc.set("heater.setpoint", 99);
    await expect
      .poll(() => host.latest(tag("heater.setpoint"))?.sample.quality.severity, { timeout: 10_000 })
      .toBe("uncertain");
    expect(host.health().edgeNodes[0]?.devices).toEqual([{ deviceId: DEVICE, online: false }]);
    // The value fits again: the birth retried is sent and the host has the current values good.
    fixture.plc.set("recipe.name", "short");
    await expect
      .poll(() => host.latest(tag("heater.setpoint"))?.sample, { timeout: 10_000 })
      .toMatchObject({ value: 99, quality: { severity: "good" } });
  });
});

describe.skipIf(needs)("MQTT 3.1.1: the broker announces no packet limit (adversarial review 19s, item 3)", () => {
  test("with brokerMaximumPacketSize, a value too large goes as null and bad and the session lives on, as with an announced limit (needs mosquitto)", async () => {
    const { fixture, url, host } = await setUp(4_000);
    const edge = node(fixture, { brokerUrl: url, brokerMaximumPacketSize: 4_000 });
    let links = 0;
    edge.events.on("link-change", () => void links++);
    await edge.start();
    await expect.poll(() => edge.health().publishing, { timeout: 5_000 }).toBe(true);
    const before = links;
    const births = edge.health().published.births;
    fixture.plc.set("recipe.name", "z".repeat(10_000));
    await expect
      .poll(() => edge.health().problems.join("\n"), { timeout: 5_000 })
      .toMatch(/recipe\.name .*\(4000 bytes, the brokerMaximumPacketSize option\)/);
    await expect
      .poll(() => host.latest(tag("recipe.name"))?.sample, { timeout: 10_000 })
      .toMatchObject({ value: null, quality: { severity: "bad" } });
    const sent = edge.health().published.dataMessages;
    await expect.poll(() => edge.health().published.dataMessages, { timeout: 5_000 }).toBeGreaterThan(sent + 3);
    expect(links).toBe(before);
    expect(edge.health().published.births).toBe(births);
    // A rebirth holds it as null too.
    await rebirthRequest(url);
    await expect.poll(() => edge.health().published.births, { timeout: 5_000 }).toBe(births + 1);
    expect(links).toBe(before);
  });

  test("sibling: without it, the broker drops the session and health names the likely cause; a bad value is refused naming the option (needs mosquitto)", async () => {
    const { fixture, url } = await setUp(4_000);
    expect(() => fixture.newNode({ brokerUrl: url, brokerMaximumPacketSize: 0 })).toThrow(
      expect.objectContaining({
        code: "KILN_VALIDATION",
        details: { issues: [expect.objectContaining({ path: "brokerMaximumPacketSize" })] },
      }),
    );
    expect(() => fixture.newNode({ brokerUrl: url, brokerMaximumPacketSize: 1.5 })).toThrow(/brokerMaximumPacketSize/);
    const edge = node(fixture, { brokerUrl: url });
    const reasons: string[] = [];
    edge.events.on("link-change", (change) => void reasons.push(change.reason ?? ""));
    await edge.start();
    await expect.poll(() => edge.health().publishing, { timeout: 5_000 }).toBe(true);
    fixture.plc.set("recipe.name", "z".repeat(10_000));
    await expect
      .poll(() => reasons.join("\n"), { timeout: 10_000 })
      .toMatch(
        /right after a \d+-byte (DDATA|DBIRTH), the largest the session sent: likely over the broker's packet limit .*brokerMaximumPacketSize/,
      );
  });

  test("regression adv19r M2: with a client id given, drops for a packet too large stay named as such, never hidden behind another client taking the session over (needs mosquitto)", async () => {
    const { fixture, url } = await setUp(4_000);
    // Every birth is too large from the start: each session dies right after it, within 10 s of
    // its CONNACK, as three sessions taken over in a row would on MQTT 3.1.1.
    fixture.plc.set("recipe.name", "z".repeat(10_000));
    const edge = node(fixture, { brokerUrl: url, mqtt: { clientId: "limits-edge" } });
    const reasons: string[] = [];
    edge.events.on("link-change", (change) => {
      if (change.to === "reconnecting") reasons.push(change.reason ?? "");
    });
    await edge.start();
    await expect.poll(() => reasons.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(5);
    for (const reason of reasons.slice(1)) expect(reason).toMatch(/likely over the broker's packet limit/);
    // Three short sessions in a row look like a takeover on MQTT 3.1.1 as well: both are named.
    expect(reasons.at(-1)).toMatch(/likely in use by another client.*; or: the session ended right after a \d+-byte/);
    await expect
      .poll(() => edge.health().problems.join("\n"), { timeout: 5_000 })
      .toMatch(/likely over the broker's packet limit/);
  });
});

describe.skipIf(needs)(
  "the data-size problem clears once every metric it names was sent again (adversarial review fix19c, item 2)",
  () => {
    test("a metric that does not fit the broker's limit even alone and as null is named as not sent, and no longer once its value is small again and it was sent (needs mosquitto)", async () => {
      // One string tag: its DBIRTH fits in 200 bytes, a DDATA of it as null with its reason does not.
      const tags = defineTags({ r: { dataType: "string" } });
      const plc = new SimulatedPlc({ tags });
      const system = createControlSystem({
        machineId: "m",
        tags,
        driver: plc,
        scanGroups: { default: { periodMs: 50 } },
      });
      await system.start();
      cleanups.push(() => system.stop());
      await system.ready();
      const broker = await limitedBroker(200);
      cleanups.push(() => broker.stop());
      const edge = new SparkplugEdgeNode({
        system,
        brokerUrl: broker.url,
        groupId: GROUP,
        edgeNodeId: EDGE,
        principal: { id: "host", roles: ["engineer"] },
        bdSeqStore: memoryBdSeqStore(),
        mqtt: { protocolVersion: 5 },
      });
      cleanups.push(() => edge.stop());
      await edge.start();
      await expect.poll(() => edge.health().publishing, { timeout: 5_000 }).toBe(true);
      const sent = edge.health().published.dataMessages;
      plc.set("r", "z".repeat(1_000));
      await expect
        .poll(() => edge.health().problems.join("\n"), { timeout: 5_000 })
        .toMatch(
          /1 metric\(s\) not sent, too large for the broker's Maximum Packet Size even alone and without their value: r \(.*200 bytes, MQTT 5 CONNACK/,
        );
      expect(edge.health().published.dataMessages).toBe(sent);
      plc.set("r", "small");
      await expect.poll(() => edge.health().published.dataMessages, { timeout: 5_000 }).toBeGreaterThan(sent);
      await expect.poll(() => edge.health().problems, { timeout: 5_000 }).toEqual([]);
    });

    test("sibling: a value sent as null because it was too large, then small again and sent whole: the problem names it, then clears (needs mosquitto)", async () => {
      const { fixture, url, host } = await setUp(4_000);
      const edge = node(fixture, { brokerUrl: url, mqtt: { protocolVersion: 5 } });
      await edge.start();
      await expect.poll(() => edge.health().publishing, { timeout: 5_000 }).toBe(true);
      fixture.plc.set("recipe.name", "z".repeat(10_000));
      await expect
        .poll(() => edge.health().problems.join("\n"), { timeout: 5_000 })
        .toMatch(/last sent as null and bad.*recipe\.name/);
      fixture.plc.set("recipe.name", "short");
      await expect
        .poll(() => host.latest(tag("recipe.name"))?.sample, { timeout: 10_000 })
        .toMatchObject({ value: "short", quality: { severity: "good" } });
      expect(edge.health().problems.join("\n")).not.toMatch(/recipe\.name/);
    });
  },
);
