// Issue 19, adversarial review adv19 (second pass on fix19x), HIGH-1: while an edge node was
// unverified (the host knew it may have missed its messages: after a hold, a death it could not
// read...), its NEW data was taken, shown and stored good, possibly under an alias map the host
// had missed (a rebirth with the aliases swapped, dropped by the broker); fix19x's pacing made the
// window long. ADR 0043 and the guide said "never good". Now such data is shown and stored
// uncertain with the reason until the edge node's NBIRTH verifies it (ADR 0043, amendment fix19y).
// Against the test's own mosquitto.
import { MemoryStore, type Sample } from "@kiln/core";
import type { SampleWriteResult } from "@kiln/core/driver-kit";
import { afterEach, describe, expect, test, vi } from "vitest";
import { SparkplugHost } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { mosquittoAvailability } from "../src/testing/index";
import { sparkplugTopic } from "../src/topic";
import { RawEdgeNode, eventually } from "./support/host-harness";
import { configuredBroker } from "./support/limited-broker";

const GROUP = "plant-unver";
const mosquitto = mosquittoAvailability();
if (!mosquitto.available) console.log(`host-unverified-data.test.ts skipped: ${mosquitto.reason}`);

vi.setConfig({ testTimeout: 60_000 });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const tag = (edgeNodeId: string, metric: string, deviceId?: string) =>
  qualifiedTagName({ groupId: GROUP, edgeNodeId, deviceId, metric });
const rows = async (store: MemoryStore, name: string) =>
  (await store.samples.readSamples({ tag: name, from: 0, to: 4_102_444_799_999 })).map(
    (row) => `${String(row.value)}/${row.quality.severity}`,
  );

describe.skipIf(!mosquitto.available)(
  "data of an unverified edge node is never good (adv19 HIGH-1) (needs mosquitto)",
  () => {
    test("after a hold, an edge node waiting for its rebirth sends data: shown and stored uncertain with the reason; its NBIRTH makes it good again", async () => {
      const broker = await configuredBroker([]);
      cleanups.push(() => broker.stop());
      const store = new MemoryStore();
      let gate: { promise: Promise<void>; open: () => void } | undefined;
      const write = store.samples.writeBatch.bind(store.samples);
      store.samples.writeBatch = async (batch: readonly Sample[]): Promise<SampleWriteResult | void> => {
        while (gate !== undefined) await gate.promise;
        return write(batch);
      };
      const host = new SparkplugHost({
        brokerUrl: broker.url,
        hostId: "unver",
        groups: [GROUP],
        store,
        registerTags: false,
        stopLingerMs: 100,
        rebirthIntervalMs: 60_000,
        rebirthTimeoutMs: 60_000,
        batching: { maxDelayMs: 5, maxBatchSize: 10, maxQueuedSamples: 20 },
      });
      cleanups.push(() => host.stop());
      await host.start();
      await host.whenConnected();
      const edge = await RawEdgeNode.connect(broker.url, GROUP, "n", 0);
      cleanups.push(() => edge.close());
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
      await eventually(() => host.latest(tag("n", "temp"))?.sample.quality.severity === "good");
      // The store stalls: the writer congests and the host holds its session; then it goes on.
      let open!: () => void;
      gate = { promise: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
      const start = Date.now();
      for (let index = 0; index < 40; index++)
        await edge.ndata([{ alias: 1, timestamp: start + index, datatype: "Double", value: 100 + index }]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const current = gate;
      gate = undefined;
      current.open();
      await eventually(
        () => host.health().problems.some((problem) => problem.includes(`${GROUP}/n unverified`)),
        10_000,
        "unverified after the hold",
      );
      await eventually(() => host.health().samples.queued === 0, 10_000, "drained");
      // New data while unverified (the edge node did not answer yet): never good.
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 4242 }]);
      await eventually(() => host.latest(tag("n", "temp"))?.sample.value === 4242, 5_000, "taken");
      expect(host.latest(tag("n", "temp"))?.sample.quality).toMatchObject({ severity: "uncertain" });
      expect(host.latest(tag("n", "temp"))?.sample.quality.reason).toContain("unverified");
      await eventually(async () => (await rows(store, tag("n", "temp"))).includes("4242/uncertain"), 5_000, "stored");
      expect(await rows(store, tag("n", "temp"))).not.toContain("4242/good");
      // Its NBIRTH answers: good again, and so is its data after.
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 5 }]);
      await eventually(() => host.latest(tag("n", "temp"))?.sample.quality.severity === "good", 5_000, "born");
      await new Promise((resolve) => setTimeout(resolve, 5));
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 6 }]);
      await eventually(() => host.latest(tag("n", "temp"))?.sample.value === 6, 5_000, "taken");
      expect(host.latest(tag("n", "temp"))?.sample.quality.severity).toBe("good");
    });

    test("sibling: unverified by a death it could not read on the watch, a device's data under swapped aliases and a historical value: stored uncertain, never good", async () => {
      const acl = [
        "topic readwrite #",
        "user host",
        "topic deny spBv1.0/+/NDEATH/#",
        "topic readwrite spBv1.0/#",
        "user watch",
        "topic readwrite spBv1.0/#",
        "",
      ].join("\n");
      const broker = await configuredBroker(["acl_file {dir}/acl"], { acl });
      cleanups.push(() => broker.stop());
      const store = new MemoryStore();
      const host = new SparkplugHost({
        brokerUrl: broker.url,
        hostId: "unver2",
        groups: [GROUP],
        store,
        registerTags: false,
        stopLingerMs: 100,
        rebirthIntervalMs: 60_000,
        rebirthTimeoutMs: 60_000,
        mqtt: { username: "host" },
        deathWatchMqtt: { username: "watch" },
      });
      cleanups.push(() => host.stop());
      await host.start();
      await host.whenConnected();
      const edge = await RawEdgeNode.connect(broker.url, GROUP, "m", 0);
      cleanups.push(() => edge.close());
      await edge.nbirth(0, []);
      await edge.dbirth("d1", [
        { name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 21 },
        { name: "pressure", alias: 2, timestamp: Date.now(), datatype: "Double", value: 900 },
      ]);
      await eventually(() => host.latest(tag("m", "temp", "d1"))?.sample.quality.severity === "good");
      // Someone (or the edge node's broken encoder) publishes an NDEATH the host cannot read.
      await edge.client.publishAsync(
        sparkplugTopic({ type: "NDEATH", groupId: GROUP, edgeNodeId: "m" }),
        Buffer.from([0x12, 0x10, 0x0a]),
      );
      await eventually(
        () => host.health().problems.some((problem) => problem.includes(`${GROUP}/m unverified`)),
        5_000,
        "unverified",
      );
      // Alias 1 is now the pressure in a birth the host did not see; and a historical value.
      const now = Date.now();
      await edge.ddata("d1", [
        { alias: 1, timestamp: now, datatype: "Double", value: 950 },
        { alias: 2, timestamp: now - 60_000, datatype: "Double", value: 33, isHistorical: true },
      ]);
      await eventually(() => host.latest(tag("m", "temp", "d1"))?.sample.value === 950, 5_000, "taken");
      expect(host.latest(tag("m", "temp", "d1"))?.sample.quality.severity).toBe("uncertain");
      await eventually(
        async () => (await rows(store, tag("m", "pressure", "d1"))).includes("33/uncertain"),
        5_000,
        "h",
      );
      expect(await rows(store, tag("m", "temp", "d1"))).toContain("950/uncertain");
      expect(await rows(store, tag("m", "temp", "d1"))).not.toContain("950/good");
      expect(await rows(store, tag("m", "pressure", "d1"))).not.toContain("33/good");
    });
  },
);
