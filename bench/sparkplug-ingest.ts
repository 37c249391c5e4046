import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import { GOOD, type Sample } from "@kiln/core";
import {
  SparkplugHost,
  decodePayload,
  encodePayload,
  qualifiedTagName,
  sparkplugTopic,
  type SparkplugMetric,
} from "@kiln/sparkplug";
import { startTestBroker, type TestBroker } from "@kiln/sparkplug/testing";
import { PostgresStore } from "@kiln/store-postgres";
import mqtt from "mqtt";
import pg from "pg";
import { machine, round } from "./harness";

/**
 * Sparkplug host ingest: one edge node (a raw MQTT.js client in this process) publishes
 * pre-encoded DDATA (1,000 Double metrics by alias per message, 300 messages: 300,000 metrics)
 * through a real broker (the test's own mosquitto, else embedded aedes) to a `SparkplugHost`
 * that writes every metric into `PostgresStore`. Timed from the first DDATA to the last sample
 * committed. Baseline, in the same run on a fresh schema: a raw MQTT.js subscriber that decodes
 * each message with the same codec and calls `store.samples.writeBatch` directly with batches of
 * 5,000, two in flight (no seq/alias checks, no live view, no bounds). Two alternating rounds,
 * best of each side; `lost` sums both host rounds. Target: ≥ 100,000 metrics/s on the
 * PostgreSQL server.
 *
 * Needs `DATABASE_URL` for the server figure; without it the record is measured on PGlite.
 */
export async function run(): Promise<Record<string, unknown>> {
  const url = process.env.DATABASE_URL || undefined;
  const broker = await startTestBroker();
  try {
    // Alternating rounds, best of each side: the machine's other work moves both the same way.
    const kiln = { rate: 0, lost: 0 };
    const baseline = { rate: 0, lost: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const host = await measure(broker, url, "host");
      kiln.rate = Math.max(kiln.rate, host.rate);
      kiln.lost += host.lost;
      baseline.rate = Math.max(baseline.rate, (await measure(broker, url, "raw")).rate);
    }
    return {
      name: "sparkplug-ingest",
      unit: "metrics/s",
      store: url === undefined ? "pglite" : "postgresql",
      broker: broker.kind,
      metrics: MESSAGES * METRICS,
      kiln: round(kiln.rate, 0),
      baseline: round(baseline.rate, 0),
      ratio: round(kiln.rate / baseline.rate, 2),
      target: 100_000,
      lost: kiln.lost,
      machine: machine(),
    };
  } finally {
    await broker.stop();
  }
}

const GROUP = "bench";
const NODE = "edge-1";
const DEVICE = "machine-1";
const METRICS = 1_000;
const MESSAGES = 300;
const START = Date.UTC(2026, 0, 1);
const ROUNDS = 2;

function births(): { nbirth: Uint8Array; dbirth: Uint8Array } {
  const now = Date.now();
  const metrics: SparkplugMetric[] = Array.from({ length: METRICS }, (_unused, index) => ({
    name: `sensor${String(index).padStart(4, "0")}`,
    alias: index + 1,
    timestamp: START - 1,
    datatype: "Double",
    value: 0,
    properties: { Quality: { type: "Int32", value: 192 } },
  }));
  return {
    nbirth: encodePayload({
      timestamp: now,
      seq: 0,
      metrics: [
        { name: "bdSeq", datatype: "Int64", value: 0, timestamp: now },
        { name: "Node Control/Rebirth", datatype: "Boolean", value: false, timestamp: now },
      ],
    }),
    dbirth: encodePayload({ timestamp: now, seq: 1, metrics }),
  };
}

function data(): Uint8Array[] {
  return Array.from({ length: MESSAGES }, (_unused, message) =>
    encodePayload(
      {
        timestamp: START + message * 1_000,
        seq: (message + 2) % 256,
        metrics: Array.from({ length: METRICS }, (_unused2, index) => ({
          alias: index + 1,
          timestamp: START + message * 1_000,
          datatype: "Double" as const,
          value: Math.sin(message / 10 + index) * 100,
        })),
      },
      { omitDatatype: true },
    ),
  );
}

async function openStore(url: string | undefined): Promise<{ store: PostgresStore; close(): Promise<void> }> {
  const schema = `kiln_bench_sp_${process.pid}_${randomBytes(3).toString("hex")}`;
  if (url !== undefined) {
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    const store = new PostgresStore({ pool, schema });
    await store.open([]);
    return {
      store,
      close: async () => {
        await store.close();
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await pool.end();
      },
    };
  }
  const pglite = await PGlite.create();
  const store = new PostgresStore({ pglite, schema });
  await store.open([]);
  return {
    store,
    close: async () => {
      await store.close();
      await pglite.close();
    },
  };
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not done within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function measure(
  broker: TestBroker,
  url: string | undefined,
  side: "host" | "raw",
): Promise<{ rate: number; lost: number }> {
  const { store, close } = await openStore(url);
  const { nbirth, dbirth } = births();
  const messages = data();
  const total = MESSAGES * METRICS;
  let consumer: { stored(): number; stop(): Promise<void>; lost(): number };
  if (side === "host") {
    const host = new SparkplugHost({ brokerUrl: broker.url, hostId: "bench-host", groups: [GROUP], store });
    await host.start();
    await host.whenConnected();
    const birthSamples = 2 + METRICS;
    consumer = {
      stored: () => host.health().samples.stored - birthSamples,
      lost: () => {
        const { samples } = host.health();
        return samples.dropped + samples.discarded + samples.conflicts;
      },
      stop: () => host.stop(),
    };
  } else {
    const client = await mqtt.connectAsync(broker.url, { clean: true });
    const tags = Array.from({ length: METRICS }, (_unused, index) =>
      qualifiedTagName({
        groupId: GROUP,
        edgeNodeId: NODE,
        deviceId: DEVICE,
        metric: `sensor${String(index).padStart(4, "0")}`,
      }),
    );
    let stored = 0;
    let pending: Sample[] = [];
    let inFlight = 0;
    const ready: Sample[][] = [];
    const pump = (): void => {
      while (inFlight < 2 && ready.length > 0) {
        const batch = ready.shift()!;
        inFlight++;
        void store.samples.writeBatch(batch).then(() => {
          inFlight--;
          stored += batch.length;
          pump();
        });
      }
    };
    client.on("message", (topic, bytes) => {
      if (!topic.includes("/DDATA/")) return;
      const payload = decodePayload(bytes, { datatypeOf: () => "Double" });
      for (const metric of payload.metrics) {
        pending.push({
          tag: tags[Number(metric.alias) - 1]!,
          value: metric.value as number,
          timestamp: metric.timestamp!,
          quality: GOOD,
        });
        if (pending.length === 5_000) {
          ready.push(pending);
          pending = [];
        }
      }
      if (pending.length > 0 && stored + inFlight * 5_000 + ready.length * 5_000 + pending.length >= total) {
        ready.push(pending);
        pending = [];
      }
      pump();
    });
    await client.subscribeAsync(`spBv1.0/${GROUP}/#`, { qos: 1 });
    consumer = { stored: () => stored, lost: () => 0, stop: () => client.endAsync() };
  }
  const edge = await mqtt.connectAsync(broker.url, { clean: true });
  await edge.publishAsync(sparkplugTopic({ type: "NBIRTH", groupId: GROUP, edgeNodeId: NODE }), Buffer.from(nbirth));
  await edge.publishAsync(
    sparkplugTopic({ type: "DBIRTH", groupId: GROUP, edgeNodeId: NODE, deviceId: DEVICE }),
    Buffer.from(dbirth),
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  const topic = sparkplugTopic({ type: "DDATA", groupId: GROUP, edgeNodeId: NODE, deviceId: DEVICE });
  const started = performance.now();
  for (const message of messages) edge.publish(topic, Buffer.from(message), { qos: 0 });
  await until(() => consumer.stored() + consumer.lost() >= total, 120_000);
  const elapsed = (performance.now() - started) / 1_000;
  const lost = consumer.lost();
  await edge.endAsync();
  await consumer.stop();
  await close();
  return { rate: total / elapsed, lost };
}
