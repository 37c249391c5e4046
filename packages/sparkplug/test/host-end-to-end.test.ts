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
