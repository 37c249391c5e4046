// Issue 19, adversarial review adv19k H2: while the host holds MQTT.js (its store is slow), the
// broker queues what it has for the host and, past its queue bound, drops it silently: an edge
// node's NDEATH (its Will) among it. Against the test's own mosquitto with a small
// `max_queued_messages` (the drop is mosquitto's; aedes has no such bound).
import { MemoryStore, type Sample } from "@kiln/core";
import type { SampleWriteResult } from "@kiln/core/driver-kit";
import { connectAsync } from "mqtt";
import { afterEach, describe, expect, test, vi } from "vitest";
import { SparkplugHost, type SparkplugHostOptions } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { mosquittoAvailability } from "../src/testing/index";
import { sparkplugTopic } from "../src/topic";
import { RawEdgeNode, eventually } from "./support/host-harness";
import { configuredBroker } from "./support/limited-broker";

const GROUP = "plant-h2";
const VICTIM = "line-victim";
const FLOODER = "line-flood";
const TEMP = qualifiedTagName({ groupId: GROUP, edgeNodeId: VICTIM, deviceId: undefined, metric: "temp" });
const mosquitto = mosquittoAvailability();
if (!mosquitto.available) console.log(`host-held.test.ts skipped: ${mosquitto.reason}`);

vi.setConfig({ testTimeout: 120_000 });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A memory store whose writes wait while `held` is true. */
function gatedStore(): { store: MemoryStore; hold(): void; release(): void } {
  const store = new MemoryStore();
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  const write = store.samples.writeBatch.bind(store.samples);
  store.samples.writeBatch = async (batch: readonly Sample[]): Promise<SampleWriteResult | void> => {
    while (gate !== undefined) await gate.promise;
    return write(batch);
  };
  return {
    store,
    hold: () => {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      gate = { promise, open };
    },
    release: () => {
      const current = gate;
      gate = undefined;
      current?.open();
    },
  };
}

/** An edge node that answers every rebirth request (NCMD) with its NBIRTH, as a real one does. */
async function answeringNode(url: string, bdSeq: number, temp: number): Promise<RawEdgeNode> {
  const node = await RawEdgeNode.connect(url, GROUP, VICTIM, bdSeq);
  const birth = () =>
    node.nbirth(bdSeq, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
  node.client.on("message", () => void birth());
  await node.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: VICTIM }), { qos: 1 });
  await birth();
  return node;
}

/** A host on a mosquitto that keeps at most 20 messages queued for a client, and a flooding edge node. */
async function heldFleet(extra: Partial<SparkplugHostOptions> = {}) {
  const broker = await configuredBroker(["max_queued_messages 20", "max_inflight_messages 10"]);
  cleanups.push(() => broker.stop());
  const gated = gatedStore();
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: "held",
    groups: [GROUP],
    store: gated.store,
    stopLingerMs: 100,
    drainTimeoutMs: 2_000,
    rebirthIntervalMs: 500,
    rebirthTimeoutMs: 2_000,
    batching: { maxDelayMs: 5, maxQueuedSamples: 200 },
    ...extra,
  });
  cleanups.push(() => host.stop());
  await host.start();
  await host.whenConnected();
  const flooder = await RawEdgeNode.connect(broker.url, GROUP, FLOODER, 0);
  cleanups.push(() => flooder.close());
  await flooder.nbirth(0, [{ name: "blob", alias: 1, timestamp: Date.now(), datatype: "String", value: "" }]);
  /** `count` NDATA of `bytes` each (8 KB: past the socket buffers and the broker's queue while the host is held). */
  const flood = async (count: number, bytes = 8_192) => {
    const blob = "x".repeat(bytes);
    for (let index = 0; index < count; index++)
      await flooder.ndata([{ alias: 1, timestamp: Date.now(), datatype: "String", value: blob }]);
  };
  return { broker, host, flooder, flood, gated };
}

const victimState = (host: SparkplugHost) => host.health().edgeNodes.find((node) => node.edgeNodeId === VICTIM);

describe.skipIf(!mosquitto.available)("a host held by a slow store, messages dropped by the broker (adv19k H2)", () => {
  test("an edge node that dies (its Will NDEATH) while the broker drops what it queued for the held host ends offline, its metrics not good", async () => {
    const { broker, host, flood, gated } = await heldFleet();
    const victim = await answeringNode(broker.url, 1, 21);
    cleanups.push(() => victim.close());
    await eventually(() => host.latest(TEMP)?.sample.quality.severity === "good", 5_000, "victim born");
    gated.hold();
    await flood(1_500);
    // The victim's socket goes without DISCONNECT: the broker publishes its Will, behind the flood.
    victim.client.stream.destroy();
    await flood(1_000);
    gated.release();
    await eventually(
      () => victimState(host)?.state === "offline" && host.latest(TEMP)?.sample.quality.severity !== "good",
      20_000,
      `victim offline and its metric not good (state ${victimState(host)?.state}, temp ${host.latest(TEMP)?.sample.quality.severity})`,
    );
    // History too: the newest stored row of its metric is the stale mark (no value), not 21 good.
    await eventually(
      async () =>
        (await gated.store.samples.readSamples({ tag: TEMP, from: 0, to: 4_102_444_799_999 })).at(-1)?.value === null,
      10_000,
      "stale mark stored",
    );
    expect(host.health().problems.join("\n")).not.toContain(`${GROUP}/${VICTIM} unverified`);
  });

  test("an edge node that is born again (new bdSeq) while the host is held ends online with the new birth, not the old", async () => {
    const { broker, host, flood, gated } = await heldFleet();
    const first = await answeringNode(broker.url, 1, 21);
    cleanups.push(() => first.close());
    await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first birth");
    gated.hold();
    await flood(1_500);
    // The old session's Will and the new session's NBIRTH both come while the broker's queue for
    // the host is full.
    first.client.stream.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await flood(500);
    const second = await answeringNode(broker.url, 2, 22);
    cleanups.push(() => second.close());
    await flood(1_000);
    gated.release();
    await eventually(
      () =>
        victimState(host)?.state === "online" &&
        victimState(host)?.bdSeq === 2 &&
        host.latest(TEMP)?.sample.value === 22 &&
        host.latest(TEMP)?.sample.quality.severity === "good",
      20_000,
      `victim online with bdSeq 2 and temp 22 good (state ${victimState(host)?.state}, bdSeq ${victimState(host)?.bdSeq}, temp ${String(host.latest(TEMP)?.sample.value)})`,
    );
  });

  test("data an edge node sent before its death, still held on the host's session when the death is read on the watch, is stored as history; the node is offline meanwhile and never shown good", async () => {
    const { broker, host, flood, gated } = await heldFleet();
    const victim = await answeringNode(broker.url, 1, 21);
    cleanups.push(() => victim.close());
    await eventually(() => host.latest(TEMP)?.sample.quality.severity === "good", 5_000, "victim born");
    gated.hold();
    // Small messages: enough to congest the writer (the host stops reading), few enough that the
    // broker drops nothing (they wait in the socket), so the victim's data and death reach the
    // main session, behind the flood.
    await flood(150, 16);
    await eventually(() => host.health().samples.queued >= 100, 5_000, "writer congested");
    const base = Date.now();
    for (let index = 0; index < 5; index++)
      await victim.ndata([{ alias: 1, timestamp: base + index, datatype: "Double", value: 30 + index }]);
    // Its socket closed after what it wrote (no DISCONNECT): the broker publishes its Will.
    victim.client.stream.end();
    // Read on the watch while the data before it still waits on the held session.
    await eventually(() => victimState(host)?.state === "offline", 5_000, "victim offline while the host is held");
    expect(host.latest(TEMP)?.sample.quality.severity).not.toBe("good");
    gated.release();
    const rows = () => gated.store.samples.readSamples({ tag: TEMP, from: 0, to: 4_102_444_799_999 });
    await eventually(
      async () => (await rows()).filter((row) => row.timestamp >= base && row.value !== null).length === 5,
      10_000,
      "the five values stored",
    );
    await eventually(async () => (await rows()).at(-1)?.value === null, 10_000, "a stale mark after them");
    const values = (await rows()).filter((row) => row.timestamp >= base && row.value !== null);
    expect(values.map((row) => row.value)).toEqual([30, 31, 32, 33, 34]);
    expect(victimState(host)?.state).toBe("offline");
    expect(host.latest(TEMP)?.sample.quality.severity).not.toBe("good");
  });

  // Adversarial review adv19p, H2: the watch subscribed at QoS 1 was bounded by the broker's
  // in-flight window and queue for one client like any session: when more nodes died at once
  // than those hold (a switch fails), the deaths past them were dropped and those nodes stayed
  // online and good (30 of 300 delivered with this broker's bounds).
  test("a mass death of more edge nodes than the broker queues for one client takes every one of them offline", async () => {
    const { broker, host } = await heldFleet();
    const count = 60;
    const nodes = await Promise.all(
      Array.from({ length: count }, async (_, index) => {
        const node = await RawEdgeNode.connect(broker.url, GROUP, `mass-${index}`, 1);
        node.client.on("error", () => undefined);
        await node.nbirth(1, [{ name: "v", alias: 1, timestamp: Date.now(), datatype: "Double", value: index }]);
        return node;
      }),
    );
    const mass = () => host.health().edgeNodes.filter((node) => node.edgeNodeId.startsWith("mass-"));
    await eventually(() => mass().filter((node) => node.state === "online").length === count, 20_000, "all born");
    // Every socket gone without DISCONNECT at once: the broker publishes every Will together.
    for (const node of nodes) node.client.stream.destroy();
    await eventually(() => mass().every((node) => node.state === "offline"), 10_000, "every edge node offline");
  });

  // Adversarial review adv19p, H1: a forged NDEATH with the bdSeq of the next birth, read on the
  // watch while the edge node was dead, made that birth "dead at once" for good: the node stayed
  // offline, its data stored as history only, with nothing in problems.
  test("a forged NDEATH for the next bdSeq, sent while the edge node is dead, does not keep its next birth offline", async () => {
    const { broker, host } = await heldFleet();
    const first = await answeringNode(broker.url, 1, 21);
    await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first birth");
    first.client.stream.destroy();
    await eventually(() => victimState(host)?.state === "offline", 10_000, "victim offline (its Will)");
    // Any client may publish on the death topic (Sparkplug has no sender identity).
    const forger = await connectAsync(broker.url, { reconnectPeriod: 0 });
    cleanups.push(() => forger.endAsync(true));
    await forger.publishAsync(
      sparkplugTopic({ type: "NDEATH", groupId: GROUP, edgeNodeId: VICTIM }),
      Buffer.from(RawEdgeNode.deathBytes(2)),
      { qos: 1 },
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await answeringNode(broker.url, 2, 22);
    cleanups.push(() => second.close());
    // A millisecond after the birth's own value (the same millisecond is a conflict, not news).
    await second.ndata([{ alias: 1, timestamp: Date.now() + 5, datatype: "Double", value: 23 }]);
    await eventually(
      () =>
        victimState(host)?.state === "online" &&
        host.latest(TEMP)?.sample.value === 23 &&
        host.latest(TEMP)?.sample.quality.severity === "good",
      10_000,
      "victim online with temp 23 good",
    );
    expect(host.health().problems).toEqual([]);
  });

  test("its own STATE offline (a Will of an old session, retained) dropped while the host is held: the retained STATE ends online again", async () => {
    const { broker, host, flood, gated } = await heldFleet();
    const { timestamp } = host.health().state;
    const other = await RawEdgeNode.connect(broker.url, GROUP, "line-other", 0);
    cleanups.push(() => other.close());
    gated.hold();
    await flood(1_500);
    await other.client.publishAsync(
      "spBv1.0/STATE/held",
      Buffer.from(JSON.stringify({ online: false, timestamp: timestamp! - 1_000 })),
      { qos: 1, retain: true },
    );
    await flood(1_000);
    gated.release();
    const retained = async () => {
      const watcher = await connectAsync(broker.url);
      try {
        const message = new Promise<string>((resolve) =>
          watcher.on("message", (_topic, payload) => resolve(payload.toString())),
        );
        await watcher.subscribeAsync("spBv1.0/STATE/held", { qos: 1 });
        return JSON.parse(await message) as { online: boolean; timestamp: number };
      } finally {
        await watcher.endAsync();
      }
    };
    await eventually(async () => (await retained()).online, 10_000, "retained STATE online");
    expect(await retained()).toEqual({ online: true, timestamp });
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Holds the host: its store held and enough small messages to congest its writer (the broker drops nothing yet). */
async function holdHost(fleet: Awaited<ReturnType<typeof heldFleet>>): Promise<void> {
  fleet.gated.hold();
  await fleet.flood(150, 16);
  await eventually(() => fleet.host.health().samples.queued >= 100, 5_000, "writer congested");
  // Messages that come while it is congested: the host holds MQTT.js on them (once they arrived).
  await fleet.flood(20, 16);
  await sleep(200);
}

// Adversarial review adv19r (fresh pass on fix19o-fix19t, own mosquitto): deaths the watch read
// were lost, and the rebirth timeout ran while the host itself held the answers.
describe.skipIf(!mosquitto.available)(
  "deaths the watch reads are never lost; the rebirth timeout counts only while the host reads (adv19r)",
  () => {
    // H1: the watch dropped the death of an edge node the host did not know yet (its NBIRTH still
    // waited for the held main session); the broker dropped the NDEATH from the held queue, and
    // the NBIRTH taken after the hold showed the dead node online and good for ever.
    test("an edge node unknown to the host, born and dead while it is held, its NDEATH dropped by the broker, ends offline, its metric not good", async () => {
      const fleet = await heldFleet();
      const { broker, host, flood, gated } = fleet;
      const offline: string[] = [];
      host.events.on("edge-node-change", (change) => {
        if (change.edgeNodeId === VICTIM && change.deviceId === undefined && change.state === "offline")
          offline.push(change.reason);
      });
      await holdHost(fleet);
      const victim = await RawEdgeNode.connect(broker.url, GROUP, VICTIM, 1);
      cleanups.push(() => victim.close());
      await victim.nbirth(1, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]);
      // QoS 1 messages the held host does not acknowledge: past the broker's 10 in flight and 20
      // queued for it, what follows at QoS 1 (the victim's Will) is dropped.
      fleet.flooder.qos = 1;
      await flood(60, 16);
      victim.client.stream.destroy();
      await sleep(300);
      await flood(20, 16);
      fleet.flooder.qos = 0;
      gated.release();
      await eventually(() => victimState(host)?.births === 1, 20_000, "the victim's NBIRTH taken after the hold");
      await eventually(
        () => victimState(host)?.state === "offline" && host.latest(TEMP)?.sample.quality.severity !== "good",
        3_000,
        `victim offline and its metric not good (state ${victimState(host)?.state}, temp ${host.latest(TEMP)?.sample.quality.severity})`,
      );
      // Dead at once by the death the watch read (not only after an unanswered rebirth request).
      expect(offline[0]).toContain("read on the death watch");
      // Not brought back by anything later: it is dead.
      await sleep(1_000);
      expect(victimState(host)?.state).toBe("offline");
      expect(host.latest(TEMP)?.sample.quality.severity).not.toBe("good");
    });

    // H1, the fallback: the deaths kept for unknown edge nodes are bounded (limits.maxEdgeNodes);
    // an edge node whose death was pushed out, first born after the hold, is verified like those
    // online when the hold ended: asked for a rebirth, offline without one.
    test("an unknown edge node whose kept death was pushed out by others is verified after the hold and declared offline without an answer", async () => {
      const fleet = await heldFleet({ limits: { maxEdgeNodes: 3 } });
      const { broker, host, flood, gated } = fleet;
      const offline: string[] = [];
      host.events.on("edge-node-change", (change) => {
        if (change.edgeNodeId === VICTIM && change.deviceId === undefined && change.state === "offline")
          offline.push(change.reason);
      });
      await holdHost(fleet);
      const victim = await RawEdgeNode.connect(broker.url, GROUP, VICTIM, 1);
      cleanups.push(() => victim.close());
      await victim.nbirth(1, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]);
      fleet.flooder.qos = 1;
      await flood(60, 16);
      victim.client.stream.destroy();
      await sleep(300);
      // Deaths of other edge nodes the host does not know: the victim's is the oldest kept, pushed out.
      const forger = await connectAsync(broker.url, { reconnectPeriod: 0 });
      cleanups.push(() => forger.endAsync(true));
      for (let index = 0; index < 5; index++)
        await forger.publishAsync(
          sparkplugTopic({ type: "NDEATH", groupId: GROUP, edgeNodeId: `ghost-${index}` }),
          Buffer.from(RawEdgeNode.deathBytes(1)),
          { qos: 0 },
        );
      await sleep(300);
      await flood(20, 16);
      fleet.flooder.qos = 0;
      gated.release();
      await eventually(() => victimState(host)?.births === 1, 20_000, "the victim's NBIRTH taken after the hold");
      await eventually(
        () => victimState(host)?.state === "offline" && host.latest(TEMP)?.sample.quality.severity !== "good",
        8_000,
        `victim offline (state ${victimState(host)?.state})`,
      );
      expect(offline[0]).toContain("no NBIRTH within rebirthTimeoutMs");
      // Verified because of the hold: as a node first born in its aftermath, or (its NBIRTH taken
      // just before the hold was over, as happens under load) as one online when it ended.
      expect(offline[0]).toMatch(/its first NBIRTH was taken after a hold|the host held its broker connection/);
    });

    // H1 sibling: an edge node that reuses one bdSeq and one Will payload in every session (Eclipse
    // Tahu's sparkplug-client) sends the very same NDEATH each time: the death the main session
    // took the first time stayed "already taken" and the watch ignored the second one.
    test("an edge node that reuses one bdSeq and one Will (Eclipse Tahu) and dies again while the host is held is taken offline by the watch", async () => {
      const fleet = await heldFleet();
      const { broker, host, gated } = fleet;
      const will = RawEdgeNode.deathBytes(0);
      const session = async (temp: number) => {
        const node = await RawEdgeNode.connect(broker.url, GROUP, VICTIM, 0, { deathPayload: will });
        cleanups.push(() => node.close());
        await node.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
        return node;
      };
      const first = await session(21);
      await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first session born");
      first.client.stream.destroy();
      await eventually(() => victimState(host)?.state === "offline", 5_000, "first death");
      await sleep(300);
      const second = await session(22);
      await eventually(
        () => victimState(host)?.state === "online" && host.latest(TEMP)?.sample.value === 22,
        5_000,
        "second session born",
      );
      await holdHost(fleet);
      second.client.stream.destroy();
      await eventually(
        () => victimState(host)?.state === "offline" && host.latest(TEMP)?.sample.quality.severity !== "good",
        5_000,
        `second death read on the watch while the host is held (state ${victimState(host)?.state})`,
      );
      gated.release();
    });

    // H1 sibling: a death read ahead made every later birth of its bdSeq dead at once until the
    // main session took its copy, which the broker had dropped: an edge node reusing its bdSeq
    // (Eclipse Tahu) and born again after that death stayed offline for good.
    test("an edge node that reuses its bdSeq, dead and born again while the host is held (its NDEATH dropped), ends online once it answers the rebirth request", async () => {
      const fleet = await heldFleet();
      const { broker, host, flood, gated } = fleet;
      const will = RawEdgeNode.deathBytes(0);
      let temp = 21;
      const session = async () => {
        const node = await RawEdgeNode.connect(broker.url, GROUP, VICTIM, 0, { deathPayload: will });
        cleanups.push(() => node.close());
        const birth = () =>
          node.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
        node.client.on("message", () => void birth().catch(() => undefined));
        await node.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: VICTIM }), {
          qos: 1,
        });
        await birth();
        return node;
      };
      const first = await session();
      await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first session born");
      await holdHost(fleet);
      fleet.flooder.qos = 1;
      await flood(60, 16);
      first.client.stream.destroy();
      await eventually(() => victimState(host)?.state === "offline", 5_000, "its death read on the watch");
      await flood(20, 16);
      fleet.flooder.qos = 0;
      temp = 22;
      await session();
      gated.release();
      await eventually(
        () =>
          victimState(host)?.state === "online" &&
          host.latest(TEMP)?.sample.value === 22 &&
          host.latest(TEMP)?.sample.quality.severity === "good",
        15_000,
        `victim online with temp 22 good (state ${victimState(host)?.state}, temp ${String(host.latest(TEMP)?.sample.value)})`,
      );
    });

    // M3: the timeout ran while the host was held again, its answer queued for it at the broker,
    // so edge nodes were declared offline in waves.
    test("rebirthTimeoutMs counts only while the host reads: an answer queued behind a second hold does not declare the edge node offline", async () => {
      const fleet = await heldFleet({ rebirthTimeoutMs: 1_500 });
      const { broker, host, gated, flooder } = fleet;
      // The flooder answers rebirth requests too (it floods in the second hold).
      flooder.client.on("message", () =>
        setTimeout(
          () =>
            void flooder
              .nbirth(0, [{ name: "blob", alias: 1, timestamp: Date.now(), datatype: "String", value: "" }])
              .catch(() => undefined),
          300,
        ),
      );
      await flooder.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: FLOODER }), {
        qos: 1,
      });
      const victim = await RawEdgeNode.connect(broker.url, GROUP, VICTIM, 1);
      cleanups.push(() => victim.close());
      let temp = 21;
      const birth = () =>
        victim.nbirth(1, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
      const requests: number[] = [];
      // Answers each rebirth request 300 ms later, as an edge node busy with its births may.
      victim.client.on("message", () => {
        requests.push(Date.now());
        setTimeout(() => void birth().catch(() => undefined), 300);
      });
      await victim.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: VICTIM }), {
        qos: 1,
      });
      await birth();
      await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "victim born");
      const offline: string[] = [];
      host.events.on("edge-node-change", (change) => {
        if (change.edgeNodeId === VICTIM && change.deviceId === undefined && change.state === "offline")
          offline.push(change.reason);
      });
      await holdHost(fleet);
      gated.release();
      await eventually(() => requests.length > 0, 10_000, "a rebirth asked for after the hold");
      temp = 22;
      // Held again before the answer comes, for twice rebirthTimeoutMs.
      await holdHost(fleet);
      await sleep(3_000);
      expect(offline).toEqual([]);
      gated.release();
      await eventually(
        () =>
          victimState(host)?.state === "online" &&
          host.latest(TEMP)?.sample.value === 22 &&
          host.latest(TEMP)?.sample.quality.severity === "good",
        10_000,
        "victim online, its answer taken",
      );
      expect(offline).toEqual([]);
    });
  },
);

// Adversarial review adv19k M2: a store stall longer than 1.5 × keepalive ends the host's session
// (held, MQTT.js reads no PINGRESP). Kept on purpose (the Will tells edge nodes to keep their data;
// ADR 0043, amendment fix19q), but named for its cause: before, health blamed the broker.
describe.skipIf(!mosquitto.available)("a store stall past the keepalive (adv19k M2)", () => {
  test("the session its own keepalive ends while held is named as a store stall, not a broker fault, in the link's reason and health", async () => {
    const { host, flood, gated } = await heldFleet({ mqtt: { keepalive: 1 } });
    const reasons: string[] = [];
    host.events.on("link-change", (change) => void (change.to === "reconnecting" && reasons.push(change.reason ?? "")));
    gated.hold();
    await flood(1_500);
    await eventually(() => reasons.length > 0, 10_000, "the session lost while held");
    expect(reasons[0]).toContain("keepalive");
    expect(reasons[0]).toContain("store was behind");
    expect(reasons[0]).toContain("The broker is not at fault");
    gated.release();
    await host.whenConnected();
    // Named while connected again, until a session goes one keepalive timeout unheld.
    expect(host.health().problems.join("\n")).toContain("store was behind");
    await eventually(
      () => !host.health().problems.join("\n").includes("store was behind"),
      15_000,
      "the stall's problem cleared once a session stayed unheld",
    );
  });

  test("sibling: a session lost while held for another reason (the broker killed) is not blamed on the store", async () => {
    const { broker, host, flood, gated } = await heldFleet({ mqtt: { keepalive: 30 } });
    const reasons: string[] = [];
    host.events.on("link-change", (change) => void (change.to === "reconnecting" && reasons.push(change.reason ?? "")));
    gated.hold();
    await flood(1_500);
    await broker.stop();
    await eventually(() => reasons.length > 0, 10_000, "the session lost");
    expect(reasons[0]).not.toContain("store was behind");
    gated.release();
  });
});

// Adversarial review adv19 (fix19v): the watch kept one death read ahead per edge node, and the
// main session's copy of any death of that bdSeq cleared it. Two deaths of an edge node reusing
// its bdSeq (Eclipse Tahu) in one hold collapsed into one.
describe.skipIf(!mosquitto.available)("every death copy pairs with exactly one copy of the same death (adv19)", () => {
  const tahuSession = async (url: string, temp: number, will: Uint8Array | undefined) => {
    const node = await RawEdgeNode.connect(url, GROUP, VICTIM, 0, will === undefined ? {} : { deathPayload: will });
    cleanups.push(() => node.close());
    await node.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
    return node;
  };

  // HIGH-1: D1 queued, NBIRTH2 queued, D2 dropped by the broker; the watch read D1 and D2.
  for (const variant of ["one Will", "a fresh Will per session"] as const)
    test(`an edge node reusing its bdSeq (${variant}) dead, born and dead again while the host is held, its second NDEATH dropped, ends offline, its metric not good`, async () => {
      const fleet = await heldFleet();
      const { broker, host, flood, gated } = fleet;
      const will = variant === "one Will" ? RawEdgeNode.deathBytes(0) : undefined;
      const first = await tahuSession(broker.url, 21, will);
      await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first session born");
      await holdHost(fleet);
      first.client.stream.destroy();
      await eventually(() => victimState(host)?.state === "offline", 5_000, "first death read on the watch");
      await sleep(300);
      const second = await tahuSession(broker.url, 22, will);
      await sleep(200);
      fleet.flooder.qos = 1;
      await flood(80, 16);
      second.client.stream.destroy();
      await sleep(1_000);
      fleet.flooder.qos = 0;
      gated.release();
      await eventually(() => victimState(host)?.births === 2, 20_000, "the second NBIRTH taken after the hold");
      await sleep(4_000);
      expect(victimState(host)?.state).toBe("offline");
      expect(host.latest(TEMP)?.sample.quality.severity).not.toBe("good");
    });

  // MEDIUM-1: the death read ahead stayed "spent" while its main copy (dropped) never came, so the
  // live edge node's data was taken as history only, and never asked about again, for good.
  test("a live edge node reusing its bdSeq that misses the rebirth requests after a death read ahead is asked again while its data comes, and ends online", async () => {
    const fleet = await heldFleet();
    const { broker, host, flood, gated, flooder } = fleet;
    const will = RawEdgeNode.deathBytes(0);
    let temp = 21;
    const session = async (answer: boolean) => {
      const node = await RawEdgeNode.connect(broker.url, GROUP, VICTIM, 0, { deathPayload: will });
      cleanups.push(() => node.close());
      const birth = () =>
        node.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
      node.client.on("message", () => void birth().catch(() => undefined));
      const subscribe = () =>
        node.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: VICTIM }), { qos: 1 });
      if (answer) await subscribe();
      await birth();
      return { node, subscribe };
    };
    const first = await session(true);
    await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first session born");
    await holdHost(fleet);
    flooder.qos = 1;
    await flood(60, 16);
    first.node.client.stream.destroy();
    await eventually(() => victimState(host)?.state === "offline", 5_000, "its death read on the watch");
    await flood(20, 16);
    flooder.qos = 0;
    temp = 22;
    // Born again, but deaf to NCMD at first (reconnecting): it misses the requests after the hold.
    const second = await session(false);
    const data = setInterval(() => {
      temp += 0.01;
      void second.node
        .ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }])
        .catch(() => undefined);
    }, 200);
    cleanups.push(async () => clearInterval(data));
    const named: string[] = [];
    const watchProblems = setInterval(() => {
      for (const problem of host.health().problems)
        if (problem.includes(VICTIM) && problem.includes("history only")) named.push(problem);
    }, 50);
    cleanups.push(async () => clearInterval(watchProblems));
    gated.release();
    await sleep(3_000);
    clearInterval(watchProblems);
    // Named while its data is taken as history only.
    expect(named.length).toBeGreaterThan(0);
    await second.subscribe();
    await eventually(
      () => victimState(host)?.state === "online" && host.latest(TEMP)?.sample.quality.severity === "good",
      10_000,
      `victim online and good once it hears the requests (state ${victimState(host)?.state})`,
    );
  });

  // HIGH-2: two deaths in one hold, nothing dropped, left a death "taken" whose watch copy had come
  // already: the node's next death, read on the watch in a later hold, was swallowed by it.
  test("after two deaths of an edge node reusing its bdSeq and Will in one hold, its next death in a later hold is taken offline by the watch", async () => {
    const fleet = await heldFleet();
    const { broker, host, flood, gated, flooder } = fleet;
    // The flooder answers rebirth requests (it floods in the second hold).
    flooder.client.on(
      "message",
      () =>
        void flooder
          .nbirth(0, [{ name: "blob", alias: 1, timestamp: Date.now(), datatype: "String", value: "" }])
          .catch(() => undefined),
    );
    await flooder.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: FLOODER }), {
      qos: 1,
    });
    const will = RawEdgeNode.deathBytes(0);
    const first = await tahuSession(broker.url, 21, will);
    await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "first session born");
    await holdHost(fleet);
    first.client.stream.destroy();
    await sleep(300);
    const second = await tahuSession(broker.url, 22, will);
    await sleep(300);
    second.client.stream.destroy();
    await sleep(500);
    gated.release();
    await eventually(() => victimState(host)?.state === "offline", 5_000, "offline after the first hold");
    await sleep(3_000);
    const third = await tahuSession(broker.url, 23, will);
    await eventually(
      () => host.latest(TEMP)?.sample.value === 23 && victimState(host)?.state === "online",
      10_000,
      "third session online",
    );
    await sleep(3_000);
    await holdHost(fleet);
    fleet.flooder.qos = 1;
    await flood(80, 16);
    third.client.stream.destroy();
    await eventually(
      () => victimState(host)?.state === "offline" && host.latest(TEMP)?.sample.quality.severity !== "good",
      5_000,
      `third death read on the watch while the host is held (state ${victimState(host)?.state})`,
    );
    fleet.flooder.qos = 0;
    gated.release();
  });
});
