import { afterEach, describe, expect, test } from "vitest";
import { SparkplugHost } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import { DEVICE, EDGE, GROUP, edgeFixture, type EdgeFixture } from "./support/edge-fixture";
import { eventually, openTestDatabase, type TestDatabase } from "./support/host-harness";

const HOST_ID = "kiln-central";
const PRESSURE = qualifiedTagName({ groupId: GROUP, edgeNodeId: EDGE, deviceId: DEVICE, metric: "chamber.pressure" });
const COUNTER = qualifiedTagName({ groupId: GROUP, edgeNodeId: EDGE, deviceId: DEVICE, metric: "counter.total" });

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

describe("edge node → broker → host → PostgreSQL", () => {
  test("every DDATA sample of a Kiln edge node is stored once by the host, with its value, timestamp and quality; bad quality stays bad; after a host restart the edge node is born again to the new host", async () => {
    const fixture: EdgeFixture = await edgeFixture({ primaryHostId: HOST_ID });
    cleanups.push(() => fixture.close());
    const db: TestDatabase = await openTestDatabase();
    cleanups.push(() => db.close());
    const host = new SparkplugHost({
      brokerUrl: fixture.broker.url,
      hostId: HOST_ID,
      groups: [GROUP],
      store: db.store,
      rebirthIntervalMs: 0,
      batching: { maxDelayMs: 5 },
    });
    cleanups.push(() => host.stop());
    await host.start();
    // The edge node waits for this host's STATE online before its births.
    await fixture.node.start();
    await eventually(() => host.latest(PRESSURE), 10_000, "the births reach the host");
    expect(host.health().edgeNodes).toMatchObject([
      { groupId: GROUP, edgeNodeId: EDGE, state: "online", devices: [{ deviceId: DEVICE, online: true }] },
    ]);
    // A uint64 beyond 2^53 keeps its exact value.
    expect(host.latest(COUNTER)?.sample.value).toBe(2n ** 60n);

    await new Promise((resolve) => setTimeout(resolve, 400));
    fixture.plc.faults.badQuality.add("chamber.pressure");
    await eventually(
      () => host.latest(PRESSURE)?.sample.quality.severity === "bad",
      5_000,
      "bad quality reaches the live view",
    );
    fixture.plc.faults.badQuality.delete("chamber.pressure");
    await eventually(() => host.latest(PRESSURE)?.sample.quality.severity === "good", 5_000, "good again");

    // The host restarts: the edge node sees its STATE go offline and online again, and is born again to the new host.
    await host.stop();
    const second = new SparkplugHost({
      brokerUrl: fixture.broker.url,
      hostId: HOST_ID,
      groups: [GROUP],
      store: db.store,
      batching: { maxDelayMs: 5 },
    });
    cleanups.push(() => second.stop());
    await second.start();
    await eventually(() => second.health().edgeNodes[0]?.state === "online", 10_000, "births to the restarted host");
    const afterRestart = second.health().samples.stored;
    await eventually(() => second.health().samples.stored > afterRestart + 2, 5_000, "data after the restart");
    await fixture.node.stop();
    await eventually(() => second.health().edgeNodes[0]?.state === "offline", 5_000, "NDEATH on the node's stop");
    await second.stop();

    // Every pressure sample the edge node published in DDATA is in the store, once, as sent.
    const published = new Map<number, unknown>();
    const pressureAlias = fixture.node.aliases.get("chamber.pressure")!;
    for (const message of fixture.recorder.messages) {
      if (message.parsed?.type !== "DDATA") continue;
      for (const metric of message.payload?.metrics ?? []) {
        if (Number(metric.alias) === pressureAlias) published.set(metric.timestamp!, metric.value);
      }
    }
    expect(published.size).toBeGreaterThan(5);
    const stored = await db.samples(PRESSURE);
    const byTime = new Map(stored.map((sample) => [sample.timestamp, sample]));
    expect(stored.length).toBe(byTime.size);
    for (const [timestamp, value] of published) expect(byTime.get(timestamp)?.value).toBe(value);
    const bad = stored.filter((sample) => sample.quality.severity === "bad");
    expect(bad.length).toBeGreaterThan(0);
    expect(bad.every((sample) => sample.quality.code >= 0x80000000)).toBe(true);
    for (const each of [host, second]) {
      const { samples } = each.health();
      expect(samples.dropped + samples.conflicts + samples.discarded).toBe(0);
    }
  });
});

describe("edge node reconnect with unchanged values (adversarial review 19z, second pass, M1)", () => {
  const marks = <T extends { quality: { severity: string } }>(rows: readonly T[]) =>
    rows.filter((row) => row.quality.severity === "bad");
  const byTime = <T extends { timestamp: number }>(rows: readonly T[]) =>
    [...rows].sort((a, b) => a.timestamp - b.timestamp);

  test("a Kiln edge node's link drops and comes back with a tag unchanged: the host's history reads the value good after the rebirth, and the next outage stores a second mark", async () => {
    const fixture: EdgeFixture = await edgeFixture({ primaryHostId: HOST_ID });
    cleanups.push(() => fixture.close());
    const db: TestDatabase = await openTestDatabase();
    cleanups.push(() => db.close());
    const host = new SparkplugHost({
      brokerUrl: fixture.broker.url,
      hostId: HOST_ID,
      groups: [GROUP],
      store: db.store,
      rebirthIntervalMs: 0,
      batching: { maxDelayMs: 5 },
    });
    cleanups.push(() => host.stop());
    await host.start();
    await fixture.node.start();
    // counter.total is constant.
    await eventually(() => host.latest(COUNTER)?.sample.quality.severity === "good", 10_000, "born");
    const births = () => fixture.recorder.messages.filter((message) => message.parsed?.type === "NBIRTH").length;
    const before = births();
    fixture.tap.cut(); // no DISCONNECT: the broker publishes the node's NDEATH (its Will)
    await eventually(async () => marks(await db.samples(COUNTER)).length === 1, 10_000, "the outage's mark");
    await eventually(() => births() > before && host.health().edgeNodes[0]?.state === "online", 20_000, "reborn");
    await eventually(async () => (await db.samples(COUNTER)).length >= 3, 15_000, "the birth's value");
    const rows = byTime(await db.samples(COUNTER));
    expect(rows.map((row) => row.value)).toEqual([2n ** 60n, null, 2n ** 60n]);
    // History reads the value good again while the node is online: the newest row is the birth's
    // value, after the mark — at its own time when it is later, else restated (ADR 0043).
    expect(rows[2]!.quality.severity).toBe("good");
    expect(rows[2]!.timestamp).toBeGreaterThan(rows[1]!.timestamp);
    if (rows[2]!.timestamp < rows[1]!.timestamp + 0.01)
      expect(rows[2]!.quality.reason).toMatch(/restated by a birth after a loss of trust/);
    else expect(rows[2]!.timestamp).toBe(host.latest(COUNTER)?.sample.timestamp);

    await fixture.node.stop();
    await eventually(() => host.health().edgeNodes[0]?.state === "offline", 5_000, "NDEATH on stop");
    await eventually(async () => marks(await db.samples(COUNTER)).length === 2, 5_000, "the second outage's mark");
    expect(byTime(await db.samples(COUNTER)).at(-1)).toMatchObject({ value: null, quality: { severity: "bad" } });
    expect(host.health().samples.conflicts).toBe(0);
  }, 90_000);
});
