import { MemoryStore, QualityCodes } from "@kiln/core";
import mqtt from "mqtt";
import type { IConnectPacket, ISubscribePacket } from "mqtt-packet";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { SparkplugHost, type SparkplugHostEvents, type SparkplugHostOptions } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { decodePayload } from "../src/payload";
import {
  freePort,
  mosquittoAvailability,
  recordSparkplug,
  startMqttTap,
  startTestBroker,
  type SparkplugRecorder,
  type TestBroker,
} from "../src/testing/index";
import { RawEdgeNode, eventually, openTestDatabase, type TestDatabase } from "./support/host-harness";

const GROUP = "plant-1";
const NODE = "line-3";
const DEVICE = "ald-1";
const PRESSURE = qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, deviceId: DEVICE, metric: "chamber.pressure" });
const HEATER = qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, deviceId: DEVICE, metric: "heater.on" });
const STATE_TEXT = qualifiedTagName({
  groupId: GROUP,
  edgeNodeId: NODE,
  deviceId: DEVICE,
  metric: "Kiln/Machine State",
});

/** The device's DBIRTH metrics: aliases 1–3, with quality properties as the Kiln edge node sends them. */
function deviceBirth(timestamp: number) {
  const good = {
    Quality: { type: "Int32", value: 192 },
    StatusCode: { type: "UInt32", value: 0 },
  } as const;
  return [
    {
      name: "chamber.pressure",
      alias: 1,
      timestamp,
      datatype: "Double",
      value: 1.5e-3,
      properties: {
        ...good,
        engUnit: { type: "String", value: "mbar" },
        engLow: { type: "Double", value: 0 },
        engHigh: { type: "Double", value: 1000 },
      },
    },
    { name: "heater.on", alias: 2, timestamp, datatype: "Boolean", value: false, properties: good },
    { name: "Kiln/Machine State", alias: 3, timestamp, datatype: "String", value: "Idle", properties: good },
  ] as const;
}

let broker: TestBroker;

beforeAll(async () => {
  broker = await startTestBroker();
  console.info(
    `Sparkplug host tests: broker ${broker.kind}, store ${process.env.DATABASE_URL ? "PostgreSQL server" : "PGlite"}`,
  );
  return async () => {
    await broker.stop();
  };
});

const perTest: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of perTest.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Rig {
  readonly host: SparkplugHost;
  readonly db: TestDatabase;
  readonly recorder: SparkplugRecorder;
  readonly events: { [K in keyof SparkplugHostEvents]?: SparkplugHostEvents[K][] };
  edge(bdSeq?: number, edgeNodeId?: string): Promise<RawEdgeNode>;
  /** NCMD rebirth requests the recorder saw for the edge node. */
  rebirths(edgeNodeId?: string): number;
}

async function rig(options: Partial<SparkplugHostOptions> = {}): Promise<Rig> {
  const db = await openTestDatabase();
  perTest.push(() => db.close());
  const recorder = await recordSparkplug(broker.url, {
    decode: { datatypeOf: ({ name }) => (name === "Node Control/Rebirth" ? "Boolean" : undefined) },
  });
  perTest.push(() => recorder.close());
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: `kiln-host-${Math.random().toString(16).slice(2, 8)}`,
    groups: [GROUP],
    store: db.store,
    rebirthIntervalMs: 0,
    // The raw edge nodes here do not answer STATE offline with NDEATH; stop() need not wait for them.
    stopLingerMs: 100,
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    batching: { maxDelayMs: 5 },
    ...options,
  });
  perTest.push(() => host.stop());
  const events: Rig["events"] = {};
  for (const type of [
    "edge-node-change",
    "rebirth-request",
    "samples-drop",
    "message-reject",
    "store-error",
  ] as const) {
    host.events.on(type, (event) => {
      ((events[type] ??= []) as unknown[]).push(event);
    });
  }
  await host.start();
  await host.whenConnected();
  return {
    host,
    db,
    recorder,
    events,
    async edge(bdSeq = 0, edgeNodeId = NODE) {
      const edge = await RawEdgeNode.connect(broker.url, GROUP, edgeNodeId, bdSeq);
      perTest.push(() => edge.close());
      return edge;
    },
    rebirths(edgeNodeId = NODE) {
      return recorder.messages.filter(
        (message) =>
          message.parsed?.type === "NCMD" &&
          message.parsed.edgeNodeId === edgeNodeId &&
          message.payload?.metrics.some((metric) => metric.name === "Node Control/Rebirth" && metric.value === true),
      ).length;
    },
  };
}

/** A born edge node with device `ald-1` (aliases 1–3); returns it and the birth time. */
async function bornEdge(rigged: Rig, bdSeq = 0): Promise<{ edge: RawEdgeNode; born: number }> {
  const edge = await rigged.edge(bdSeq);
  const born = Date.now() - 1_000;
  await edge.nbirth(bdSeq);
  await edge.dbirth(DEVICE, deviceBirth(born));
  await eventually(() => rigged.host.latest(STATE_TEXT), 5_000, "the births reach the host");
  return { edge, born };
}

function nodeHealth(host: SparkplugHost, edgeNodeId = NODE) {
  return host.health().edgeNodes.find((node) => node.edgeNodeId === edgeNodeId);
}

describe("Sparkplug host: STATE (Sparkplug 3.0.0, 5.3 host session establishment)", () => {
  test("[tck-id-host-topic-phid-birth-qos] [tck-id-host-topic-phid-birth-retain] [tck-id-host-topic-phid-birth-topic] [tck-id-host-topic-phid-birth-payload] STATE online is published on spBv1.0/STATE/<host id> with QoS 1 and retain, as JSON {online, timestamp}", async () => {
    const { host } = await rig({ hostId: "scada-birth" });
    // A subscriber that arrives later gets the retained STATE, at the QoS it asked for (1).
    const late = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-birth" });
    perTest.push(() => late.close());
    const state = await late.waitFor((message) => message.parsed?.type === "STATE");
    expect(state.topic).toBe("spBv1.0/STATE/scada-birth");
    expect(state.retain).toBe(true);
    expect(state.qos).toBe(1);
    const json = JSON.parse(Buffer.from(state.bytes).toString("utf8")) as Record<string, unknown>;
    expect(Object.keys(json).sort()).toEqual(["online", "timestamp"]);
    expect(json.online).toBe(true);
    expect(json.timestamp).toBe(host.health().state.timestamp);
    expect(host.health().state.online).toBe(true);
  });

  test("[tck-id-host-topic-phid-death-required] [tck-id-host-topic-phid-death-qos] [tck-id-host-topic-phid-death-retain] the Will is STATE offline, QoS 1, retained, with the timestamp of the birth; after the reconnect STATE is online again", async () => {
    const proxy = await startMqttTap(broker.port);
    perTest.push(() => proxy.close());
    const { host, recorder } = await rig({ hostId: "scada-will", brokerUrl: proxy.url });
    const birth = await recorder.waitFor(
      (message) => message.topic === "spBv1.0/STATE/scada-will" && message.state !== undefined,
    );
    const born = birth.state as { online: boolean; timestamp: number };
    // The host's TCP connection breaks without a DISCONNECT: the broker publishes its Will.
    proxy.cut();
    const will = await recorder.waitFor(
      (message) =>
        message.topic === "spBv1.0/STATE/scada-will" && (message.state as { online: boolean }).online === false,
    );
    expect(will.state).toEqual({ online: false, timestamp: born.timestamp });
    // The recorder's subscription is QoS 1, and a Will of QoS 1 keeps it.
    expect(will.qos).toBe(1);
    await eventually(
      () => host.health().link === "connected" && host.health().state.timestamp !== born.timestamp,
      10_000,
      "reconnected",
    );
    const retained = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-will" });
    perTest.push(() => retained.close());
    const again = await retained.waitFor((message) => message.retain);
    expect(again.state).toEqual({ online: true, timestamp: host.health().state.timestamp });
  });

  test("[tck-id-message-flow-phid-sparkplug-clean-session-311] [tck-id-host-topic-phid-birth-sub-required] [tck-id-message-flow-phid-sparkplug-subscription] [tck-id-host-topic-phid-birth-message] CONNECT is a clean session with the STATE Will; the host subscribes its own STATE and spBv1.0/<group>/# at QoS 1 before its first PUBLISH, the STATE birth", async () => {
    const tap = await startMqttTap(broker.port);
    perTest.push(() => tap.close());
    const { host } = await rig({ hostId: "scada-order", brokerUrl: tap.url, groups: [GROUP, "plant-2"] });
    const connect = await tap.waitFor(({ packet }) => packet.cmd === "connect");
    const packet = connect.packet as IConnectPacket;
    expect(packet.clean).toBe(true);
    expect(packet.will).toMatchObject({ topic: "spBv1.0/STATE/scada-order", qos: 1, retain: true });
    expect(JSON.parse(Buffer.from(packet.will!.payload as Buffer).toString("utf8"))).toEqual({
      online: false,
      timestamp: host.health().state.timestamp,
    });
    const sent = tap.packets.filter((each) => each.connection === connect.connection).map((each) => each.packet);
    const subscribe = sent.findIndex((each) => each.cmd === "subscribe");
    const publish = sent.findIndex((each) => each.cmd === "publish");
    expect(subscribe).toBeGreaterThan(0);
    expect(publish).toBeGreaterThan(subscribe);
    expect((sent[subscribe] as ISubscribePacket).subscriptions.map(({ topic, qos }) => [topic, qos]).sort()).toEqual([
      ["spBv1.0/STATE/scada-order", 1],
      ["spBv1.0/plant-1/#", 1],
      ["spBv1.0/plant-2/#", 1],
    ]);
    expect(sent[publish]).toMatchObject({ cmd: "publish", topic: "spBv1.0/STATE/scada-order", qos: 1, retain: true });
  });

  test("[tck-id-message-flow-hid-sparkplug-state-message-delivered] a STATE offline for its own id, while connected, makes the host publish STATE online again", async () => {
    const { host, recorder } = await rig({ hostId: "scada-echo" });
    const { timestamp } = host.health().state;
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    await other.publishAsync("spBv1.0/STATE/scada-echo", JSON.stringify({ online: false, timestamp }), {
      qos: 1,
      retain: true,
    });
    await other.endAsync();
    await eventually(
      () =>
        recorder.messages.filter((message) => message.topic === "spBv1.0/STATE/scada-echo").at(-1)?.state !==
          undefined &&
        (
          recorder.messages.filter((message) => message.topic === "spBv1.0/STATE/scada-echo").at(-1)!.state as {
            online: boolean;
          }
        ).online === true &&
        recorder.messages.some(
          (message) =>
            message.topic === "spBv1.0/STATE/scada-echo" && (message.state as { online: boolean }).online === false,
        ),
    );
    const last = recorder.messages.filter((message) => message.topic === "spBv1.0/STATE/scada-echo").at(-1)!;
    expect(last.state).toEqual({ online: true, timestamp });
  });

  test("a STATE for its own id newer than its session's (a second host with this id, or a spoof) is reported in health; an older one is not (adv19x M2)", async () => {
    const { host } = await rig({ hostId: "scada-foreign" });
    const { timestamp } = host.health().state;
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    perTest.push(() => other.endAsync());
    const publish = (state: { online: boolean; timestamp: number }) =>
      other.publishAsync("spBv1.0/STATE/scada-foreign", JSON.stringify(state), { qos: 1 });
    // An older session's Will, delivered late: nothing to report.
    await publish({ online: false, timestamp: timestamp! - 5_000 });
    // Sibling: a STATE online newer than this session's: edge nodes would ignore this host's Will.
    // (Far enough ahead that the host does not outrun it, a new session, within the test.)
    await publish({ online: true, timestamp: timestamp! + 30_000 });
    await eventually(() => host.health().state.foreign !== undefined, 10_000, "the foreign STATE online reported");
    expect(host.health().state.foreign).toMatchObject({ online: true, timestamp: timestamp! + 30_000 });
    await publish({ online: false, timestamp: timestamp! + 60_000 });
    await eventually(() => host.health().state.foreign?.online === false, 10_000, "the foreign STATE offline reported");
    const health = host.health();
    expect(health.state).toMatchObject({
      online: true,
      timestamp,
      foreign: { online: false, timestamp: timestamp! + 60_000 },
    });
    expect(
      health.problems.some(
        (problem) => problem.includes("newer timestamp") && problem.includes("spBv1.0/STATE/scada-foreign"),
      ),
    ).toBe(true);
    // An older one after it changes nothing.
    await publish({ online: false, timestamp: timestamp! + 30_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(host.health().state.foreign).toMatchObject({ online: false, timestamp: timestamp! + 60_000 });
  });

  test("a foreign STATE online a little ahead is outrun: once the host's clock has passed it, a new session says online with a newer timestamp (fix19b, adv19z MEDIUM-2)", async () => {
    const { host } = await rig({ hostId: "scada-outrun" });
    const { timestamp } = host.health().state;
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    perTest.push(() => other.endAsync());
    const spoofAt = Date.now() + 1_500;
    await other.publishAsync("spBv1.0/STATE/scada-outrun", JSON.stringify({ online: true, timestamp: spoofAt }), {
      qos: 1,
      retain: true,
    });
    await eventually(() => host.health().state.foreign !== undefined, 5_000, "the foreign STATE reported");
    expect(host.health().problems.join("\n")).toMatch(
      /starts a new session stamped after it once its clock has passed/,
    );
    await eventually(
      () =>
        host.health().state.outruns === 1 &&
        (host.health().state.timestamp ?? 0) > spoofAt &&
        host.health().state.online,
      10_000,
      "outrun by a new session",
    );
    expect(host.health().state.timestamp).toBeGreaterThan(timestamp!);
    expect(host.health().state.foreign).toBeUndefined();
    const retained = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-outrun" });
    perTest.push(() => retained.close());
    const state = await retained.waitFor((message) => message.retain);
    expect((state.state as { online: boolean; timestamp: number }).timestamp).toBeGreaterThan(spoofAt);
  });

  test("a foreign STATE offline 10 years ahead found retained at start is reported (outrun only once the host's clock passes it: edge nodes hold it back until their clock is within maxHostClockSkewMs) (fix19b, fix19c, adv19z MEDIUM-1)", async () => {
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    perTest.push(() => other.endAsync());
    const future = Date.now() + 10 * 365 * 86_400_000;
    await other.publishAsync("spBv1.0/STATE/scada-far", JSON.stringify({ online: false, timestamp: future }), {
      qos: 1,
      retain: true,
    });
    const { host } = await rig({ hostId: "scada-far" });
    await eventually(() => host.health().state.foreign !== undefined, 5_000, "the retained foreign STATE reported");
    expect(host.health().state.foreign).toMatchObject({ online: false, timestamp: future });
    expect(host.health().problems.join("\n")).toMatch(
      /ms ahead of this host's clock: edge nodes with the default maxHostClockSkewMs \(300000 ms\) hold it back until/,
    );
    expect(host.health().state.outruns).toBe(0);
  });

  test("a STATE offline with exactly the session's timestamp while it is connected is counted and reported as forged (fix19b, adv19z LOW-1)", async () => {
    const { host } = await rig({ hostId: "scada-forged" });
    const { timestamp } = host.health().state;
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    perTest.push(() => other.endAsync());
    for (let round = 0; round < 2; round++) {
      await other.publishAsync("spBv1.0/STATE/scada-forged", JSON.stringify({ online: false, timestamp }), {
        qos: 1,
        retain: true,
      });
      await eventually(() => host.health().state.forgedOffline?.count === round + 1, 5_000, "forged offline counted");
    }
    expect(host.health().problems.join("\n")).toMatch(
      /2 STATE offline message\(s\) with this session's own timestamp came while the session was connected/,
    );
    // The host said online again (same timestamp): still its session.
    expect(host.health().state).toMatchObject({ online: true, timestamp });
    // Its own stop() is not counted.
    await host.stop();
    expect(host.health().state.forgedOffline?.count).toBe(2);
  });

  test("a flood of forged STATE offline messages with the session's timestamp is answered with STATE online at most once per 5 s, every forgery counted, the last word online (fix19c, adv19c LOW-1)", async () => {
    const { host } = await rig({ hostId: "scada-flood" });
    const { timestamp } = host.health().state;
    const recorder = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-flood" });
    perTest.push(() => recorder.close());
    await recorder.waitFor((message) => message.retain);
    const other = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    perTest.push(() => other.endAsync());
    const onlineAnswers = () =>
      recorder.messages.filter(
        (message) => !message.retain && (message.state as { online: boolean } | undefined)?.online === true,
      ).length;
    for (let i = 0; i < 40; i++) {
      await other.publishAsync("spBv1.0/STATE/scada-flood", JSON.stringify({ online: false, timestamp }), {
        qos: 1,
        retain: true,
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await eventually(() => host.health().state.forgedOffline?.count === 40, 5_000, "every forgery counted");
    // About 2 s of flood: the first answered at once, the rest wait for one paced answer.
    expect(onlineAnswers()).toBe(1);
    expect(host.health().problems.join("\n")).toMatch(/says online again at most once every 5000 ms/);
    await eventually(() => onlineAnswers() === 2, 8_000, "the paced answer");
    const last = recorder.messages.at(-1)!;
    expect(last.state).toEqual({ online: true, timestamp });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(onlineAnswers()).toBe(2);
  });

  test("[tck-id-host-topic-phid-death-payload] stop() publishes STATE offline (retained, the session's timestamp) before disconnecting", async () => {
    const { host } = await rig({ hostId: "scada-stop" });
    const { timestamp } = host.health().state;
    await host.stop();
    const retained = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-stop" });
    perTest.push(() => retained.close());
    const state = await retained.waitFor((message) => message.retain);
    expect(state.state).toEqual({ online: false, timestamp });
    expect(host.health().link).toBe("closed");
  });
});

describe("Sparkplug host: stop() hears the edge nodes out", () => {
  /** Makes `edge` answer the host's STATE offline as a Kiln edge node would, after DDATA still in flight. */
  async function answerFarewell(edge: RawEdgeNode, hostId: string, inFlight: number[], ndeath: boolean): Promise<void> {
    await edge.client.subscribeAsync(`spBv1.0/STATE/${hostId}`, { qos: 1 });
    edge.client.on("message", (topic, bytes) => {
      if (topic !== `spBv1.0/STATE/${hostId}` || (JSON.parse(bytes.toString()) as { online: boolean }).online) return;
      void (async () => {
        for (const at of inFlight)
          await edge.ddata(DEVICE, [{ alias: 1, timestamp: at, datatype: "Double", value: at % 1_000 }]);
        if (ndeath) await edge.ndeath(0);
      })();
    });
  }

  test("DDATA an edge node sent before it saw STATE offline is stored; stop() disconnects once the edge node's NDEATH came", async () => {
    const rigged = await rig({ hostId: "scada-farewell", stopLingerMs: 20_000 });
    const { edge, born } = await bornEdge(rigged);
    const inFlight = [born + 101, born + 102, born + 103];
    await answerFarewell(edge, "scada-farewell", inFlight, true);
    const started = performance.now();
    await rigged.host.stop();
    // Well before the linger: the NDEATH ended it.
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(nodeHealth(rigged.host)?.state).toBe("offline");
    const stored = (await rigged.db.samples(PRESSURE)).map((sample) => sample.timestamp);
    for (const at of inFlight) expect(stored).toContain(at);
    expect(rigged.host.health().samples).toMatchObject({ dropped: 0, discarded: 0 });
  });

  test("an edge node that never answers STATE offline holds stop() for stopLingerMs at most; what it sent meanwhile is stored, and STATE stays offline", async () => {
    const rigged = await rig({ hostId: "scada-linger", stopLingerMs: 600 });
    const { edge, born } = await bornEdge(rigged);
    const inFlight = [born + 201, born + 202];
    await answerFarewell(edge, "scada-linger", inFlight, false);
    const { timestamp } = rigged.host.health().state;
    await rigged.host.stop();
    const stored = (await rigged.db.samples(PRESSURE)).map((sample) => sample.timestamp);
    for (const at of inFlight) expect(stored).toContain(at);
    // Its own STATE offline coming back did not make it say online again.
    const retained = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-linger" });
    perTest.push(() => retained.close());
    expect((await retained.waitFor((message) => message.retain)).state).toEqual({ online: false, timestamp });
    expect(rigged.host.health().link).toBe("closed");
  });
});

describe("Sparkplug host: stop() with a broker that stopped answering", () => {
  /** Runs `work` and resolves with how long it took, in ms, or `Infinity` after `limitMs`. */
  async function timed(work: Promise<unknown>, limitMs: number): Promise<number> {
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      work.then(() => performance.now() - started),
      new Promise<number>((resolve) => (timer = setTimeout(() => resolve(Infinity), limitMs))),
    ]);
    clearTimeout(timer);
    return outcome;
  }

  test("the connection stays open and nothing is answered (a SIGSTOPped broker): stop() returns within the goodbye bound, and STATE ends offline (the Will once the broker notices)", async () => {
    const tap = await startMqttTap(broker.port);
    perTest.push(() => tap.close());
    const { host } = await rig({ hostId: "scada-stall", brokerUrl: tap.url });
    const { timestamp } = host.health().state;
    tap.stall();
    // Unbounded, the STATE offline publish (QoS 1) waits for a PUBACK until the keepalive gives
    // up (90 s at MQTT.js's default 60 s): the bound is 2 s for it and 2 s for the DISCONNECT.
    const took = await timed(host.stop(), 15_000);
    expect(took).toBeLessThan(5_000);
    expect(host.health().link).toBe("closed");
    tap.resume();
    const retained = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/scada-stall" });
    perTest.push(() => retained.close());
    await eventually(
      () =>
        retained.messages.some((message) => message.retain && (message.state as { online: boolean }).online === false),
      10_000,
      "STATE offline retained",
    );
    expect(retained.messages.find((message) => message.retain)?.state).toEqual({ online: false, timestamp });
  });

  test("a stall while an edge node awaits acks (final acks, then the goodbye): stop() stays within drain and goodbye bounds", async () => {
    const tap = await startMqttTap(broker.port);
    perTest.push(() => tap.close());
    const rigged = await rig({ hostId: "scada-stall-acks", brokerUrl: tap.url, drainTimeoutMs: 1_000 });
    const edge = await rigged.edge();
    const born = Date.now() - 1_000;
    await edge.nbirth(0, [{ name: "Kiln/Await Acks", datatype: "UInt64", value: 0 }]);
    // An edge node awaiting acks numbers its DDATA (Kiln/Message Number, born with the count so far).
    await edge.dbirth(DEVICE, [
      ...deviceBirth(born),
      { name: "Kiln/Message Number", alias: 9, timestamp: born, datatype: "UInt64", value: 0, isTransient: true },
    ]);
    await eventually(() => rigged.host.latest(STATE_TEXT), 5_000, "the births reach the host");
    await edge.ddata(DEVICE, [
      { alias: 1, timestamp: born + 1, datatype: "Double", value: 1 },
      { alias: 9, timestamp: born + 1, datatype: "UInt64", value: 1, isTransient: true },
    ]);
    await eventually(() => nodeHealth(rigged.host)?.acks?.storedThrough === 1, 5_000, "stored");
    tap.stall();
    const took = await timed(rigged.host.stop(), 15_000);
    expect(took).toBeLessThan(6_000);
    expect(rigged.host.health().samples).toMatchObject({ dropped: 0 });
  });
});

describe("Sparkplug host: births, data and the store", () => {
  test("births give the alias map; DDATA by alias is stored under group/edge node/device tag names with the metric's own timestamp; the live view follows", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged, 3);
    const at = born + 500;
    await edge.ddata(DEVICE, [
      { alias: 1, timestamp: at, datatype: "Double", value: 2.25 },
      { alias: 2, timestamp: at, datatype: "Boolean", value: true },
    ]);
    await eventually(
      async () => (await rigged.db.samples(PRESSURE)).length === 2,
      5_000,
      "two pressure samples stored",
    );
    const pressure = await rigged.db.samples(PRESSURE);
    expect(pressure.map((sample) => [sample.timestamp, sample.value, sample.quality.severity])).toEqual([
      [born, 1.5e-3, "good"],
      [at, 2.25, "good"],
    ]);
    expect((await rigged.db.samples(HEATER)).map((sample) => sample.value)).toEqual([false, true]);
    expect(rigged.host.latest(PRESSURE)?.sample).toMatchObject({ value: 2.25, timestamp: at });
    expect(rigged.host.latest(PRESSURE)).toMatchObject({
      groupId: GROUP,
      edgeNodeId: NODE,
      deviceId: DEVICE,
      metric: "chamber.pressure",
      datatype: "Double",
    });
    // Node metrics too, under the edge node's empty device level.
    const bdSeqTag = qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, metric: "bdSeq" });
    expect(bdSeqTag).toBe("plant-1/line-3//bdSeq");
    await eventually(async () => (await rigged.db.samples(bdSeqTag)).length === 1);
    expect((await rigged.db.samples(bdSeqTag))[0]!.value).toBe(3);
    const health = nodeHealth(rigged.host)!;
    expect(health).toMatchObject({
      state: "online",
      bdSeq: 3,
      lastSeq: 2,
      births: 1,
      seqGaps: 0,
      rebirthsRequested: 0,
    });
    expect(health.devices).toEqual([{ deviceId: DEVICE, online: true }]);
    expect(rigged.rebirths()).toBe(0);
  });

  test("a birth registers the tag's metadata (data type, unit, range) in the store", async () => {
    const rigged = await rig();
    await bornEdge(rigged);
    await eventually(async () => (await rigged.db.tag(PRESSURE))?.unit === "mbar", 5_000, "the tag is registered");
    expect(await rigged.db.tag(PRESSURE)).toEqual({
      data_type: "float64",
      unit: "mbar",
      range_min: 0,
      range_max: 1000,
    });
    expect(await rigged.db.tag(HEATER)).toEqual({ data_type: "bool", unit: null, range_min: null, range_max: null });
  });

  test("quality bad and uncertain (StatusCode, Quality, StatusReason properties) arrive in the store as such", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    await edge.ddata(DEVICE, [
      {
        alias: 1,
        timestamp: born + 1,
        datatype: "Double",
        value: 0,
        properties: {
          Quality: { type: "Int32", value: 0 },
          StatusCode: { type: "UInt32", value: QualityCodes.BadNoCommunication },
          StatusReason: { type: "String", value: "PLC unreachable" },
        },
      },
    ]);
    await edge.ddata(DEVICE, [
      {
        alias: 1,
        timestamp: born + 2,
        datatype: "Double",
        value: 7,
        properties: { Quality: { type: "Int32", value: 500 } },
      },
    ]);
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 3, datatype: "Double", value: null }]);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).length === 4);
    const [, bad, stale, nullValue] = await rigged.db.samples(PRESSURE);
    expect(bad!.quality).toEqual({ severity: "bad", code: QualityCodes.BadNoCommunication, reason: "PLC unreachable" });
    expect(bad!.value).toBe(0);
    expect(stale!.quality.severity).toBe("uncertain");
    expect(stale!.value).toBe(7);
    expect(nullValue!.value).toBeNull();
    expect(nullValue!.quality.severity).toBe("bad");
  });

  test("historical metrics (is_historical) are stored but never change the live view", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 100, datatype: "Double", value: 5 }]);
    await eventually(() => rigged.host.latest(PRESSURE)?.sample.value === 5);
    await edge.ddata(DEVICE, [
      { alias: 1, timestamp: born + 10, datatype: "Double", value: 99, isHistorical: true },
      { alias: 1, timestamp: born + 200, datatype: "Double", value: 98, isHistorical: true },
    ]);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).length === 4);
    expect((await rigged.db.samples(PRESSURE)).map((sample) => sample.value)).toEqual([1.5e-3, 99, 5, 98]);
    expect(rigged.host.latest(PRESSURE)?.sample.value).toBe(5);
    expect(rigged.host.health().samples.historical).toBe(2);
  });

  test("a replay (the same samples delivered again after a rebirth) is stored once and counts as neither conflict nor loss", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    const data = [
      { alias: 1, timestamp: born + 1, datatype: "Double", value: 1 },
      { alias: 1, timestamp: born + 2, datatype: "Double", value: 2 },
    ] as const;
    await edge.ddata(DEVICE, data);
    // As after a host or broker restart: a new birth, then the same samples again, as historical.
    await edge.nbirth(0);
    await edge.dbirth(DEVICE, deviceBirth(born));
    await edge.ddata(
      DEVICE,
      data.map((metric) => ({ ...metric, isHistorical: true })),
    );
    await eventually(() => rigged.host.health().samples.queued === 0 && rigged.host.health().samples.received >= 14);
    // Besides them, the new NBIRTH's stale mark (no value, bad) for the device until its DBIRTH,
    // and the DBIRTH's value restated after the mark (its own time is before it; ADR 0043).
    const good = async () => (await rigged.db.samples(PRESSURE)).filter((sample) => sample.quality.severity === "good");
    await eventually(async () => (await good()).length === 4);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await good()).map((sample) => sample.value)).toEqual([1.5e-3, 1, 2, 1.5e-3]);
    expect((await good())[3]!.quality.reason).toMatch(/restated by a birth/);
    const { samples } = rigged.host.health();
    expect(samples.conflicts).toBe(0);
    expect(samples.dropped).toBe(0);
    expect(rigged.events["samples-drop"]).toBeUndefined();
  });

  test("transient metrics (is_transient) update the live view and are not stored", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 5, datatype: "Double", value: 42, isTransient: true }]);
    await eventually(() => rigged.host.latest(PRESSURE)?.sample.value === 42);
    await eventually(() => rigged.host.health().samples.queued === 0);
    expect((await rigged.db.samples(PRESSURE)).map((sample) => sample.value)).toEqual([1.5e-3]);
    expect(rigged.host.health().samples.transient).toBe(1);
  });
});

describe("Sparkplug host: seq, bdSeq and rebirth (Sparkplug 3.0.0, 5.9 message ordering; 5.5 / 5.7 termination)", () => {
  test("[tck-id-operational-behavior-host-reordering-rebirth] a seq gap sends an NCMD Node Control/Rebirth; the message after the gap is not stored; after the rebirth data is stored again", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    edge.seq = 7; // expected 2
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 1, datatype: "Double", value: 666 }]);
    const ncmd = await rigged.recorder.waitFor((message) => message.parsed?.type === "NCMD");
    expect(ncmd.topic).toBe("spBv1.0/plant-1/NCMD/line-3");
    expect(ncmd.qos).toBe(0);
    expect(ncmd.retain).toBe(false);
    const command = decodePayload(ncmd.bytes, { datatypeOf: () => "Boolean" });
    expect(command.metrics).toMatchObject([{ name: "Node Control/Rebirth", value: true }]);
    expect(command.timestamp).toBeTypeOf("number");
    expect(nodeHealth(rigged.host)).toMatchObject({ state: "awaiting-rebirth", seqGaps: 1, rebirthsRequested: 1 });
    // Data until the rebirth is not trusted either.
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 2, datatype: "Double", value: 667 }]);
    await edge.nbirth(0);
    await edge.dbirth(DEVICE, deviceBirth(born + 3));
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 4, datatype: "Double", value: 4 }]);
    // Besides them, the stale mark (no value, bad, host time) stored when the gap made the host distrust it.
    const good = async () => (await rigged.db.samples(PRESSURE)).filter((sample) => sample.quality.severity === "good");
    await eventually(async () => (await good()).length === 3);
    expect((await good()).map((sample) => sample.value)).toEqual([1.5e-3, 1.5e-3, 4]);
    expect(await rigged.db.samples(PRESSURE)).toContainEqual(
      expect.objectContaining({
        value: null,
        quality: expect.objectContaining({ severity: "bad", code: QualityCodes.BadNoCommunication }),
      }),
    );
    expect(nodeHealth(rigged.host)).toMatchObject({ state: "online", births: 2 });
    expect(rigged.host.health().samples.discarded).toBe(2);
    expect(rigged.events["rebirth-request"]?.[0]).toMatchObject({ reason: "seq-gap", suppressed: false });
  });

  test("[tck-id-topics-ddata-seq-num] seq wraps from 255 to 0 without a gap", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    for (let index = 0; index < 258; index++) {
      await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 10 + index, datatype: "Double", value: index }]);
    }
    await eventually(() => rigged.host.health().samples.received >= 5 + 258);
    expect(nodeHealth(rigged.host)).toMatchObject({ state: "online", seqGaps: 0, lastSeq: (2 + 257) % 256 });
    expect(rigged.rebirths()).toBe(0);
  });

  test("data before any birth is not stored and triggers a rebirth request", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    edge.seq = 5;
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
    await eventually(() => rigged.rebirths() === 1);
    expect(nodeHealth(rigged.host)).toMatchObject({ state: "unknown", dataBeforeBirth: 1, rebirthsRequested: 1 });
    expect(await rigged.db.count()).toBe(0);
    expect(rigged.events["rebirth-request"]?.[0]).toMatchObject({ reason: "data-before-birth" });
  });

  test("an alias the birth did not announce is never stored under a guessed name and triggers a rebirth request", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    await edge.ddata(DEVICE, [
      { alias: 1, timestamp: born + 1, datatype: "Double", value: 3 },
      { alias: 77, timestamp: born + 1, datatype: "Double", value: 4 },
    ]);
    await eventually(() => rigged.rebirths() === 1);
    expect(nodeHealth(rigged.host)).toMatchObject({ unknownAliases: 1, state: "awaiting-rebirth" });
    await eventually(() => rigged.host.health().samples.queued === 0);
    // The birth's value, and its stale mark from the distrust: nothing stored under a guessed name.
    expect((await rigged.db.samples(PRESSURE)).map((sample) => [sample.value, sample.quality.severity])).toEqual([
      [1.5e-3, "good"],
      [null, "bad"],
    ]);
  });

  test("rebirth requests to one edge node are rate-limited (rebirthIntervalMs); the held-back ones are counted", async () => {
    const rigged = await rig({ rebirthIntervalMs: 60_000 });
    const edge = await rigged.edge();
    for (let index = 0; index < 3; index++) {
      await edge.ddata(DEVICE, [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: index }]);
    }
    await eventually(() => nodeHealth(rigged.host)?.dataBeforeBirth === 3);
    expect(nodeHealth(rigged.host)).toMatchObject({ rebirthsRequested: 1, rebirthsSuppressed: 2 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(rigged.rebirths()).toBe(1);
  });

  test("[tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline] an NDEATH whose bdSeq is not the current NBIRTH's is stale and ignored; the matching one marks the edge node offline and its metrics stale (host time, stored)", async () => {
    const rigged = await rig();
    const { edge } = await bornEdge(rigged, 5);
    await edge.ndeath(4);
    await eventually(() => nodeHealth(rigged.host)?.staleDeaths === 1);
    expect(nodeHealth(rigged.host)?.state).toBe("online");
    expect(rigged.host.latest(PRESSURE)?.sample.quality.severity).toBe("good");
    const before = Date.now();
    await edge.ndeath(5);
    await eventually(() => nodeHealth(rigged.host)?.state === "offline");
    expect(nodeHealth(rigged.host)?.devices).toEqual([{ deviceId: DEVICE, online: false }]);
    const live = rigged.host.latest(PRESSURE)!.sample;
    expect(live.value).toBe(1.5e-3);
    expect(live.quality).toMatchObject({
      severity: "uncertain",
      code: QualityCodes.UncertainNoCommunicationLastUsableValue,
    });
    expect(live.timestamp).toBeGreaterThanOrEqual(before);
    // [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale]: node metrics too.
    expect(rigged.host.latest("plant-1/line-3//bdSeq")?.sample.quality.severity).toBe("uncertain");
    await eventually(async () => (await rigged.db.samples(PRESSURE)).length === 2);
    // Stored without a value: where the gap in trust begins (ADR 0043, amendment of 2026-12-01).
    expect((await rigged.db.samples(PRESSURE))[1]).toMatchObject({ value: null, quality: { severity: "bad" } });
    // Data after the death is data before birth.
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
    await eventually(() => rigged.rebirths() === 1);
  });

  test("[tck-id-payloads-nbirth-bdseq] an NBIRTH whose bdSeq is outside 0–255 (256, -1) is a malformed birth: refused whole, counted, nothing stored, a rebirth asked for; 255 is taken (review 19h, 19i)", async () => {
    const rigged = await rig();
    const edge = await rigged.edge(256);
    for (const bdSeq of [256, -1]) {
      await edge.nbirth(bdSeq);
      await edge.dbirth(DEVICE, deviceBirth(Date.now() - 1_000));
    }
    await eventually(() => nodeHealth(rigged.host)?.birthsRefused === 2);
    expect(nodeHealth(rigged.host)).toMatchObject({ births: 0 });
    expect(nodeHealth(rigged.host)?.state).not.toBe("online");
    expect(nodeHealth(rigged.host)?.bdSeq).toBeUndefined();
    expect(rigged.events["message-reject"]?.map((event) => event.message)).toEqual(
      expect.arrayContaining([
        expect.stringContaining("bdSeq 256, outside 0–255"),
        expect.stringContaining("bdSeq -1, outside 0–255"),
      ]),
    );
    await eventually(() => rigged.rebirths() >= 2);
    expect(rigged.host.latest(PRESSURE)).toBeUndefined();
    expect(rigged.host.health().messages.malformed).toBeGreaterThanOrEqual(2);
    await edge.nbirth(255);
    await edge.dbirth(DEVICE, deviceBirth(Date.now() - 1_000));
    await eventually(() => rigged.host.latest(PRESSURE)?.sample.quality.severity === "good");
    expect(nodeHealth(rigged.host)).toMatchObject({ state: "online", bdSeq: 255 });
  });

  test("[tck-id-payloads-ndeath-bdseq] an NDEATH whose bdSeq is outside 0–255 (261 = 5 + 256) is a malformed death: counted, never paired with bdSeq 5, and the edge node's live values are stale until its next NBIRTH (review 19h, 19i)", async () => {
    const rigged = await rig();
    const { edge } = await bornEdge(rigged, 5);
    expect(rigged.host.latest(PRESSURE)?.sample.quality.severity).toBe("good");
    const malformed = rigged.host.health().messages.malformed;
    await edge.ndeath(261);
    await eventually(() => nodeHealth(rigged.host)?.state === "awaiting-rebirth");
    expect(nodeHealth(rigged.host)?.staleDeaths).toBe(0);
    expect(rigged.host.health().messages.malformed).toBe(malformed + 1);
    expect(rigged.host.latest(PRESSURE)?.sample.quality).toMatchObject({
      severity: "uncertain",
      code: QualityCodes.UncertainNoCommunicationLastUsableValue,
    });
    expect(rigged.events["message-reject"]?.at(-1)?.message).toContain("bdSeq 261, outside 0–255");
    await eventually(() => rigged.rebirths() === 1);
    expect(rigged.events["rebirth-request"]?.at(-1)).toMatchObject({ reason: "death-refused" });
    // The real death of the session still pairs.
    await edge.nbirth(5);
    await edge.dbirth(DEVICE, deviceBirth(Date.now() - 500));
    await eventually(() => nodeHealth(rigged.host)?.state === "online");
    await edge.ndeath(5);
    await eventually(() => nodeHealth(rigged.host)?.state === "offline");
  });

  test("[tck-id-operational-behavior-edge-node-termination-host-action-ddeath-devices-tags-stale] a DDEATH marks the device offline and its metrics stale at the DDEATH's timestamp", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    const at = born + 700;
    await edge.ddeath(DEVICE, at);
    await eventually(() => nodeHealth(rigged.host)?.devices[0]?.online === false);
    expect(nodeHealth(rigged.host)?.state).toBe("online");
    expect(rigged.host.latest(HEATER)?.sample).toMatchObject({
      timestamp: at,
      value: false,
      quality: { severity: "uncertain" },
    });
    // DDATA for a dead device: not stored, rebirth requested.
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: at + 1, datatype: "Double", value: 9 }]);
    await eventually(() => rigged.rebirths() === 1);
  });

  test("a real sample the edge node replays at the whole ms next to the host's stale mark (NDEATH) is stored beside the mark, never refused as a conflict with it (issue 19; the mark is 1 µs past the last value since 19z)", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged, 5);
    await edge.ndeath(5);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).length === 2);
    const mark = (await rigged.db.samples(PRESSURE))[1]!;
    expect(mark).toMatchObject({ value: null, quality: { code: QualityCodes.BadNoCommunication } });
    await edge.nbirth(6);
    await edge.dbirth(DEVICE, deviceBirth(born));
    await eventually(() => nodeHealth(rigged.host)?.state === "online");
    // Never on a whole ms: no Sparkplug timestamp can claim it.
    expect(Number.isInteger(mark.timestamp)).toBe(false);
    const at = Math.ceil(mark.timestamp);
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: at, datatype: "Double", value: 42, isHistorical: true }]);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).some((sample) => sample.value === 42));
    const stored = await rigged.db.samples(PRESSURE);
    expect(stored.find((sample) => sample.timestamp === at)).toMatchObject({
      value: 42,
      quality: { severity: "good" },
    });
    expect(rigged.host.health().samples.conflicts).toBe(0);
  });

  test("a real sample at the very ms of a DDEATH (the host's mark at the edge's time) is stored too (issue 19)", async () => {
    const rigged = await rig();
    const { edge, born } = await bornEdge(rigged);
    const at = born + 700;
    await edge.ddeath(DEVICE, at);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).length === 2);
    await edge.dbirth(DEVICE, deviceBirth(born));
    await eventually(() => nodeHealth(rigged.host)?.devices[0]?.online === true);
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: at, datatype: "Double", value: 43, isHistorical: true }]);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).some((sample) => sample.value === 43));
    expect((await rigged.db.samples(PRESSURE)).find((sample) => sample.timestamp === at)).toMatchObject({ value: 43 });
    expect(rigged.host.health().samples.conflicts).toBe(0);
  });

  test("a DDATA over maxPayloadBytes is not read: counted, rejected, and the edge node asked for a rebirth; one within it is stored (issue 19)", async () => {
    const rigged = await rig({ maxPayloadBytes: 2_000 });
    const { edge, born } = await bornEdge(rigged);
    const rejects: string[] = [];
    rigged.host.events.on("message-reject", (event) => void rejects.push(event.message));
    const huge = Array.from({ length: 300 }, (_, index) => ({
      alias: 1,
      timestamp: born + 10 + index,
      datatype: "Double" as const,
      value: index,
    }));
    await edge.ddata(DEVICE, huge);
    await eventually(() => rigged.host.health().messages.oversized === 1);
    expect(rejects.some((message) => /over maxPayloadBytes \(2000\)/.test(message))).toBe(true);
    await eventually(() => rigged.rebirths() === 1);
    expect(nodeHealth(rigged.host)).toMatchObject({ state: "awaiting-rebirth" });
    await edge.nbirth(1);
    await edge.dbirth(DEVICE, deviceBirth(born));
    await eventually(() => nodeHealth(rigged.host)?.state === "online");
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 500, datatype: "Double", value: 77 }]);
    await eventually(async () => (await rigged.db.samples(PRESSURE)).some((sample) => sample.value === 77));
    expect((await rigged.db.samples(PRESSURE)).some((sample) => sample.value === 299)).toBe(false);
  });

  // adv19y MEDIUM-2: the host parsed a message on its own STATE topic whatever its size (a 200 MB
  // one: 2.7 GB and 16.6 s, counted nowhere). It is checked against maxPayloadBytes first, like
  // every other message.
  test("a message on the host's own STATE topic over maxPayloadBytes is not read: counted and rejected, the host stays online", async () => {
    const hostId = `kiln-host-bigstate-${Math.random().toString(16).slice(2, 8)}`;
    const rigged = await rig({ maxPayloadBytes: 2_000, hostId });
    const spoofer = await mqtt.connectAsync(broker.url, { clean: true, reconnectPeriod: 0 });
    perTest.push(() => spoofer.endAsync(true));
    const huge = JSON.stringify({ online: false, timestamp: Date.now(), padding: "x".repeat(5_000) });
    await spoofer.publishAsync(`spBv1.0/STATE/${hostId}`, huge, { qos: 1 });
    await eventually(() => rigged.host.health().messages.oversized === 1, 5_000, "the oversize STATE counted");
    expect(rigged.events["message-reject"]?.some((event) => /over maxPayloadBytes \(2000\)/.test(event.message))).toBe(
      true,
    );
    // The death watch gets its own copy of the STATE; it read it whatever its size and took it as a
    // foreign STATE, outrunning it with a new session (CI, stop 46). Time for that copy to arrive:
    await new Promise((resolve) => setTimeout(resolve, 500));
    const health = rigged.host.health();
    expect(health, `the host's health: ${JSON.stringify(health)}`).toMatchObject({
      link: "connected",
      state: { online: true, outruns: 0 },
      messages: { oversized: 1, malformed: 1 },
    });
    expect(health.state.foreign).toBeUndefined();
  });

  test("sibling: an oversize STATE left retained on the host's topic before it starts is refused on both of its sessions, counted once", async () => {
    const hostId = `kiln-host-bigretained-${Math.random().toString(16).slice(2, 8)}`;
    const spoofer = await mqtt.connectAsync(broker.url, { clean: true, reconnectPeriod: 0 });
    perTest.push(async () => {
      await spoofer.publishAsync(`spBv1.0/STATE/${hostId}`, "", { qos: 1, retain: true });
      await spoofer.endAsync(true);
    });
    const later = Date.now() + 60_000;
    const huge = JSON.stringify({ online: false, timestamp: later, padding: "x".repeat(5_000) });
    await spoofer.publishAsync(`spBv1.0/STATE/${hostId}`, huge, { qos: 1, retain: true });
    const rigged = await rig({ maxPayloadBytes: 2_000, hostId });
    await eventually(() => rigged.host.health().messages.oversized === 1, 5_000, "the oversize STATE counted");
    await new Promise((resolve) => setTimeout(resolve, 500));
    const health = rigged.host.health();
    expect(health, `the host's health: ${JSON.stringify(health)}`).toMatchObject({
      link: "connected",
      state: { online: true },
      messages: { oversized: 1 },
    });
    expect(health.state.foreign).toBeUndefined();
  });

  // The same two copies of one message: a malformed STATE (not the JSON of Sparkplug 3.0 §7.5.6)
  // was rejected on the main session and again on the death watch, counted as two malformed messages.
  test("a malformed STATE on the host's own topic is rejected once, not once per session that received it", async () => {
    const hostId = `kiln-host-badstate-${Math.random().toString(16).slice(2, 8)}`;
    const rigged = await rig({ hostId });
    await eventually(() => rigged.host.health().state.online === true, 5_000, "the host online");
    const before = rigged.host.health().messages.malformed;
    const rejectsBefore = rigged.events["message-reject"]?.length ?? 0;
    const spoofer = await mqtt.connectAsync(broker.url, { clean: true, reconnectPeriod: 0 });
    perTest.push(() => spoofer.endAsync(true));
    await spoofer.publishAsync(`spBv1.0/STATE/${hostId}`, "{not json", { qos: 1 });
    await eventually(() => rigged.host.health().messages.malformed > before, 5_000, "the malformed STATE counted");
    // Time for the death watch's copy to arrive and (before the fix) be counted again:
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(rigged.host.health().messages.malformed).toBe(before + 1);
    expect((rigged.events["message-reject"]?.length ?? 0) - rejectsBefore).toBe(1);
    expect(rigged.host.health()).toMatchObject({ link: "connected", state: { online: true, outruns: 0 } });
  });

  // MQTT 5 §3.1.2.11.4: a broker drops, silently, a message larger than the Maximum Packet Size the
  // client gave in CONNECT. The host gives none, so an oversize message reaches it and is counted
  // (review finding H1/M6, ADR 0043 amendment fix19ab). Mosquitto only: aedes speaks 3.1.1.
  test.skipIf(!mosquittoAvailability().available || process.env.KILN_TEST_BROKER === "aedes")(
    "MQTT 5: a DDATA far over maxPayloadBytes reaches the host (no Maximum Packet Size in CONNECT) and is counted, rejected, a rebirth asked",
    async () => {
      if (broker.kind === "aedes") return;
      const rigged = await rig({ maxPayloadBytes: 2_000, mqtt: { protocolVersion: 5 } });
      const { edge, born } = await bornEdge(rigged);
      const huge = Array.from({ length: 400 }, (_, index) => ({
        alias: 1,
        timestamp: born + 10 + index,
        datatype: "Double" as const,
        value: index,
      }));
      await edge.ddata(DEVICE, huge);
      await eventually(() => rigged.host.health().messages.oversized === 1, 5_000, "the oversize DDATA counted");
      await eventually(() => rigged.rebirths() === 1);
      expect(nodeHealth(rigged.host)).toMatchObject({ state: "awaiting-rebirth" });
    },
    90_000,
  );

  test.skipIf(!mosquittoAvailability().available || process.env.KILN_TEST_BROKER === "aedes")(
    "sibling, MQTT 5: an NBIRTH far over maxPayloadBytes reaches the host and is refused, counted: the edge node is not trusted, a rebirth asked",
    async () => {
      if (broker.kind === "aedes") return;
      const rigged = await rig({ maxPayloadBytes: 2_000, mqtt: { protocolVersion: 5 } });
      const { edge } = await bornEdge(rigged);
      const metrics = Array.from({ length: 200 }, (_, index) => ({
        name: `big-${index}-${"x".repeat(20)}`,
        alias: 100 + index,
        timestamp: Date.now(),
        datatype: "Double" as const,
        value: index,
      }));
      edge.seq = 0;
      await edge.nbirth(1, metrics);
      await eventually(() => rigged.host.health().messages.oversized === 1, 5_000, "the oversize NBIRTH counted");
      await eventually(() => (nodeHealth(rigged.host)?.birthsRefused ?? 0) >= 1, 5_000, "the birth refused");
      expect(nodeHealth(rigged.host)?.state).not.toBe("online");
      await eventually(() => rigged.rebirths() >= 1);
    },
    90_000,
  );

  test("maxPayloadBytes must be a whole number of bytes from 1", () => {
    for (const bad of [0, 2.5, -3])
      expect(
        () =>
          new SparkplugHost({
            brokerUrl: broker.url,
            hostId: "h",
            groups: [GROUP],
            store: { samples: { writeBatch: () => undefined } } as never,
            maxPayloadBytes: bad,
          }),
      ).toThrow(expect.objectContaining({ code: "KILN_VALIDATION" }) as Error);
  });

  test("the edge node's NDEATH Will (abrupt loss) is handled like a published NDEATH", async () => {
    const rigged = await rig();
    const { edge } = await bornEdge(rigged, 9);
    // End the socket without DISCONNECT: the broker publishes the Will.
    edge.client.stream.destroy();
    await eventually(() => nodeHealth(rigged.host)?.state === "offline", 10_000, "the Will reaches the host");
    expect(rigged.host.latest(PRESSURE)?.sample.quality.severity).toBe("uncertain");
  });
});

describe("Sparkplug host: broker link", () => {
  test("after the broker restarts, the host reconnects, publishes STATE online again, and asks edge nodes for births before taking their data", async () => {
    const rigged = await rig();
    const { born } = await bornEdge(rigged);
    const changes: string[] = [];
    rigged.host.events.on("link-change", (change) => {
      changes.push(change.to);
    });
    await broker.kill();
    await eventually(() => rigged.host.health().link === "reconnecting");
    // The host no longer sees the edge node: its live values are stale.
    expect(rigged.host.latest(PRESSURE)?.sample.quality.severity).toBe("uncertain");
    await broker.restart();
    await eventually(() => rigged.host.health().link === "connected", 10_000, "reconnected");
    expect(changes).toContain("connected");
    const retained = await recordSparkplug(broker.url, { filter: "spBv1.0/STATE/#" });
    perTest.push(() => retained.close());
    await retained.waitFor((message) => (message.state as { online?: boolean } | undefined)?.online === true);
    const edge = await RawEdgeNode.connect(broker.url, GROUP, NODE, 1);
    perTest.push(() => edge.close());
    edge.seq = 3;
    await edge.ddata(DEVICE, [{ alias: 1, timestamp: born + 50, datatype: "Double", value: 50 }]);
    await eventually(() => (nodeHealth(rigged.host)?.rebirthsRequested ?? 0) >= 1);
    expect(nodeHealth(rigged.host)?.state).toBe("awaiting-rebirth");
  });
});

describe("Sparkplug host: options", () => {
  test("invalid options are refused with KILN_VALIDATION naming the field", async () => {
    const db = await openTestDatabase();
    perTest.push(() => db.close());
    const base = { brokerUrl: broker.url, hostId: "h", groups: ["g"], store: db.store };
    const codeOf = (options: SparkplugHostOptions): unknown => {
      try {
        new SparkplugHost(options);
        return "accepted";
      } catch (error) {
        return (error as { code?: string; details?: { issues?: { path: string }[] } }).details?.issues?.map(
          (issue) => issue.path,
        );
      }
    };
    expect(codeOf({ ...base, hostId: "a/b" })).toEqual(["hostId"]);
    expect(codeOf({ ...base, groups: [] })).toEqual(["groups"]);
    expect(codeOf({ ...base, groups: ["ok", "#"] })).toEqual(["groups[1]"]);
    expect(codeOf({ ...base, batching: { maxBatchSize: 0 } })).toEqual(["batching.maxBatchSize"]);
    expect(codeOf({ ...base, stopLingerMs: -1, drainTimeoutMs: Number.NaN })).toEqual([
      "drainTimeoutMs",
      "stopLingerMs",
    ]);
    // Past Node's timer limit (2^31 − 1 ms) a timeout fires after 1 ms: stop() would not linger,
    // a write would time out at once. Every duration is bounded by 1 hour, as the drivers' are.
    expect(
      codeOf({
        ...base,
        stopLingerMs: 3e9,
        ackIntervalMs: 3_600_001,
        connectTimeoutMs: 0,
        batching: {
          maxDelayMs: 3e9,
          writeTimeoutMs: Number.POSITIVE_INFINITY,
          breaker: { failureThreshold: 1, recoveryTimeMs: 3e9 },
        },
        reconnect: { initialDelayMs: 1_000, maxDelayMs: 3e9 },
      }),
    ).toEqual([
      "stopLingerMs",
      "ackIntervalMs",
      "connectTimeoutMs",
      "batching.maxDelayMs",
      "batching.writeTimeoutMs",
      "batching.breaker.recoveryTimeMs",
    ]);
    expect(codeOf({ ...base, reconnect: { initialDelayMs: 1_000, maxDelayMs: 3e9 } })).toEqual([
      "reconnect.maxDelayMs",
    ]);
    expect(codeOf({ ...base, stopLingerMs: 3_600_000, connectTimeoutMs: 1, batching: { maxDelayMs: 0 } })).toBe(
      "accepted",
    );
    expect(codeOf(base)).toBe("accepted");
    // The MQTT.js pass-through reaches the same timers and the CONNECT packet (review adv19k L1):
    // 30 days overflowed MQTT.js's connect timer ("connack timeout" forever); Keep Alive is two bytes.
    expect(codeOf({ ...base, mqtt: { connectTimeout: 2_592_000_000, keepalive: 70_000 } })).toEqual([
      "mqtt.connectTimeout",
      "mqtt.keepalive",
    ]);
    expect(codeOf({ ...base, mqtt: { connectTimeout: 0, keepalive: 1.5 } })).toEqual([
      "mqtt.connectTimeout",
      "mqtt.keepalive",
    ]);
    expect(codeOf({ ...base, mqtt: { keepalive: -1 } })).toEqual(["mqtt.keepalive"]);
    expect(codeOf({ ...base, mqtt: { connectTimeout: 3_600_000, keepalive: 65_535 } })).toBe("accepted");
    expect(codeOf({ ...base, mqtt: { keepalive: 0 } })).toBe("accepted");
  });

  test("a brokerUrl without a scheme (localhost:1883), with one MQTT.js does not speak, or without a host is refused, naming brokerUrl (adversarial review 19y)", () => {
    const base = { hostId: "h", groups: ["g"], store: new MemoryStore() };
    for (const brokerUrl of ["localhost:1883", "127.0.0.1:1883", "http://broker:1883", "mqtt://", "", "broker"])
      expect(() => new SparkplugHost({ ...base, brokerUrl })).toThrow(
        expect.objectContaining({
          code: "KILN_VALIDATION",
          details: { issues: [expect.objectContaining({ path: "brokerUrl" })] },
        }) as Error,
      );
    for (const brokerUrl of ["mqtt://localhost:1883", "mqtts://broker.plant", "ws://broker:9001/mqtt"])
      expect(() => new SparkplugHost({ ...base, brokerUrl })).not.toThrow();
  });

  test("a password in brokerUrl never shows in health().linkReason or link-change events (adversarial review 19z, L1)", async () => {
    // Nothing listens on this port: every connect fails, with the URL in its message.
    const host = new SparkplugHost({
      brokerUrl: `mqtt://kiln:s3cret-pw@127.0.0.1:${await freePort()}`,
      hostId: "h",
      groups: ["g"],
      store: new MemoryStore(),
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    const changes: string[] = [];
    host.events.on("link-change", (change) => void changes.push(JSON.stringify(change)));
    try {
      await host.start();
      await eventually(() => (host.health().linkReason ?? "").includes("***@127.0.0.1") && changes.length > 0);
      const shown = [host.health().linkReason ?? "", ...changes].join("\n");
      expect(shown).not.toContain("s3cret-pw");
      expect(shown).not.toContain("kiln:");
    } finally {
      await host.stop();
    }
  });
});
