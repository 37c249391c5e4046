// Issue 19, adversarial review 19v: where the host places its own rows (stale marks, restated
// birth values), across host stops and restarts and an edge clock that steps back (ADR 0043,
// amendment 19u). Against a real broker (the test's own mosquitto, else aedes) and a real store.
import { afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { SparkplugHost } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import type { SparkplugMetric } from "../src/payload";
import { startTestBroker, type TestBroker } from "../src/testing/index";
import { RawEdgeNode, eventually, openTestDatabase, type TestDatabase } from "./support/host-harness";

const GROUP = "plant-19u";
const NODE = "line-1";
const tag = (metric: string, deviceId = "d") =>
  qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, deviceId, metric });
const double = (name: string, alias: number, value: number, timestamp: number): SparkplugMetric => ({
  name,
  alias,
  timestamp,
  datatype: "Double",
  value,
});

vi.setConfig({ testTimeout: 120_000 });

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
  console.info(`Sparkplug host mark tests: broker ${broker.kind}`);
  return () => broker.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function database(): Promise<TestDatabase> {
  const db = await openTestDatabase();
  cleanups.push(() => db.close());
  return db;
}

function newHost(db: TestDatabase, hostId = "marks"): SparkplugHost {
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId,
    groups: [GROUP],
    store: db.store,
    rebirthIntervalMs: 0,
    stopLingerMs: 100,
    batching: { maxDelayMs: 5 },
  });
  cleanups.push(() => host.stop());
  return host;
}

async function edge(bdSeq: number): Promise<RawEdgeNode> {
  const node = await RawEdgeNode.connect(broker.url, GROUP, NODE, bdSeq);
  cleanups.push(() => node.close());
  return node;
}

const micros = (ms: number) => Math.round(ms * 1000);

/** Each stored row alternates value / mark, every one 1 µs after the one before. */
function expectChain(rows: readonly { value: unknown; timestamp: number }[], count: number): void {
  expect(rows.length).toBe(count);
  for (let index = 1; index < rows.length; index++) {
    expect(rows[index]!.value === null, `row ${index} mark?`).toBe(index % 2 === 1);
    expect(micros(rows[index]!.timestamp) - micros(rows[index - 1]!.timestamp), `row ${index}`).toBe(1);
  }
}

describe("Sparkplug host: its own rows always land on a later microsecond", () => {
  test("a value that never changes, through 31 outages (NDEATH): every mark and every restated value stored, history right between", async () => {
    const db = await database();
    const host = newHost(db);
    await host.start();
    const t0 = Date.now() - 3_600_000; // a setpoint unchanged for an hour
    const outages = 31;
    for (let cycle = 0; cycle < outages; cycle++) {
      const node = await edge(cycle);
      await node.nbirth(cycle);
      await node.dbirth("d", [double("a", 1, 42, t0)]);
      await eventually(async () => (await db.samples(tag("a"))).length === 2 * cycle + 1, 10_000, `birth ${cycle}`);
      await node.ndeath(cycle);
      await eventually(async () => (await db.samples(tag("a"))).length === 2 * cycle + 2, 10_000, `mark ${cycle}`);
      await node.close();
    }
    const rows = await db.samples(tag("a"));
    expectChain(rows, 2 * outages);
    expect(micros(rows.at(-1)!.timestamp)).toBe(micros(t0) + 2 * outages - 1);
    expect(rows.at(-1)!.quality.severity).toBe("bad");
  });

  test("sibling: a device that dies and is reborn 31 times (DDEATH/DBIRTH, node alive): every row stored", async () => {
    const db = await database();
    const host = newHost(db);
    await host.start();
    const t0 = Date.now() - 7_200_000;
    const node = await edge(0);
    await node.nbirth(0);
    const outages = 31;
    for (let cycle = 0; cycle < outages; cycle++) {
      await node.dbirth("d", [double("a", 1, 7, t0)]);
      await eventually(async () => (await db.samples(tag("a"))).length === 2 * cycle + 1, 10_000, `birth ${cycle}`);
      await node.ddeath("d");
      await eventually(async () => (await db.samples(tag("a"))).length === 2 * cycle + 2, 10_000, `mark ${cycle}`);
    }
    expectChain(await db.samples(tag("a")), 2 * outages);
  });
});

describe("Sparkplug host: its own downtime is marked in history (19v item 2)", () => {
  test("stop() stores a stale mark 1 µs after each tag's last value: history does not read the last value good across the host's downtime", async () => {
    const db = await database();
    const host = newHost(db, "stopping");
    await host.start();
    const t0 = Date.now() - 60_000;
    const node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0), double("b", 2, 2, t0 + 5)]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 10, datatype: "Double", value: 11 }]);
    await eventually(async () => (await db.samples(tag("a"))).length === 2, 10_000, "values stored");
    await host.stop();
    for (const [metric, last] of [
      ["a", t0 + 10],
      ["b", t0 + 5],
    ] as const) {
      const rows = await db.samples(tag(metric));
      const mark = rows.at(-1)!;
      expect(mark.value, metric).toBeNull();
      expect(mark.quality).toMatchObject({ severity: "bad", reason: expect.stringMatching(/host stopped/) });
      expect(micros(mark.timestamp), metric).toBe(micros(last) + 1);
    }
  });

  test("sibling: a tag already marked by its edge node's death gets no second mark when the host stops", async () => {
    const db = await database();
    const host = newHost(db, "stopping-2");
    await host.start();
    const t0 = Date.now() - 60_000;
    const node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0)]);
    await eventually(async () => (await db.samples(tag("a"))).length === 1, 10_000, "value stored");
    await node.ndeath(0);
    await eventually(async () => (await db.samples(tag("a"))).length === 2, 10_000, "mark stored");
    await host.stop();
    const rows = await db.samples(tag("a"));
    expect(rows).toHaveLength(2);
    expect(rows[1]!.quality.reason).not.toMatch(/host stopped/);
  });
});

describe("Sparkplug host: an edge clock that steps back (19v item 3)", () => {
  test("values +30 s, +30.5 s, then the clock steps back: 3 @+1 s, 4 @+2 s, NDEATH: the live value is never 2 good, history at +10 s is not 4 good", async () => {
    const db = await database();
    const host = newHost(db, "step-back");
    const issues: string[] = [];
    host.events.on("metric-issue", (event) => void issues.push(event.issue));
    await host.start();
    const t0 = Date.now();
    const node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0 + 30_000)]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 30_500, datatype: "Double", value: 2 }]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 1_000, datatype: "Double", value: 3 }]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 2_000, datatype: "Double", value: 4 }]);
    // 1, 2, 3, 4 and the step's mark 1 µs after 2 (the newest row when 3 arrived).
    await eventually(async () => (await db.samples(tag("a"))).length === 5, 10_000, "values stored");
    const live = host.latest(tag("a"))!.sample;
    expect(live.value === 2 && live.quality.severity === "good", "2 shown good while 4 was received").toBe(false);
    expect(live.quality.reason).toMatch(/clock stepped back/);
    expect(issues).toContain("clock-step-back");
    await node.ndeath(0);
    await eventually(async () => (await db.samples(tag("a"))).length === 6, 10_000, "the loss's mark stored");
    const rows = await db.samples(tag("a"));
    const at = (offset: number) => rows.filter((row) => row.timestamp <= t0 + offset).at(-1)!;
    expect(at(10_000).value).toBeNull();
    expect(at(10_000).quality.severity).toBe("bad");
    expect(micros(at(10_000).timestamp)).toBe(micros(t0 + 2_000) + 1);
    expect(at(31_000).value).toBeNull();
    expect(micros(at(31_000).timestamp)).toBe(micros(t0 + 30_500) + 1);
  });

  test("sibling: historical values replayed older than the newest live value add no second mark (only live values by arrival count)", async () => {
    const db = await database();
    const host = newHost(db, "step-back-2");
    await host.start();
    const t0 = Date.now() - 60_000;
    const node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0 + 30_000)]);
    await node.ddata("d", [
      { alias: 1, timestamp: t0 + 10_000, datatype: "Double", value: 5, isHistorical: true },
      { alias: 1, timestamp: t0 + 20_000, datatype: "Double", value: 6, isHistorical: true },
    ]);
    await eventually(async () => (await db.samples(tag("a"))).length === 3, 10_000, "values stored");
    expect(host.latest(tag("a"))!.sample).toMatchObject({ value: 1, quality: { severity: "good" } });
    await node.ndeath(0);
    await eventually(async () => (await db.samples(tag("a"))).length >= 4, 10_000, "mark stored");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const rows = await db.samples(tag("a"));
    expect(rows.map((row) => row.value)).toEqual([5, 6, 1, null]);
  });

  test("a clock 20 s behind across a reconnect: DDATA after the restated birth are a step back, live never shows them good behind the birth and history at now is not the birth value good (fix19s)", async () => {
    const db = await database();
    const host = newHost(db, "step-back-3");
    const issues: string[] = [];
    host.events.on("metric-issue", (event) => void issues.push(event.issue));
    await host.start();
    const t0 = Date.now();
    let node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0)]);
    await eventually(async () => (await db.samples(tag("a"))).length === 1, 10_000, "birth stored");
    await node.ndeath(0);
    await node.close();
    await eventually(async () => (await db.samples(tag("a"))).length === 2, 10_000, "mark stored");
    node = await edge(1);
    await node.nbirth(1);
    await node.dbirth("d", [double("a", 1, 2, t0 - 20_000)]);
    for (let i = 0; i < 5; i++)
      await node.ddata("d", [{ alias: 1, timestamp: t0 - 19_000 + i * 1_000, datatype: "Double", value: 10 + i }]);
    // 1, mark, 2 restated, 10..14 at their own times, one mark after the restated 2.
    await eventually(async () => (await db.samples(tag("a"))).length === 9, 10_000, "values stored");
    const rows = await db.samples(tag("a"));
    const newest = rows.at(-1)!;
    expect(newest.value).toBeNull();
    expect(newest.quality.severity).toBe("bad");
    expect(newest.quality.reason).toMatch(/clock stepped back/);
    expect(micros(newest.timestamp)).toBe(micros(t0) + 3);
    expect(rows.filter((row) => row.value !== null).map((row) => row.value)).toEqual([10, 11, 12, 13, 14, 1, 2]);
    const live = host.latest(tag("a"))!.sample;
    expect(live.quality.severity).toBe("uncertain");
    expect(live.quality.reason).toMatch(/clock stepped back/);
    expect(issues.filter((issue) => issue === "clock-step-back")).toHaveLength(5);
  });

  test("sibling: once the edge clock is past the newest row again, its values are shown good and stored without another mark", async () => {
    const db = await database();
    const host = newHost(db, "step-back-4");
    await host.start();
    const t0 = Date.now() - 60_000;
    const node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0 + 30_000)]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 1_000, datatype: "Double", value: 2 }]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 2_000, datatype: "Double", value: 3 }]);
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 31_000, datatype: "Double", value: 4 }]);
    await eventually(async () => (await db.samples(tag("a"))).length === 5, 10_000, "values stored");
    const rows = await db.samples(tag("a"));
    expect(rows.map((row) => row.value)).toEqual([2, 3, 1, null, 4]);
    expect(micros(rows[3]!.timestamp)).toBe(micros(t0 + 30_000) + 1);
    expect(host.latest(tag("a"))!.sample).toMatchObject({ value: 4, quality: { severity: "good" } });
  });

  test("a replayed historical row newer than a live value still in flight is no step back: the live value is shown good, and no mark stored (else a later rebirth restates values stored already; fault suite sparkplug-fleet stored 1,000 twice)", async () => {
    const db = await database();
    const host = newHost(db, "step-back-5");
    const issues: string[] = [];
    host.events.on("metric-issue", (event) => void issues.push(event.issue));
    await host.start();
    const t0 = Date.now() - 60_000;
    const node = await edge(0);
    await node.nbirth(0);
    await node.dbirth("d", [double("a", 1, 1, t0)]);
    // The replay of what the edge node measured while the host was away reaches t0 + 2 s...
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 2_000, datatype: "Double", value: 3, isHistorical: true }]);
    // ...and a live value measured before it was sent behind it.
    await node.ddata("d", [{ alias: 1, timestamp: t0 + 1_000, datatype: "Double", value: 2 }]);
    await eventually(async () => (await db.samples(tag("a"))).length === 3, 10_000, "values stored");
    expect(host.latest(tag("a"))!.sample).toMatchObject({ value: 2, quality: { severity: "good" } });
    expect(issues).not.toContain("clock-step-back");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const rows = await db.samples(tag("a"));
    expect(rows.map((row) => row.value)).toEqual([1, 2, 3]);
  });
});
