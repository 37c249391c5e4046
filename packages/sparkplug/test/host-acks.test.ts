import { GOOD, KilnError, type Sample, type Store } from "@kiln/core";
import { RecordJournal, type SampleWriteResult } from "@kiln/core/driver-kit";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import {
  AWAIT_ACKS_METRIC,
  MESSAGE_NUMBER_METRIC,
  STORED_THROUGH_METRIC,
  SparkplugEdgeNode,
  SparkplugHost,
  encodeHostState,
  encodePayload,
  type SparkplugMetric,
} from "../src/index";
import { qualifiedTagName } from "../src/host-tag-names";
import { startMqttTap, type RecordedMessage } from "../src/testing/index";
import { DEVICE, EDGE, GROUP, HOST, edgeFixture, engineer, ofType, type EdgeFixture } from "./support/edge-fixture";
import { RawEdgeNode, openTestDatabase, type TestDatabase } from "./support/host-harness";

// ADR 0037: a Kiln host acknowledges what it stored; an edge node with awaitHostAcks keeps every
// published sample in its journal until then, and sends again what a dead host never stored.

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const PRESSURE = qualifiedTagName({ groupId: GROUP, edgeNodeId: EDGE, deviceId: DEVICE, metric: "chamber.pressure" });
const NCMD = `spBv1.0/${GROUP}/NCMD/${EDGE}`;

async function tempJournal(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-sparkack-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, "sparkplug-forward.journal");
}

/** The store of `db` whose writes hang (never commit) once `hang` is set: a host that falls behind. */
function stallingStore(db: TestDatabase): Store & { hang: boolean } {
  const inner = db.store;
  const control = { hang: false };
  const samples = Object.create(inner.samples) as Store["samples"];
  samples.writeBatch = (batch: readonly Sample[]): Promise<SampleWriteResult | void> =>
    control.hang ? new Promise(() => undefined) : inner.samples.writeBatch(batch);
  return Object.defineProperty(
    Object.assign(Object.create(inner) as Store, {
      samples,
      open: (tags: Parameters<Store["open"]>[0]) => inner.open(tags),
    }),
    "hang",
    { get: () => control.hang, set: (value: boolean) => void (control.hang = value) },
  ) as Store & { hang: boolean };
}

function acknowledgement(node: SparkplugEdgeNode) {
  return node.health().storeAndForward!.acknowledgement!;
}

/** Every chamber.pressure change the CVT made in [from, to], by timestamp. */
function pressureChanges(fixture: EdgeFixture, from: number, to: number): Map<number, unknown> {
  const changes = new Map<number, unknown>();
  for (const sample of fixture.samples)
    if (sample.tag === "chamber.pressure" && sample.timestamp >= from && sample.timestamp <= to)
      changes.set(Math.floor(sample.timestamp), sample.value);
  return changes;
}

describe("host acknowledgements (ADR 0037) on a real broker", () => {
  // Set KILN_ACKS_OFF=1 to watch this test fail without acknowledgements (the loss it guards against).
  const awaitHostAcks = process.env.KILN_ACKS_OFF !== "1";

  test("a host killed (not stopped) with samples received and not committed: after a new host comes online the edge node replays what was not acknowledged, and every sample is stored exactly once", async () => {
    const fixture = await edgeFixture({ primaryHostId: "kiln-central" });
    cleanups.push(() => fixture.close());
    const db = await openTestDatabase();
    cleanups.push(() => db.close());
    const hostTap = await startMqttTap(fixture.broker.port);
    cleanups.push(() => hostTap.close());
    const hostOptions = {
      hostId: "kiln-central",
      groups: [GROUP],
      rebirthIntervalMs: 0,
      ackIntervalMs: 100,
      drainTimeoutMs: 100,
      stopLingerMs: 100,
      batching: { maxDelayMs: 5, writeTimeoutMs: 60_000 },
    };
    const stalling = stallingStore(db);
    const first = new SparkplugHost({ ...hostOptions, brokerUrl: hostTap.url, store: stalling });
    cleanups.push(() => first.stop());
    await first.start();
    const node = fixture.newNode({
      principal: engineer,
      storeAndForward: { path: await tempJournal(), batchSamples: 20 },
      awaitHostAcks,
    });
    await node.start();
    await expect.poll(() => first.latest(PRESSURE), { timeout: 10_000 }).toBeDefined();
    const from = Date.now() + 100;
    if (awaitHostAcks)
      await expect.poll(() => acknowledgement(node).samplesAcknowledged, { timeout: 5_000 }).toBeGreaterThan(0);
    await pause(400);

    // The host's store stops committing; the host goes on taking DDATA (and acks nothing more).
    stalling.hang = true;
    const stalledAt = Date.now();
    await pause(600);
    const received = first.health().samples.received;
    expect(first.health().samples.queued).toBeGreaterThan(5);
    if (awaitHostAcks) expect(acknowledgement(node).unacknowledgedSamples).toBeGreaterThan(5);
    // Killed: the network to it cut and refused from now on; its Will says STATE offline.
    hostTap.refuse = true;
    hostTap.cut();
    await expect.poll(() => node.health().primaryHost?.state, { timeout: 5_000 }).toBe("offline");
    await pause(300);

    const second = new SparkplugHost({ ...hostOptions, brokerUrl: fixture.broker.url, store: db.store });
    cleanups.push(() => second.stop());
    await second.start();
    await expect.poll(() => node.health().publishing, { timeout: 10_000 }).toBe(true);
    await expect.poll(() => node.health().storeAndForward!.backlogSamples, { timeout: 10_000 }).toBe(0);
    await pause(300);
    const to = Date.now() - 150;
    if (awaitHostAcks) {
      // The second host acknowledges, and the journal empties down to the last interval's data.
      await expect.poll(() => acknowledgement(node).samplesAcknowledged, { timeout: 5_000 }).toBeGreaterThan(received);
      expect(acknowledgement(node).lastAckAgeMs).toBeLessThan(2_000);
    }
    await node.stop();
    await expect.poll(() => second.health().edgeNodes[0]?.state, { timeout: 5_000 }).toBe("offline");
    await second.stop();

    const stored = await db.samples(PRESSURE);
    const byTime = new Map<number, unknown[]>();
    for (const sample of stored) byTime.set(sample.timestamp, [...(byTime.get(sample.timestamp) ?? []), sample.value]);
    const expected = pressureChanges(fixture, from, to);
    // The stall and the kill fall in the window compared.
    expect([...expected.keys()].filter((time) => time > stalledAt).length).toBeGreaterThan(10);
    const missing = [...expected].filter(([time, value]) => byTime.get(time)?.[0] !== value);
    expect(missing).toEqual([]);
    // Once each: one row per (tag, time), and no value stored twice under another time.
    for (const [, values] of byTime) expect(values).toHaveLength(1);
    const values = stored.filter((sample) => sample.quality.severity === "good").map((sample) => sample.timestamp);
    expect(new Set(values).size).toBe(values.length);
  }, 60_000);
});

describe("acks the edge node must not believe", () => {
  async function ackedNode(): Promise<{ fixture: EdgeFixture; node: SparkplugEdgeNode }> {
    const fixture = await edgeFixture({ primaryHostId: HOST });
    cleanups.push(() => fixture.close());
    await fixture.recorder.client.publishAsync(
      `spBv1.0/STATE/${HOST}`,
      Buffer.from(encodeHostState({ online: true, timestamp: Date.now() })),
      { qos: 1, retain: true },
    );
    const node = fixture.newNode({ storeAndForward: {}, awaitHostAcks: true });
    await node.start();
    await fixture.recorder.waitFor(ofType("NBIRTH"), 5_000);
    await expect.poll(() => acknowledgement(node).unacknowledgedSamples, { timeout: 5_000 }).toBeGreaterThan(3);
    return { fixture, node };
  }

  const ack = (through: number | string, properties: SparkplugMetric["properties"]): Buffer =>
    Buffer.from(
      encodePayload({
        timestamp: Date.now(),
        metrics: [
          typeof through === "number"
            ? { name: STORED_THROUGH_METRIC, timestamp: Date.now(), datatype: "UInt64", value: through, properties }
            : { name: STORED_THROUGH_METRIC, timestamp: Date.now(), datatype: "String", value: through, properties },
        ],
      }),
    );

  test("the NBIRTH declares Kiln/Await Acks with the session's DDATA count so far", async () => {
    const { fixture } = await ackedNode();
    const nbirth = fixture.recorder.messages.find(ofType("NBIRTH"))!;
    expect(nbirth.payload!.metrics.find((metric) => metric.name === AWAIT_ACKS_METRIC)).toMatchObject({
      datatype: "UInt64",
      value: 0,
    });
  });

  test("an ack for another session's bdSeq, or from a host that is not the primary host, is ignored; a malformed one is refused and counted; the node goes on; a good one releases", async () => {
    const { fixture, node } = await ackedNode();
    const bdSeq = node.health().bdSeq!;
    const client = fixture.recorder.client;
    const through = (): number => node.health().published.dataMessages;

    await client.publishAsync(
      NCMD,
      ack(through(), { bdSeq: { type: "UInt64", value: bdSeq + 1 }, hostId: { type: "String", value: HOST } }),
      { qos: 1 },
    );
    await client.publishAsync(
      NCMD,
      ack(through(), { bdSeq: { type: "UInt64", value: bdSeq }, hostId: { type: "String", value: "not-the-primary" } }),
      { qos: 1 },
    );
    await expect.poll(() => acknowledgement(node).acks.ignored, { timeout: 5_000 }).toBe(2);
    expect(acknowledgement(node).samplesAcknowledged).toBe(0);
    expect(acknowledgement(node).lastAckAgeMs).toBeUndefined();

    const malformedBefore = node.health().commands.malformed;
    await client.publishAsync(
      NCMD,
      ack("everything", { bdSeq: { type: "UInt64", value: bdSeq }, hostId: { type: "String", value: HOST } }),
      { qos: 1 },
    );
    await client.publishAsync(NCMD, ack(through(), { hostId: { type: "String", value: HOST } }), { qos: 1 });
    await client.publishAsync(
      NCMD,
      ack(through() + 1_000, { bdSeq: { type: "UInt64", value: bdSeq }, hostId: { type: "String", value: HOST } }),
      { qos: 1 },
    );
    await client.publishAsync(NCMD, Buffer.from([0xff, 0xff, 0xff]), { qos: 1 });
    await expect.poll(() => acknowledgement(node).acks.refused, { timeout: 5_000 }).toBe(3);
    await expect.poll(() => node.health().commands.malformed, { timeout: 5_000 }).toBe(malformedBefore + 4);
    expect(acknowledgement(node).samplesAcknowledged).toBe(0);
    expect(node.health().publishing).toBe(true);

    const unacknowledged = acknowledgement(node).unacknowledgedSamples;
    await client.publishAsync(
      NCMD,
      ack(through(), { bdSeq: { type: "UInt64", value: bdSeq }, hostId: { type: "String", value: HOST } }),
      { qos: 1 },
    );
    await expect
      .poll(() => acknowledgement(node).samplesAcknowledged, { timeout: 5_000 })
      .toBeGreaterThanOrEqual(unacknowledged);
    expect(acknowledgement(node).acks.accepted).toBe(1);
    expect(acknowledgement(node).lastAckAgeMs).toBeGreaterThanOrEqual(0);
  });

  test("a rebirth request starts a new epoch: what was published and not acknowledged is sent again as historical DDATA after the births; an ack of the old numbering releases none of it", async () => {
    const { fixture, node } = await ackedNode();
    const bdSeq = node.health().bdSeq!;
    const client = fixture.recorder.client;
    const oldThrough = node.health().published.dataMessages;
    const unacknowledged = acknowledgement(node).unacknowledgedSamples;
    const from = fixture.recorder.messages.length;
    await client.publishAsync(
      NCMD,
      Buffer.from(
        encodePayload({
          timestamp: Date.now(),
          metrics: [{ name: "Node Control/Rebirth", timestamp: Date.now(), datatype: "Boolean", value: true }],
        }),
      ),
      { qos: 1 },
    );
    const nbirth = await fixture.recorder.waitFor(
      (message) => fixture.recorder.messages.indexOf(message) >= from && ofType("NBIRTH")(message),
      5_000,
    );
    // The NBIRTH carries the count so far: the host numbers on from there.
    expect(
      Number(nbirth.payload!.metrics.find((metric) => metric.name === AWAIT_ACKS_METRIC)!.value),
    ).toBeGreaterThanOrEqual(oldThrough);
    await expect.poll(() => node.health().storeAndForward!.backlogSamples, { timeout: 5_000 }).toBe(0);
    const historical = fixture.recorder.messages
      .slice(from)
      .filter(ofType("DDATA"))
      .flatMap((message) => message.payload!.metrics.filter((metric) => metric.isHistorical === true));
    expect(historical.length).toBeGreaterThanOrEqual(unacknowledged);
    // An ack numbered before the rebirth covers nothing sent since.
    await client.publishAsync(
      NCMD,
      ack(oldThrough, { bdSeq: { type: "UInt64", value: bdSeq }, hostId: { type: "String", value: HOST } }),
      { qos: 1 },
    );
    await expect.poll(() => acknowledgement(node).acks.accepted, { timeout: 5_000 }).toBe(1);
    expect(acknowledgement(node).samplesAcknowledged).toBe(0);
  });

  test("the flushes queued behind one journal fsync share the next (group commit): fewer fsyncs than flushes, every published sample journaled", async () => {
    const fixture = await edgeFixture({ primaryHostId: HOST });
    cleanups.push(() => fixture.close());
    await fixture.recorder.client.publishAsync(
      `spBv1.0/STATE/${HOST}`,
      Buffer.from(encodeHostState({ online: true, timestamp: Date.now() })),
      { qos: 1, retain: true },
    );
    const node = fixture.newNode({ storeAndForward: { path: await tempJournal() }, awaitHostAcks: true });
    await node.start();
    await fixture.recorder.waitFor(ofType("NBIRTH"), 5_000);
    const probe = await open(await tempJournal(), "w");
    const prototype = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
    await probe.close();
    const fsyncs = vi.spyOn(prototype, "datasync");
    cleanups.push(async () => fsyncs.mockRestore());
    const before = node.health().published.dataMessages;
    const storedBefore = node.health().storeAndForward!.samplesStored;
    const base = Date.now() + 60_000;
    for (let change = 0; change < 300; change++) {
      fixture.system.unchecked.cvt.update([
        { tag: "heater.setpoint", value: change + 1, timestamp: base + change, quality: GOOD },
      ]);
      // The node flushes on a microtask: one DDATA, and one journal record, per change.
      await Promise.resolve();
    }
    const flushes = node.health().published.dataMessages - before;
    expect(flushes).toBeGreaterThanOrEqual(300);
    await expect
      .poll(() => node.health().storeAndForward!.samplesStored - storedBefore, { timeout: 5_000 })
      .toBeGreaterThanOrEqual(300);
    // One append and fsync per flush without group commit.
    expect(fsyncs.mock.calls.length).toBeLessThan(flushes / 4);
    // No host acks here: once the last appends are fsynced, every journaled sample waits for its ack
    // (read together, polled: a flush still in flight counts as unacknowledged before it is stored).
    await expect
      .poll(() => acknowledgement(node).unacknowledgedSamples - node.health().storeAndForward!.samplesStored, {
        timeout: 5_000,
      })
      .toBe(0);
  });

  test('awaitHostAcks (true or "auto") without storeAndForward or without primaryHostId, or not true/false/"auto", and a bad ackOverdueMs are refused, naming the field', async () => {
    const fixture = await edgeFixture();
    cleanups.push(() => fixture.close());
    const base = {
      system: fixture.system,
      brokerUrl: fixture.broker.url,
      groupId: GROUP,
      edgeNodeId: EDGE,
      principal: engineer,
    };
    for (const options of [
      { ...base, primaryHostId: HOST, awaitHostAcks: true },
      { ...base, storeAndForward: {}, awaitHostAcks: true },
      { ...base, storeAndForward: {}, awaitHostAcks: "auto" as const },
      { ...base, primaryHostId: HOST, storeAndForward: {}, awaitHostAcks: "yes" as unknown as boolean },
      { ...base, primaryHostId: HOST, storeAndForward: {}, ackOverdueMs: 0 },
    ]) {
      let error: unknown;
      try {
        new SparkplugEdgeNode(options);
      } catch (caught) {
        error = caught;
      }
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).details?.["issues"]).toEqual([
        expect.objectContaining({ path: "ackOverdueMs" in options ? "ackOverdueMs" : "awaitHostAcks" }),
      ]);
    }
    // The default needs neither: without storeAndForward (or primaryHostId) it is simply off.
    expect(() => new SparkplugEdgeNode({ ...base, primaryHostId: HOST })).not.toThrow();
  });
});

describe("the host acknowledges only edge nodes that ask", () => {
  test("NCMD Kiln/Stored Through goes to an edge node whose NBIRTH declares Kiln/Await Acks, numbered from its value; never to one that does not", async () => {
    const fixture = await edgeFixture();
    cleanups.push(() => fixture.close());
    const db = await openTestDatabase();
    cleanups.push(() => db.close());
    const host = new SparkplugHost({
      brokerUrl: fixture.broker.url,
      hostId: HOST,
      groups: [GROUP],
      store: db.store,
      ackIntervalMs: 50,
      stopLingerMs: 100,
      batching: { maxDelayMs: 5 },
    });
    cleanups.push(() => host.stop());
    await host.start();
    const now = Date.now();
    const plain = await RawEdgeNode.connect(fixture.broker.url, GROUP, "plain", 0);
    cleanups.push(() => plain.close());
    const asking = await RawEdgeNode.connect(fixture.broker.url, GROUP, "asking", 3);
    cleanups.push(() => asking.close());
    const metric = (offset: number): SparkplugMetric => ({
      alias: 1,
      timestamp: now + offset,
      datatype: "Double",
      value: offset,
    });
    await plain.nbirth(0);
    await plain.dbirth(DEVICE, [{ name: "p", alias: 1, timestamp: now, datatype: "Double", value: 0 }]);
    await asking.nbirth(3, [{ name: AWAIT_ACKS_METRIC, timestamp: now, datatype: "UInt64", value: 40 }]);
    await asking.dbirth(DEVICE, [
      { name: "p", alias: 1, timestamp: now, datatype: "Double", value: 0 },
      { name: MESSAGE_NUMBER_METRIC, alias: 2, timestamp: now, datatype: "UInt64", value: 40, isTransient: true },
    ]);
    for (let index = 1; index <= 3; index++) {
      await plain.ddata(DEVICE, [metric(index)]);
      await asking.ddata(DEVICE, [
        metric(index),
        { alias: 2, timestamp: now + index, datatype: "UInt64", value: 40 + index, isTransient: true },
      ]);
    }
    const acked = await fixture.recorder.waitFor(
      (message) =>
        message.topic === `spBv1.0/${GROUP}/NCMD/asking` &&
        message.payload?.metrics.some((each) => each.name === STORED_THROUGH_METRIC && each.value === 43) === true,
      5_000,
    );
    expect(acked.payload!.metrics[0]!.properties).toMatchObject({
      bdSeq: { type: "UInt64", value: 3 },
      hostId: { type: "String", value: HOST },
    });
    await pause(200);
    expect(fixture.recorder.messages.filter((message) => message.topic === `spBv1.0/${GROUP}/NCMD/plain`)).toEqual([]);
    expect(host.health().edgeNodes.find((node) => node.edgeNodeId === "asking")).toMatchObject({
      acks: { storedThrough: 43, acknowledged: 43 },
    });
  });
});

describe("a host's stop() acknowledges what it stored (ADR 0037, amendment)", () => {
  const hostOptions = {
    hostId: "kiln-central",
    groups: [GROUP],
    rebirthIntervalMs: 0,
    // Only the first ack goes out on its own: the rest of the run is acknowledged by stop() or not at all.
    ackIntervalMs: 60_000,
    stopLingerMs: 2_000,
    batching: { maxDelayMs: 5, writeTimeoutMs: 60_000 },
  };

  /** The node's DDATA of its first session in recorded order, and the index of the host's STATE offline. */
  function sessionTraffic(fixture: EdgeFixture): {
    ddata: RecordedMessage[];
    acks: number[];
    offlineAt: number;
    finalAckAt: number;
  } {
    const messages = fixture.recorder.messages;
    const offlineAt = messages.findIndex(
      (message) =>
        message.topic === "spBv1.0/STATE/kiln-central" &&
        !message.retain &&
        (JSON.parse(Buffer.from(message.bytes).toString()) as { online: boolean }).online === false,
    );
    const births = messages.flatMap((message, index) => (ofType("NBIRTH")(message) ? [index] : []));
    const end = births[1] ?? messages.length;
    const ddata = messages.slice(births[0], end).filter(ofType("DDATA"));
    // The first host's acks: sent before its STATE offline.
    const acks = messages
      .slice(0, offlineAt)
      .filter((message) => message.topic === NCMD)
      .flatMap((message) =>
        (message.payload?.metrics ?? [])
          .filter((metric) => metric.name === STORED_THROUGH_METRIC)
          .map((metric) => Number(metric.value)),
      );
    const finalAckAt = messages
      .slice(0, offlineAt)
      .findLastIndex((message) =>
        (message.payload?.metrics ?? []).some(
          (metric) => message.topic === NCMD && metric.name === STORED_THROUGH_METRIC,
        ),
      );
    return { ddata, acks, offlineAt, finalAckAt };
  }

  /** A DDATA's message number (its transient Kiln/Message Number metric): what acks count. */
  const numberOf = (message: RecordedMessage): number =>
    Number(message.payload!.metrics.find((metric) => metric.isTransient === true)?.value);
  /** The DDATA numbered from `from` through `through` (by their own numbers, not their positions). */
  const numbered = (ddata: readonly RecordedMessage[], from: number, through = Infinity): RecordedMessage[] =>
    ddata.filter((message) => numberOf(message) >= from && numberOf(message) <= through);

  const keys = (messages: readonly RecordedMessage[], historical: boolean): Set<string> =>
    new Set(
      messages.flatMap((message) =>
        message
          // Samples only: not the transient Kiln/Message Number each DDATA carries.
          .payload!.metrics.filter(
            (metric) => (metric.isHistorical === true) === historical && metric.isTransient !== true,
          )
          .map((metric) => `${String(metric.alias)}@${String(metric.timestamp)}`),
      ),
    );

  async function run(options: { stall: boolean; holdAppends?: boolean; batchAtNode?: boolean }): Promise<{
    fixture: EdgeFixture;
    node: SparkplugEdgeNode;
    first: SparkplugHost;
    storedAtStall: number;
    /** Recorded messages before the journal's appends were held (with holdAppends). */
    heldFrom: number;
    resent: RecordedMessage[];
  }> {
    const fixture = await edgeFixture({ primaryHostId: "kiln-central" });
    cleanups.push(() => fixture.close());
    const db = await openTestDatabase();
    cleanups.push(() => db.close());
    const stalling = stallingStore(db);
    const first = new SparkplugHost({
      ...hostOptions,
      drainTimeoutMs: options.stall ? 300 : 5_000,
      brokerUrl: fixture.broker.url,
      store: stalling,
    });
    cleanups.push(() => first.stop());
    await first.start();
    // With holdAppends, the journal's appends wait (a slow fsync) until the next host is online.
    const { journal } = await RecordJournal.open(await tempJournal());
    cleanups.push(() => journal.close());
    let held: Promise<void> = Promise.resolve();
    let releaseHeld = (): void => undefined;
    const append = journal.append.bind(journal);
    journal.append = (payload: Uint8Array) => held.then(() => append(payload));
    const node = fixture.newNode({
      principal: engineer,
      storeAndForward: { journal, batchSamples: 20 },
      awaitHostAcks: true,
    });
    await node.start();
    await expect.poll(() => acknowledgement(node).samplesAcknowledged, { timeout: 5_000 }).toBeGreaterThan(0);
    await pause(500);
    const heldFrom = fixture.recorder.messages.length;
    if (options.holdAppends === true) {
      held = new Promise((resolve) => (releaseHeld = resolve));
      // DDATA go out and are stored by the host; none of them is in the node's journal yet.
      await pause(400);
    }
    let storedAtStall = Number.POSITIVE_INFINITY;
    if (options.stall) {
      // The store stops committing: what the host takes from now on is never stored by it.
      stalling.hang = true;
      await pause(200);
      storedAtStall = first.health().edgeNodes[0]!.acks!.storedThrough;
      await pause(300);
      expect(first.health().samples.queued).toBeGreaterThan(0);
    }
    // With batchAtNode, what the host sends from now on reaches the node in one TCP read: its
    // final ack and its STATE offline handled in the same tick.
    if (options.batchAtNode === true) fixture.tap.stall();
    await first.stop();
    if (options.batchAtNode === true) {
      await pause(100);
      fixture.tap.resume();
    }
    await expect.poll(() => node.health().primaryHost?.state, { timeout: 5_000 }).toBe("offline");
    const from = fixture.recorder.messages.length;
    const second = new SparkplugHost({ ...hostOptions, brokerUrl: fixture.broker.url, store: db.store });
    cleanups.push(() => second.stop());
    await second.start();
    await expect.poll(() => node.health().publishing, { timeout: 5_000 }).toBe(true);
    // The final ack and the new births came before the journal had the records they cover.
    await pause(200);
    releaseHeld();
    await expect.poll(() => node.health().storeAndForward!.backlogSamples, { timeout: 5_000 }).toBe(0);
    await node.stop();
    const resent = fixture.recorder.messages.slice(from).filter(ofType("DDATA"));
    return { fixture, node, first, storedAtStall, heldFrom, resent };
  }

  test("stop() acks everything stored before its STATE offline: the next host gets no resend of it, counted by DDATA number", async () => {
    const { fixture, resent } = await run({ stall: false });
    const { ddata, acks, offlineAt, finalAckAt } = sessionTraffic(fixture);
    // The first ack and the final one (without it, only the first: every DDATA after it is sent again).
    expect(acks.length).toBeGreaterThanOrEqual(2);
    const through = acks.at(-1)!;
    const recordedBefore = (index: number) =>
      ddata.filter((message) => fixture.recorder.messages.indexOf(message) < index).length;
    expect(recordedBefore(offlineAt)).toBeGreaterThan(5);
    // Every DDATA the broker passed on before the final ack is covered by it (one the host took
    // before the recorder saw it at most). What came between the final ack and the STATE offline
    // depends on the machine's speed; it is not acknowledged, so it is sent again (below).
    expect(through).toBeGreaterThanOrEqual(recordedBefore(finalAckAt) - 1);
    const acked = keys(numbered(ddata, 1, through), false);
    const again = keys(resent, true);
    expect(acked.size).toBeGreaterThan(5);
    expect([...again].filter((key) => acked.has(key))).toEqual([]);
    // Nothing lost: every DDATA of the session the final ack did not cover reaches the next host.
    const unacked = keys(numbered(ddata, through + 1), false);
    expect([...unacked].filter((key) => !again.has(key))).toEqual([]);
  }, 30_000);

  test("stop() while the store is failing acknowledges nothing it did not store; the next host gets all of it", async () => {
    const { fixture, resent, storedAtStall } = await run({ stall: true });
    const { ddata, acks } = sessionTraffic(fixture);
    // The final ack covers what was stored before the stall (held back by ackIntervalMs until
    // stop), nothing the store never committed.
    expect(acks.at(-1)).toBe(storedAtStall);
    const unstored = keys(numbered(ddata, storedAtStall + 1), false);
    expect(unstored.size).toBeGreaterThan(3);
    const again = keys(resent, true);
    expect([...unstored].filter((key) => !again.has(key))).toEqual([]);
    expect([...keys(numbered(ddata, 1, storedAtStall), false)].filter((key) => again.has(key))).toEqual([]);
  }, 30_000);

  test("the final ack and the STATE offline behind it reach the node in one read: the ack is applied before the session ends, nothing it covers is sent again", async () => {
    const { fixture, resent } = await run({ stall: false, batchAtNode: true });
    const { ddata, acks } = sessionTraffic(fixture);
    const through = acks.at(-1)!;
    expect(acks.length).toBeGreaterThanOrEqual(2);
    const acked = keys(numbered(ddata, 1, through), false);
    expect(acked.size).toBeGreaterThan(5);
    const again = keys(resent, true);
    expect([...again].filter((key) => acked.has(key))).toEqual([]);
    const unacked = keys(numbered(ddata, through + 1), false);
    expect([...unacked].filter((key) => !again.has(key))).toEqual([]);
  }, 30_000);

  test("an ack that comes before the journal has what it covers, and a new host's births before the journal does: those records are released, never sent to the next host", async () => {
    const { fixture, resent, heldFrom } = await run({ stall: false, holdAppends: true });
    const { ddata, acks } = sessionTraffic(fixture);
    const through = acks.at(-1)!;
    // DDATA published while the journal's appends were held, and covered by the final ack.
    const heldAndAcked = numbered(ddata, 1, through).filter(
      (message) => fixture.recorder.messages.indexOf(message) >= heldFrom,
    );
    expect(heldAndAcked.length).toBeGreaterThan(3);
    const again = keys(resent, true);
    expect([...keys(numbered(ddata, 1, through), false)].filter((key) => again.has(key))).toEqual([]);
    const unacked = keys(numbered(ddata, through + 1), false);
    expect([...unacked].filter((key) => !again.has(key))).toEqual([]);
  }, 30_000);
});

describe("stop() with an in-memory backlog while awaiting acks reports exactly what no ack covered (issue 19, fix19m)", () => {
  /** A node on a broker with its primary host's STATE online (set by hand: the acks are sent by the test). */
  async function nodeAwaitingAcks(): Promise<{ fixture: EdgeFixture; node: SparkplugEdgeNode; stopped: () => number }> {
    const fixture = await edgeFixture({ primaryHostId: HOST, fastPeriodMs: 20 });
    cleanups.push(() => fixture.close());
    await fixture.recorder.client.publishAsync(
      `spBv1.0/STATE/${HOST}`,
      Buffer.from(encodeHostState({ online: true, timestamp: Date.now() })),
      { qos: 1, retain: true },
    );
    const node = fixture.newNode({ storeAndForward: {}, awaitHostAcks: true });
    let stopped = 0;
    node.events.on("samples-drop", (event) => {
      if (event.reason === "stopped") stopped += event.samples;
    });
    await node.start();
    await fixture.recorder.waitFor(ofType("NBIRTH"), 5_000);
    return { fixture, node, stopped: () => stopped };
  }

  const sendAck = (fixture: EdgeFixture, node: SparkplugEdgeNode, through: number): Promise<unknown> =>
    fixture.recorder.client.publishAsync(
      NCMD,
      Buffer.from(
        encodePayload({
          timestamp: Date.now(),
          metrics: [
            {
              name: STORED_THROUGH_METRIC,
              timestamp: Date.now(),
              datatype: "UInt64",
              value: through,
              properties: {
                bdSeq: { type: "UInt64", value: node.health().bdSeq! },
                hostId: { type: "String", value: HOST },
              },
            },
          ],
        }),
      ),
      { qos: 1 },
    );

  /** A DDATA's message number (its transient Kiln/Message Number metric). */
  const numberOf = (message: RecordedMessage): number =>
    Number(message.payload!.metrics.find((metric) => metric.isTransient === true)?.value);
  /** The samples a DDATA carries (each a journal record's sample; not the transient message number). */
  const samplesOf = (message: RecordedMessage): number =>
    message.payload!.metrics.filter((metric) => metric.isTransient !== true).length;

  /** Stops the node once the recorder has every DDATA it published; returns the DDATA of its last birth on. */
  async function stopAndRecord(
    fixture: EdgeFixture,
    node: SparkplugEdgeNode,
    births: number,
  ): Promise<RecordedMessage[]> {
    await node.stop();
    const published = node.health().published.dataMessages;
    const since = (): RecordedMessage[] => {
      const nbirths = fixture.recorder.messages.filter(ofType("NBIRTH"));
      const from = fixture.recorder.messages.indexOf(nbirths[births - 1]!);
      return fixture.recorder.messages.slice(from).filter(ofType("DDATA"));
    };
    const last = Number(
      fixture.recorder.messages
        .filter(ofType("NBIRTH"))
        .at(births - 1)!
        .payload!.metrics.find((metric) => metric.name === AWAIT_ACKS_METRIC)!.value,
    );
    await expect.poll(() => since().length, { timeout: 5_000 }).toBe(published - last);
    return since();
  }

  test("records an ack covered, held behind a record sent again after a rebirth, are not reported dropped; the drop is exactly the samples of the DDATA no ack covered", async () => {
    const { fixture, node, stopped } = await nodeAwaitingAcks();
    await expect.poll(() => acknowledgement(node).unacknowledgedRecords, { timeout: 5_000 }).toBeGreaterThan(5);
    // At the rebirth the first unacknowledged record is sent again at once, and the next only after
    // the broker answered the barrier behind it; a change made as the births go out is published
    // live in between. So that live DDATA, and its record (journaled after every record sent again),
    // has a lower number than records standing before it.
    const marker = { tag: "heater.setpoint", value: 123.5, timestamp: 0, quality: GOOD };
    node.events.on("birth-publish", (event) => {
      if (event.reason !== "rebirth") return;
      marker.timestamp = Date.now();
      fixture.system.unchecked.cvt.update([marker]);
    });
    await fixture.recorder.client.publishAsync(
      NCMD,
      Buffer.from(
        encodePayload({
          timestamp: Date.now(),
          metrics: [{ name: "Node Control/Rebirth", timestamp: Date.now(), datatype: "Boolean", value: true }],
        }),
      ),
      { qos: 1 },
    );
    await expect.poll(() => fixture.recorder.messages.filter(ofType("NBIRTH")).length, { timeout: 5_000 }).toBe(2);
    await expect.poll(() => node.health().storeAndForward!.backlogSamples, { timeout: 5_000 }).toBe(0);
    const isMarker = (message: RecordedMessage): boolean =>
      ofType("DDATA")(message) &&
      message.payload!.metrics.some((metric) => metric.timestamp === marker.timestamp && metric.value === 123.5);
    const markerMessage = await fixture.recorder.waitFor(isMarker, 5_000);
    const acked = numberOf(markerMessage);
    expect(markerMessage.payload!.metrics.some((metric) => metric.isHistorical === true)).toBe(false);
    // Sent again after the marker, so standing before it in the backlog: the ack leaves it held.
    const resentLater = fixture.recorder.messages.filter(
      (message) =>
        ofType("DDATA")(message) &&
        numberOf(message) > acked &&
        message.payload!.metrics.some((metric) => metric.isHistorical === true),
    );
    expect(resentLater.length).toBeGreaterThan(0);
    const acknowledgedBefore = acknowledgement(node).samplesAcknowledged;
    await sendAck(fixture, node, acked);
    await expect
      .poll(() => acknowledgement(node).samplesAcknowledged, { timeout: 5_000 })
      .toBeGreaterThan(acknowledgedBefore);

    const ddata = await stopAndRecord(fixture, node, 2);
    // Lost with the in-memory backlog: every DDATA of this epoch the ack did not cover (the
    // records sent again are all in it: backlogSamples was 0).
    const lost = ddata
      .filter((message) => numberOf(message) > acked)
      .reduce((sum, message) => sum + samplesOf(message), 0);
    expect(lost).toBeGreaterThan(0);
    // Before: every record the backlog still held, the acknowledged ones behind a resent one too.
    // A change taken just before stop() may still wait unsent (no DDATA carries it): lost too.
    const health = node.health().storeAndForward!;
    expect(health.acknowledgement!.unacknowledgedSamples).toBe(lost);
    expect(stopped()).toBe(lost + health.backlogSamples);
    expect(health.samplesDropped).toBe(lost + health.backlogSamples);
  }, 30_000);

  test("without a rebirth, an ack of a prefix: the drop at stop() is exactly the samples of the DDATA after it", async () => {
    const { fixture, node, stopped } = await nodeAwaitingAcks();
    await expect.poll(() => acknowledgement(node).unacknowledgedRecords, { timeout: 5_000 }).toBeGreaterThan(5);
    const acked = node.health().published.dataMessages - 2;
    await sendAck(fixture, node, acked);
    await expect.poll(() => acknowledgement(node).samplesAcknowledged, { timeout: 5_000 }).toBeGreaterThan(0);
    await expect.poll(() => acknowledgement(node).unacknowledgedRecords, { timeout: 5_000 }).toBeGreaterThan(3);
    const ddata = await stopAndRecord(fixture, node, 1);
    const lost = ddata
      .filter((message) => numberOf(message) > acked)
      .reduce((sum, message) => sum + samplesOf(message), 0);
    expect(lost).toBeGreaterThan(0);
    // A change taken just before stop() may still wait unsent (no DDATA carries it, seen under
    // load): lost too, and reported in the same drop.
    const health = node.health().storeAndForward!;
    expect(health.acknowledgement!.unacknowledgedSamples).toBe(lost);
    expect(stopped()).toBe(lost + health.backlogSamples);
    expect(acknowledgement(node).samplesAcknowledged).toBe(
      ddata.filter((message) => numberOf(message) <= acked).reduce((sum, message) => sum + samplesOf(message), 0),
    );
  }, 30_000);
});
