// Issue 19, adversarial review adv19r H2: on MQTT 5 the host's main session subscribes with Retain
// As Published, so a death someone publishes retained while it is subscribed arrives retained and
// is refused. The death watch (ADR 0043, amendment fix19o) must refuse it too: it took it (retain
// 0 without Retain As Published) as a death read ahead, and the edge node's next birth of that
// bdSeq was shown dead for its whole session. Against the test's own mosquitto.
import { MemoryStore } from "@kiln/core";
import { connectAsync } from "mqtt";
import { afterEach, describe, expect, test, vi } from "vitest";
import { SparkplugHost } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { mosquittoAvailability } from "../src/testing/index";
import { sparkplugTopic } from "../src/topic";
import { RawEdgeNode, eventually } from "./support/host-harness";
import { configuredBroker } from "./support/limited-broker";

const GROUP = "plant-r5";
const VICTIM = "line-victim";
const TEMP = qualifiedTagName({ groupId: GROUP, edgeNodeId: VICTIM, deviceId: undefined, metric: "temp" });
const DEATH = sparkplugTopic({ type: "NDEATH", groupId: GROUP, edgeNodeId: VICTIM });
const mosquitto = mosquittoAvailability();
if (!mosquitto.available) console.log(`host-watch-retained.test.ts skipped: ${mosquitto.reason}`);

vi.setConfig({ testTimeout: 60_000 });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function mqtt5Host() {
  const broker = await configuredBroker([]);
  cleanups.push(() => broker.stop());
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: "rap",
    groups: [GROUP],
    store: new MemoryStore(),
    mqtt: { protocolVersion: 5 },
    stopLingerMs: 100,
  });
  cleanups.push(() => host.stop());
  await host.start();
  await host.whenConnected();
  return { broker, host };
}

/** An MQTT 5 edge node that answers every rebirth request (NCMD) with its NBIRTH. */
async function answeringNode(url: string, bdSeq: number, temp: number, retainWill = false): Promise<RawEdgeNode> {
  const node = await RawEdgeNode.connect(url, GROUP, VICTIM, bdSeq, { protocolVersion: 5, retainWill });
  cleanups.push(() => node.close());
  const birth = () =>
    node.nbirth(bdSeq, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: temp }]);
  node.client.on("message", () => void birth());
  await node.client.subscribeAsync(sparkplugTopic({ type: "NCMD", groupId: GROUP, edgeNodeId: VICTIM }), { qos: 1 });
  await birth();
  return node;
}

const victimState = (host: SparkplugHost) => host.health().edgeNodes.find((node) => node.edgeNodeId === VICTIM);

/** Publishes NDATA for `ms` and checks the victim stays online with a good, current value. */
async function staysLive(host: SparkplugHost, node: RawEdgeNode, ms: number): Promise<void> {
  for (let index = 0, until = Date.now() + ms; Date.now() < until; index++) {
    await node.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 100 + index }]);
    await sleep(100);
  }
  await eventually(
    () => host.latest(TEMP)?.sample.quality.severity === "good",
    3_000,
    `victim's metric good (state ${victimState(host)?.state}, temp ${JSON.stringify(host.latest(TEMP)?.sample.quality)})`,
  );
  expect(victimState(host)?.state).toBe("online");
}

describe.skipIf(!mosquitto.available)(
  "MQTT 5: the death watch refuses what the main session refuses (adv19r H2)",
  () => {
    test("a retained NDEATH published (then cleared) for an edge node's next bdSeq does not kill that next birth", async () => {
      const { broker, host } = await mqtt5Host();
      const first = await answeringNode(broker.url, 0, 20);
      await eventually(() => host.latest(TEMP)?.sample.value === 20, 5_000, "first birth");
      first.client.stream.destroy();
      await eventually(() => victimState(host)?.state === "offline", 5_000, "victim offline after its Will");
      const forger = await connectAsync(broker.url, { protocolVersion: 5 });
      await forger.publishAsync(DEATH, Buffer.from(RawEdgeNode.deathBytes(1)), { qos: 1, retain: true });
      await sleep(300);
      await forger.publishAsync(DEATH, Buffer.alloc(0), { qos: 1, retain: true });
      await forger.endAsync();
      await sleep(300);
      const second = await answeringNode(broker.url, 1, 30);
      await eventually(() => host.latest(TEMP)?.sample.value === 30, 5_000, "second birth");
      await staysLive(host, second, 2_000);
      expect(victimState(host)?.bdSeq).toBe(1);
      // The retained death was refused where it is counted (the main session), not taken silently.
      expect(host.health().messages.malformed).toBeGreaterThanOrEqual(1);
    });

    test("a non-conformant edge node with a retained Will and one bdSeq for every session is live after it is born again", async () => {
      const { broker, host } = await mqtt5Host();
      const first = await answeringNode(broker.url, 0, 20, true);
      await eventually(() => host.latest(TEMP)?.sample.value === 20, 5_000, "first birth");
      const refused = host.health().messages.malformed;
      first.client.stream.destroy();
      // Its retained Will is refused and counted on the main session, as every retained death is
      // with MQTT 5 (Retain As Published); the watch takes nothing the main session refuses.
      await eventually(() => host.health().messages.malformed > refused, 5_000, "retained Will refused, counted");
      const second = await answeringNode(broker.url, 0, 30, true);
      await eventually(() => host.latest(TEMP)?.sample.value === 30, 5_000, "second birth");
      await staysLive(host, second, 2_000);
      await second.close();
      const cleaner = await connectAsync(broker.url);
      await cleaner.publishAsync(DEATH, Buffer.alloc(0), { retain: true });
      await cleaner.endAsync();
    });
  },
);
