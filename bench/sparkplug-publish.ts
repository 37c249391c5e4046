import { SimulatedPlc, createControlSystem, defineTags, GOOD, type ControlSystem, type Sample } from "@kiln/core";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SparkplugEdgeNode, encodeHostState, encodePayload, sparkplugTopic } from "@kiln/sparkplug";
import { startTestBroker, type TestBroker } from "@kiln/sparkplug/testing";
import mqtt, { type MqttClient } from "mqtt";
import { machine, round } from "./harness";

/**
 * Sparkplug edge node publish: CVT changes of 100 float64 tags, all changing together, 2,000
 * times (200,000 metrics), each change set published by a `SparkplugEdgeNode` as one DDATA (by
 * alias, with timestamps; QoS 0) through a real broker (the run's own mosquitto, else embedded
 * aedes). Timed from the first CVT update to the last DDATA received by a subscriber in this
 * process. Baseline, in the same run: a raw MQTT.js client publishing the same DDATA, encoded
 * beforehand, to the same subscriber. Alternating rounds, best of each side. Target: ratio ≥ 0.8.
 * `cvtOnly` is the rate of the same CVT updates with no edge node (the control system's share).
 *
 * With `KILN_BENCH_AWAIT_ACKS=1` the edge node runs with `awaitHostAcks` (ADR 0037): a primary
 * host (a retained STATE online, no host acknowledging), store-and-forward on a journal file in a
 * temporary folder, every DDATA's samples appended to it; timed until the subscriber has every
 * DDATA and the journal every record.
 */
export async function run(): Promise<Record<string, unknown>> {
  const broker = await startTestBroker();
  if (AWAIT_ACKS) {
    const client = await mqtt.connectAsync(broker.url, { clean: true });
    await client.publishAsync(
      `spBv1.0/STATE/${HOST}`,
      Buffer.from(encodeHostState({ online: true, timestamp: Date.now() })),
      { qos: 1, retain: true },
    );
    await client.endAsync();
  }
  try {
    const kiln = { rate: 0 };
    const baseline = { rate: 0 };
    let lost = 0;
    let cvtOnly = 0;
    for (let index = 0; index < ROUNDS; index++) {
      cvtOnly = Math.max(cvtOnly, await measureCvtOnly(index));
      const node = await measureNode(broker, index);
      kiln.rate = Math.max(kiln.rate, node.rate);
      lost += node.lost;
      baseline.rate = Math.max(baseline.rate, await measureRaw(broker, index));
    }
    return {
      name: "sparkplug-publish",
      unit: "metrics/s",
      awaitHostAcks: AWAIT_ACKS,
      broker: broker.kind,
      tags: TAGS,
      changes: CHANGES,
      metrics: TAGS * CHANGES,
      kiln: round(kiln.rate, 0),
      baseline: round(baseline.rate, 0),
      ratio: round(kiln.rate / baseline.rate, 2),
      target: 0.8,
      // The same CVT updates with no edge node: the control system's own share (CVT, logging,
      // alarms), a ceiling for the edge node's figure.
      cvtOnly: round(cvtOnly, 0),
      lost,
      machine: machine(),
    };
  } finally {
    await broker.stop();
  }
}

const GROUP = "bench";
const NODE = "edge-1";
const DEVICE = "machine-1";
const TAGS = 100;
const CHANGES = 2_000;
const ROUNDS = 3;
const AWAIT_ACKS = process.env.KILN_BENCH_AWAIT_ACKS === "1";
const HOST = "bench-host";
const NAMES = Array.from({ length: TAGS }, (_unused, index) => `sensor.s${String(index).padStart(3, "0")}`);

function valueOf(change: number, tag: number): number {
  return Math.sin(change / 10 + tag) * 100 + change;
}

/** A subscriber counting DDATA messages of the bench device. */
async function subscriber(broker: TestBroker): Promise<{ client: MqttClient; received(): number; births(): number }> {
  const client = await mqtt.connectAsync(broker.url, { clean: true });
  let received = 0;
  let births = 0;
  client.on("message", (topic) => {
    if (topic.includes("/DDATA/")) received++;
    else if (topic.includes("/DBIRTH/")) births++;
  });
  await client.subscribeAsync(`spBv1.0/${GROUP}/#`, { qos: 0 });
  return { client, received: () => received, births: () => births };
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not done within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function system(): Promise<ControlSystem> {
  const tags = defineTags(
    Object.fromEntries(NAMES.map((name) => [name, { dataType: "float64" as const, scanGroup: "idle" }])),
  );
  const plc = new SimulatedPlc({ tags });
  // The scan is idle: the bench drives the CVT itself, as a driver's subscription would.
  const kiln = createControlSystem({
    machineId: DEVICE,
    tags,
    driver: plc,
    scanGroups: { idle: { periodMs: 3_600_000 } },
  });
  await kiln.start();
  await kiln.ready();
  return kiln;
}

function changeSet(change: number, base: number): Sample[] {
  return NAMES.map((tag, index) => ({ tag, value: valueOf(change, index), timestamp: base + change, quality: GOOD }));
}

async function measureCvtOnly(roundIndex: number): Promise<number> {
  const kiln = await system();
  const base = Date.now() + 1_000 + roundIndex * CHANGES * 10;
  const started = performance.now();
  for (let change = 0; change < CHANGES; change++) {
    kiln.unchecked.cvt.update(changeSet(change, base));
    await Promise.resolve();
  }
  const elapsed = (performance.now() - started) / 1_000;
  await kiln.stop();
  return (TAGS * CHANGES) / elapsed;
}

async function measureNode(broker: TestBroker, roundIndex: number): Promise<{ rate: number; lost: number }> {
  const kiln = await system();
  const sub = await subscriber(broker);
  const folder = AWAIT_ACKS ? await mkdtemp(join(tmpdir(), "kiln-bench-acks-")) : undefined;
  const node = new SparkplugEdgeNode({
    system: kiln,
    brokerUrl: broker.url,
    groupId: GROUP,
    edgeNodeId: NODE,
    principal: { id: "bench", roles: ["viewer"] },
    ...(folder === undefined
      ? {}
      : { primaryHostId: HOST, awaitHostAcks: true, storeAndForward: { path: join(folder, "forward.journal") } }),
  });
  await node.start();
  await until(() => sub.births() > 0, 10_000);
  const before = node.health().published.dataMessages;
  const base = Date.now() + 1_000 + roundIndex * CHANGES * 10;
  const started = performance.now();
  for (let change = 0; change < CHANGES; change++) {
    kiln.unchecked.cvt.update(changeSet(change, base));
    // The node flushes on a microtask: one DDATA per change set.
    await Promise.resolve();
  }
  const messages = node.health().published.dataMessages - before;
  await until(() => sub.received() >= messages, 60_000);
  // Every published sample in the journal too (nothing waiting to be appended).
  if (AWAIT_ACKS)
    await until(() => {
      const forward = node.health().storeAndForward!;
      return forward.samplesStored > 0 && forward.samplesStored === forward.acknowledgement!.unacknowledgedSamples;
    }, 120_000);
  const elapsed = (performance.now() - started) / 1_000;
  await node.stop();
  if (folder !== undefined) await rm(folder, { recursive: true, force: true });
  await sub.client.endAsync();
  await kiln.stop();
  return { rate: (TAGS * CHANGES) / elapsed, lost: TAGS * CHANGES - messages * TAGS };
}

async function measureRaw(broker: TestBroker, roundIndex: number): Promise<number> {
  const base = Date.now() + 1_000 + roundIndex * CHANGES * 10;
  const payloads = Array.from({ length: CHANGES }, (_unused, change) =>
    Buffer.from(
      encodePayload(
        {
          timestamp: base + change,
          seq: (change + 2) % 256,
          metrics: NAMES.map((_name, index) => ({
            alias: index + 1,
            timestamp: base + change,
            datatype: "Double" as const,
            value: valueOf(change, index),
          })),
        },
        { omitDatatype: true },
      ),
    ),
  );
  const sub = await subscriber(broker);
  const client = await mqtt.connectAsync(broker.url, { clean: true });
  const topic = sparkplugTopic({ type: "DDATA", groupId: GROUP, edgeNodeId: NODE, deviceId: DEVICE });
  const started = performance.now();
  for (const payload of payloads) {
    client.publish(topic, payload, { qos: 0, retain: false });
    await Promise.resolve();
  }
  await until(() => sub.received() >= CHANGES, 60_000);
  const elapsed = (performance.now() - started) / 1_000;
  await client.endAsync();
  await sub.client.endAsync();
  return (TAGS * CHANGES) / elapsed;
}
