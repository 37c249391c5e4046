// Issue 19, adversarial finding (memory): a peer on the broker that invents edge nodes, devices
// and metrics cannot grow the host's memory without bound. Past the caps of `limits` what is
// new is refused (not stored, counted, named in problems and by `limit-refusal`), and the edge
// nodes the host already follows keep being stored (ADR 0030, amendment of 2026-12-02). Against
// a real broker (the test's own mosquitto, else aedes).
import { MemoryStore } from "@kiln/core";
import { afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { SparkplugHost, type SparkplugHostEvents, type SparkplugHostLimits } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import type { SparkplugMetric } from "../src/payload";
import { startTestBroker, type TestBroker } from "../src/testing/index";
import { RawEdgeNode, eventually, openTestDatabase } from "./support/host-harness";

const GROUP = "plant-limits";
const double = (name: string, alias: number, value: number): SparkplugMetric => ({
  name,
  alias,
  timestamp: Date.now(),
  datatype: "Double",
  value,
});
const tagOf = (edgeNodeId: string, metric: string, deviceId = "d") =>
  qualifiedTagName({ groupId: GROUP, edgeNodeId, deviceId, metric });
/** A metric of the edge node itself (NBIRTH/NDATA). */
const nodeTagOf = (edgeNodeId: string, metric: string) => qualifiedTagName({ groupId: GROUP, edgeNodeId, metric });

vi.setConfig({ testTimeout: 90_000 });

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
  console.info(`Sparkplug host limit tests: broker ${broker.kind}`);
  return () => broker.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function rig(limits: SparkplugHostLimits, rebirthIntervalMs = 0) {
  const db = await openTestDatabase();
  cleanups.push(() => db.close());
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: `limits-${Math.random().toString(16).slice(2, 8)}`,
    groups: [GROUP],
    store: db.store,
    rebirthIntervalMs,
    stopLingerMs: 100,
    batching: { maxDelayMs: 5 },
    limits,
  });
  cleanups.push(() => host.stop());
  const refusals: SparkplugHostEvents["limit-refusal"][] = [];
  host.events.on("limit-refusal", (event) => void refusals.push(event));
  await host.start();
  await host.whenConnected();
  const edge = async (edgeNodeId: string) => {
    const raw = await RawEdgeNode.connect(broker.url, GROUP, edgeNodeId, 0);
    cleanups.push(() => raw.close());
    return raw;
  };
  /** An edge node with device `d` and metric `m` (alias 1), born and seen live by the host. */
  const born = async (edgeNodeId: string, value = 1) => {
    const raw = await edge(edgeNodeId);
    await raw.nbirth(0);
    await raw.dbirth("d", [double("m", 1, value)]);
    await eventually(() => host.latest(tagOf(edgeNodeId, "m"))?.sample.value === value, 5_000, `${edgeNodeId} born`);
    return raw;
  };
  return { host, db, refusals, edge, born };
}

describe("limits: the host's memory is bounded whatever the peers on the broker invent", () => {
  test("edge nodes past limits.maxEdgeNodes are refused before they are read (counted, named, event), no state is kept for them, and the edge nodes followed keep being stored", async () => {
    const { host, refusals, edge, born } = await rig({ maxEdgeNodes: 2 });
    const first = await born("real-1");
    await born("real-2");
    // A peer invents edge nodes: births, data, all of it refused.
    for (let index = 0; index < 5; index++) {
      const invented = await edge(`invented-${index}`);
      await invented.nbirth(0);
      await invented.dbirth("d", [double("m", 1, 7)]);
      await invented.ddata("d", [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 8 }]);
    }
    await eventually(() => host.health().refusals.maxEdgeNodes === 15, 5_000, "15 messages refused");
    // An edge node already followed keeps being stored while the invented ones are refused.
    await first.ddata("d", [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 42 }]);
    await eventually(() => host.latest(tagOf("real-1", "m"))?.sample.value === 42, 5_000, "real-1 still taken");
    await eventually(() => host.health().samples.queued === 0 && host.health().samples.stored >= 3, 5_000, "stored");

    const health = host.health();
    expect(health.edgeNodes.map((node) => node.edgeNodeId)).toEqual(["real-1", "real-2"]);
    expect(health.refusals).toEqual({
      maxEdgeNodes: 15,
      maxDevicesPerEdgeNode: 0,
      maxMetricsPerBirth: 0,
      maxMetrics: 0,
    });
    expect([...host.live().keys()].some((name) => name.includes("invented"))).toBe(false);
    // Of the real edge nodes only: two NBIRTHs (bdSeq, rebirth), two DBIRTHs (m) and one DDATA.
    expect(health.samples.received).toBe(7);
    const problem = health.problems.find((text) => text.includes("limits.maxEdgeNodes"));
    expect(problem).toContain("limits.maxEdgeNodes (2) reached: 15 messages refused");
    expect(problem).toContain("invented-4");
    expect(refusals).toHaveLength(15);
    expect(refusals[0]).toMatchObject({ limit: "maxEdgeNodes", max: 2, groupId: GROUP, edgeNodeId: "invented-0" });
    expect(refusals.at(-1)?.topic).toBe(`spBv1.0/${GROUP}/DDATA/invented-4/d`);
  });

  test("a birth without metrics counts 1 against limits.maxMetrics: devices born empty cannot escape the cap (review 19h, H1)", async () => {
    const { host, edge } = await rig({ maxMetrics: 6 });
    const raw = await edge("empty");
    await raw.nbirth(0);
    for (let index = 0; index < 10; index++) await raw.dbirth(`d${index}`, []);
    await eventually(() => host.health().refusals.maxMetrics > 0, 5_000, "a birth refused by maxMetrics");
    const node = host.health().edgeNodes.find((each) => each.edgeNodeId === "empty");
    // Before: every empty birth cost 0 and all 10 devices were kept.
    expect(node?.devices.length).toBeLessThan(10);
    expect(node?.devices.length).toBeGreaterThan(0);
  });

  test("an edge node or device id longer than 1,024 characters is refused before anything is kept for it (review 19h, H1)", async () => {
    const { host, edge, born } = await rig({});
    const long = "e".repeat(1_025);
    const raw = await edge(long);
    await raw.nbirth(0);
    const other = await born("short");
    await other.dbirth("x".repeat(2_000), [double("m", 2, 5)]);
    await eventually(() => host.health().messages.malformed >= 2, 5_000, "both refused as malformed");
    expect(host.health().edgeNodes.map((node) => node.edgeNodeId)).toEqual(["short"]);
    expect(host.health().edgeNodes[0]!.devices.map((device) => device.deviceId)).toEqual(["d"]);
    // Sibling: an id of exactly 1,024 characters is kept (the longest the host keeps).
    const edge1024 = await edge("f".repeat(1_024));
    await edge1024.nbirth(0);
    await eventually(() => host.health().edgeNodes.length === 2, 5_000, "the 1,024-character id kept");
  });

  test("a birth past limits.maxMetricsPerBirth or limits.maxDevicesPerEdgeNode is refused whole (nothing of it stored, the edge node distrusted and asked for a rebirth), other edge nodes untouched", async () => {
    const { host, refusals, born } = await rig({ maxMetricsPerBirth: 3, maxDevicesPerEdgeNode: 1 });
    const other = await born("other");
    const wide = await born("wide");
    // A second device of `wide`: over maxDevicesPerEdgeNode.
    await wide.dbirth("d2", [double("n", 2, 5)]);
    await eventually(() => host.health().refusals.maxDevicesPerEdgeNode === 1, 5_000, "device refused");
    expect(host.health().edgeNodes.find((node) => node.edgeNodeId === "wide")?.state).toBe("awaiting-rebirth");
    expect(host.latest(tagOf("wide", "n", "d2"))).toBeUndefined();
    // Born again within the caps, then a DBIRTH of 4 metrics: over maxMetricsPerBirth.
    await wide.nbirth(0);
    await wide.dbirth("d", [double("m", 1, 1), double("a", 2, 1), double("b", 3, 1), double("c", 4, 1)]);
    await eventually(() => host.health().refusals.maxMetricsPerBirth === 1, 5_000, "wide birth refused");
    const health = host.health();
    const node = health.edgeNodes.find((each) => each.edgeNodeId === "wide");
    expect(node).toMatchObject({ state: "awaiting-rebirth", birthsRefused: 2 });
    expect(node?.devices).toEqual([{ deviceId: "d", online: false }]);
    expect(host.latest(tagOf("wide", "c"))).toBeUndefined();
    expect(health.problems.join("\n")).toContain(
      `limits.maxMetricsPerBirth (3) reached: 1 births refused, nothing of them stored`,
    );
    expect(health.problems.join("\n")).toContain("limits.maxDevicesPerEdgeNode (1) reached");
    expect(refusals.map((event) => [event.limit, event.edgeNodeId, event.deviceId])).toEqual([
      ["maxDevicesPerEdgeNode", "wide", "d2"],
      ["maxMetricsPerBirth", "wide", "d"],
    ]);
    expect(
      host.health().edgeNodes.find((each) => each.edgeNodeId === "wide")?.rebirthsRequested,
    ).toBeGreaterThanOrEqual(2);
    // The other edge node keeps being stored.
    await other.ddata("d", [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 9 }]);
    await eventually(() => host.latest(tagOf("other", "m"))?.sample.value === 9, 5_000, "other still taken");
  });

  test("limits.maxMetrics counts the metrics of current births only: a birth past it is refused, and an NBIRTH that ends its devices' births gives their room back", async () => {
    const { host, refusals, edge, born } = await rig({ maxMetrics: 5 });
    // Each born edge node holds 3 metrics: bdSeq and Node Control/Rebirth (NBIRTH), m (DBIRTH).
    const first = await born("first");
    const second = await edge("second");
    await second.nbirth(0);
    await second.dbirth("d", [double("m", 1, 2)]); // would make 6
    await eventually(() => host.health().refusals.maxMetrics === 1, 5_000, "second DBIRTH refused");
    expect(refusals[0]).toMatchObject({ limit: "maxMetrics", max: 5, edgeNodeId: "second", deviceId: "d" });
    expect(host.latest(tagOf("second", "m"))).toBeUndefined();
    // `first` is born again without its device: 2 metrics held, so `second` fits now.
    await first.nbirth(1);
    await eventually(
      () => host.health().edgeNodes.find((node) => node.edgeNodeId === "first")?.births === 2,
      5_000,
      "first reborn",
    );
    await born("second", 3);
    expect(host.health().refusals.maxMetrics).toBe(1);
  });

  test("an edge node that renames its metrics at every rebirth keeps the host's per-metric state within limits.maxMetrics: what no birth declares any more is released", async () => {
    const { host, edge } = await rig({ maxMetrics: 12 });
    const raw = await edge("renamer");
    for (let round = 0; round < 30; round++) {
      await raw.nbirth(round);
      await raw.dbirth(
        "d",
        Array.from({ length: 4 }, (_, index) => double(`r${round}_m${index}`, index + 1, round)),
      );
    }
    await eventually(() => host.latest(tagOf("renamer", "r29_m3"))?.sample.value === 29, 10_000, "last round taken");
    await eventually(() => host.health().samples.queued === 0, 5_000, "stored");
    // The NBIRTH's 2 metrics and the last DBIRTH's 4: nothing of the 29 rounds before.
    expect(host.live().size).toBeLessThanOrEqual(12);
    expect(host.live().size).toBe(6);
    expect(host.latest(tagOf("renamer", "r0_m0"))).toBeUndefined();
    expect(host.health().refusals.maxMetrics).toBe(0);
  });

  test("the same names across rebirths keep their live values (stale between the NBIRTH and the DBIRTH), and the retired device birth stays counted until then", async () => {
    const { host, edge } = await rig({ maxMetrics: 5 });
    const raw = await edge("steady");
    await raw.nbirth(0);
    await raw.dbirth("d", [double("m", 1, 1), double("n", 2, 2)]);
    await eventually(() => host.latest(tagOf("steady", "n"))?.sample.value === 2, 5_000, "born");
    await raw.nbirth(1);
    await eventually(() => host.latest(tagOf("steady", "m"))?.sample.quality.severity === "uncertain", 5_000, "stale");
    expect(host.latest(tagOf("steady", "m"))?.sample.value).toBe(1);
    await raw.dbirth("d", [double("m", 1, 3), double("n", 2, 4)]);
    await eventually(() => host.latest(tagOf("steady", "n"))?.sample.value === 4, 5_000, "reborn");
    expect(host.latest(tagOf("steady", "m"))?.sample).toMatchObject({ value: 3, quality: { severity: "good" } });
    expect(host.live().size).toBe(4);
    expect(host.health().refusals.maxMetrics).toBe(0);
  });

  test("devices that died are forgotten (least recently seen first) when limits.maxDevicesPerEdgeNode would refuse a new one: device renames never lock an edge node out", async () => {
    const { host, edge } = await rig({ maxDevicesPerEdgeNode: 2 });
    const raw = await edge("churner");
    await raw.nbirth(0);
    for (let index = 0; index < 5; index++) {
      await raw.dbirth(`dev${index}`, [double("x", 1, index)]);
      await eventually(
        () => host.latest(tagOf("churner", "x", `dev${index}`))?.sample.value === index,
        5_000,
        `dev${index}`,
      );
      await raw.ddeath(`dev${index}`);
      await eventually(
        () => host.latest(tagOf("churner", "x", `dev${index}`))?.sample.quality.severity === "uncertain",
        5_000,
        `dev${index} dead`,
      );
    }
    expect(host.health().refusals.maxDevicesPerEdgeNode).toBe(0);
    // dev0..dev2 forgotten to make room for dev2..dev4; the two last dead ones still held.
    expect(host.latest(tagOf("churner", "x", "dev0"))).toBeUndefined();
    expect(host.latest(tagOf("churner", "x", "dev4"))?.sample.value).toBe(4);
    expect(host.health().problems.find((text) => text.startsWith("limits: 3 offline devices"))).toContain("dev2");
    // Sibling: two online devices are never forgotten: a third is refused.
    await raw.dbirth("a", [double("x", 11, 1)]);
    await raw.dbirth("b", [double("x", 12, 1)]);
    await raw.dbirth("c", [double("x", 13, 1)]);
    await eventually(() => host.health().refusals.maxDevicesPerEdgeNode === 1, 5_000, "third online device refused");
  });

  test("messages of edge nodes never born do not lock out a real edge node born later: the one not online seen least recently is forgotten", async () => {
    const { host, edge, born } = await rig({ maxEdgeNodes: 2 });
    for (let index = 0; index < 2; index++) {
      const junk = await edge(`junk-${index}`);
      await junk.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
    }
    await eventually(() => host.health().edgeNodes.length === 2, 5_000, "junk followed");
    await born("real", 42);
    expect(host.health().refusals.maxEdgeNodes).toBe(0);
    expect(host.health().edgeNodes.map((node) => node.edgeNodeId)).toContain("real");
    // Sibling: edge nodes online are never forgotten: a third one is refused.
    await born("real-2", 1);
    const third = await edge("third");
    await third.nbirth(0);
    await eventually(() => host.health().refusals.maxEdgeNodes === 1, 5_000, "third refused");
    expect(host.latest(tagOf("real", "m"))?.sample.value).toBe(42);
  });

  test("dead edge nodes do not lock a new one out under limits.maxMetrics: their NBIRTH metrics are forgotten as dead devices are (fix19e)", async () => {
    const { host, refusals, edge, born } = await rig({ maxMetrics: 6 });
    // An edge node with 4 NBIRTH metrics and no device dies.
    const old = await edge("old");
    await old.nbirth(0, [double("n0", 10, 1), double("n1", 11, 1)]);
    await eventually(() => host.latest(nodeTagOf("old", "n1"))?.sample.value === 1, 5_000, "old born");
    await old.ndeath(0);
    await eventually(
      () => host.health().edgeNodes.find((node) => node.edgeNodeId === "old")?.state === "offline",
      5_000,
      "old dead",
    );
    // 4 held by the dead one, 3 by the new one: the dead one makes room.
    await born("real", 5);
    expect(refusals).toEqual([]);
    expect(host.health().edgeNodes.map((node) => node.edgeNodeId)).toEqual(["real"]);
    expect(host.latest(nodeTagOf("old", "n1"))).toBeUndefined();
    expect(host.health().problems.join("\n")).toContain("1 edge nodes not online forgotten");
  });

  test("under limits.maxMetrics what is dead is forgotten least recently seen first, a dead device or a dead edge node alike (fix19e)", async () => {
    const { host, refusals, edge, born } = await rig({ maxMetrics: 9 });
    const x = await born("x"); // 3 held
    await x.ddeath("d"); // first to die: its device's 1 metric
    await eventually(() => host.latest(tagOf("x", "m"))?.sample.quality.severity === "uncertain", 5_000, "x/d dead");
    const y = await edge("y");
    await y.nbirth(0, [double("n0", 10, 1), double("n1", 11, 1)]); // 4 held, 7 in all
    await eventually(() => host.latest(nodeTagOf("y", "n1"))?.sample.value === 1, 5_000, "y born");
    await y.ndeath(0); // dies second
    await eventually(
      () => host.health().edgeNodes.find((node) => node.edgeNodeId === "y")?.state === "offline",
      5_000,
      "y dead",
    );
    // z needs 3: 10 > 9, so the device that died first goes, not y.
    const z = await born("z");
    expect(host.latest(tagOf("x", "m"))).toBeUndefined();
    expect(host.health().edgeNodes.map((node) => node.edgeNodeId)).toEqual(["x", "y", "z"]);
    // A second device of z with 4 metrics: y goes now.
    await z.dbirth("e", [double("a", 21, 1), double("b", 22, 1), double("c", 23, 1), double("e", 24, 1)]);
    await eventually(() => host.latest(tagOf("z", "e", "e"))?.sample.value === 1, 5_000, "z/e born");
    expect(host.health().edgeNodes.map((node) => node.edgeNodeId)).toEqual(["x", "z"]);
    expect(refusals).toEqual([]);
  });

  test("forgetting many dead devices to make room costs O(what is forgotten): 20,000 dead devices, a birth that needs them all takes little longer than the same birth needing none (fix19e)", async () => {
    const NODES = 20;
    const PER = 1_000;
    const host = new SparkplugHost({
      brokerUrl: broker.url,
      hostId: `limits-${Math.random().toString(16).slice(2, 8)}`,
      groups: [GROUP],
      store: new MemoryStore(),
      batching: { maxDelayMs: 5 },
      limits: { maxMetrics: NODES * (PER + 2) + 2 },
    });
    cleanups.push(() => host.stop());
    await host.start();
    await host.whenConnected();
    let expected = 0;
    for (let node = 0; node < NODES; node++) {
      const raw = await RawEdgeNode.connect(broker.url, GROUP, `many-${node}`, 0);
      cleanups.push(() => raw.close());
      await raw.nbirth(0);
      for (let device = 0; device < PER; device++) await raw.dbirth(`d${device}`, [double("m", device + 1, device)]);
      await raw.nbirth(1); // every device of it offline, its birth retired (still held)
      expected += PER + 2;
      await eventually(() => host.health().messages.received >= expected, 30_000, `many-${node} taken`);
    }
    const dead = () =>
      host.health().edgeNodes.reduce((sum, node) => sum + node.devices.filter((device) => !device.online).length, 0);
    expect(dead()).toBe(NODES * PER);
    const big = await RawEdgeNode.connect(broker.url, GROUP, "big", 0);
    cleanups.push(() => big.close());
    await big.nbirth(0);
    const metrics = (value: number) =>
      Array.from({ length: NODES * PER }, (_, index) => double(`m${index}`, index + 1, value));
    /** Time from publishing a DBIRTH of all the metrics until the host shows its last value. */
    const timedBirth = async (value: number) => {
      const payload = metrics(value);
      const started = performance.now();
      await big.dbirth("d", payload);
      await eventually(
        () => host.latest(tagOf("big", `m${NODES * PER - 1}`))?.sample.value === value,
        60_000,
        `big born with ${value}`,
      );
      return performance.now() - started;
    };
    // This birth needs all the dead devices forgotten; the same birth again needs none.
    const forgetting = await timedBirth(1);
    const plain = await timedBirth(2);
    expect(host.health().refusals.maxMetrics).toBe(0);
    expect(dead()).toBe(0);
    expect(host.health().problems.join("\n")).toContain(`limits: ${NODES * PER} offline devices`);
    // The old scan (every device of every edge node per device forgotten) took ~15 times as long
    // as the plain birth here (4.8 s against 0.3 s); forgetting in order adds little.
    expect(forgetting).toBeLessThan(3 * plain + 1_000);
  });

  test("a metric released (absent from a birth) and born again unchanged ends good in history, as live: the restated value lands 1 µs after its stale mark (fix19e)", async () => {
    const { host, db, edge } = await rig({});
    const t0 = Date.now() - 10_000;
    const x = (value: number, timestamp = t0) => ({ ...double("x", 1, value), timestamp });
    const y = { ...double("y", 2, 5), timestamp: t0 };
    const raw = await edge("rel");
    await raw.nbirth(0);
    await raw.dbirth("d", [x(1), y]);
    await eventually(() => host.latest(tagOf("rel", "x"))?.sample.value === 1, 5_000, "x born");
    await raw.dbirth("d", [y]); // x released
    await eventually(() => host.latest(tagOf("rel", "x")) === undefined, 5_000, "x released");
    await raw.dbirth("d", [x(1), y]); // x back, same value and timestamp
    await eventually(() => host.latest(tagOf("rel", "x"))?.sample.quality.severity === "good", 5_000, "x reborn");
    await eventually(() => host.health().samples.queued === 0, 5_000, "stored");
    let rows = await db.samples(tagOf("rel", "x"));
    expect(rows.map((row) => [row.value, row.quality.severity])).toEqual([
      [1, "good"],
      [null, "bad"],
      [1, "good"],
    ]);
    expect(rows[2]!.quality.reason).toContain("restated by a birth");
    // Sibling: released again, then born with a new value at a later time: stored at its own time.
    await raw.dbirth("d", [y]);
    await eventually(() => host.latest(tagOf("rel", "x")) === undefined, 5_000, "x released again");
    await raw.dbirth("d", [x(7, t0 + 5_000), y]);
    await eventually(() => host.latest(tagOf("rel", "x"))?.sample.value === 7, 5_000, "x reborn with 7");
    await eventually(() => host.health().samples.queued === 0, 5_000, "stored");
    rows = await db.samples(tagOf("rel", "x"));
    expect(rows.map((row) => [row.value, row.quality.severity])).toEqual([
      [1, "good"],
      [null, "bad"],
      [1, "good"],
      [null, "bad"],
      [7, "good"],
    ]);
    expect(rows[4]!.timestamp).toBe(t0 + 5_000);
  });

  test("an edge node forgotten to make room and born again unchanged ends good in history, as live (fix19e)", async () => {
    const { host, db, edge, born } = await rig({ maxEdgeNodes: 2 });
    const t0 = Date.now() - 10_000;
    const c = await edge("c");
    await c.nbirth(0);
    await c.dbirth("d", [{ ...double("x", 1, 1), timestamp: t0 }]);
    await eventually(() => host.latest(tagOf("c", "x"))?.sample.value === 1, 5_000, "c born");
    await c.ndeath(0);
    await eventually(
      () => host.health().edgeNodes.find((node) => node.edgeNodeId === "c")?.state === "offline",
      5_000,
      "c dead",
    );
    await born("other");
    const junk = await edge("junk");
    await junk.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 9 }]);
    await eventually(() => host.latest(tagOf("c", "x")) === undefined, 5_000, "c forgotten");
    await c.nbirth(1);
    await c.dbirth("d", [{ ...double("x", 1, 1), timestamp: t0 }]);
    await eventually(() => host.latest(tagOf("c", "x"))?.sample.quality.severity === "good", 5_000, "c reborn");
    await eventually(() => host.health().samples.queued === 0, 5_000, "stored");
    const rows = await db.samples(tagOf("c", "x"));
    expect(rows.map((row) => [row.value, row.quality.severity])).toEqual([
      [1, "good"],
      [null, "bad"],
      [1, "good"],
    ]);
  });

  test("a birth with a metric name over 1,024 characters is refused whole, counted and named, nothing of the name kept (fix19e)", async () => {
    const { host, edge } = await rig({});
    const raw = await edge("longname");
    await raw.nbirth(0);
    const huge = "n".repeat(2_000_000);
    const rejects: string[] = [];
    host.events.on("message-reject", (event) => void rejects.push(event.message));
    await raw.dbirth("d", [double("ok", 1, 1), double(huge, 2, 1)]);
    const refused = (count: number) => () =>
      host.health().edgeNodes.find((node) => node.edgeNodeId === "longname")?.birthsRefused === count;
    await eventually(refused(1), 5_000, "refused");
    expect(host.latest(tagOf("longname", "ok"))).toBeUndefined();
    const problem = host.health().problems.find((text) => text.includes("metric name too long"));
    expect(problem).toContain("1 births refused");
    expect(problem).toContain("(2000000 characters)");
    expect(problem!.length).toBeLessThan(600);
    expect(rejects.at(-1)!.length).toBeLessThan(600);
    // Sibling: at the NBIRTH too, from 1,025 characters; 1,024 is kept (its values unstorable, as
    // any name whose tag name is over 256 characters) and the rest of the birth taken.
    await raw.nbirth(1, [double("k".repeat(1_025), 3, 1)]);
    await eventually(refused(2), 5_000, "1,025 refused");
    const unstorable = host.health().samples.unstorable;
    await raw.nbirth(2, [double("k".repeat(1_024), 3, 1), double("fine", 4, 6)]);
    await eventually(() => host.latest(nodeTagOf("longname", "fine"))?.sample.value === 6, 5_000, "1,024 kept");
    expect(host.health().samples.unstorable).toBe(unstorable + 1);
    expect(refused(2)()).toBe(true);
  });

  test("junk messages on edge node ids forgotten in turn do not each send a rebirth request: the rate limit holds without the edge node's state (fix19e)", async () => {
    const { host, edge } = await rig({ maxEdgeNodes: 1 }, 60_000);
    const requests: SparkplugHostEvents["rebirth-request"][] = [];
    host.events.on("rebirth-request", (event) => void requests.push(event));
    const a = await edge("junk-a");
    const b = await edge("junk-b");
    for (let round = 0; round < 3; round++) {
      await a.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
      await eventually(() => requests.length === 2 * round + 1, 5_000, `a ${round}`);
      await b.ndata([{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 1 }]);
      await eventually(() => requests.length === 2 * round + 2, 5_000, `b ${round}`);
    }
    // Each message made the other's state anew (maxEdgeNodes 1), yet one request each was sent.
    expect(host.health().problems.join("\n")).toContain("edge nodes not online forgotten");
    expect(requests.filter((event) => !event.suppressed).map((event) => event.edgeNodeId)).toEqual([
      "junk-a",
      "junk-b",
    ]);
  });

  test("limits are checked: a cap that is not a whole number from 1, or no cap at all, is a KILN_VALIDATION naming the field", async () => {
    const db = await openTestDatabase();
    cleanups.push(() => db.close());
    const make = (limits: object) =>
      new SparkplugHost({
        brokerUrl: broker.url,
        hostId: "h",
        groups: [GROUP],
        store: db.store,
        limits: limits as SparkplugHostLimits,
      });
    expect(() => make({ maxEdgeNodes: 0 })).toThrow(/limits\.maxEdgeNodes.*whole number from 1/s);
    expect(() => make({ maxMetrics: 1.5 })).toThrow(/limits\.maxMetrics/);
    expect(() => make({ maxNodes: 5 })).toThrow(/limits\.maxNodes.*not a Sparkplug host limit/s);
  });
});
