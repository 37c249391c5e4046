import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags, KilnError, QualityCodes, type Sample, type Tag } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver, OpcuaSimulator, type OpcuaDriverOptions } from "../src/index";
import { RecordingLogger } from "./support/recording-logger";
import { waitFor } from "./support/wait-for";

const NS = "urn:kiln:opcua-simulator";

// What the server exposes.
const serverTags = defineTags({
  "reactor.pressure": { dataType: "float64", address: "ns=2;s=Reactor.Pressure" },
  "reactor.setpoint": { dataType: "float64", access: "readwrite", address: "ns=2;s=Reactor.Setpoint" },
  "reactor.count": { dataType: "int32", address: "ns=2;s=Reactor.Count" },
  "valve.open": { dataType: "bool", access: "readwrite", address: "ns=2;s=Valve.Open" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "ns=2;s=Recipe.Name" },
  "motor.speed": { dataType: "int16", access: "readwrite", address: "ns=2;s=Motor.Speed" },
  "late.tag": { dataType: "float64", address: "ns=2;s=Late.Tag" },
});

// What the client declares: every NodeId form, plus tags the server does not have.
const tags = defineTags({
  "reactor.pressure": { dataType: "float64", address: "ns=2;s=Reactor.Pressure" },
  "reactor.setpoint": { dataType: "float64", access: "readwrite", address: `nsu=${NS};s=Reactor.Setpoint` },
  "reactor.count": { dataType: "int32", address: { nodeId: "s=Reactor.Count", namespaceUri: NS } },
  "valve.open": { dataType: "bool", access: "readwrite", address: "ns=2;s=Valve.Open" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "ns=2;s=Recipe.Name" },
  "motor.speed": { dataType: "int32", access: "readwrite", address: "ns=2;s=Motor.Speed" },
  "late.tag": { dataType: "float64", address: "ns=2;s=Late.Tag" },
  // Declared writable here, read-only on the server: the server must refuse.
  "pressure.forced": { dataType: "float64", access: "readwrite", address: "ns=2;s=Reactor.Pressure" },
  "ghost.tag": { dataType: "float64", address: "ns=2;s=Ghost" },
  "foreign.tag": { dataType: "float64", address: "nsu=urn:somebody-else;s=X" },
  "server.state": { dataType: "int32", address: "i=2259" },
});

let simulator: OpcuaSimulator;
let pkiDir: string;
let driver: OpcuaDriver;
const statusChanges: DriverStatusChange[] = [];

function driverOptions(overrides: Partial<OpcuaDriverOptions> = {}): OpcuaDriverOptions {
  return {
    endpointUrl: simulator.endpointUrl,
    pki: { dir: pkiDir, trustedServerCertificates: [simulator.certificateFile] },
    ...overrides,
  };
}

beforeAll(async () => {
  pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-client-"));
  simulator = new OpcuaSimulator({
    tags: serverTags,
    signals: {
      "reactor.pressure": { kind: "sine", amplitude: 2, offset: 5, periodMs: 5_000 },
      "reactor.count": { kind: "counter", start: 1, step: 1 },
    },
    updateIntervalMs: 50,
  });
  await simulator.start();
  simulator.hideTag("late.tag");
  driver = new OpcuaDriver(driverOptions());
  driver.onStatusChange((change) => statusChanges.push(change));
  await driver.connect();
});

afterAll(async () => {
  await driver?.close();
  await simulator?.dispose();
  await rm(pkiDir, { recursive: true, force: true });
});

const pick = (...names: string[]): Tag[] => names.map((name) => tags.get(name));

describe("OpcuaDriver against the simulator (SignAndEncrypt, Basic256Sha256)", () => {
  test("connect() goes disconnected → connecting → connected and publishes each change", () => {
    expect(driver.status).toBe("connected");
    expect(statusChanges.map((change) => `${change.from}>${change.to}`)).toEqual([
      "disconnected>connecting",
      "connecting>connected",
    ]);
  });

  test("declares its contract version and capabilities", () => {
    expect(driver.driverApiVersion).toBe("1");
    expect(driver.capabilities).toEqual({ subscribe: true, browse: true });
    expect(driver.name).toBe(`opcua:127.0.0.1:${simulator.port}`);
  });

  test("read(tags) returns one sample per tag, in order, from every NodeId form", async () => {
    simulator.setValue("reactor.setpoint", 42.5);
    simulator.setValue("recipe.name", "TiN-200");
    const requested = pick("recipe.name", "reactor.setpoint", "reactor.count", "reactor.pressure", "server.state");
    const samples = await driver.read(requested);
    expect(samples.map((sample) => sample.tag)).toEqual(requested.map((tag) => tag.name));
    expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(samples[0]!.value).toBe("TiN-200");
    expect(samples[1]!.value).toBe(42.5);
    expect(typeof samples[2]!.value).toBe("number");
    expect(samples[3]!.value as number).toBeGreaterThanOrEqual(3);
    expect(samples[3]!.value as number).toBeLessThanOrEqual(7);
    expect(samples[4]!.value).toBe(0); // ServerState Running
  });

  test("read() uses the server's source timestamps", async () => {
    const before = Date.now();
    simulator.setValue("reactor.setpoint", 1.25);
    const [sample] = await driver.read(pick("reactor.setpoint"));
    expect(sample!.timestamp).toBeGreaterThanOrEqual(before - 5);
    expect(sample!.timestamp).toBeLessThanOrEqual(Date.now());
  });

  test("a node the server does not have reads bad with its status code; the others stay good", async () => {
    const samples = await driver.read(pick("reactor.setpoint", "ghost.tag", "foreign.tag"));
    expect(samples[0]!.quality.severity).toBe("good");
    expect(samples[1]).toMatchObject({ tag: "ghost.tag", value: null });
    expect(samples[1]!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadNodeIdUnknown });
    expect(samples[2]!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadNodeIdUnknown });
    expect(samples[2]!.quality.reason).toContain("urn:somebody-else");
  });

  test("the same tag array read twice reuses its plan and sends one ReadRequest each time", async () => {
    const group = pick("reactor.pressure", "reactor.count", "valve.open");
    simulator.resetStats();
    await driver.read(group);
    await driver.read(group);
    expect(simulator.stats.readRequests).toBe(2);
    expect(simulator.stats.readNodes).toBe(6);
  });

  test("write() converts to each node's DataType and the server takes the value", async () => {
    await driver.write(tags.get("reactor.setpoint"), 7.75);
    await driver.write(tags.get("valve.open"), true);
    await driver.write(tags.get("recipe.name"), "SiO2-50");
    await driver.write(tags.get("motor.speed"), 1200); // int32 tag, Int16 node
    expect(simulator.valueOf("reactor.setpoint")).toBe(7.75);
    expect(simulator.valueOf("valve.open")).toBe(true);
    expect(simulator.valueOf("recipe.name")).toBe("SiO2-50");
    expect(simulator.valueOf("motor.speed")).toBe(1200);
    const samples = await driver.read(pick("reactor.setpoint", "valve.open", "motor.speed"));
    expect(samples.map((sample) => sample.value)).toEqual([7.75, true, 1200]);
  });

  test("writing a read-only tag fails with KILN_TAG_NOT_WRITABLE before any traffic", async () => {
    simulator.resetStats();
    const error = await driver.write(tags.get("reactor.pressure"), 1).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_TAG_NOT_WRITABLE")).toBe(true);
    expect(simulator.stats.writeRequests).toBe(0);
    expect(simulator.stats.readRequests).toBe(0);
  });

  test("a server refusal becomes KILN_WRITE_REJECTED carrying the status code", async () => {
    const error = await driver.write(tags.get("pressure.forced"), 1).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_WRITE_REJECTED")).toBe(true);
    expect((error as KilnError).details).toMatchObject({
      statusCode: QualityCodes.BadNotWritable,
      statusName: "BadNotWritable",
    });
  });

  test("a value that does not fit the node's type fails with KILN_OUT_OF_RANGE and is not sent", async () => {
    simulator.resetStats();
    const error = await driver.write(tags.get("motor.speed"), 70_000).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_OUT_OF_RANGE")).toBe(true);
    expect(simulator.stats.writeRequests).toBe(0);
  });

  test("writing to a node the server does not have is rejected with BadNodeIdUnknown", async () => {
    const ghost = defineTags({ ghost: { dataType: "float64", access: "readwrite", address: "ns=2;s=Ghost" } });
    const error = await driver.write(ghost.get("ghost"), 1).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_WRITE_REJECTED")).toBe(true);
    expect((error as KilnError).details.statusName).toBe("BadNodeIdUnknown");
  });

  test("a tag without a valid address fails with KILN_VALIDATION naming the field", async () => {
    const bad = defineTags({
      "no.address": { dataType: "float64" },
      "bad.address": { dataType: "float64", address: "ns=two;s=X" },
    });
    const error = await driver.read(bad.list()).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    expect((error as KilnError).details.issues).toEqual([
      expect.objectContaining({ path: "no.address.address" }),
      expect.objectContaining({ path: "bad.address.address" }),
    ]);
  });

  test("subscribe() delivers value changes with good quality and source timestamps, until disposed", async () => {
    const received: Sample[] = [];
    const dispose = await driver.subscribe(
      pick("reactor.count", "reactor.setpoint"),
      { samplingIntervalMs: 50 },
      (samples) => received.push(...samples),
    );
    await waitFor(() => received.filter((sample) => sample.tag === "reactor.count").length >= 3, {
      what: "three counter changes",
    });
    const counts = received.filter((sample) => sample.tag === "reactor.count");
    expect(counts.every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(new Set(counts.map((sample) => sample.value)).size).toBe(counts.length);
    expect(received.some((sample) => sample.tag === "reactor.setpoint")).toBe(true);

    await driver.write(tags.get("reactor.setpoint"), 99);
    await waitFor(() => received.some((sample) => sample.tag === "reactor.setpoint" && sample.value === 99), {
      what: "the written setpoint to be notified",
    });

    dispose();
    const countAtDispose = received.length;
    const readCount = async (): Promise<number> => (await driver.read(pick("reactor.count")))[0]!.value as number;
    const start = await readCount();
    await waitFor(async () => (await readCount()) >= start + 5, { what: "the counter to move on" });
    expect(received.length).toBe(countAtDispose);
  });

  test("subscribe() applies the group's absolute deadband to numeric tags only", async () => {
    simulator.setValue("reactor.setpoint", 1);
    simulator.setValue("valve.open", false);
    const received: Sample[] = [];
    const dispose = await driver.subscribe(
      pick("reactor.setpoint", "valve.open"),
      { samplingIntervalMs: 20, deadband: 5 },
      (samples) => received.push(...samples),
    );
    try {
      await waitFor(() => received.some((sample) => sample.tag === "reactor.setpoint" && sample.value === 1), {
        what: "the initial setpoint",
      });
      simulator.setValue("reactor.setpoint", 2); // inside the deadband
      simulator.setValue("valve.open", true); // booleans are not filtered
      await waitFor(() => received.some((sample) => sample.tag === "valve.open" && sample.value === true), {
        what: "the valve change",
      });
      simulator.setValue("reactor.setpoint", 9); // outside it
      await waitFor(() => received.some((sample) => sample.tag === "reactor.setpoint" && sample.value === 9), {
        what: "the large setpoint change",
      });
      const setpoints = received.filter((sample) => sample.tag === "reactor.setpoint").map((sample) => sample.value);
      expect(setpoints).toEqual([1, 9]);
    } finally {
      dispose();
    }
  });

  test("subscribe() retries an item the server does not have yet (BadNodeIdUnknown) until it appears", async () => {
    const retrying = new OpcuaDriver(driverOptions({ monitoredItemRetry: { initialDelayMs: 50, maxDelayMs: 200 } }));
    await retrying.connect();
    try {
      const received: Sample[] = [];
      const dispose = await retrying.subscribe(
        pick("late.tag", "reactor.setpoint"),
        { samplingIntervalMs: 50 },
        (samples) => received.push(...samples),
      );
      const refused = await waitFor(() => received.find((sample) => sample.tag === "late.tag"), {
        what: "the refused item's bad sample",
      });
      expect(refused.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadNodeIdUnknown });

      simulator.setValue("late.tag", 3.5);
      simulator.showTag("late.tag");
      const good = await waitFor(
        () => received.find((sample) => sample.tag === "late.tag" && sample.quality.severity === "good"),
        { what: "the late tag's first good value" },
      );
      expect(good.value).toBe(3.5);
      dispose();
    } finally {
      await retrying.close();
      simulator.hideTag("late.tag");
    }
  });

  test("browse() lists the simulator's variables with portable addresses, data types and access", async () => {
    const variables = await driver.browse(`nsu=${NS};s=Kiln`);
    const byName = new Map(variables.map((variable) => [variable.name, variable]));
    expect(byName.get("reactor.pressure")).toEqual({
      name: "reactor.pressure",
      address: `nsu=${NS};s=Reactor.Pressure`,
      dataType: "float64",
      nativeType: "Double",
      access: "read",
      valueRank: -1,
    });
    expect(byName.get("motor.speed")).toMatchObject({ dataType: "int16", access: "readwrite" });
    expect(byName.get("recipe.name")).toMatchObject({ dataType: "string", access: "readwrite" });
    expect(byName.has("late.tag")).toBe(false);

    const everything = await driver.browse();
    expect(everything.some((variable) => variable.address === `nsu=${NS};s=Reactor.Count`)).toBe(true);
    expect(everything.some((variable) => variable.address.startsWith("i="))).toBe(false); // Server object skipped
  });

  test("browse() of a Variable lists that variable; of a Method or DataType node refuses naming the root", async () => {
    // adv13y LOW: a Variable root answered [], as an empty folder would.
    const underFolder = (await driver.browse(`nsu=${NS};s=Kiln`)).find(
      (variable) => variable.name === "reactor.pressure",
    );
    expect(underFolder).toBeDefined();
    expect(await driver.browse(`nsu=${NS};s=Reactor.Pressure`)).toEqual([underFolder]);
    for (const root of ["i=11492", "i=11"]) {
      // Server.GetMonitoredItems (a Method) and the Double DataType.
      const refused = await driver.browse(root).catch((caught: unknown) => caught);
      expect(KilnError.is(refused, "KILN_VALIDATION")).toBe(true);
      expect((refused as KilnError).message).toMatch(/root/);
    }
    // Nothing changed for a folder or an unknown node.
    expect(
      KilnError.is(
        await driver.browse(`nsu=${NS};s=No.Such.Node`).catch((caught: unknown) => caught),
        "KILN_NOT_FOUND",
      ),
    ).toBe(true);
  });

  test("browse() addresses read back through the driver", async () => {
    const variables = await driver.browse(`nsu=${NS};s=Kiln`);
    const catalog = defineTags(
      Object.fromEntries(
        variables.map((variable) => [variable.name, { dataType: variable.dataType!, address: variable.address }]),
      ),
    );
    const samples = await driver.read(catalog.list());
    expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);
  });
});

describe("OpcuaDriver lifecycle and options", () => {
  test("calls before connect() and after close() fail with KILN_NOT_CONNECTED", async () => {
    const idle = new OpcuaDriver(driverOptions());
    const before = await idle.read(pick("reactor.pressure")).catch((caught: unknown) => caught);
    expect(KilnError.is(before, "KILN_NOT_CONNECTED")).toBe(true);
    await idle.connect();
    await idle.close();
    await idle.close(); // idempotent
    expect(idle.status).toBe("closed");
    const after = await idle.read(pick("reactor.pressure")).catch((caught: unknown) => caught);
    expect(KilnError.is(after, "KILN_NOT_CONNECTED")).toBe(true);
    const subscribeAfter = await idle
      .subscribe(pick("reactor.pressure"), { samplingIntervalMs: 100 }, () => undefined)
      .catch((caught: unknown) => caught);
    expect(KilnError.is(subscribeAfter, "KILN_NOT_CONNECTED")).toBe(true);
  });

  test("connect() rejects with KILN_ABORTED when its signal aborts, and close() interrupts a connect", async () => {
    const aborting = new OpcuaDriver(driverOptions());
    const controller = new AbortController();
    const attempt = aborting.connect(controller.signal);
    controller.abort();
    const aborted = await attempt.catch((caught: unknown) => caught);
    expect(KilnError.is(aborted, "KILN_ABORTED")).toBe(true);
    expect(aborting.status).toBe("disconnected");

    const closing = new OpcuaDriver(driverOptions());
    const connecting = closing.connect();
    const closed = closing.close();
    const interrupted = await connecting.catch((caught: unknown) => caught);
    await closed;
    expect(KilnError.is(interrupted, "KILN_ABORTED")).toBe(true);
    expect(closing.status).toBe("closed");
  });

  test("security None works but logs one warning, even across reconnects", async () => {
    const logger = new RecordingLogger();
    const insecure = new OpcuaDriver(driverOptions({ security: { mode: "None" }, logger }));
    await insecure.connect();
    const [sample] = await insecure.read(pick("reactor.setpoint"));
    expect(sample!.quality.severity).toBe("good");
    await insecure.close();
    await insecure.connect();
    await insecure.close();
    const warnings = logger.lines.filter((line) => line.level === "warn" && /security mode is None/.test(line.message));
    expect(warnings).toHaveLength(1);
  });

  test("invalid options fail with KILN_VALIDATION naming every bad field", () => {
    let error: unknown;
    try {
      new OpcuaDriver({
        endpointUrl: "http://plc:4840",
        security: { mode: "Encrypt" as never },
        connectionStrategy: { randomisationFactor: 2 },
      });
    } catch (caught) {
      error = caught;
    }
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    const paths = ((error as KilnError).details.issues as { path: string }[]).map((issue) => issue.path);
    expect(paths).toEqual(
      expect.arrayContaining(["endpointUrl", "security.mode", "connectionStrategy.randomisationFactor"]),
    );
  });
});
