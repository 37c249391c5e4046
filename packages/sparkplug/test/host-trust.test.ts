// Issue 19, adversarial findings H1, H2, M2, M3, M6: the host's live view never shows a value
// good from a stream it no longer trusts, a birth it cannot trust is refused whole, and a value
// that contradicts its birth is refused. Against a real broker (the test's own mosquitto, else aedes).
import { QualityCodes } from "@kiln/core";
import { afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { SparkplugHost, type SparkplugHostEvents } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { encodePayload, type SparkplugMetric } from "../src/payload";
import {
  recordSparkplug,
  startMqttTap,
  startTestBroker,
  type SparkplugRecorder,
  type TestBroker,
} from "../src/testing/index";
import { sparkplugTopic } from "../src/topic";
import { RawEdgeNode, eventually, openTestDatabase, type TestDatabase } from "./support/host-harness";

const GROUP = "plant-9";
const NODE = "line-1";
const tag = (metric: string, deviceId = "d") =>
  qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, deviceId, metric });
const nodeTag = (metric: string) => qualifiedTagName({ groupId: GROUP, edgeNodeId: NODE, metric });
const double = (name: string, alias: number, value: number, timestamp: number): SparkplugMetric => ({
  name,
  alias,
  timestamp,
  datatype: "Double",
  value,
});

// Each case starts a host, a database and raw edge nodes: generous on a busy machine.
vi.setConfig({ testTimeout: 90_000 });

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
  console.info(`Sparkplug host trust tests: broker ${broker.kind}`);
  return () => broker.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Rig {
  readonly host: SparkplugHost;
  readonly db: TestDatabase;
  readonly recorder: SparkplugRecorder;
  readonly issues: SparkplugHostEvents["metric-issue"][];
  readonly rejects: SparkplugHostEvents["message-reject"][];
  edge(edgeNodeId?: string): Promise<RawEdgeNode>;
  rebirths(): number;
  node(edgeNodeId?: string): ReturnType<SparkplugHost["health"]>["edgeNodes"][number] | undefined;
}

async function rig(options: Partial<ConstructorParameters<typeof SparkplugHost>[0]> = {}): Promise<Rig> {
  const db = await openTestDatabase();
  cleanups.push(() => db.close());
  const recorder = await recordSparkplug(broker.url, {
    decode: { datatypeOf: ({ name }) => (name === "Node Control/Rebirth" ? "Boolean" : undefined) },
  });
  cleanups.push(() => recorder.close());
  const host = new SparkplugHost({
    brokerUrl: broker.url,
    hostId: `trust-${Math.random().toString(16).slice(2, 8)}`,
    groups: [GROUP],
    store: db.store,
    rebirthIntervalMs: 0,
    stopLingerMs: 100,
    batching: { maxDelayMs: 5 },
    ...options,
  });
  cleanups.push(() => host.stop());
  const issues: Rig["issues"] = [];
  const rejects: Rig["rejects"] = [];
  host.events.on("metric-issue", (event) => void issues.push(event));
  host.events.on("message-reject", (event) => void rejects.push(event));
  await host.start();
  await host.whenConnected();
  return {
    host,
    db,
    recorder,
    issues,
    rejects,
    async edge(edgeNodeId = NODE) {
      const edge = await RawEdgeNode.connect(broker.url, GROUP, edgeNodeId, 0);
      cleanups.push(() => edge.close());
      return edge;
    },
    rebirths: () =>
      recorder.messages.filter(
        (message) =>
          message.parsed?.type === "NCMD" &&
          message.payload?.metrics.some((metric) => metric.name === "Node Control/Rebirth"),
      ).length,
    node: (edgeNodeId = NODE) => host.health().edgeNodes.find((each) => each.edgeNodeId === edgeNodeId),
  };
}

/** A born edge node with device `d`: metrics `a` (alias 1) and `b` (alias 2), Double. */
async function born(rigged: Rig, at = Date.now() - 10_000): Promise<RawEdgeNode> {
  const edge = await rigged.edge();
  await edge.nbirth(0);
  await edge.dbirth("d", [double("a", 1, 1, at), double("b", 2, 2, at)]);
  await eventually(() => rigged.host.latest(tag("b"))?.sample.quality.severity === "good", 5_000, "births taken");
  return edge;
}

const severity = (host: SparkplugHost, name: string) => host.latest(name)?.sample.quality.severity;

/** Publishes a DDATA with datatypes on the wire (RawEdgeNode.ddata leaves them off). */
async function typedDdata(edge: RawEdgeNode, metrics: SparkplugMetric[]): Promise<void> {
  const topic = sparkplugTopic({ type: "DDATA", groupId: GROUP, edgeNodeId: edge.edgeNodeId, deviceId: "d" });
  const seq = edge.seq;
  edge.seq = (edge.seq + 1) % 256;
  await edge.client.publishAsync(topic, Buffer.from(encodePayload({ timestamp: Date.now(), seq, metrics })));
}

describe("H1: every loss of trust marks the live values it covers stale, as NDEATH does", () => {
  test("a seq gap the edge node never answers: awaiting-rebirth, its live values uncertain with the reason (stored too), named in problems", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    edge.seq += 1; // one DDATA lost
    await edge.ddata("d", [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 5 }]);
    await eventually(() => rigged.node()?.state === "awaiting-rebirth", 5_000, "distrusted");
    for (const name of [tag("a"), tag("b")]) {
      expect(rigged.host.latest(name)?.sample.quality).toMatchObject({
        severity: "uncertain",
        code: QualityCodes.UncertainNoCommunicationLastUsableValue,
        reason: expect.stringContaining("awaiting-rebirth") as unknown,
      });
    }
    // Data that keeps coming is discarded, and the live view stays stale.
    await edge.ddata("d", [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 6 }]);
    await eventually(() => rigged.host.health().samples.discarded >= 2, 5_000, "discarded");
    expect(severity(rigged.host, tag("a"))).toBe("uncertain");
    expect(rigged.host.health().problems.join()).toContain(`edge node ${GROUP}/${NODE} awaiting rebirth`);
    await eventually(async () =>
      (await rigged.db.samples(tag("a"))).some((each) => each.quality.severity === "bad" && each.value === null),
    );
    // Born again: good again, and the problem is gone.
    await edge.nbirth(0);
    await edge.dbirth("d", [double("a", 1, 7, Date.now()), double("b", 2, 8, Date.now())]);
    await eventually(() => severity(rigged.host, tag("a")) === "good", 5_000, "reborn");
    expect(rigged.host.health().problems).toEqual([]);
  });

  test("a new NBIRTH without NDEATH: a device not born again in it goes stale; one born again is good", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    await edge.dbirth("d2", [double("w", 3, 1, Date.now())]);
    await eventually(() => severity(rigged.host, tag("w", "d2")) === "good");
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 5, Date.now()), double("b", 2, 6, Date.now())]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 5, 5_000, "d reborn");
    expect(severity(rigged.host, tag("a"))).toBe("good");
    expect(rigged.host.latest(tag("w", "d2"))?.sample.quality).toMatchObject({
      severity: "uncertain",
      reason: expect.stringContaining("new NBIRTH") as unknown,
    });
  });

  test("a rebirth whose DBIRTH leaves a metric out: that metric goes stale; a second DBIRTH in one session likewise", async () => {
    const rigged = await rig();
    const stale: [string, string | undefined][] = [];
    rigged.host.events.on("live-update", ({ metrics }) => {
      for (const metric of metrics)
        if (metric.sample.quality.severity === "uncertain")
          stale.push([metric.sample.tag, metric.sample.quality.reason]);
    });
    const edge = await born(rigged);
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 5, Date.now())]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 5, 5_000, "reborn");
    // Marked stale (the mark stored), then released: no birth declares it any more, so the live
    // view no longer lists it (ADR 0030, amendment fix19d); never shown good.
    expect(stale).toContainEqual([tag("b"), expect.stringContaining("a new NBIRTH")]);
    expect(rigged.host.latest(tag("b"))).toBeUndefined();
    // Sibling: the same session, a DBIRTH again without `a` (and `b` back).
    await edge.dbirth("d", [double("b", 2, 9, Date.now())]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.value === 9, 5_000, "second DBIRTH");
    expect(stale).toContainEqual([tag("a"), expect.stringContaining("absent from the DBIRTH")]);
    expect(rigged.host.latest(tag("a"))).toBeUndefined();
    expect(severity(rigged.host, tag("b"))).toBe("good");
  });

  test("two edge nodes with one id (births of two sessions interleaving): stale throughout, and health names the flapping", async () => {
    const rigged = await rig();
    const first = await rigged.edge();
    const second = await rigged.edge();
    for (let round = 0; round < 3; round++) {
      await first.nbirth(0);
      await first.dbirth("d", [double("a", 1, round, Date.now())]);
      // Two connections: wait for each one's births, so the broker cannot reorder them.
      await eventually(() => rigged.host.latest(tag("a"))?.sample.value === round, 5_000, `first, round ${round}`);
      await second.nbirth(0);
      await second.dbirth("m2", [double("z", 1, round, Date.now())]);
      await eventually(() => rigged.host.latest(tag("z", "m2"))?.sample.value === round, 5_000, `round ${round}`);
      await first.ddata("d", [{ alias: 1, timestamp: Date.now(), datatype: "Double", value: 100 + round }]);
      await eventually(() => rigged.node()?.state === "awaiting-rebirth", 5_000, `distrusted in round ${round}`);
      expect(severity(rigged.host, tag("a"))).not.toBe("good");
      expect(severity(rigged.host, tag("z", "m2"))).not.toBe("good");
    }
    expect(rigged.host.health().problems.join()).toMatch(/flapping.*suspected duplicate edge node id/);
  });
});

describe("H2: a birth with a name or alias given twice, or a name that is not UTF-8, is refused whole", () => {
  async function refused(rigged: Rig, names: string[]): Promise<void> {
    await eventually(() => (rigged.node()?.birthsRefused ?? 0) >= 1, 5_000, "birth refused");
    expect(rigged.node()?.state).toBe("awaiting-rebirth");
    expect(rigged.rejects.length).toBeGreaterThanOrEqual(1);
    await eventually(() => rigged.rebirths() >= 1, 5_000, "rebirth requested");
    for (const name of names) expect(rigged.host.latest(name)).toBeUndefined();
    // Nothing of it stored, nor of the DDATA after it.
    expect(rigged.host.health().samples.discarded).toBeGreaterThanOrEqual(1);
    for (const name of names) expect(await rigged.db.samples(name)).toEqual([]);
  }

  test("a DBIRTH giving alias 1 to `t` and `u`", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    await edge.nbirth(0);
    const at = Date.now();
    await edge.dbirth("d", [double("t", 1, 1, at), double("u", 1, 3, at)]);
    await edge.ddata("d", [{ alias: 1, timestamp: at + 2, datatype: "Double", value: 7 }]);
    await refused(rigged, [tag("t"), tag("u")]);
    expect(rigged.rejects.map((each) => each.message).join()).toContain(`alias 1 of "u" already given to "t"`);
  });

  test("a DBIRTH giving the name `t` twice, under two aliases", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    await edge.nbirth(0);
    const at = Date.now();
    await edge.dbirth("d", [double("t", 1, 1, at), double("t", 2, 2, at)]);
    await edge.ddata("d", [{ alias: 2, timestamp: at + 20, datatype: "Double", value: 200 }]);
    await refused(rigged, [tag("t")]);
    expect(rigged.rejects.map((each) => each.message).join()).toContain(`metric name "t" given twice`);
  });

  test("an alias of a DBIRTH that the NBIRTH already gave (aliases are unique per edge node)", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    const at = Date.now();
    await edge.nbirth(0, [double("nodeTemp", 1, 20, at)]);
    await eventually(() => rigged.host.latest(nodeTag("nodeTemp")), 5_000, "NBIRTH");
    await edge.dbirth("d", [double("devFlow", 1, 5, at)]);
    await eventually(() => (rigged.node()?.birthsRefused ?? 0) >= 1, 5_000, "birth refused");
    expect(rigged.host.latest(tag("devFlow"))).toBeUndefined();
    expect(severity(rigged.host, nodeTag("nodeTemp"))).toBe("uncertain");
  });

  test("two names that differ only in bytes that are not UTF-8", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    await edge.nbirth(0);
    const at = Date.now();
    const bytes = encodePayload({ timestamp: at, seq: 1, metrics: [double("x!", 1, 1, at), double("x#", 2, 2, at)] });
    // "x!" and "x#" become "x\xff" and "x\xfe" (field 1, length 2).
    for (const [from, to] of [
      [0x21, 0xff],
      [0x23, 0xfe],
    ] as const) {
      const index = bytes.findIndex(
        (_, i) => bytes[i] === 0x0a && bytes[i + 1] === 2 && bytes[i + 2] === 0x78 && bytes[i + 3] === from,
      );
      bytes[index + 3] = to;
    }
    await edge.client.publishAsync(
      sparkplugTopic({ type: "DBIRTH", groupId: GROUP, edgeNodeId: NODE, deviceId: "d" }),
      Buffer.from(bytes),
    );
    edge.seq = 2;
    await edge.ddata("d", [{ alias: 1, timestamp: at + 1, datatype: "Double", value: 11 }]);
    await refused(rigged, [tag("x\ufffd")]);
    expect(rigged.rejects.map((each) => each.message).join()).toContain("UTF-8");
  });
});

describe("M2: a value whose datatype is not its birth's is refused; a retype in a rebirth is reported", () => {
  test("a Boolean sent as Int32 7, a String for a Double: not stored, counted, reported, the live value bad", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    await edge.nbirth(0);
    const at = Date.now() - 10_000;
    await edge.dbirth("d", [
      double("a", 1, 1, at),
      { name: "flag", alias: 2, timestamp: at, datatype: "Boolean", value: false },
    ]);
    await eventually(() => severity(rigged.host, tag("flag")) === "good", 5_000, "births");
    await typedDdata(edge, [
      { alias: 2, timestamp: at + 1, datatype: "Int32", value: 7 },
      { alias: 1, timestamp: at + 1, datatype: "String", value: "abc" },
    ]);
    await eventually(() => rigged.host.health().samples.mistyped === 2, 5_000, "refused");
    for (const name of [tag("flag"), tag("a")]) {
      expect(rigged.host.latest(name)?.sample.quality).toMatchObject({
        severity: "bad",
        code: QualityCodes.BadTypeMismatch,
      });
      expect(rigged.issues.find((each) => each.tag === name)).toMatchObject({ issue: "datatype-mismatch" });
    }
    expect(rigged.host.latest(tag("flag"))?.sample.value).toBe(false);
    await eventually(async () => (await rigged.db.samples(tag("flag"))).length === 1);
    expect((await rigged.db.samples(tag("flag"))).map((each) => each.value)).toEqual([false]);
    // The next good value is taken again.
    await edge.ddata("d", [{ alias: 2, timestamp: at + 2, datatype: "Boolean", value: true }]);
    await eventually(() => severity(rigged.host, tag("flag")) === "good", 5_000, "good again");
  });

  test("a second DBIRTH that makes a Double an Int32 is reported (metric-issue retyped, retypedMetrics)", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    await edge.dbirth("d", [
      { name: "a", alias: 1, timestamp: Date.now(), datatype: "Int32", value: 9 },
      double("b", 2, 2, Date.now()),
    ]);
    await eventually(() => rigged.node()?.retypedMetrics === 1, 5_000, "retype reported");
    expect(rigged.issues).toMatchObject([{ tag: tag("a"), issue: "retyped" }]);
  });
});

describe("M3 and M6: quality properties of the wrong type; the live view never goes back in time", () => {
  test("StatusCode as a String, Quality as a String: bad, never good", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const now = Date.now();
    await edge.ddata("d", [
      {
        alias: 1,
        timestamp: now,
        datatype: "Double",
        value: 5,
        properties: { StatusCode: { type: "String", value: "2150694912" } },
      },
      {
        alias: 2,
        timestamp: now,
        datatype: "Double",
        value: 6,
        properties: { Quality: { type: "String", value: "0" } },
      },
    ]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.value === 6, 5_000, "taken");
    expect(severity(rigged.host, tag("a"))).toBe("bad");
    expect(severity(rigged.host, tag("b"))).toBe("bad");
  });

  test("a live DDATA 100 s older than the live value is stored as history and does not replace it", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const now = Date.now();
    await edge.ddata("d", [{ alias: 1, timestamp: now, datatype: "Double", value: 5 }]);
    await edge.ddata("d", [{ alias: 1, timestamp: now - 100_000, datatype: "Double", value: -1 }]);
    await eventually(() => rigged.host.health().samples.outOfOrder === 1, 5_000, "counted");
    expect(rigged.host.latest(tag("a"))?.sample).toMatchObject({ value: 5, timestamp: now });
    await eventually(async () => (await rigged.db.samples(tag("a"))).some((each) => each.value === -1));
  });
});

describe("retained births, data and deaths are refused (Sparkplug requires retain false)", () => {
  test("a retained NBIRTH left on the broker before the host starts: no ghost edge node; sibling: a retained DDATA", async () => {
    const ghost = `ghost-${Math.random().toString(16).slice(2, 8)}`;
    const publisher = await RawEdgeNode.connect(broker.url, GROUP, ghost, 0);
    cleanups.push(() => publisher.close());
    const retained = async (topic: string, payload: Parameters<typeof encodePayload>[0]) =>
      publisher.client.publishAsync(topic, Buffer.from(encodePayload(payload)), { qos: 1, retain: true });
    const now = Date.now();
    const nbirthTopic = sparkplugTopic({ type: "NBIRTH", groupId: GROUP, edgeNodeId: ghost });
    const ddataTopic = sparkplugTopic({ type: "DDATA", groupId: GROUP, edgeNodeId: ghost, deviceId: "d" });
    await retained(nbirthTopic, {
      timestamp: now,
      seq: 0,
      metrics: [{ name: "bdSeq", timestamp: now, datatype: "Int64", value: 0 }, double("x", 1, 111, now)],
    });
    await retained(ddataTopic, {
      timestamp: now,
      seq: 1,
      metrics: [{ alias: 1, timestamp: now, datatype: "Double", value: 5 }],
    });
    // Cleared at the end, so no other test's host meets them.
    cleanups.push(async () => {
      for (const topic of [nbirthTopic, ddataTopic])
        await publisher.client.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true });
    });
    const rigged = await rig();
    await eventually(
      () => rigged.rejects.filter((each) => each.message.includes("retained")).length === 2,
      5_000,
      "both refused",
    );
    expect(rigged.rejects.map((each) => each.topic).sort()).toEqual([ddataTopic, nbirthTopic].sort());
    expect(rigged.host.latest(qualifiedTagName({ groupId: GROUP, edgeNodeId: ghost, metric: "x" }))).toBeUndefined();
    expect(rigged.node(ghost)).toBeUndefined();
    expect(rigged.host.health().messages.malformed).toBe(2);
    expect(rigged.host.health().samples.received).toBe(0);
  });
});

describe("the live view is bounded by the host's clock and agrees with the store", () => {
  const TEN_YEARS = 10 * 365 * 86_400_000;

  test("one DDATA value 10 years ahead: stored, never shown, and later real samples go live", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const now = Date.now();
    await edge.ddata("d", [{ alias: 1, timestamp: now, datatype: "Double", value: 5 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 5, 5_000, "taken");
    await edge.ddata("d", [{ alias: 1, timestamp: now + TEN_YEARS, datatype: "Double", value: 42 }]);
    await eventually(() => rigged.host.health().samples.futureDated === 1, 5_000, "counted");
    expect(rigged.host.latest(tag("a"))?.sample).toMatchObject({ value: 5, quality: { severity: "uncertain" } });
    expect(rigged.issues.find((each) => each.issue === "future-timestamp")).toMatchObject({ tag: tag("a") });
    for (let index = 1; index <= 3; index++)
      await edge.ddata("d", [{ alias: 1, timestamp: now + index, datatype: "Double", value: 100 + index }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 103, 5_000, "real samples live again");
    expect(severity(rigged.host, tag("a"))).toBe("good");
    expect(rigged.host.health().samples.outOfOrder).toBe(0);
    await eventually(async () => (await rigged.db.samples(tag("a"))).some((each) => each.value === 42));
  });

  test("sibling: a future-dated birth value is not shown; the next real DDATA is", async () => {
    const rigged = await rig();
    const edge = await rigged.edge();
    const now = Date.now();
    await edge.nbirth(0);
    await edge.dbirth("d", [double("a", 1, 7, now + TEN_YEARS), double("b", 2, 2, now)]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.value === 2, 5_000, "birth taken");
    expect(rigged.host.latest(tag("a"))).toBeUndefined();
    expect(rigged.host.health().samples.futureDated).toBe(1);
    await edge.ddata("d", [{ alias: 1, timestamp: now + 1, datatype: "Double", value: 8 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 8, 5_000, "real value live");
    expect(severity(rigged.host, tag("a"))).toBe("good");
  });

  test("two values at one timestamp: the live view keeps the first, as the store does; likewise one alias twice in one DDATA", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const t = Date.now();
    await edge.ddata("d", [{ alias: 2, timestamp: t, datatype: "Double", value: 10 }]);
    await edge.ddata("d", [{ alias: 2, timestamp: t, datatype: "Double", value: 20 }]);
    await edge.ddata("d", [
      { alias: 1, timestamp: t, datatype: "Double", value: 1 },
      { alias: 1, timestamp: t, datatype: "Double", value: 2 },
    ]);
    await eventually(() => rigged.host.health().samples.conflicts >= 2, 5_000, "conflicts counted");
    for (const [name, first] of [
      [tag("b"), 10],
      [tag("a"), 1],
    ] as const) {
      const stored = (await rigged.db.samples(name)).filter((each) => each.timestamp === t);
      expect(stored.map((each) => each.value)).toEqual([first]);
      expect(rigged.host.latest(name)?.sample.value).toBe(first);
    }
  });

  test("sibling: a value at the time of the host's own mark (a refused mistyped value) is taken: the store has nothing there", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const t = Date.now();
    await typedDdata(edge, [{ alias: 1, timestamp: t, datatype: "Int32", value: 7 }]);
    await eventually(() => severity(rigged.host, tag("a")) === "bad", 5_000, "marked bad");
    await edge.ddata("d", [{ alias: 1, timestamp: t, datatype: "Double", value: 3 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 3, 5_000, "taken");
    expect(severity(rigged.host, tag("a"))).toBe("good");
  });

  test("an alias and a name that the birth gave to two metrics: refused as an unknown alias, nothing stored", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const t = Date.now();
    await edge.ddata("d", [{ name: "b", alias: 1, timestamp: t, datatype: "Double", value: 999 }]);
    await eventually(() => (rigged.node()?.unknownAliases ?? 0) === 1, 5_000, "refused");
    expect(rigged.node()?.state).toBe("awaiting-rebirth");
    expect(rigged.host.health().samples.discarded).toBe(1);
    for (const name of [tag("a"), tag("b")]) {
      expect(rigged.host.latest(name)?.sample.value).not.toBe(999);
      expect((await rigged.db.samples(name)).some((each) => each.value === 999)).toBe(false);
    }
  });
});

describe("adversarial review 19y: the host's stale marks and every wire time it takes", () => {
  const YEAR = 365 * 86_400_000;
  /** Whether `values` and a mark are all stored: the host's writer has two batches in flight, so they may commit in any order. */
  const stored = async (rigged: Rig, name: string, values: readonly number[]) => {
    const rows = await rigged.db.samples(name);
    return (
      values.every((value) => rows.some((each) => each.value === value)) && rows.some((each) => each.value === null)
    );
  };
  const marksCarryNoValue = async (rigged: Rig, name: string) => {
    const rows = await rigged.db.samples(name);
    const marks = rows.filter((each) => each.quality.severity !== "good");
    expect(marks.length).toBeGreaterThan(0);
    // A mark is where the trust ends: no value on it, so none older than the history before it.
    for (const mark of marks)
      expect(mark).toMatchObject({ value: null, quality: { severity: "bad", code: QualityCodes.BadNoCommunication } });
    return rows;
  };

  test("M1: an NDEATH that came late, then the edge node's replay of what it measured before it: history never shows the old value again at the mark", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const t0 = Date.now() - 5_000;
    await edge.ddata("d", [{ alias: 1, timestamp: t0, datatype: "Double", value: 95 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 95, 5_000, "taken");
    await edge.ndeath(0);
    await eventually(() => rigged.node()?.state === "offline", 5_000, "offline");
    // The live view says stale, with the last value it saw.
    expect(rigged.host.latest(tag("a"))?.sample).toMatchObject({ value: 95, quality: { severity: "uncertain" } });
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 99, t0 + 4), double("b", 2, 2, t0)]);
    for (let index = 1; index <= 3; index++)
      await edge.ddata("d", [
        { alias: 1, timestamp: t0 + index, datatype: "Double", value: 95 + index, isHistorical: true },
      ]);
    await eventually(() => stored(rigged, tag("a"), [98, 99]), 5_000, "replay, birth and mark stored");
    const rows = await marksCarryNoValue(rigged, tag("a"));
    expect(rows.filter((each) => each.quality.severity === "good").map((each) => each.value)).toEqual([
      1, 95, 96, 97, 98, 99,
    ]);
  });

  test("M1 sibling: a seq gap, then a rebirth and the replay of what the gap lost: the mark stored at the distrust carries no value", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const t0 = Date.now() - 5_000;
    await edge.ddata("d", [{ alias: 2, timestamp: t0, datatype: "Double", value: 50 }]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.value === 50, 5_000, "taken");
    edge.seq += 1;
    await edge.ddata("d", [{ alias: 2, timestamp: t0 + 2, datatype: "Double", value: 52 }]);
    await eventually(() => rigged.node()?.state === "awaiting-rebirth", 5_000, "distrusted");
    await edge.nbirth(0);
    await edge.dbirth("d", [double("a", 1, 1, t0), double("b", 2, 53, t0 + 3)]);
    await edge.ddata("d", [{ alias: 2, timestamp: t0 + 1, datatype: "Double", value: 51, isHistorical: true }]);
    await edge.ddata("d", [{ alias: 2, timestamp: t0 + 2, datatype: "Double", value: 52, isHistorical: true }]);
    await eventually(() => stored(rigged, tag("b"), [52, 53]), 5_000, "replay, birth and mark stored");
    await marksCarryNoValue(rigged, tag("b"));
  });

  test("M2: a DDEATH stamped a year ahead marks its device stale at host time, never at the wire's", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    await edge.ddeath("d", Date.now() + YEAR);
    await eventually(() => rigged.node()?.devices[0]?.online === false, 5_000, "device offline");
    const limit = Date.now() + 60_000;
    expect(rigged.host.latest(tag("a"))?.sample.timestamp).toBeLessThan(limit);
    expect(rigged.host.latest(tag("a"))?.sample.quality.reason).toContain("maxClockSkewMs");
    await eventually(async () => (await rigged.db.samples(tag("a"))).length === 2, 5_000, "mark stored");
    for (const row of await rigged.db.samples(tag("a"))) expect(row.timestamp).toBeLessThan(limit);
  });

  test("M2 sibling: a historical value a year ahead goes through the same check: stored as sent, counted and reported", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const at = Date.now() + YEAR;
    await edge.ddata("d", [{ alias: 1, timestamp: at, datatype: "Double", value: 9, isHistorical: true }]);
    await eventually(() => rigged.host.health().samples.historical === 1, 5_000, "taken");
    expect(rigged.host.health().samples.futureDated).toBe(1);
    expect(rigged.issues.find((each) => each.issue === "future-timestamp")).toMatchObject({ tag: tag("a") });
    expect(rigged.host.latest(tag("a"))?.sample.value).toBe(1);
  });

  test("M3: a refused mistyped value stamped a year ahead does not hold the live view there: the next real value goes live", async () => {
    const rigged = await rig();
    const edge = await born(rigged);
    const t = Date.now();
    await typedDdata(edge, [{ alias: 1, timestamp: t + YEAR, datatype: "Int32", value: 7 }]);
    await eventually(() => severity(rigged.host, tag("a")) === "bad", 5_000, "marked bad");
    expect(rigged.host.latest(tag("a"))?.sample.timestamp).toBeLessThan(Date.now() + 60_000);
    await edge.ddata("d", [{ alias: 1, timestamp: t + 1, datatype: "Double", value: 3 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 3, 5_000, "real value live");
    expect(severity(rigged.host, tag("a"))).toBe("good");
    expect(rigged.host.health().samples.outOfOrder).toBe(0);
  });

  test("M3 sibling: the same for a mistyped value past a tight maxClockSkewMs (30 s ahead with maxClockSkewMs 1000)", async () => {
    const rigged = await rig({ maxClockSkewMs: 1_000 });
    const edge = await born(rigged);
    const t = Date.now();
    await typedDdata(edge, [{ alias: 2, timestamp: t + 30_000, datatype: "Int32", value: 7 }]);
    await eventually(() => severity(rigged.host, tag("b")) === "bad", 5_000, "marked bad");
    await edge.ddata("d", [{ alias: 2, timestamp: t + 1, datatype: "Double", value: 4 }]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.value === 4, 5_000, "real value live");
    expect(severity(rigged.host, tag("b"))).toBe("good");
  });
});

describe("adversarial review 19y, L2: a birth refused at every rebirth is named as such, not as a duplicate edge node id", () => {
  async function refusedEveryRebirth(rigged: Rig, dbirth: (edge: RawEdgeNode, round: number) => Promise<void>) {
    const edge = await rigged.edge();
    for (let round = 0; round < 3; round++) {
      await edge.nbirth(0);
      await eventually(() => rigged.node()?.births === round + 1, 5_000, `NBIRTH ${round}`);
      await dbirth(edge, round);
      await eventually(() => rigged.node()?.birthsRefused === round + 1, 5_000, `DBIRTH ${round} refused`);
    }
    const problems = rigged.host.health().problems.join("\n");
    expect(problems).not.toMatch(/duplicate edge node id/);
    return problems;
  }

  test("a DBIRTH over maxPayloadBytes, sent again at every rebirth", async () => {
    const rigged = await rig({ maxPayloadBytes: 2_000 });
    const problems = await refusedEveryRebirth(rigged, (edge) =>
      edge.dbirth(
        "d",
        Array.from({ length: 100 }, (_, index) => double(`m${index}`, index + 1, index, Date.now())),
      ),
    );
    expect(problems).toMatch(/loses trust at every birth: 3 of its births refused.*over maxPayloadBytes \(2000\)/);
    expect(problems).toContain("the host's maxPayloadBytes must exceed the edge node's largest birth");
  });

  test("sibling: a DBIRTH giving one name twice, sent again at every rebirth", async () => {
    const rigged = await rig();
    const problems = await refusedEveryRebirth(rigged, (edge, round) =>
      edge.dbirth("d", [double("t", 1, round, Date.now()), double("t", 2, round, Date.now())]),
    );
    expect(problems).toMatch(/loses trust at every birth.*metric name "t" given twice/);
  });
});

describe("adversarial review 19z: the stored stale mark is in the edge node's clock, right after the last value the host received", () => {
  const marks = <T extends { quality: { severity: string } }>(rows: readonly T[]) =>
    rows.filter((each) => each.quality.severity === "bad");

  /** Born with device values at `at`, one DDATA `a` = 95 at `at + 5`, then NDEATH: the node is offline. */
  async function lost(rigged: Rig, at: number): Promise<RawEdgeNode> {
    const edge = await born(rigged, at);
    await edge.ddata("d", [{ alias: 1, timestamp: at + 5, datatype: "Double", value: 95 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 95, 5_000, "taken");
    await edge.ndeath(0);
    await eventually(() => rigged.node()?.state === "offline", 5_000, "offline");
    return edge;
  }

  test("H1: an edge clock 2 s ahead of the host's: the NDEATH's mark is stored right after the last value, so history reads no communication through the outage", async () => {
    const rigged = await rig();
    const at = Date.now() + 2_000;
    const edge = await lost(rigged, at);
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 99, at + 3_000), double("b", 2, 2, at + 3_000)]);
    await eventually(
      // Both rows: the writer has two batches in flight, the mark's may commit after the birth's.
      async () => {
        const rows = await rigged.db.samples(tag("a"));
        return rows.some((each) => each.value === 99) && rows.some((each) => each.value === null);
      },
      5_000,
      "reborn, and the mark stored",
    );
    const rows = await rigged.db.samples(tag("a"));
    expect(rows.map((each) => each.value)).toEqual([1, 95, null, 99]);
    expect(rows[2]).toMatchObject({ value: null, quality: { code: QualityCodes.BadNoCommunication } });
    expect(rows[2]!.timestamp).toBeCloseTo(at + 5.001, 6);
    // Inside the outage, history no longer reads the last value as good.
    const [inside] = await rigged.db.store.history.valueAt([tag("a")], at + 1_000);
    expect(inside?.quality.severity).not.toBe("good");
  });

  test("M1: an edge clock 3 s behind the host's: the mark lands before the reborn session's data, whose newest row is good", async () => {
    const rigged = await rig();
    const at = Date.now() - 3_000;
    const edge = await lost(rigged, at);
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 99, at + 100), double("b", 2, 2, at + 100)]);
    await eventually(
      // Both rows: the writer has two batches in flight, the mark's may commit after the birth's.
      async () => {
        const rows = await rigged.db.samples(tag("a"));
        return rows.some((each) => each.value === 99) && rows.some((each) => each.value === null);
      },
      5_000,
      "reborn, and the mark stored",
    );
    const rows = await rigged.db.samples(tag("a"));
    expect(rows.map((each) => each.value)).toEqual([1, 95, null, 99]);
    expect(rows.at(-1)?.quality.severity).toBe("good");
  });

  test("H1 sibling: a DDEATH stamped the very ms of the last value still stores its mark, 1 µs after it", async () => {
    const rigged = await rig();
    const at = Date.now() - 1_000;
    const edge = await born(rigged, at);
    await edge.ddata("d", [{ alias: 1, timestamp: at + 5, datatype: "Double", value: 95 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 95, 5_000, "taken");
    await edge.ddeath("d", at + 5);
    await eventually(() => rigged.node()?.devices[0]?.online === false, 5_000, "device offline");
    await eventually(async () => marks(await rigged.db.samples(tag("a"))).length === 1, 5_000, "mark stored");
    expect(marks(await rigged.db.samples(tag("a")))[0]!.timestamp).toBeCloseTo(at + 5.001, 6);
  });

  /** A host behind a tap; node born, `a` = 10 at `at`; then the host's own link is cut and comes back (node awaiting a rebirth). */
  async function hostLinkLost(at: number): Promise<{ rigged: Rig; edge: RawEdgeNode }> {
    const tap = await startMqttTap(broker.port);
    cleanups.push(() => tap.close());
    const rigged = await rig({ brokerUrl: tap.url, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    const edge = await born(rigged, at);
    await edge.ddata("d", [{ alias: 1, timestamp: at + 10, datatype: "Double", value: 10 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 10, 5_000, "taken");
    tap.cut();
    await eventually(() => rigged.host.health().link !== "connected", 5_000, "link lost");
    await eventually(
      () => rigged.host.health().link === "connected" && rigged.node()?.state === "awaiting-rebirth",
      10_000,
      "host back",
    );
    return { rigged, edge };
  }

  test("H2: the host's own link loss stores its mark right after the last value; the NDEATH that follows (values already stale) adds none", async () => {
    const at = Date.now() - 2_000;
    const { rigged, edge } = await hostLinkLost(at);
    await edge.ndeath(0);
    await eventually(() => rigged.node()?.state === "offline", 5_000, "offline");
    await eventually(async () => marks(await rigged.db.samples(tag("a"))).length > 0, 5_000, "mark stored");
    const rows = await rigged.db.samples(tag("a"));
    expect(rows.map((each) => each.value)).toEqual([1, 10, null]);
    expect(rows[2]!.timestamp).toBeCloseTo(at + 10.001, 6);
    expect(rows[2]!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadNoCommunication });
  });

  test("H2 sibling: after the host's link loss, the rebirth and the replay of what the host missed land after the mark", async () => {
    const at = Date.now() - 2_000;
    const { rigged, edge } = await hostLinkLost(at);
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 40, at + 500), double("b", 2, 2, at + 500)]);
    await edge.ddata("d", [{ alias: 1, timestamp: at + 200, datatype: "Double", value: 20, isHistorical: true }]);
    await eventually(
      // All five rows: the birth (40) and the replay (20) may commit in either order.
      async () => (await rigged.db.samples(tag("a"))).length >= 5,
      5_000,
      "the rebirth and the replay stored",
    );
    expect((await rigged.db.samples(tag("a"))).map((each) => each.value)).toEqual([1, 10, null, 20, 40]);
  });
});

describe("adversarial review 19z (second pass): one mark per value received, by arrival; a birth after a mark restores trust in history", () => {
  const marks = <T extends { quality: { severity: string } }>(rows: readonly T[]) =>
    rows.filter((each) => each.quality.severity === "bad");
  const byTime = <T extends { timestamp: number }>(rows: readonly T[]) =>
    [...rows].sort((a, b) => a.timestamp - b.timestamp);

  /** Born with device values at `at`, `a` = 95 at `at + 5`, then NDEATH: one mark per metric stored. */
  async function lost(rigged: Rig, at: number): Promise<RawEdgeNode> {
    const edge = await born(rigged, at);
    await edge.ddata("d", [{ alias: 1, timestamp: at + 5, datatype: "Double", value: 95 }]);
    await eventually(() => rigged.host.latest(tag("a"))?.sample.value === 95, 5_000, "taken");
    await edge.ndeath(0);
    await eventually(() => rigged.node()?.state === "offline", 5_000, "offline");
    await eventually(async () => marks(await rigged.db.samples(tag("a"))).length === 1, 5_000, "first mark");
    return edge;
  }

  test("H1: the edge clock steps back 3 s: values older than the mark still get a mark at the next loss of trust, after every stored row", async () => {
    const rigged = await rig();
    const at = Date.now() - 1_000;
    const edge = await lost(rigged, at);
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 99, at - 3_000), double("b", 2, 2, at - 3_000)]);
    await edge.ddata("d", [{ alias: 1, timestamp: at - 2_000, datatype: "Double", value: 98 }]);
    await eventually(
      async () => (await rigged.db.samples(tag("a"))).some((each) => each.value === 98),
      5_000,
      "second session stored",
    );
    await edge.ndeath(1);
    // Two marks for the second loss (amendment 19u): after the newest row, and right after the
    // last value received (98, older than the newest row).
    await eventually(async () => marks(await rigged.db.samples(tag("a"))).length === 3, 5_000, "second marks");
    const rows = byTime(await rigged.db.samples(tag("a")));
    // The newest row is the second mark: history never reads the last value good past the second outage.
    expect(rows.at(-1)).toMatchObject({ value: null, quality: { code: QualityCodes.BadNoCommunication } });
    const [first, , second] = byTime(marks(rows));
    expect(second!.timestamp).toBeGreaterThan(first!.timestamp);
    const after98 = rows[rows.findIndex((each) => each.value === 98) + 1];
    expect(after98).toMatchObject({ value: null, quality: { code: QualityCodes.BadNoCommunication } });
    expect((await rigged.db.store.history.valueAt([tag("a")], at + 60_000))[0]?.quality.severity).not.toBe("good");
  });

  test("H1 sibling: a metric whose only new value since the mark is older than the mark: its next mark still sorts after the mark, never on or before it", async () => {
    const rigged = await rig();
    const at = Date.now() - 1_000;
    const edge = await lost(rigged, at);
    await edge.nbirth(1);
    // `b` = 2 again, measured 3 s before the mark in a clock that stepped back.
    await edge.dbirth("d", [double("a", 1, 99, at + 50), double("b", 2, 2, at - 3_000)]);
    await eventually(() => rigged.host.latest(tag("b"))?.sample.quality.severity === "good", 5_000, "reborn");
    await edge.ndeath(1);
    await eventually(async () => marks(await rigged.db.samples(tag("b"))).length === 2, 5_000, "second mark of b");
    const rows = byTime(await rigged.db.samples(tag("b")));
    expect(rows.map((each) => each.value)).toEqual([2, null, 2, null]);
    expect(rows[1]!.timestamp).toBeCloseTo(at + 0.001, 6);
    expect(rows[2]!.timestamp).toBeCloseTo(at + 0.002, 6);
    expect(rows[3]!.timestamp).toBeCloseTo(at + 0.003, 6);
    // `a`'s second session was newer than its mark: stored at its own time, its mark 1 µs later.
    const a = byTime(await rigged.db.samples(tag("a")));
    expect(a.map((each) => each.value)).toEqual([1, 95, null, 99, null]);
    expect(a[3]).toMatchObject({ timestamp: at + 50, quality: { severity: "good" } });
    expect(a[3]!.quality.reason).toBeUndefined();
  });

  test("M1: a rebirth with unchanged values (the CVT sample's own time, before the mark) restates them after the mark: history reads good in the new session; a second NDEATH stores a second mark", async () => {
    const rigged = await rig();
    const at = Date.now() - 1_000;
    const edge = await born(rigged, at);
    await edge.ndeath(0);
    await eventually(() => rigged.node()?.state === "offline", 5_000, "offline");
    await eventually(async () => marks(await rigged.db.samples(tag("a"))).length === 1, 5_000, "first mark");
    await edge.nbirth(1);
    await edge.dbirth("d", [double("a", 1, 1, at), double("b", 2, 2, at)]);
    await eventually(async () => (await rigged.db.samples(tag("a"))).length === 3, 5_000, "restated");
    const rows = byTime(await rigged.db.samples(tag("a")));
    expect(rows.map((each) => each.value)).toEqual([1, null, 1]);
    expect(rows[2]!.timestamp).toBeCloseTo(at + 0.002, 6);
    expect(rows[2]!.quality).toMatchObject({ severity: "good", code: QualityCodes.Good });
    expect(rows[2]!.quality.reason).toMatch(/restated by a birth after a loss of trust .*measured at/);
    // History's newest row is good again while the node is online (no longer the mark).
    expect(rows.at(-1)?.quality.severity).toBe("good");
    // The live view keeps the edge node's own time.
    expect(rigged.host.latest(tag("a"))?.sample).toMatchObject({ timestamp: at, quality: { severity: "good" } });
    await edge.ndeath(1);
    await eventually(async () => marks(await rigged.db.samples(tag("a"))).length === 2, 5_000, "second mark");
    const after = byTime(await rigged.db.samples(tag("a")));
    expect(after.map((each) => each.value)).toEqual([1, null, 1, null]);
    expect(rigged.host.health().samples.conflicts).toBe(0);
  });

  test("M1 sibling: a rebirth that restores no trust lost (node metrics, NBIRTH again without NDEATH) restates nothing: the same row is a re-delivery, stored once", async () => {
    const rigged = await rig();
    const at = Date.now() - 1_000;
    const edge = await rigged.edge();
    await edge.nbirth(0, [double("m", 9, 5, at)]);
    await eventually(() => rigged.host.latest(nodeTag("m"))?.sample.quality.severity === "good", 5_000, "born");
    await edge.nbirth(0, [double("m", 9, 5, at)]);
    await edge.ndata([{ alias: 9, timestamp: at + 7, datatype: "Double", value: 7 }]);
    await eventually(
      async () => (await rigged.db.samples(nodeTag("m"))).some((each) => each.value === 7),
      5_000,
      "data",
    );
    const rows = byTime(await rigged.db.samples(nodeTag("m")));
    expect(rows.map((each) => [each.timestamp, each.value, each.quality.reason])).toEqual([
      [at, 5, undefined],
      [at + 7, 7, undefined],
    ]);
  });
});
