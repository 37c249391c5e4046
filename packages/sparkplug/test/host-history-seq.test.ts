// Issue 19, adversarial review adv19 LOW-1: data on the history-only path (an edge node's NDEATH
// read ahead on the death watch, the main session still delivering what its session sent before
// it) was judged by the seq the host last took from the edge node, even when the host had stopped
// taking its stream before (a seq gap, its own reconnect): another session's data whose seq
// happened to follow was stored as history of the old birth, under its aliases. Against the
// test's own mosquitto, whose ACL keeps NDEATH from the main session (only the watch reads it), so
// the history-only window stays open as it does while the main copy waits behind a hold.
import { MemoryStore } from "@kiln/core";
import { afterEach, describe, expect, test, vi } from "vitest";
import { SparkplugHost } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { mosquittoAvailability } from "../src/testing/index";
import { RawEdgeNode, eventually } from "./support/host-harness";
import { configuredBroker } from "./support/limited-broker";

const GROUP = "plant-hseq";
const EDGE = "line-1";
const TEMP = qualifiedTagName({ groupId: GROUP, edgeNodeId: EDGE, deviceId: undefined, metric: "temp" });
const mosquitto = mosquittoAvailability();
if (!mosquitto.available) console.log(`host-history-seq.test.ts skipped: ${mosquitto.reason}`);

vi.setConfig({ testTimeout: 60_000 });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

// Anonymous clients (the edge nodes) may do anything; the host's main session reads everything
// but NDEATH; its death watch (its own login) reads everything.
const ACL = [
  "topic readwrite #",
  "user host",
  "topic deny spBv1.0/+/NDEATH/#",
  "topic readwrite spBv1.0/#",
  "user watch",
  "topic readwrite spBv1.0/#",
  "",
].join("\n");

async function aclFleet(port?: number) {
  const broker = await configuredBroker(["acl_file {dir}/acl"], { acl: ACL }, port);
  return broker;
}

const node = (host: SparkplugHost) => host.health().edgeNodes.find((entry) => entry.edgeNodeId === EDGE);

async function stored(store: MemoryStore): Promise<unknown[]> {
  return (await store.samples.readSamples({ tag: TEMP, from: 0, to: 4_102_444_799_999 })).map((row) => row.value);
}

describe.skipIf(!mosquitto.available)(
  "data on the history-only path is judged by its own session's seq (adv19 LOW-1) (needs mosquitto)",
  () => {
    test("after a seq gap, a death read ahead on the watch: data whose seq follows the pre-gap one is not stored as history", async () => {
      const broker = await aclFleet();
      cleanups.push(() => broker.stop());
      const store = new MemoryStore();
      const host = new SparkplugHost({
        brokerUrl: broker.url,
        hostId: "hseq",
        groups: [GROUP],
        store,
        stopLingerMs: 100,
        rebirthIntervalMs: 60_000,
        mqtt: { username: "host" },
        deathWatchMqtt: { username: "watch" },
      });
      cleanups.push(() => host.stop());
      await host.start();
      await host.whenConnected();
      const edge = await RawEdgeNode.connect(broker.url, GROUP, EDGE, 1);
      cleanups.push(() => edge.close());
      await edge.nbirth(1, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 20 }]);
      await new Promise((resolve) => setTimeout(resolve, 5)); // the next value a later millisecond
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]); // seq 1
      await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "21 taken");
      // A gap: seq 9 after 1. The host stops taking the stream (awaiting its rebirth).
      edge.seq = 9;
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 22 }]);
      await eventually(() => node(host)?.state === "awaiting-rebirth", 5_000, "awaiting rebirth");
      // Its NDEATH (bdSeq 1), read only on the watch: offline, the death ahead of the main session.
      await edge.ndeath(1);
      await eventually(() => node(host)?.state === "offline", 5_000, "offline by the watch");
      // Data whose seq follows the last the host took (1): not the session the host took.
      edge.seq = 2;
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 999 }]);
      await eventually(() => (node(host)?.dataBeforeBirth ?? 0) >= 1, 5_000, "counted as data before a birth");
      expect(await stored(store)).not.toContain(999);
    });

    test("after the host's own reconnect, a death read ahead on the watch: data whose seq follows the old broker session's is not stored as history", async () => {
      let broker = await aclFleet();
      const port = Number(new URL(broker.url).port);
      cleanups.push(() => broker.stop());
      const store = new MemoryStore();
      const host = new SparkplugHost({
        brokerUrl: broker.url,
        hostId: "hseq2",
        groups: [GROUP],
        store,
        stopLingerMs: 100,
        rebirthIntervalMs: 60_000,
        reconnect: { initialDelayMs: 100, maxDelayMs: 300 },
        mqtt: { username: "host" },
        deathWatchMqtt: { username: "watch" },
      });
      cleanups.push(() => host.stop());
      await host.start();
      await host.whenConnected();
      const first = await RawEdgeNode.connect(broker.url, GROUP, EDGE, 1);
      await first.nbirth(1, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 20 }]);
      await new Promise((resolve) => setTimeout(resolve, 5)); // the next value a later millisecond
      await first.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 }]); // seq 1
      await eventually(() => host.latest(TEMP)?.sample.value === 21, 5_000, "21 taken");
      // The edge node leaves with a DISCONNECT (no Will), the broker restarts: the host reconnects,
      // every edge node awaits its rebirth.
      await first.client.endAsync(false);
      await broker.stop();
      broker = await aclFleet(port);
      cleanups.push(() => broker.stop());
      await eventually(
        () => host.health().link === "connected" && node(host)?.state === "awaiting-rebirth",
        15_000,
        "reconnected, awaiting rebirth",
      );
      const edge = await RawEdgeNode.connect(broker.url, GROUP, EDGE, 1);
      cleanups.push(() => edge.close());
      await edge.ndeath(1);
      await eventually(() => node(host)?.state === "offline", 5_000, "offline by the watch");
      edge.seq = 2;
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 999 }]);
      await eventually(() => (node(host)?.dataBeforeBirth ?? 0) >= 1, 5_000, "counted as data before a birth");
      expect(await stored(store)).not.toContain(999);
    });
  },
);
