// Issue 19, review finding M7: a metric that carries no time of its own and comes in a payload
// without a timestamp cannot be placed in time. Sparkplug 3.0 requires a timestamp on every
// metric of NBIRTH, DBIRTH, NDATA and DDATA ([tck-id-payloads-name-birth-data-requirement]); a
// metric without its own takes the payload's. With neither, the host's receive time is not the
// sample's time: a live value is taken uncertain with the reason, a historical one is refused.
// Against a real broker (the test's own mosquitto, else aedes).
import { afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { SparkplugHost, type SparkplugHostEvents } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { encodePayload, type SparkplugMetric, type SparkplugPayload } from "../src/payload";
import { startTestBroker, type TestBroker } from "../src/testing/index";
import { sparkplugTopic } from "../src/topic";
import { RawEdgeNode, eventually, openTestDatabase, type TestDatabase } from "./support/host-harness";

const GROUP = "plant-untimed";
const NODE = "line-1";
const tag = (metric: string) => qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, deviceId: "d", metric });

vi.setConfig({ testTimeout: 90_000 });

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
  return () => broker.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Rig {
  readonly host: SparkplugHost;
  readonly db: TestDatabase;
  readonly edge: RawEdgeNode;
  readonly issues: SparkplugHostEvents["metric-issue"][];
}

async function rig(): Promise<Rig> {
  const db = await openTestDatabase();
  cleanups.push(() => db.close());
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: `untimed-${Math.random().toString(16).slice(2, 8)}`,
    groups: [GROUP],
    store: db.store,
    rebirthIntervalMs: 0,
    stopLingerMs: 100,
    batching: { maxDelayMs: 5 },
  });
  cleanups.push(() => host.stop());
  const issues: Rig["issues"] = [];
  host.events.on("metric-issue", (event) => void issues.push(event));
  await host.start();
  await host.whenConnected();
  const edge = await RawEdgeNode.connect(broker.url, GROUP, NODE, 0);
  cleanups.push(() => edge.close());
  const at = Date.now() - 10_000;
  await edge.nbirth(0);
  await edge.dbirth("d", [
    { name: "a", alias: 1, timestamp: at, datatype: "Double", value: 1 },
    { name: "b", alias: 2, timestamp: at, datatype: "Double", value: 2 },
  ]);
  await eventually(() => host.latest(tag("b"))?.sample.quality.severity === "good", 5_000, "births taken");
  return { host, db, edge, issues };
}

/** A DDATA with the payload's timestamp as given (`undefined`: none on the wire). */
async function ddata(edge: RawEdgeNode, timestamp: number | undefined, metrics: SparkplugMetric[]): Promise<void> {
  const topic = sparkplugTopic({ type: "DDATA", groupId: GROUP, edgeNodeId: NODE, deviceId: "d" });
  const seq = edge.seq;
  edge.seq = (edge.seq + 1) % 256;
  const payload: SparkplugPayload = timestamp === undefined ? { seq, metrics } : { timestamp, seq, metrics };
  await edge.client.publishAsync(topic, Buffer.from(encodePayload(payload, { omitDatatype: true })));
}

describe("M7: a metric with no timestamp of its own and none on its payload", () => {
  test("live: taken at the host's receive time but uncertain with the reason, counted, reported; never good", async () => {
    const rigged = await rig();
    const before = Date.now();
    await ddata(rigged.edge, undefined, [{ alias: 1, datatype: "Double", value: 5 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 5, 5_000, "taken");
    const live = rigged.host.latest(tag("a"))!.sample;
    expect(live.quality).toMatchObject({ severity: "uncertain" });
    expect(live.quality.reason).toMatch(/no timestamp/);
    expect(live.timestamp).toBeGreaterThanOrEqual(before);
    expect(rigged.host.health().samples.untimed).toBe(1);
    expect(rigged.issues.find((each) => each.issue === "no-timestamp")).toMatchObject({ tag: tag("a") });
    const stored = await eventually(
      async () => (await rigged.db.samples(tag("a"))).find((each) => each.value === 5),
      5_000,
      "stored",
    );
    expect(stored?.quality.severity).toBe("uncertain");
    // A bad value stays bad: only good is downgraded.
    await ddata(rigged.edge, undefined, [
      { alias: 2, datatype: "Double", value: 6, properties: { Quality: { type: "Int32", value: 0 } } },
    ]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.value === 6, 5_000, "bad taken");
    expect(rigged.host.latest(tag("b"))!.sample.quality.severity).toBe("bad");
    expect(rigged.host.health().samples.untimed).toBe(2);
  });

  // adv19y HIGH-1: untimed values the host took in within one millisecond all got that
  // millisecond: the store kept the first and dropped the rest as (tag, time) conflicts, and the
  // live view kept showing the first. Each now gets a host time of its own, 1 µs apart.
  test("200 untimed values back to back: each stored once, none a conflict, the last one shown", async () => {
    const rigged = await rig();
    const conflictsBefore = rigged.host.health().samples.conflicts;
    for (let value = 1; value <= 200; value++)
      void ddata(rigged.edge, undefined, [{ alias: 1, datatype: "Double", value: 1_000 + value }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 1_200, 10_000, "the last value shown");
    const stored = (await eventually(
      async () => {
        const rows = (await rigged.db.samples(tag("a"))).filter((each) => (each.value as number) > 1_000);
        return rows.length >= 200 ? rows : undefined;
      },
      10_000,
      "all 200 stored",
    ))!;
    expect(new Set(stored.map((each) => each.value)).size).toBe(200);
    expect(new Set(stored.map((each) => each.timestamp)).size).toBe(200);
    expect(stored.every((each) => each.quality.severity === "uncertain")).toBe(true);
    expect(rigged.host.health().samples.conflicts).toBe(conflictsBefore);
    expect(rigged.host.health().samples.untimed).toBe(200);
  });

  test("sibling: the payload's timestamp is the time of a metric without its own (good, at that time)", async () => {
    const rigged = await rig();
    const at = Date.now() - 5_000;
    await ddata(rigged.edge, at, [{ alias: 1, datatype: "Double", value: 7 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 7, 5_000, "taken");
    expect(rigged.host.latest(tag("a"))!.sample).toMatchObject({ timestamp: at, quality: { severity: "good" } });
    expect(rigged.host.health().samples.untimed).toBe(0);
  });

  test("historical: cannot be placed in time, so refused and counted, never stored", async () => {
    const rigged = await rig();
    await ddata(rigged.edge, undefined, [
      { alias: 1, datatype: "Double", value: 9, isHistorical: true },
      { alias: 2, datatype: "Double", value: 10, timestamp: Date.now() - 1_000, isHistorical: true },
    ]);
    // The timed historical value of the same message is stored: the message was read.
    await eventually(
      async () => (await rigged.db.samples(tag("b"))).some((each) => each.value === 10),
      5_000,
      "timed history stored",
    );
    expect(rigged.host.health().samples.untimed).toBe(1);
    expect(rigged.host.health().samples.discarded).toBe(1);
    expect(rigged.issues.find((each) => each.issue === "no-timestamp")).toMatchObject({ tag: tag("a") });
    expect((await rigged.db.samples(tag("a"))).some((each) => each.value === 9)).toBe(false);
    expect(rigged.host.latest(tag("a"))!.sample.value).toBe(1);
  });
});
