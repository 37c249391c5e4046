import { GOOD, KilnError, type Sample } from "@kiln/core";
import { RecordJournal } from "@kiln/core/driver-kit";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { SparkplugHost, encodeHostState, type SparkplugEdgeNode, type SparkplugLiveMetric } from "../src/index";
import { qualifiedTagName } from "../src/host-tag-names";
import type { RecordedMessage } from "../src/testing/index";
import {
  DEVICE,
  EDGE,
  GROUP,
  HOST,
  edgeFixture,
  engineer,
  fromNode,
  ofType,
  type EdgeFixture,
} from "./support/edge-fixture";
import { openTestDatabase } from "./support/host-harness";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** CVT changes (value or quality changed: what an edge node publishes) of each fixture, in order. */
const changes = new WeakMap<EdgeFixture, Sample[]>();

async function fixtureWithHost(hostId = HOST): Promise<EdgeFixture> {
  const fixture = await edgeFixture({ primaryHostId: hostId });
  cleanups.push(() => fixture.close());
  const seen: Sample[] = [];
  fixture.system.cvt.observeAll((change) => {
    if (change.valueChanged || change.qualityChanged) seen.push(change.sample);
  });
  changes.set(fixture, seen);
  return fixture;
}

async function tempJournal(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-sparkfwd-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, "sparkplug-forward.journal");
}

async function setHost(f: EdgeFixture, online: boolean, timestamp: number): Promise<void> {
  await f.recorder.client.publishAsync(`spBv1.0/STATE/${HOST}`, Buffer.from(encodeHostState({ online, timestamp })), {
    qos: 1,
    retain: true,
  });
}

interface Sent {
  readonly key: string;
  readonly timestamp: number;
  readonly value: unknown;
  readonly historical: boolean;
  readonly message: number;
}

/** Every tag metric of every DDATA in `messages`, keyed `tag@ms`. */
function sentSamples(node: SparkplugEdgeNode, messages: readonly RecordedMessage[]): Sent[] {
  const tagOf = new Map([...node.aliases].map(([tag, alias]) => [alias, tag]));
  const sent: Sent[] = [];
  messages.forEach((message, index) => {
    if (!ofType("DDATA")(message)) return;
    for (const metric of message.payload!.metrics) {
      const tag = tagOf.get(Number(metric.alias));
      if (tag === undefined) continue; // the machine state
      sent.push({
        key: `${tag}@${metric.timestamp}`,
        timestamp: metric.timestamp!,
        value: metric.value,
        historical: metric.isHistorical === true,
        message: index,
      });
    }
  });
  return sent;
}

/** Keys (`tag@ms`) of the CVT changes with a timestamp in [from, to]. */
function changesBetween(f: EdgeFixture, from: number, to: number): Map<string, unknown> {
  const keys = new Map<string, unknown>();
  for (const sample of changes.get(f)!) {
    if (sample.timestamp >= from && sample.timestamp <= to)
      keys.set(`${sample.tag}@${Math.floor(sample.timestamp)}`, sample.value);
  }
  return keys;
}

function duplicates(sent: readonly Sent[]): string[] {
  const seen = new Set<string>();
  return sent.filter((each) => (seen.has(each.key) ? true : (seen.add(each.key), false))).map((each) => each.key);
}

function storeAndForward(node: SparkplugEdgeNode) {
  return node.health().storeAndForward!;
}

describe("store-and-forward options", () => {
  test("bad limits, policy and sources are refused with KILN_VALIDATION naming each field", async () => {
    const fixture = await fixtureWithHost();
    const { journal } = await RecordJournal.open(await tempJournal());
    cleanups.push(() => journal.close());
    const issues = (options: object): string[] => {
      try {
        fixture.newNode({ storeAndForward: options });
      } catch (error) {
        expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
        return ((error as KilnError).details as { issues: { path: string }[] }).issues.map((issue) => issue.path);
      }
      return [];
    };
    expect(issues({ maxSamples: 0, maxBytes: 10, batchSamples: 20_000, overflow: "drop-newest" })).toEqual([
      "storeAndForward.maxBytes",
      "storeAndForward.maxSamples",
      "storeAndForward.batchSamples",
      "storeAndForward.overflow",
    ]);
    expect(issues({ maxSamples: 10, batchSamples: 11 })).toEqual(["storeAndForward.batchSamples"]);
    expect(issues({ path: "/tmp/x", journal })).toEqual(["storeAndForward.journal"]);
    expect(issues({ journal, maxBytes: 4096 })).toEqual(["storeAndForward.maxBytes"]);
    expect(issues({ path: "" })).toEqual(["storeAndForward.path"]);
    expect(issues({})).toEqual([]);
  });
});

describe("store-and-forward on a real broker", () => {
  test("host offline: every change is journaled; host online: births, then the backlog as is_historical DDATA in time order, then live; 0 lost, 0 duplicated", async () => {
    const fixture = await fixtureWithHost();
    // The wire shape without acks (no message numbers): "auto", the default, numbers every DDATA.
    const node = fixture.newNode({
      storeAndForward: { path: await tempJournal(), batchSamples: 3 },
      awaitHostAcks: false,
    });
    await node.start();
    await setHost(fixture, true, 1_000);
    await fixture.recorder.waitFor(ofType("DDATA"));
    const liveFrom = Date.now() + 200;
    await pause(300);
    await setHost(fixture, false, 2_000);
    await fixture.recorder.waitFor(ofType("NDEATH"));
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 5_000 }).toBeGreaterThan(10);
    await pause(300);
    const offline = storeAndForward(node);
    expect(offline).toMatchObject({ durable: true, replaying: false, samplesDropped: 0 });
    expect(offline.backlogRecords).toBeGreaterThanOrEqual(Math.ceil(offline.backlogSamples / 3));
    expect(offline.oldestAgeMs).toBeGreaterThanOrEqual(300);
    expect(node.health().problems.join()).toMatch(/stored to forward later/);

    const onlineAt = fixture.recorder.messages.length;
    await setHost(fixture, true, 3_000);
    await expect
      .poll(
        () =>
          storeAndForward(node).backlogSamples === 0 && storeAndForward(node).samplesReplayed >= offline.backlogSamples,
        {
          timeout: 10_000,
        },
      )
      .toBe(true);
    await pause(300);
    const liveTo = Date.now() - 150;
    await node.stop();

    const after = fromNode(fixture.recorder).filter(
      (message) => fixture.recorder.messages.indexOf(message) >= onlineAt,
    );
    expect(after.slice(0, 2).map((message) => message.parsed?.type)).toEqual(["NBIRTH", "DBIRTH"]);
    const historicalMessages = after.filter(
      (message) => ofType("DDATA")(message) && message.payload!.metrics.some((metric) => metric.isHistorical === true),
    );
    expect(historicalMessages.length).toBeGreaterThanOrEqual(Math.ceil(offline.backlogSamples / 3));
    // A replay message is history only, its metrics in time order, and the messages follow each other in time.
    const historicalTimes = historicalMessages.flatMap((message) => {
      expect(message.payload!.metrics.every((metric) => metric.isHistorical === true)).toBe(true);
      return message.payload!.metrics.map((metric) => metric.timestamp!);
    });
    expect(historicalTimes).toEqual([...historicalTimes].sort((a, b) => a - b));
    // Live data after the births are not historical, and are newer than the backlog.
    const live = after.filter(
      (message) => ofType("DDATA")(message) && message.payload!.metrics.every((metric) => metric.isHistorical !== true),
    );
    expect(live.length).toBeGreaterThan(0);

    const sent = sentSamples(node, fixture.recorder.messages);
    const expected = changesBetween(fixture, liveFrom, liveTo);
    const sentKeys = new Map(sent.map((each) => [each.key, each.value]));
    expect([...expected.keys()].filter((key) => !sentKeys.has(key))).toEqual([]);
    for (const [key, value] of expected) expect(sentKeys.get(key)).toEqual(value);
    expect(duplicates(sent)).toEqual([]);
    expect(storeAndForward(node)).toMatchObject({ samplesDropped: 0, backlogSamples: 0 });
  });

  test("a change the CVT makes while start() opens the journal is kept and sent (adv19f LOW-1); sibling: so is one made after the open, before the first connect ends", async () => {
    const fixture = await fixtureWithHost();
    const node = fixture.newNode({ storeAndForward: { path: await tempJournal() }, awaitHostAcks: false });
    // The table behind the system's read-only view: a change at a chosen instant, not at a scan's.
    const table = fixture.system.unchecked.cvt;
    const duringOpen = Date.now();
    const starting = node.start(); // runs to the journal open's first await
    table.update([{ tag: "recipe.name", value: "during-open", timestamp: duringOpen, quality: GOOD }]);
    await starting;
    const afterStart = Date.now() + 1;
    table.update([{ tag: "recipe.name", value: "after-start", timestamp: afterStart, quality: GOOD }]);
    await expect.poll(() => storeAndForward(node).samplesStored, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
    await setHost(fixture, true, Date.now());
    await expect
      .poll(
        () =>
          sentSamples(node, fixture.recorder.messages)
            .filter((each) => each.key.startsWith("recipe.name@"))
            .map((each) => each.value),
        { timeout: 10_000 },
      )
      .toEqual(expect.arrayContaining(["during-open", "after-start"]));
    expect(storeAndForward(node).samplesDropped).toBe(0);
  });

  test("live data is not starved: live DDATA goes out between historical records while a long backlog drains", async () => {
    const fixture = await edgeFixture({ primaryHostId: HOST, fastPeriodMs: 5 });
    cleanups.push(() => fixture.close());
    const node = fixture.newNode({ storeAndForward: { batchSamples: 1 }, awaitHostAcks: false });
    await node.start();
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 10_000 }).toBeGreaterThan(150);
    const onlineAt = fixture.recorder.messages.length;
    await setHost(fixture, true, 1_000);
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 20_000 }).toBe(0);
    await node.stop();
    const data = fromNode(fixture.recorder)
      .filter((message) => fixture.recorder.messages.indexOf(message) >= onlineAt)
      .filter(ofType("DDATA"));
    const historical = data.map((message) => message.payload!.metrics.some((metric) => metric.isHistorical === true));
    const first = historical.indexOf(true);
    const last = historical.lastIndexOf(true);
    // Each historical message is one record: at most batchSamples metrics.
    for (const message of data.filter((_message, index) => historical[index]))
      expect(message.payload!.metrics.length).toBe(1);
    expect(historical.slice(first, last).filter((each) => !each).length).toBeGreaterThan(0);
  });

  test("the broker killed and restarted mid-run: changes while it is down are replayed as history; nothing lost outside the instant of the kill, nothing duplicated", async () => {
    const fixture = await fixtureWithHost();
    const node = fixture.newNode({ storeAndForward: { batchSamples: 2 } });
    await node.start();
    await setHost(fixture, true, 1_000);
    await fixture.recorder.waitFor(ofType("DDATA"));
    const liveFrom = Date.now() + 200;
    await pause(400);
    const killedAt = Date.now();
    await fixture.broker.kill();
    await expect.poll(() => node.health().link).not.toBe("connected");
    await pause(500);
    expect(storeAndForward(node).backlogSamples).toBeGreaterThan(3);
    expect(storeAndForward(node).durable).toBe(false);
    await fixture.broker.restart();
    // The retained STATE died with the broker: the node waits, and stores, until the host says online again.
    await expect.poll(() => fixture.recorder.client.connected, { timeout: 5_000 }).toBe(true);
    await pause(300);
    await setHost(fixture, true, 2_000);
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 10_000 }).toBe(0);
    await pause(300);
    const liveTo = Date.now() - 150;
    await node.stop();

    const sent = sentSamples(node, fixture.recorder.messages);
    expect(sent.some((each) => each.historical)).toBe(true);
    const sentKeys = new Set(sent.map((each) => each.key));
    const lost = [...changesBetween(fixture, liveFrom, liveTo).keys()].filter((key) => !sentKeys.has(key));
    // Live DDATA is QoS 0: what was written to the socket as the broker died is gone (the flushes
    // in flight then: one or, on a loaded machine, a few); everything after the link was seen down
    // is replayed. Only acknowledgements from the host close that instant (ADR 0037).
    const lostTimes = lost.map((key) => Number(key.split("@")[1]));
    expect(lostTimes.filter((time) => time < killedAt - 200 || time > killedAt + 100)).toEqual([]);
    expect(duplicates(sent)).toEqual([]);
  });

  test("the edge process crashes (no stop, journal closed under it): a new node reopens the journal and replays what it held, once", async () => {
    const fixture = await fixtureWithHost();
    const file = await tempJournal();
    const { journal } = await RecordJournal.open(file);
    const crashed = fixture.newNode({ storeAndForward: { journal, batchSamples: 4 } });
    await crashed.start();
    const storedFrom = Date.now() + 200;
    // The host is not online: everything is stored.
    await expect.poll(() => storeAndForward(crashed).samplesStored, { timeout: 5_000 }).toBeGreaterThan(25);
    // The crash: the process's network and files are gone at once, without a goodbye.
    fixture.tap.refuse = true;
    fixture.tap.cut();
    await journal.close();
    const crashedAt = Date.now();

    const restarted = fixture.newNode({
      brokerUrl: fixture.broker.url,
      storeAndForward: { path: file, batchSamples: 4 },
    });
    await restarted.start();
    const recovered = storeAndForward(restarted).recovered!;
    expect(recovered.samples).toBeGreaterThan(10);
    expect(recovered.unreadableRecords).toBe(0);
    const onlineAt = fixture.recorder.messages.length;
    await setHost(fixture, true, 1_000);
    await expect
      .poll(() => storeAndForward(restarted).samplesReplayed, { timeout: 10_000 })
      .toBeGreaterThanOrEqual(recovered.samples);
    await expect.poll(() => storeAndForward(restarted).backlogSamples, { timeout: 10_000 }).toBe(0);
    await restarted.stop();

    const sent = sentSamples(restarted, fixture.recorder.messages.slice(onlineAt));
    const historical = sent.filter((each) => each.historical);
    expect(duplicates(sent)).toEqual([]);
    const historicalKeys = new Set(historical.map((each) => each.key));
    // Everything the crashed node had stored (fsynced) before the crash is replayed: the changes of
    // its first stretch, up to the crash less the last flushes, which may not have reached the disk.
    const before = [...changesBetween(fixture, storedFrom, crashedAt - 300).keys()];
    expect(before.length).toBeGreaterThan(5);
    expect(before.filter((key) => !historicalKeys.has(key))).toEqual([]);
    expect(storeAndForward(restarted).samplesDropped).toBe(0);
  });

  test.each(["drop-oldest", "refuse-new"] as const)(
    "at maxSamples with %s: losses equal the samples reported dropped, evented, and the kept history is the right end",
    async (overflow) => {
      const fixture = await fixtureWithHost();
      const node = fixture.newNode({ storeAndForward: { maxSamples: 6, batchSamples: 2, overflow } });
      const drops: number[] = [];
      node.events.on("samples-drop", (event) => {
        expect(event.reason).toBe("overflow");
        drops.push(event.samples);
      });
      await node.start();
      await setHost(fixture, true, 1_000);
      await fixture.recorder.waitFor(ofType("DDATA"));
      const liveFrom = Date.now() + 200;
      await pause(300);
      await setHost(fixture, false, 2_000);
      await expect.poll(() => storeAndForward(node).samplesDropped, { timeout: 5_000 }).toBeGreaterThan(4);
      expect(storeAndForward(node).backlogSamples).toBeLessThanOrEqual(6);
      await setHost(fixture, true, 3_000);
      await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 10_000 }).toBe(0);
      await pause(300);
      const liveTo = Date.now() - 150;
      await node.stop();

      const dropped = storeAndForward(node).samplesDropped;
      expect(drops.reduce((sum, each) => sum + each, 0)).toBe(dropped);
      const sent = sentSamples(node, fixture.recorder.messages);
      const sentKeys = new Set(sent.map((each) => each.key));
      const lost = [...changesBetween(fixture, liveFrom, liveTo).keys()].filter((key) => !sentKeys.has(key));
      expect(lost.length).toBe(dropped);
      expect(duplicates(sent)).toEqual([]);
      const lostTimes = lost.map((key) => Number(key.split("@")[1]));
      const historicalTimes = sent
        .filter((each) => each.historical && each.timestamp >= liveFrom)
        .map((each) => each.timestamp);
      expect(historicalTimes.length).toBeGreaterThan(0);
      if (overflow === "drop-oldest") expect(Math.max(...lostTimes)).toBeLessThanOrEqual(Math.min(...historicalTimes));
      else expect(Math.min(...lostTimes)).toBeGreaterThanOrEqual(Math.max(...historicalTimes));
    },
  );
});

describe("stop() with an in-memory backlog (issue 19)", () => {
  test("what the in-memory backlog still holds at stop() is reported dropped (samples-drop stopped, counted), not thrown away silently", async () => {
    const fixture = await fixtureWithHost();
    const node = fixture.newNode({ storeAndForward: {} });
    const drops: { reason: string; samples: number }[] = [];
    node.events.on("samples-drop", (event) => void drops.push(event));
    await node.start();
    await setHost(fixture, false, 1_000); // the primary host offline: every change goes to the backlog
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 5_000 }).toBeGreaterThan(5);
    await node.stop();
    const held = storeAndForward(node).backlogSamples;
    expect(drops.filter((drop) => drop.reason === "stopped").map((drop) => drop.samples)).toEqual([held]);
    expect(storeAndForward(node).samplesDropped).toBe(held);
  });

  test("a journal backlog is kept at stop(): nothing is reported dropped", async () => {
    const fixture = await fixtureWithHost();
    const node = fixture.newNode({ storeAndForward: { path: await tempJournal() } });
    const drops: string[] = [];
    node.events.on("samples-drop", (event) => void drops.push(event.reason));
    await node.start();
    await setHost(fixture, false, 1_000);
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 5_000 }).toBeGreaterThan(5);
    await node.stop();
    expect(drops).toEqual([]);
    expect(storeAndForward(node).samplesDropped).toBe(0);
  });
});

describe("store-and-forward at a limit while awaiting host acks", () => {
  test.each(["drop-oldest", "refuse-new"] as const)(
    "%s: samples dropped after they were published (unacknowledged) are counted apart, in samplesDroppedAfterPublish; samplesDropped is exactly the samples never published, counted by sample key",
    async (overflow) => {
      const fixture = await fixtureWithHost();
      // The primary host here never acknowledges: every published record stays, unacknowledged.
      const node = fixture.newNode({
        storeAndForward: { maxSamples: 6, batchSamples: 2, overflow },
        awaitHostAcks: true,
      });
      const drops = { published: 0, unpublished: 0 };
      // What the in-memory backlog still holds at stop() is reported apart (reason "stopped").
      let stopped = 0;
      const reasons = new Set<string>();
      node.events.on("samples-drop", (event) => {
        reasons.add(event.reason);
        if (event.reason === "stopped") stopped += event.samples;
        else drops[event.published === true ? "published" : "unpublished"] += event.samples;
      });
      await node.start();
      await setHost(fixture, true, 1_000);
      await fixture.recorder.waitFor(ofType("DDATA"));
      const liveFrom = Date.now() + 200;
      await pause(500);
      // Offline: what changes now is kept unpublished, as far as the limit allows.
      await setHost(fixture, false, 2_000);
      await pause(800);
      await setHost(fixture, true, 3_000);
      await pause(800);
      const liveTo = Date.now() - 150;
      await node.stop();

      const health = storeAndForward(node);
      // drop-oldest drops published records to make room; refuse-new refuses published live data.
      expect(health.samplesDroppedAfterPublish).toBeGreaterThan(0);
      expect([...reasons].filter((reason) => reason !== "overflow" && reason !== "stopped")).toEqual([]);
      expect(drops).toEqual({
        published: health.samplesDroppedAfterPublish,
        unpublished: health.samplesDropped - stopped,
      });
      const sentKeys = new Set(sentSamples(node, fixture.recorder.messages).map((each) => each.key));
      const neverPublished = [...changesBetween(fixture, liveFrom, liveTo).keys()].filter((key) => !sentKeys.has(key));
      expect(neverPublished.length).toBeGreaterThan(0);
      expect(neverPublished.length).toBe(health.samplesDropped - stopped);
    },
  );
});

describe("store-and-forward end to end: edge node → broker → SparkplugHost → PostgreSQL", () => {
  test("history sent after a host restart lands in the store once, and never overwrites the host's live view", async () => {
    const fixture = await fixtureWithHost("kiln-central");
    const db = await openTestDatabase();
    cleanups.push(() => db.close());
    const hostOptions = {
      brokerUrl: fixture.broker.url,
      hostId: "kiln-central",
      groups: [GROUP],
      store: db.store,
      rebirthIntervalMs: 0,
      batching: { maxDelayMs: 5 },
    };
    const first = new SparkplugHost(hostOptions);
    cleanups.push(() => first.stop());
    await first.start();
    const node = fixture.newNode({ principal: engineer, storeAndForward: { batchSamples: 5 } });
    await node.start();
    const PRESSURE = qualifiedTagName({
      groupId: GROUP,
      edgeNodeId: EDGE,
      deviceId: DEVICE,
      metric: "chamber.pressure",
    });
    await expect.poll(() => first.latest(PRESSURE), { timeout: 10_000 }).toBeDefined();
    const liveFrom = Date.now() + 200;
    await pause(300);
    const hostStoppedAt = Date.now();
    await first.stop();
    await expect.poll(() => node.health().primaryHost?.state, { timeout: 5_000 }).toBe("offline");
    // Between the host leaving and its offline STATE reaching the node, live DDATA goes to a broker
    // with no host listening: the one window Sparkplug leaves open (see the guarantees table).
    const nodeSawOfflineAt = Date.now();
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 5_000 }).toBeGreaterThan(10);

    const second = new SparkplugHost(hostOptions);
    cleanups.push(() => second.stop());
    const liveUpdates: SparkplugLiveMetric[] = [];
    second.events.on("live-update", (event) => void liveUpdates.push(...event.metrics));
    const secondFrom = fixture.recorder.messages.length;
    await second.start();
    await expect.poll(() => storeAndForward(node).backlogSamples, { timeout: 10_000 }).toBe(0);
    await pause(300);
    const liveTo = Date.now() - 150;
    await node.stop();
    await expect.poll(() => second.health().edgeNodes[0]?.state, { timeout: 5_000 }).toBe("offline");
    await second.stop();

    const sent = sentSamples(node, fixture.recorder.messages.slice(secondFrom));
    const historical = sent.filter((each) => each.historical && each.key.startsWith("chamber.pressure@"));
    expect(historical.length).toBeGreaterThan(10);
    expect(second.health().samples.historical).toBeGreaterThanOrEqual(historical.length);
    const historicalTimes = new Set(historical.map((each) => each.timestamp));
    // The live view never went back in time to a historical sample (the births' current value,
    // which the backlog may hold too, is the one sample both carry).
    const liveTimes = liveUpdates.filter((each) => each.sample.tag === PRESSURE).map((each) => each.sample.timestamp);
    expect(liveTimes.length).toBeGreaterThan(3);
    expect(liveTimes).toEqual([...liveTimes].sort((a, b) => a - b));
    expect(liveTimes.filter((time) => historicalTimes.has(time)).length).toBeLessThanOrEqual(1);
    expect(second.latest(PRESSURE)!.sample.timestamp).toBeGreaterThan(Math.max(...historicalTimes));
    // Every change of the run is stored once: live and historical.
    const stored = await db.samples(PRESSURE);
    const byTime = new Map(stored.map((sample) => [sample.timestamp, sample.value]));
    expect(byTime.size).toBe(stored.length);
    const expected = [...changesBetween(fixture, liveFrom, liveTo)].filter(([key]) => {
      const time = Number(key.split("@")[1]);
      return key.startsWith("chamber.pressure@") && (time < hostStoppedAt - 100 || time > nodeSawOfflineAt);
    });
    // At least the backlog's worth (more than 10, checked above) of changes falls in the windows compared.
    expect(expected.length).toBeGreaterThan(10);
    for (const [key, value] of expected) expect(byTime.get(Number(key.split("@")[1]))).toEqual(value);
  });
});

describe('awaitHostAcks "auto", the default with storeAndForward and primaryHostId (amendment fix19b)', () => {
  test("a primary host that never acknowledges (not a Kiln host): the NBIRTH declares Kiln/Await Acks, nothing is kept after publishing, and once ackOverdueMs has passed the health names it", async () => {
    const fixture = await fixtureWithHost();
    const node = fixture.newNode({ storeAndForward: {}, ackOverdueMs: 500 });
    await node.start();
    await setHost(fixture, true, 1_000);
    const nbirth = await fixture.recorder.waitFor(ofType("NBIRTH"));
    expect(nbirth.payload!.metrics.some((metric) => metric.name === "Kiln/Await Acks")).toBe(true);
    await fixture.recorder.waitFor(ofType("DDATA"));
    await expect
      .poll(() => node.health().problems.join("\n"), { timeout: 5_000 })
      .toMatch(/primary host scada has acknowledged nothing in \d+ ms since the first DDATA/);
    const health = storeAndForward(node);
    expect(health.acknowledgement).toMatchObject({ awaiting: false, unacknowledgedSamples: 0 });
    expect(health.backlogSamples).toBe(0);
  });

  test("awaitHostAcks false: no Kiln/Await Acks in the NBIRTH, no acknowledgement health", async () => {
    const fixture = await fixtureWithHost();
    const node = fixture.newNode({ storeAndForward: {}, awaitHostAcks: false });
    await node.start();
    await setHost(fixture, true, 1_000);
    const nbirth = await fixture.recorder.waitFor(ofType("NBIRTH"));
    expect(nbirth.payload!.metrics.some((metric) => metric.name === "Kiln/Await Acks")).toBe(false);
    expect(storeAndForward(node).acknowledgement).toBeUndefined();
  });
});
