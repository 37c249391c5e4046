// Issue 19, adversarial review adv19 (second pass on fix19x), HIGH-1: while an edge node was
// unverified (the host knew it may have missed its messages: after a hold, a death it could not
// read...), its NEW data was taken, shown and stored good, possibly under an alias map the host
// had missed (a rebirth with the aliases swapped, dropped by the broker). fix19y stored it
// uncertain, which lost good values in the fleet fault (the edge nodes' good replays then
// conflicted with the uncertain rows). Now such data is held, not stored, acknowledged or shown,
// until the NBIRTH (a device's: its DBIRTH after it) answering the rebirth request: released good
// where that birth decodes it the same, refused and counted where it does not, stored uncertain
// if none comes; the hold is bounded (ADR 0043, amendment fix19z). Against the test's own mosquitto.
import { MemoryStore, type Sample } from "@kiln/core";
import type { SampleWriteResult } from "@kiln/core/driver-kit";
import { afterEach, describe, expect, test, vi } from "vitest";
import { AWAIT_ACKS_METRIC, MESSAGE_NUMBER_METRIC } from "../src/edge-node";
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
const settle = (ms = 300) => new Promise((resolve) => setTimeout(resolve, ms));

/** A broker whose host user cannot read NDEATHs (only its death watch can). */
const WATCH_ONLY_DEATHS = [
  "topic readwrite #",
  "user host",
  "topic deny spBv1.0/+/NDEATH/#",
  "topic readwrite spBv1.0/#",
  "user watch",
  "topic readwrite spBv1.0/#",
  "",
].join("\n");

/** An NDEATH no decoder can read, on the edge node's topic: read on the watch only, it makes the edge node unverified. */
async function undecodableDeath(edge: RawEdgeNode): Promise<void> {
  await edge.client.publishAsync(
    sparkplugTopic({ type: "NDEATH", groupId: GROUP, edgeNodeId: edge.edgeNodeId }),
    Buffer.from([0x12, 0x10, 0x0a]),
  );
}

async function watchOnlyHost(
  hostId: string,
  options: { maxQueuedSamples?: number; rebirthTimeoutMs?: number } = {},
): Promise<{ host: SparkplugHost; store: MemoryStore; url: string }> {
  const broker = await configuredBroker(["acl_file {dir}/acl"], { acl: WATCH_ONLY_DEATHS });
  cleanups.push(() => broker.stop());
  const store = new MemoryStore();
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId,
    groups: [GROUP],
    store,
    registerTags: false,
    stopLingerMs: 100,
    rebirthIntervalMs: 60_000,
    rebirthTimeoutMs: options.rebirthTimeoutMs ?? 60_000,
    mqtt: { username: "host" },
    deathWatchMqtt: { username: "watch" },
    batching: {
      maxDelayMs: 5,
      ...(options.maxQueuedSamples === undefined ? {} : { maxQueuedSamples: options.maxQueuedSamples }),
    },
  });
  cleanups.push(() => host.stop());
  await host.start();
  await host.whenConnected();
  return { host, store, url: broker.url };
}

describe.skipIf(!mosquitto.available)(
  "data of an unverified edge node is held until its NBIRTH, never stored good unverified (adv19 HIGH-1) (needs mosquitto)",
  () => {
    test("after a hold, an edge node waiting for its rebirth sends data: held (not stored, live view uncertain with the reason); its NBIRTH with the same aliases releases it good", async () => {
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
      await settle();
      const current = gate;
      gate = undefined;
      current.open();
      await eventually(
        () => host.health().problems.some((problem) => problem.includes(`${GROUP}/n unverified`)),
        10_000,
        "unverified after the hold",
      );
      await eventually(() => host.health().samples.queued === 0, 10_000, "drained");
      // New data while unverified (the edge node did not answer yet): held, never stored or shown good.
      // (What the host took after the hold is held too: every one taken, counted before.)
      await eventually(
        () => host.health().edgeNodes.find((node) => node.edgeNodeId === "n")?.lastSeq === 40,
        5_000,
        "all taken",
      );
      const taken = () => host.health().samples.held + host.health().samples.heldUncertain;
      const before = taken();
      const at = Date.now();
      await edge.ndata([{ alias: 1, timestamp: at, datatype: "Double", value: 4242 }]);
      await eventually(() => taken() === before + 1, 5_000, "held");
      await settle(100);
      expect(await rows(store, tag("n", "temp"))).not.toContain("4242/good");
      expect(await rows(store, tag("n", "temp"))).not.toContain("4242/uncertain");
      const shown = host.latest(tag("n", "temp"))?.sample;
      expect(shown?.value).not.toBe(4242);
      expect(shown?.quality.severity).toBe("uncertain");
      expect(shown?.quality.reason).toContain("unverified");
      expect(host.health().problems.find((problem) => problem.includes(`${GROUP}/n unverified`))).toContain("held");
      // Its NBIRTH answers with the alias map the held data was decoded by: released good, at its own time.
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 5 }]);
      await eventually(() => host.latest(tag("n", "temp"))?.sample.quality.severity === "good", 5_000, "born");
      await eventually(async () => (await rows(store, tag("n", "temp"))).includes("4242/good"), 5_000, "released");
      const released = (
        await store.samples.readSamples({ tag: tag("n", "temp"), from: 0, to: 4_102_444_799_999 })
      ).find((row) => row.value === 4242);
      expect(released).toMatchObject({ value: 4242, timestamp: at, quality: { severity: "good" } });
      expect(host.health().samples.held).toBe(0);
      // The live view is the birth's (newer), not the released value.
      expect(host.latest(tag("n", "temp"))?.sample.value).toBe(5);
      await settle(5);
      await edge.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 6 }]);
      await eventually(() => host.latest(tag("n", "temp"))?.sample.value === 6, 5_000, "taken");
      expect(host.latest(tag("n", "temp"))?.sample.quality.severity).toBe("good");
    });

    test("sibling: unverified by a death it could not read on the watch, a device's data then a DBIRTH with the aliases swapped: the held values are refused and counted, never stored good", async () => {
      const { host, store, url } = await watchOnlyHost("unver2");
      const edge = await RawEdgeNode.connect(url, GROUP, "m", 0);
      cleanups.push(() => edge.close());
      const born = Date.now();
      await edge.nbirth(0, []);
      await edge.dbirth("d1", [
        { name: "temp", alias: 1, timestamp: born, datatype: "Double", value: 21 },
        { name: "pressure", alias: 2, timestamp: born, datatype: "Double", value: 900 },
      ]);
      await eventually(() => host.latest(tag("m", "temp", "d1"))?.sample.quality.severity === "good");
      await undecodableDeath(edge);
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
      await eventually(() => host.health().samples.held === 2, 5_000, "held");
      expect(host.latest(tag("m", "temp", "d1"))?.sample).toMatchObject({
        value: 21,
        quality: { severity: "uncertain" },
      });
      const discarded = host.health().samples.discarded;
      const rejects: string[] = [];
      host.events.on("message-reject", (event) => void rejects.push(event.message));
      // The answer: its NBIRTH, then the DBIRTH with the aliases swapped.
      await edge.nbirth(0, []);
      await edge.dbirth("d1", [
        { name: "temp", alias: 2, timestamp: Date.now(), datatype: "Double", value: 22 },
        { name: "pressure", alias: 1, timestamp: Date.now(), datatype: "Double", value: 951 },
      ]);
      await eventually(() => host.health().samples.held === 0, 5_000, "settled");
      await eventually(() => host.latest(tag("m", "temp", "d1"))?.sample.value === 22, 5_000, "born");
      await settle(100);
      expect(host.health().samples.discarded).toBe(discarded + 2);
      expect(host.health().samples.heldUncertain).toBe(0);
      expect(rejects.some((message) => message.includes("alias 1 (temp Double → pressure Double)"))).toBe(true);
      for (const name of [tag("m", "temp", "d1"), tag("m", "pressure", "d1")]) {
        expect(await rows(store, name)).not.toContain("950/good");
        expect(await rows(store, name)).not.toContain("950/uncertain");
        expect(await rows(store, name)).not.toContain("33/good");
      }
    });

    test("sibling: the same, the DBIRTH after the NBIRTH with the same aliases: released good, the historical value too", async () => {
      const { host, store, url } = await watchOnlyHost("unver3");
      const edge = await RawEdgeNode.connect(url, GROUP, "k", 0);
      cleanups.push(() => edge.close());
      const metrics = () => [
        { name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double" as const, value: 21 },
        { name: "pressure", alias: 2, timestamp: Date.now(), datatype: "Double" as const, value: 900 },
      ];
      await edge.nbirth(0, []);
      await edge.dbirth("d1", metrics());
      await eventually(() => host.latest(tag("k", "temp", "d1"))?.sample.quality.severity === "good");
      await undecodableDeath(edge);
      await eventually(() => host.health().problems.some((problem) => problem.includes(`${GROUP}/k unverified`)));
      const now = Date.now();
      await edge.ddata("d1", [
        { alias: 1, timestamp: now, datatype: "Double", value: 950 },
        { alias: 2, timestamp: now - 60_000, datatype: "Double", value: 33, isHistorical: true },
      ]);
      await eventually(() => host.health().samples.held === 2, 5_000, "held");
      // Its NBIRTH alone: the device's held data awaits the device's DBIRTH.
      await edge.nbirth(0, []);
      await eventually(() => host.health().problems.every((problem) => !problem.includes(`${GROUP}/k unverified`)));
      await settle(100);
      expect(host.health().samples.held).toBe(2);
      await edge.dbirth("d1", metrics());
      await eventually(() => host.health().samples.held === 0, 5_000, "released");
      await eventually(async () => (await rows(store, tag("k", "temp", "d1"))).includes("950/good"), 5_000, "stored");
      expect(await rows(store, tag("k", "pressure", "d1"))).toContain("33/good");
      expect(host.health().samples.heldUncertain).toBe(0);
    });

    test("the hold is bounded: past a quarter of maxQueuedSamples the oldest held samples are stored uncertain, counted; none lost, the rest released good", async () => {
      const { host, store, url } = await watchOnlyHost("unver4", { maxQueuedSamples: 40 });
      const edge = await RawEdgeNode.connect(url, GROUP, "b", 0);
      cleanups.push(() => edge.close());
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
      await eventually(() => host.latest(tag("b", "temp"))?.sample.quality.severity === "good");
      await undecodableDeath(edge);
      await eventually(() => host.health().problems.some((problem) => problem.includes(`${GROUP}/b unverified`)));
      const start = Date.now();
      for (let index = 0; index < 15; index++)
        await edge.ndata([{ alias: 1, timestamp: start + index, datatype: "Double", value: 100 + index }]);
      await eventually(() => host.health().samples.held + host.health().samples.heldUncertain === 15, 5_000, "taken");
      expect(host.health().samples).toMatchObject({ held: 10, heldUncertain: 5 });
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 2 }]);
      await eventually(() => host.health().samples.held === 0, 5_000, "released");
      await eventually(
        async () => (await rows(store, tag("b", "temp"))).filter((row) => /^1\d\d\//.test(row)).length === 15,
        5_000,
        "stored",
      );
      const stored = (await rows(store, tag("b", "temp"))).filter((row) => /^1\d\d\//.test(row));
      expect(stored).toEqual([
        ...[100, 101, 102, 103, 104].map((value) => `${value}/uncertain`),
        ...[105, 106, 107, 108, 109, 110, 111, 112, 113, 114].map((value) => `${value}/good`),
      ]);
      expect(host.health().samples.heldUncertain).toBe(5);
    });

    test("sibling: a long hold past its bound keeps its counts: thousands of releases from the front, the rest released good in order", async () => {
      // The bound releases the oldest held message each time; its edge node's list is compacted
      // lazily (a filter per release was quadratic). What health names held must stay exact.
      const { host, store, url } = await watchOnlyHost("unver7", { maxQueuedSamples: 400 });
      const edge = await RawEdgeNode.connect(url, GROUP, "m", 0);
      cleanups.push(() => edge.close());
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
      await eventually(() => host.latest(tag("m", "temp"))?.sample.quality.severity === "good");
      await undecodableDeath(edge);
      await eventually(() => host.health().problems.some((problem) => problem.includes(`${GROUP}/m unverified`)));
      const start = Date.now();
      const sent = 2_600;
      for (let index = 0; index < sent; index++)
        await edge.ndata([{ alias: 1, timestamp: start + index, datatype: "Double", value: 10_000 + index }]);
      await eventually(
        () => host.health().samples.held + host.health().samples.heldUncertain === sent,
        20_000,
        "taken",
      );
      expect(host.health().samples).toMatchObject({ held: 100, heldUncertain: sent - 100 });
      expect(host.health().problems.find((problem) => problem.includes(`${GROUP}/m unverified`))).toContain(
        "(100 samples",
      );
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 2 }]);
      await eventually(() => host.health().samples.held === 0, 5_000, "released");
      const ours = async () => (await rows(store, tag("m", "temp"))).filter((row) => /^1\d{4}\//.test(row));
      await eventually(async () => (await ours()).length === sent, 10_000, "stored");
      const stored = await ours();
      expect(stored.filter((row) => row.endsWith("/uncertain"))).toHaveLength(sent - 100);
      expect(stored.slice(sent - 100)).toEqual(
        Array.from({ length: 100 }, (_, index) => `${10_000 + sent - 100 + index}/good`),
      );
      expect(host.health().samples.heldUncertain).toBe(sent - 100);
    });

    test("no NBIRTH within rebirthTimeoutMs: the held data is stored uncertain with the reason before the edge node's stale mark", async () => {
      const { host, store, url } = await watchOnlyHost("unver5", { rebirthTimeoutMs: 600 });
      const edge = await RawEdgeNode.connect(url, GROUP, "t", 0);
      cleanups.push(() => edge.close());
      await edge.nbirth(0, [{ name: "temp", alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
      await eventually(() => host.latest(tag("t", "temp"))?.sample.quality.severity === "good");
      await undecodableDeath(edge);
      await eventually(() => host.health().problems.some((problem) => problem.includes(`${GROUP}/t unverified`)));
      const at = Date.now();
      await edge.ndata([{ alias: 1, timestamp: at, datatype: "Double", value: 77 }]);
      await eventually(
        () => host.health().edgeNodes.find((node) => node.edgeNodeId === "t")?.state === "offline",
        10_000,
        "offline",
      );
      await eventually(async () => (await rows(store, tag("t", "temp"))).includes("77/uncertain"), 5_000, "stored");
      const all = await store.samples.readSamples({ tag: tag("t", "temp"), from: 0, to: 4_102_444_799_999 });
      const value = all.find((row) => row.value === 77)!;
      expect(value.quality.reason).toContain("stored uncertain");
      expect(all.at(-1)).toMatchObject({ value: null, quality: { severity: "bad" } });
      expect(host.health().samples).toMatchObject({ held: 0, heldUncertain: 1 });
    });
    test("sibling: an edge node awaiting acks dies before it answers: what it held is not stored (never acknowledged, the edge node sends it again after its next birth, stored good then, no conflict)", async () => {
      const { host, store, url } = await watchOnlyHost("unver6");
      const edge = await RawEdgeNode.connect(url, GROUP, "a", 0);
      cleanups.push(() => edge.close());
      const now = Date.now();
      const births = async (bdSeq: number) => {
        await edge.nbirth(bdSeq, [{ name: AWAIT_ACKS_METRIC, timestamp: now, datatype: "UInt64", value: 0 }]);
        await edge.dbirth("d1", [
          { name: "temp", alias: 1, timestamp: now, datatype: "Double", value: 21 },
          { name: MESSAGE_NUMBER_METRIC, alias: 2, timestamp: now, datatype: "UInt64", value: 0, isTransient: true },
        ]);
      };
      await births(0);
      await eventually(() => host.latest(tag("a", "temp", "d1"))?.sample.quality.severity === "good");
      await undecodableDeath(edge);
      await eventually(() => host.health().problems.some((problem) => problem.includes(`${GROUP}/a unverified`)));
      await edge.ddata("d1", [
        { alias: 1, timestamp: now + 1, datatype: "Double", value: 950 },
        { alias: 2, timestamp: now + 1, datatype: "UInt64", value: 1, isTransient: true },
      ]);
      await eventually(() => host.health().samples.held === 2, 5_000, "held");
      // Its own NDEATH (bdSeq 0): no answer will come in this session.
      await edge.client.publishAsync(
        sparkplugTopic({ type: "NDEATH", groupId: GROUP, edgeNodeId: "a" }),
        Buffer.from(RawEdgeNode.deathBytes(0)),
      );
      await eventually(() => host.health().samples.held === 0, 5_000, "settled");
      expect(host.health().samples).toMatchObject({ heldReturned: 2, heldUncertain: 0 });
      await settle(100);
      expect((await rows(store, tag("a", "temp", "d1"))).filter((row) => row.startsWith("950/"))).toEqual([]);
      // Born again (a new session), it sends the unacknowledged sample again by name, as history:
      // stored good, once.
      await births(1);
      await edge.ddata("d1", [
        { name: "temp", timestamp: now + 1, datatype: "Double", value: 950, isHistorical: true },
        { alias: 2, timestamp: now + 2, datatype: "UInt64", value: 1, isTransient: true },
      ]);
      // (Here that NBIRTH is itself verified, its NDEATH having been read only on the watch: the
      // replay is held until the next NBIRTH answers, then stored.)
      await eventually(() => host.health().samples.held === 2, 5_000, "replay held");
      await births(1);
      await eventually(async () => (await rows(store, tag("a", "temp", "d1"))).includes("950/good"), 5_000, "stored");
      expect(host.health().samples.conflicts).toBe(0);
    });
  },
);
