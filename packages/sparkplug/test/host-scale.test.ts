// Issue 19, adversarial review 19b (ADR 0030, amendment fix19g-index): what the host does for a DBIRTH
// must not grow with the edge node's other devices (the alias check), and the index that makes it
// so must hold exactly the aliases of the NBIRTH and the online devices. Evicting and forgetting
// oldest first is tested on its own (src/oldest-first-index.test.ts). Against a real broker (the
// test's own mosquitto, else aedes), with the in-memory store so that the host's own work is timed.
import { MemoryStore } from "@kiln/core";
import { afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { SparkplugHost, type SparkplugHostLimits } from "../src/host";
import { qualifiedTagName } from "../src/host-tag-names";
import type { SparkplugMetric } from "../src/payload";
import { startTestBroker, type TestBroker } from "../src/testing/index";
import { RawEdgeNode, eventually } from "./support/host-harness";

const GROUP = "plant-scale";
const double = (name: string, alias: number, value: number): SparkplugMetric => ({
  name,
  alias,
  timestamp: Date.now(),
  datatype: "Double",
  value,
});
const tagOf = (edgeNodeId: string, metric: string, deviceId = "d") =>
  qualifiedTagName({ groupId: GROUP, edgeNodeId, deviceId, metric });

vi.setConfig({ testTimeout: 60_000 });

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
  console.info(`Sparkplug host scale tests: broker ${broker.kind}`);
  return () => broker.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function rig(limits: SparkplugHostLimits = {}, registerTags = true) {
  const host = new SparkplugHost({
    registerTags,
    brokerUrl: broker.url,
    hostId: `scale-${Math.random().toString(16).slice(2, 8)}`,
    groups: [GROUP],
    store: new MemoryStore(),
    rebirthIntervalMs: 0,
    stopLingerMs: 100,
    batching: { maxDelayMs: 5 },
    limits,
  });
  cleanups.push(() => host.stop());
  const rejects: string[] = [];
  host.events.on("message-reject", (event) => void rejects.push(event.message));
  await host.start();
  await host.whenConnected();
  const edge = async (edgeNodeId: string) => {
    const raw = await RawEdgeNode.connect(broker.url, GROUP, edgeNodeId, 0);
    cleanups.push(() => raw.close());
    return raw;
  };
  const node = (edgeNodeId: string) => host.health().edgeNodes.find((each) => each.edgeNodeId === edgeNodeId);
  return { host, rejects, edge, node };
}

describe("scale: a DBIRTH is checked against the aliases its edge node holds, in O(its own metrics) (ADR 0030 fix19g-index)", () => {
  test("births of 1,000 devices × 100 metrics of one edge node are taken in seconds: each DBIRTH checks its own aliases, not every other device's", async () => {
    const DEVICES = 1_000;
    const PER = 100;
    // Tag metadata not registered: the store's work is not what is measured here.
    const { host, edge, node } = await rig({}, false);
    const raw = await edge("wide");
    const births = async (value: number) => {
      await raw.nbirth(value);
      for (let device = 0; device < DEVICES; device++)
        await raw.dbirth(
          `d${device}`,
          Array.from({ length: PER }, (_, metric) => double(`m${metric}`, device * PER + metric + 1, value)),
        );
      await eventually(
        () => host.latest(tagOf("wide", `m${PER - 1}`, `d${DEVICES - 1}`))?.sample.value === value,
        30_000,
        `births ${value} taken`,
      );
    };
    const started = performance.now();
    await births(1);
    const elapsed = performance.now() - started;
    expect(node("wide")?.birthsRefused).toBe(0);
    expect(node("wide")?.devices.filter((device) => device.online)).toHaveLength(DEVICES);
    console.info(`aliases: births of ${DEVICES} devices × ${PER} metrics taken in ${elapsed.toFixed(0)} ms`);
    // Each DBIRTH copied every alias of the edge node's other online devices: O(devices²) per
    // birth of the edge node: 69 s here (the 30 s wait above ran out); now 2.4-7 s (7 with other test
    // files running beside it).
    expect(elapsed).toBeLessThan(15_000);
  });

  /** Waits until `edgeNodeId` has refused `count` births; the last reject message. */
  const refusedFor = async (rigged: Awaited<ReturnType<typeof rig>>, edgeNodeId: string, count: number) => {
    await eventually(() => (rigged.node(edgeNodeId)?.birthsRefused ?? 0) >= count, 5_000, `${count} refused`);
    expect(rigged.node(edgeNodeId)?.birthsRefused).toBe(count);
    return rigged.rejects.at(-1) ?? "";
  };
  const taken = (
    rigged: Awaited<ReturnType<typeof rig>>,
    edgeNodeId: string,
    deviceId: string,
    metric: string,
    value: number,
  ) =>
    eventually(
      () => rigged.host.latest(tagOf(edgeNodeId, metric, deviceId))?.sample.value === value,
      5_000,
      `${deviceId}/${metric} = ${value}`,
    );

  test("an alias held by another online device is still refused; one freed by a DDEATH is free again, and its new holder holds it", async () => {
    const rigged = await rig();
    const raw = await rigged.edge("dead");
    await raw.nbirth(0);
    await raw.dbirth("a", [double("x", 10, 1)]);
    await raw.dbirth("b", [double("y", 10, 2)]);
    expect(await refusedFor(rigged, "dead", 1)).toContain(`alias 10 of "y" already given to "x" of device a`);
    await raw.nbirth(1);
    await raw.dbirth("a", [double("x", 10, 3)]);
    await raw.ddeath("a");
    await raw.dbirth("b", [double("y", 10, 4)]);
    await taken(rigged, "dead", "b", "y", 4);
    expect(rigged.node("dead")?.birthsRefused).toBe(1);
    // The new holder, not the dead one: a device born with it now collides with b.
    await raw.dbirth("c", [double("z", 10, 5)]);
    expect(await refusedFor(rigged, "dead", 2)).toContain(`alias 10 of "z" already given to "y" of device b`);
  });

  test("a device reborn with other aliases frees its old ones and holds the new ones", async () => {
    const rigged = await rig();
    const raw = await rigged.edge("reborn");
    await raw.nbirth(0);
    await raw.dbirth("a", [double("x", 10, 1)]);
    await raw.dbirth("a", [double("x", 11, 2)]);
    await raw.dbirth("b", [double("y", 10, 3)]);
    await taken(rigged, "reborn", "b", "y", 3);
    expect(rigged.node("reborn")?.birthsRefused).toBe(0);
    await raw.dbirth("c", [double("z", 11, 4)]);
    expect(await refusedFor(rigged, "reborn", 1)).toContain(`alias 11 of "z" already given to "x" of device a`);
  });

  test("a dead device forgotten to make room holds no alias; the device born in its place does, against the NBIRTH's too", async () => {
    const rigged = await rig({ maxDevicesPerEdgeNode: 2 });
    const raw = await rigged.edge("forgot");
    await raw.nbirth(0, [double("n", 1, 0)]);
    await raw.dbirth("a", [double("x", 10, 1)]);
    await raw.ddeath("a");
    await raw.dbirth("b", [double("y", 20, 2)]);
    await raw.dbirth("c", [double("z", 10, 3)]); // a is forgotten for it
    await taken(rigged, "forgot", "c", "z", 3);
    expect(rigged.host.health().problems.join()).toContain("device a of");
    // b reborn with c's alias: refused, naming c.
    await raw.dbirth("b", [double("y", 10, 4)]);
    expect(await refusedFor(rigged, "forgot", 1)).toContain(`alias 10 of "y" already given to "z" of device c`);
    // A new session: only the NBIRTH's aliases are held; a DBIRTH giving its alias 1 is refused.
    await raw.nbirth(1, [double("n", 1, 0)]);
    await raw.dbirth("c", [double("z", 10, 5)]);
    await taken(rigged, "forgot", "c", "z", 5);
    await raw.dbirth("b", [double("y", 1, 6)]);
    expect(await refusedFor(rigged, "forgot", 2)).toContain(`alias 1 of "y" already given to "n" of the NBIRTH`);
  });
});
