/**
 * One edge node of the fleet case: a Kiln system on a SimulatedPlc whose every tag counts 0, 1,
 * 2... one step per scan (a per-tag sequence number), published by a `SparkplugEdgeNode` with
 * store-and-forward on a durable journal, waiting for the primary host's STATE and keeping every
 * published sample until the host acknowledges it (`awaitHostAcks`, ADR 0037).
 *
 * Prints `health <json>` (the node's link and counters) every 250 ms. On SIGTERM it notes each
 * tag's last value the CVT produced, lets the node publish it (waits for the next scan, an empty
 * backlog and live births), stops the node (DDEATH, NDEATH), and prints `final <json>`: per tag
 * the first and last counter value of the window it observed, and what it counted as dropped.
 *
 * Usage: sparkplug-edge-process.ts <broker url> <group> <edge node id> <host id> <scratch dir> <tags> <period ms>
 */
import { join } from "node:path";
import { createControlSystem, defineTags, SimulatedPlc } from "@kiln/core";
import { fileBdSeqStore, SparkplugEdgeNode } from "@kiln/sparkplug";

const [brokerUrl, groupId, edgeNodeId, hostId, scratch, tagCount, periodMs] = process.argv.slice(2);
if (!brokerUrl || !groupId || !edgeNodeId || !hostId || !scratch || !tagCount || !periodMs) {
  throw new Error(
    "usage: sparkplug-edge-process.ts <broker url> <group> <edge node id> <host id> <scratch dir> <tags> <period ms>",
  );
}

const names = Array.from({ length: Number(tagCount) }, (_, index) => `seq.${index}`);
const tags = defineTags(Object.fromEntries(names.map((name) => [name, { dataType: "uint32" as const }])));
const plc = new SimulatedPlc({
  tags,
  sources: Object.fromEntries(names.map((name) => [name, { kind: "counter" as const, start: 0 }])),
});
const system = createControlSystem({
  machineId: "machine",
  tags,
  driver: plc,
  // No staleness sweep: a late scan on a loaded machine would republish the last value as
  // uncertain with a new timestamp, which the count would see as a second copy of a number.
  scanGroups: { default: { periodMs: Number(periodMs), staleAfterPeriods: 0 } },
});
const node = new SparkplugEdgeNode({
  system,
  brokerUrl,
  groupId,
  edgeNodeId,
  primaryHostId: hostId,
  principal: { id: "fleet-host", roles: ["viewer"] },
  bdSeqStore: fileBdSeqStore(join(scratch, `${edgeNodeId}.bdseq.json`)),
  reconnect: { initialDelayMs: 200, maxDelayMs: 1_000 },
  // The default limits (64 MiB, 1,000,000 samples): the case must drop nothing with them.
  storeAndForward: { path: join(scratch, `${edgeNodeId}.journal`) },
  // Every published sample stays journaled until the host acknowledges it stored it (ADR 0037):
  // what a killed host had received and not committed is sent again to the next one.
  // KILN_FLEET_AWAIT_ACKS=0 turns it off, to watch the case lose what the killed host held.
  awaitHostAcks: process.env.KILN_FLEET_AWAIT_ACKS !== "0",
});
let dropped = 0;
const drops: string[] = [];
node.events.on("samples-drop", (drop) => {
  dropped += drop.samples;
  drops.push(`${drop.reason}: ${drop.samples}`);
});

await system.start();
await node.start();
// Observed from here on: every change the node observes too (its observer came first).
const first = new Array<number | undefined>(names.length).fill(undefined);
const last = new Array<number | undefined>(names.length).fill(undefined);
const index = new Map(names.map((name, position) => [name, position]));
system.cvt.observeAll((change) => {
  const position = index.get(change.sample.tag);
  if (position === undefined || typeof change.sample.value !== "number") return;
  first[position] ??= change.sample.value;
  last[position] = change.sample.value;
});

function counters(): Record<string, unknown> {
  const health = node.health();
  const forward = health.storeAndForward!;
  return {
    link: health.link,
    host: health.primaryHost?.state,
    publishing: health.publishing,
    bdSeq: health.bdSeq,
    births: health.published.births,
    dataMessages: health.published.dataMessages,
    metrics: health.published.metrics,
    backlogSamples: forward.backlogSamples,
    unacknowledgedSamples: forward.acknowledgement?.unacknowledgedSamples,
    samplesAcknowledged: forward.acknowledgement?.samplesAcknowledged,
    samplesStored: forward.samplesStored,
    samplesReplayed: forward.samplesReplayed,
    samplesDropped: forward.samplesDropped,
    dropped,
  };
}

const timer = setInterval(() => process.stdout.write(`health ${JSON.stringify(counters())}\n`), 250);

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

process.once("SIGTERM", () => {
  void (async () => {
    const window = { first: [...first], last: [...last] };
    // The window's last values were handed to the socket once a later scan's values were, the
    // backlog is empty and births are out (one publisher's messages stay in order).
    const published = await until(
      () =>
        last.every((value, position) => value !== undefined && value > window.last[position]!) &&
        node.health().publishing &&
        node.health().storeAndForward!.backlogSamples === 0,
      30_000,
    );
    // Then the host's acknowledgement of everything published so far (bounded: reported, not
    // required). What it has not acknowledged stays in the journal for the next start; counted
    // apart, a loss in the database that this covers is data the host discarded late (adv19x M5).
    const acknowledgement = () => node.health().storeAndForward!.acknowledgement;
    const publishedSoFar =
      (acknowledgement()?.samplesAcknowledged ?? 0) + (acknowledgement()?.unacknowledgedSamples ?? 0);
    await until(() => (acknowledgement()?.samplesAcknowledged ?? publishedSoFar) >= publishedSoFar, 20_000);
    const windowUnacknowledged = Math.max(
      0,
      publishedSoFar - (acknowledgement()?.samplesAcknowledged ?? publishedSoFar),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    clearInterval(timer);
    const final = { ...counters(), windowUnacknowledged };
    await node.stop();
    await system.stop();
    process.stdout.write(`final ${JSON.stringify({ ...final, published, drops, ...window })}\n`);
    process.exit(0);
  })();
});
