import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, type Sample, type TagDefinitionInput } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver, OpcuaSimulator } from "../src/index";
import { waitFor } from "./support/wait-for";

const TAG_COUNT = 2_500;

const definitions: Record<string, TagDefinitionInput> = {};
for (let index = 0; index < TAG_COUNT; index++) {
  definitions[`sensor.${index}`] = { dataType: "float64", address: `ns=2;s=Sensor.${index}` };
}
const tags = defineTags(definitions);
const signals = Object.fromEntries(
  tags.names.map((name, index) => [name, { kind: "constant" as const, value: index }]),
);

let simulator: OpcuaSimulator;
let driver: OpcuaDriver;
let pkiDir: string;

beforeAll(async () => {
  pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-client-"));
  simulator = new OpcuaSimulator({
    tags,
    signals,
    securityModes: ["None"],
    operationLimits: { maxNodesPerRead: 1_000, maxMonitoredItemsPerCall: 1_000 },
    updateIntervalMs: 1_000,
  });
  await simulator.start();
  driver = new OpcuaDriver({ endpointUrl: simulator.endpointUrl, security: { mode: "None" }, pki: { dir: pkiDir } });
  await driver.connect();
});

afterAll(async () => {
  await driver?.close();
  await simulator?.dispose();
  await rm(pkiDir, { recursive: true, force: true });
});

describe("OpcuaDriver and the server's operation limits", () => {
  test("a 2,500-tag read against MaxNodesPerRead 1,000 comes back complete in 3 ReadRequests", async () => {
    const group = tags.list();
    simulator.resetStats();
    const samples = await driver.read(group);
    expect(simulator.stats.readRequests).toBe(3);
    expect(simulator.stats.readNodes).toBe(TAG_COUNT);
    expect(samples).toHaveLength(TAG_COUNT);
    expect(samples.every((sample, index) => sample.tag === `sensor.${index}` && sample.value === index)).toBe(true);
    expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);

    // The plan is cached per tag array: the next scan splits the same way.
    simulator.resetStats();
    await driver.read(group);
    expect(simulator.stats.readRequests).toBe(3);
  });

  test("an array changed in place between reads is planned anew, never read with its old contents' plan (adv12 H1)", async () => {
    const read = [tags.get("sensor.1")!, tags.get("sensor.2")!];
    const values = (samples: Sample[]) => samples.map((sample) => [sample.tag, sample.value, sample.quality.severity]);
    const expected = () => read.map((tag) => [tag.name, Number(tag.name.split(".")[1]), "good"]);
    expect(values(await driver.read(read))).toEqual(expected());
    read[1] = tags.get("sensor.7")!;
    expect(values(await driver.read(read))).toEqual(expected());
    read.push(tags.get("sensor.9")!);
    const pushed = await driver.read(read);
    expect(Object.keys(pushed)).toHaveLength(3);
    expect(values(pushed)).toEqual(expected());
    read.reverse();
    expect(values(await driver.read(read))).toEqual(expected());
  });

  test("an array changed while its read is in flight: the samples name the tags read when it began (adv12b H1)", async () => {
    const read = [tags.get("sensor.1")!, tags.get("sensor.2")!];
    const pending = driver.read(read);
    read[0] = tags.get("sensor.3")!;
    expect((await pending).map((sample) => [sample.tag, sample.value])).toEqual([
      ["sensor.1", 1],
      ["sensor.2", 2],
    ]);
    // Emptied in flight: still every sample, no TypeError.
    const emptied = driver.read(read);
    read.length = 0;
    expect((await emptied).map((sample) => [sample.tag, sample.value])).toEqual([
      ["sensor.3", 3],
      ["sensor.2", 2],
    ]);
  });

  test("a client-side cap below the server's limit splits further", async () => {
    const capped = new OpcuaDriver({
      endpointUrl: simulator.endpointUrl,
      security: { mode: "None" },
      pki: { dir: pkiDir },
      limits: { maxNodesPerRead: 500 },
    });
    await capped.connect();
    try {
      simulator.resetStats();
      const samples = await capped.read(tags.list());
      expect(simulator.stats.readRequests).toBe(5);
      expect(samples.filter((sample) => sample.quality.severity === "good")).toHaveLength(TAG_COUNT);
    } finally {
      await capped.close();
    }
  });

  test("subscribing 2,500 tags creates monitored items in 3 batches (MaxMonitoredItemsPerCall 1,000)", async () => {
    const latest = new Map<string, Sample>();
    simulator.resetStats();
    const dispose = await driver.subscribe(tags.list(), { samplingIntervalMs: 100 }, (samples) => {
      for (const sample of samples) latest.set(sample.tag, sample);
    });
    expect(simulator.stats.createMonitoredItemsRequests).toBe(3);
    await waitFor(() => latest.size === TAG_COUNT, { what: "an initial value for every tag" });
    expect([...latest.values()].every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(latest.get("sensor.2499")?.value).toBe(2_499);
    dispose();
  });
});
