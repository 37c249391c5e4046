import { KilnError, QualityCodes, SimulatedPlc, createControlSystem } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { SparkplugEdgeNode, encodePayload, fileBdSeqStore, memoryBdSeqStore } from "../src/index";
import { DEVICE, EDGE, GROUP, edgeFixture, engineer, ofType, tags, type EdgeFixture } from "./support/edge-fixture";

const DCMD = `spBv1.0/${GROUP}/DCMD/${EDGE}/${DEVICE}`;
const NCMD = `spBv1.0/${GROUP}/NCMD/${EDGE}`;

let fixture: EdgeFixture | undefined;
afterEach(async () => {
  await fixture?.close();
  fixture = undefined;
});

async function audit(f: EdgeFixture): Promise<AuditEntry[]> {
  return f.system.unchecked.store.audit.query({ from: 0, to: Date.now() + 60_000 });
}

async function dcmd(f: EdgeFixture, metrics: Parameters<typeof encodePayload>[0]["metrics"]): Promise<void> {
  const bytes = encodePayload({ timestamp: Date.now(), metrics }, { omitDatatype: true });
  await f.recorder.client.publishAsync(DCMD, Buffer.from(bytes), { qos: 1 });
}

describe("DCMD writes go through Kiln's checked command path", () => {
  test("an allowed write reaches the PLC, is audited as allowed with the Sparkplug source, and comes back in DDATA", async () => {
    fixture = await edgeFixture();
    await fixture.node.start();
    await fixture.recorder.waitFor(ofType("DBIRTH"));
    const written = fixture.node.events.next("command-write");
    await dcmd(fixture, [{ alias: fixture.node.aliases.get("heater.setpoint")!, datatype: "Float", value: 250 }]);
    expect(await written).toMatchObject({ tag: "heater.setpoint", value: 250 });
    expect(fixture.plc.writes).toEqual([expect.objectContaining({ tag: "heater.setpoint", value: 250 })]);
    expect(await audit(fixture)).toEqual([
      expect.objectContaining({
        principal: "sparkplug-host",
        source: `sparkplug:${GROUP}/${EDGE}`,
        action: "tag.write",
        target: "heater.setpoint",
        outcome: "allowed",
      }),
    ]);
    const alias = fixture.node.aliases.get("heater.setpoint");
    await fixture.recorder.waitFor(
      (message) =>
        ofType("DDATA")(message) &&
        message.payload!.metrics.some((metric) => metric.alias === alias && metric.value === 250),
    );
  });

  test("a write to a read-only tag, or by a principal without tag.write, is refused, audited as denied, and never reaches the PLC", async () => {
    fixture = await edgeFixture();
    await fixture.node.start();
    await fixture.recorder.waitFor(ofType("DBIRTH"));
    const refusals: { tag?: string; code: string }[] = [];
    fixture.node.events.on("command-refuse", (event) => void refusals.push(event));
    await dcmd(fixture, [{ alias: fixture.node.aliases.get("chamber.pressure")!, datatype: "Double", value: 9 }]);
    await expect
      .poll(() => refusals)
      .toEqual([expect.objectContaining({ tag: "chamber.pressure", code: "KILN_TAG_NOT_WRITABLE" })]);
    await fixture.node.stop();

    const viewer = fixture.newNode({ principal: { id: "dashboard", roles: ["viewer"] } });
    viewer.events.on("command-refuse", (event) => void refusals.push(event));
    await viewer.start();
    await fixture.recorder.waitFor(
      (message) => ofType("DBIRTH")(message) && message !== fixture!.recorder.messages.find(ofType("DBIRTH")),
    );
    await dcmd(fixture, [{ alias: viewer.aliases.get("heater.setpoint")!, datatype: "Float", value: 100 }]);
    await expect.poll(() => refusals).toHaveLength(2);
    expect(refusals[1]).toMatchObject({ tag: "heater.setpoint", code: "KILN_FORBIDDEN" });
    expect(fixture.plc.writes).toEqual([]);
    const entries = await audit(fixture);
    expect(entries.map((entry) => [entry.principal, entry.target, entry.outcome])).toEqual([
      ["sparkplug-host", "chamber.pressure", "denied"],
      ["dashboard", "heater.setpoint", "denied"],
    ]);
    expect(viewer.health().commands).toMatchObject({ written: 0, refused: 1 });
  });

  test("an unknown alias, a name the device never announced, and a value out of range are refused; a malformed DCMD is rejected and the node goes on", async () => {
    fixture = await edgeFixture();
    await fixture.node.start();
    await fixture.recorder.waitFor(ofType("DBIRTH"));
    const refusals: { tag?: string; alias?: number | bigint; code: string }[] = [];
    const rejects: string[] = [];
    fixture.node.events.on("command-refuse", (event) => void refusals.push(event));
    fixture.node.events.on("message-reject", (event) => void rejects.push(event.topic));
    await dcmd(fixture, [
      { alias: 99, datatype: "Int32", value: 1 },
      { name: "no.such.tag", datatype: "Int32", value: 1 },
      { alias: fixture.node.aliases.get("heater.setpoint")!, datatype: "Float", value: 1_000 },
      { alias: fixture.node.aliases.get("valve.ald1")!, datatype: "Boolean", value: null },
    ]);
    await fixture.recorder.client.publishAsync(DCMD, Buffer.from([0xff, 0xff]), { qos: 1 });
    await fixture.recorder.client.publishAsync(NCMD, Buffer.from([0xff, 0xff]), { qos: 1 });
    // The malformed DCMD waits its turn behind the first one's audited refusals; the NCMD does not.
    await expect.poll(() => [...rejects].sort()).toEqual([DCMD, NCMD].sort());
    expect(refusals.map((refusal) => refusal.code)).toEqual([
      "KILN_TAG_UNKNOWN",
      "KILN_TAG_UNKNOWN",
      "KILN_OUT_OF_RANGE",
      "KILN_VALIDATION",
    ]);
    expect(refusals[0]).toMatchObject({ alias: 99 });
    expect(fixture.plc.writes).toEqual([]);
    expect(fixture.node.health()).toMatchObject({ publishing: true, commands: { refused: 4, malformed: 2 } });
    // Every refused metric is audited: the two Kiln refused, and the two refused before they reached
    // it (an alias naming nothing, a null value), through system.refuseCommand; and the DCMD and the
    // NCMD that did not decode, each as a dropped whole message (summed per second: the two drop
    // entries come in one flush or a second apart, in either order).
    await expect.poll(async () => (await audit(fixture!)).length, { timeout: 5_000 }).toBe(6);
    const entries = (await audit(fixture)).map((entry) => [entry.action, entry.target, entry.outcome]);
    expect(entries.slice(0, 4)).toEqual([
      ["tag.write", "alias:99", "denied"],
      ["tag.write", "no.such.tag", "denied"],
      ["tag.write", "heater.setpoint", "denied"],
      ["tag.write", "valve.ald1", "denied"],
    ]);
    expect(entries.slice(4).sort()).toEqual([
      ["sparkplug.dcmd-drop", "(1 whole DCMD message: undecodable)", "denied"],
      ["sparkplug.ncmd-drop", "(1 whole NCMD message: undecodable)", "denied"],
    ]);
  });
});

describe("quality and timestamps from the CVT", () => {
  test("a bad sample is sent with Quality 0, its OPC UA StatusCode and reason; good again, the properties are gone", async () => {
    fixture = await edgeFixture();
    await fixture.node.start();
    await fixture.recorder.waitFor(ofType("DBIRTH"));
    const alias = fixture.node.aliases.get("chamber.pressure");
    fixture.plc.faults.badQuality.add("chamber.pressure");
    const bad = await fixture.recorder.waitFor(
      (message) =>
        ofType("DDATA")(message) &&
        message.payload!.metrics.some((metric) => metric.alias === alias && metric.properties !== undefined),
    );
    const metric = bad.payload!.metrics.find((each) => each.alias === alias)!;
    const sample = fixture.samples.find(
      (each) => each.tag === "chamber.pressure" && Math.floor(each.timestamp) === metric.timestamp,
    )!;
    expect(sample.quality.severity).toBe("bad");
    expect(metric.properties).toMatchObject({
      Quality: { type: "Int32", value: 0 },
      StatusCode: { type: "UInt32", value: sample.quality.code },
    });
    expect(metric.value).toEqual(sample.value);
    fixture.plc.faults.badQuality.delete("chamber.pressure");
    const good = await fixture.recorder.waitFor(
      (message) =>
        ofType("DDATA")(message) &&
        message.payload!.metrics.some((each) => each.alias === alias && each.properties === undefined),
    );
    expect(good.payload!.metrics.find((each) => each.alias === alias)?.properties).toBeUndefined();
  });

  test("a good sample with a StatusCode of its own (GoodLocalOverride) carries it in DDATA; a plain good one carries none (issue 19)", async () => {
    const GOOD_LOCAL_OVERRIDE = 0x00d80000;
    class OverridePlc extends SimulatedPlc {
      override = false;
      override async read(...args: Parameters<SimulatedPlc["read"]>): ReturnType<SimulatedPlc["read"]> {
        const samples = await super.read(...args);
        return this.override
          ? samples.map((sample) => ({ ...sample, quality: { severity: "good" as const, code: GOOD_LOCAL_OVERRIDE } }))
          : samples;
      }
    }
    const plc = new OverridePlc({ tags, sources: { "chamber.pressure": { kind: "counter", start: 0 } } });
    const system = createControlSystem({
      machineId: DEVICE,
      tags,
      driver: plc,
      scanGroups: { fast: { periodMs: 50 }, default: { periodMs: 200 } },
    });
    const { startTestBroker, recordSparkplug } = await import("../src/testing/index");
    const broker = await startTestBroker();
    const recorder = await recordSparkplug(broker.url);
    const node = new SparkplugEdgeNode({
      system,
      brokerUrl: broker.url,
      groupId: GROUP,
      edgeNodeId: EDGE,
      principal: engineer,
    });
    try {
      await system.start();
      await node.start();
      await recorder.waitFor(ofType("DBIRTH"));
      const alias = node.aliases.get("chamber.pressure");
      const plain = await recorder.waitFor(
        (message) => ofType("DDATA")(message) && message.payload!.metrics.some((metric) => metric.alias === alias),
      );
      expect(plain.payload!.metrics.find((metric) => metric.alias === alias)!.properties).toBeUndefined();
      plc.override = true;
      const overridden = await recorder.waitFor(
        (message) =>
          ofType("DDATA")(message) &&
          message.payload!.metrics.some((metric) => metric.alias === alias && metric.properties !== undefined),
      );
      expect(overridden.payload!.metrics.find((metric) => metric.alias === alias)!.properties).toMatchObject({
        Quality: { value: 192 },
        StatusCode: { value: GOOD_LOCAL_OVERRIDE },
      });
    } finally {
      await node.stop();
      await system.stop();
      await recorder.close();
      await broker.stop();
    }
  });

  test("a tag with no value yet is born null, bad, BadWaitingForInitialData", async () => {
    const plc = new SimulatedPlc({ tags, subscribe: false });
    plc.faults.unreachable = true;
    const system = createControlSystem({
      machineId: DEVICE,
      tags,
      driver: plc,
      scanGroups: { fast: { periodMs: 50 }, default: { periodMs: 50 } },
    });
    const broker = await (await import("../src/testing/index")).startTestBroker();
    const recorder = await (await import("../src/testing/index")).recordSparkplug(broker.url);
    const node = new SparkplugEdgeNode({
      system,
      brokerUrl: broker.url,
      groupId: GROUP,
      edgeNodeId: EDGE,
      principal: engineer,
    });
    try {
      await node.start();
      const dbirth = await recorder.waitFor(ofType("DBIRTH"));
      expect(dbirth.payload!.metrics[0]).toMatchObject({
        name: "chamber.pressure",
        value: null,
        properties: { Quality: { value: 0 }, StatusCode: { value: QualityCodes.BadWaitingForInitialData } },
      });
    } finally {
      await node.stop();
      await recorder.close();
      await broker.stop();
    }
  });
});

describe("machine state", () => {
  test("a machine state change is sent in DDATA as Kiln/Machine State (alias n + 1)", async () => {
    fixture = await edgeFixture();
    await fixture.node.start();
    await fixture.recorder.waitFor(ofType("DBIRTH"));
    await fixture.system.sendMachineCommand({ id: "admin", roles: ["admin"] }, "enterMaintenance");
    const alias = tags.size + 1;
    await fixture.recorder.waitFor(
      (message) =>
        ofType("DDATA")(message) &&
        message.payload!.metrics.some((metric) => metric.alias === alias && metric.value === "maintenance"),
    );
  });
});

describe("bdSeq without a bdSeqStore (adversarial review 19y, L1)", () => {
  test("a node given no bdSeqStore starts at a random bdSeq, so a restart is not bdSeq 0 again (a hung predecessor's late Will of bdSeq 0 cannot take it down)", async () => {
    fixture = await edgeFixture();
    const node = fixture.newNode({ bdSeqStore: undefined, random: () => 0.5 });
    await node.start();
    const nbirth = await fixture.recorder.waitFor(ofType("NBIRTH"));
    expect(nbirth.payload!.metrics.find((metric) => metric.name === "bdSeq")?.value).toBe(128);
    expect(node.health().bdSeq).toBe(128);
  });

  test("sibling: with a store that has nothing saved (memoryBdSeqStore(), a new fileBdSeqStore) it starts at 0; the random start never gives 256", async () => {
    fixture = await edgeFixture();
    const node = fixture.newNode({ bdSeqStore: memoryBdSeqStore(), random: () => 0.5 });
    await node.start();
    await fixture.recorder.waitFor(ofType("NBIRTH"));
    expect(node.health().bdSeq).toBe(0);
    await node.stop();
    const edge = fixture.newNode({ bdSeqStore: undefined, random: () => 0.999_999_999_999 });
    await edge.start();
    await expect.poll(() => edge.health().bdSeq).toBe(255);
  });
});

describe("link and health", () => {
  test("health and events follow the broker link: reconnecting while it is down (problems say so), births again after it is back", async () => {
    fixture = await edgeFixture();
    const links: string[] = [];
    fixture.node.events.on("link-change", (change) => void links.push(change.to));
    await fixture.node.start();
    await fixture.recorder.waitFor(ofType("DDATA"));
    expect(fixture.node.health()).toMatchObject({ link: "connected", publishing: true, bdSeq: 0, problems: [] });
    fixture.tap.refuse = true;
    fixture.tap.cut();
    await expect.poll(() => fixture!.node.health().link).toBe("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const down = fixture.node.health();
    expect(down.publishing).toBe(false);
    expect(down.samplesNotPublished).toBeGreaterThan(0);
    expect(down.problems.join()).toMatch(/broker link reconnecting/);
    fixture.tap.refuse = false;
    await fixture.node.whenConnected();
    await expect.poll(() => fixture!.node.health().publishing).toBe(true);
    expect(links).toEqual(expect.arrayContaining(["connecting", "connected", "reconnecting"]));
    expect(fixture.node.health().published.births).toBe(2);
  });

  test("a second start() is refused; stop() is idempotent", async () => {
    fixture = await edgeFixture();
    await fixture.node.start();
    await expect(fixture.node.start()).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
    await fixture.node.stop();
    await fixture.node.stop();
    expect(fixture.node.health().link).toBe("closed");
  });

  test("an unreachable broker at start does not throw: the node keeps trying on its backoff", async () => {
    fixture = await edgeFixture();
    fixture.tap.refuse = true;
    const node = fixture.newNode({ reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
    await node.start();
    await expect.poll(() => node.health().link).toBe("reconnecting");
    fixture.tap.refuse = false;
    await node.whenConnected();
    await fixture.recorder.waitFor(ofType("NBIRTH"));
  });
});

describe("options", () => {
  test("ids with +, / or #, a bad backoff, or no principal are refused with KILN_VALIDATION naming the field", async () => {
    fixture = await edgeFixture();
    const base = {
      system: fixture.system,
      brokerUrl: "mqtt://127.0.0.1:1",
      groupId: GROUP,
      edgeNodeId: EDGE,
      principal: engineer,
    };
    const fields = (options: Partial<ConstructorParameters<typeof SparkplugEdgeNode>[0]>): unknown => {
      try {
        new SparkplugEdgeNode({ ...base, ...options });
      } catch (error) {
        expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
        return ((error as KilnError).details.issues as { path: string }[]).map((issue) => issue.path);
      }
      return [];
    };
    expect(fields({ groupId: "a/b", edgeNodeId: "#", deviceId: "+" })).toEqual(["groupId", "edgeNodeId", "deviceId"]);
    expect(fields({ primaryHostId: "" })).toEqual(["primaryHostId"]);
    expect(fields({ reconnect: { initialDelayMs: 0, maxDelayMs: 1 } })).toEqual(["reconnect.initialDelayMs"]);
    expect(fields({ principal: undefined as never })).toEqual(["principal"]);
    // Durations are bounded by 1 hour, as the drivers' are (a raw timer past 2^31 − 1 ms fires after 1 ms).
    expect(fields({ minRebirthIntervalMs: 3e9, connectTimeoutMs: Number.NaN })).toEqual([
      "minRebirthIntervalMs",
      "connectTimeoutMs",
    ]);
    expect(fields({ reconnect: { initialDelayMs: 1_000, maxDelayMs: 3_600_001 } })).toEqual(["reconnect.maxDelayMs"]);
    expect(fields({ minRebirthIntervalMs: 3_600_000, connectTimeoutMs: 1 })).toEqual([]);
    // The MQTT.js pass-through too (review adv19k L1).
    expect(fields({ mqtt: { connectTimeout: 2_592_000_000, keepalive: 70_000 } })).toEqual([
      "mqtt.connectTimeout",
      "mqtt.keepalive",
    ]);
    expect(fields({ mqtt: { connectTimeout: 3_600_000, keepalive: 65_535 } })).toEqual([]);
  });
});

describe("bdSeq stores", () => {
  test("the file store keeps the last bdSeq, refuses a corrupt file, and starts from nothing when there is none", async () => {
    const folder = await mkdtemp(path.join(tmpdir(), "kiln-bdseq-"));
    try {
      const file = path.join(folder, "nested", "bdseq.json");
      const store = fileBdSeqStore(file);
      expect(await store.load()).toBeUndefined();
      await store.save(17);
      expect(await fileBdSeqStore(file).load()).toBe(17);
      await writeFile(file, '{"bdSeq":300}');
      await expect(store.load()).rejects.toMatchObject({ code: "KILN_VALIDATION" });
      await writeFile(file, "not json");
      await expect(store.load()).rejects.toMatchObject({ code: "KILN_VALIDATION" });
      expect(await memoryBdSeqStore(3).load()).toBe(3);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  test("a store that cannot save is reported in health, and the node still connects with the next bdSeq", async () => {
    fixture = await edgeFixture();
    const node = fixture.newNode({
      bdSeqStore: { load: () => Promise.resolve(7), save: () => Promise.reject(new Error("disk full")) },
    });
    await node.start();
    await node.whenConnected();
    expect(node.health()).toMatchObject({ bdSeq: 8, problems: [expect.stringContaining("disk full")] });
  });
});
