import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type DriverStatus, KilnError, QualityCodes, type TagDefinitionInput } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { SimulatedClock } from "@kiln/core/testing";
import { ModbusDriver, ModbusSimulator, type ModbusDriverOptions, type ModbusSimulatorRequest } from "../src/index";

const tags = defineTags({
  "chamber.pressure": { dataType: "float32", unit: "mbar", address: "HR100:float32:CDAB" },
  "chamber.temperature": {
    dataType: "float64",
    unit: "°C",
    address: { area: "input-register", address: 0, type: "int16", scale: 0.1 },
  },
  "heater.setpoint": { dataType: "float32", access: "readwrite", address: "HR104:float32" },
  "pump.running": { dataType: "bool", access: "readwrite", address: "C0" },
  "door.closed": { dataType: "bool", address: "DI4" },
  "mode.auto": { dataType: "bool", access: "readwrite", address: "HR110.3" },
  "batch.counter": { dataType: "uint32", address: "HR120:uint32:DCBA@2" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "HR200:string:8" },
  "alarm.word": { dataType: "uint16", address: "IR10" },
});

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startSimulator(simulator: ModbusSimulator) {
  const address = await simulator.start();
  cleanups.push(() => simulator.stop());
  return address;
}

function createDriver(options: ModbusDriverOptions): ModbusDriver {
  const driver = new ModbusDriver(options);
  cleanups.push(() => driver.close());
  return driver;
}

/** Resolves on the driver's next change to `to`. */
function nextStatus(driver: ModbusDriver, to: DriverStatus): Promise<DriverStatusChange> {
  return new Promise((resolve) => {
    const dispose = driver.onStatusChange((change) => {
      if (change.to !== to) return;
      dispose();
      resolve(change);
    });
  });
}

/** Resolves when the simulator receives a request matching `predicate`. */
function nextRequest(
  simulator: ModbusSimulator,
  predicate: (request: ModbusSimulatorRequest) => boolean,
): Promise<ModbusSimulatorRequest> {
  return new Promise((resolve) => {
    const dispose = simulator.onRequest((request) => {
      if (!predicate(request)) return;
      dispose();
      resolve(request);
    });
  });
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return KilnError.is(error) ? error.code : `non-kiln: ${String(error)}`;
  }
  return undefined;
}

describe("ModbusDriver against ModbusSimulator (TCP loopback)", () => {
  it("reads one sample per tag, in order, with the simulator's values", async () => {
    const simulator = new ModbusSimulator({
      tags,
      initialValues: {
        "chamber.pressure": 2.5,
        "chamber.temperature": -12.3,
        "heater.setpoint": 180,
        "pump.running": true,
        "door.closed": true,
        "mode.auto": true,
        "batch.counter": 70_000,
        "recipe.name": "anneal",
        "alarm.word": 0x8001,
      },
    });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();
    const samples = await driver.read(tags.list());
    expect(samples.map((sample) => sample.tag)).toEqual(tags.names);
    expect(samples.every((sample) => sample.quality.severity === "good")).toBe(true);
    const values = Object.fromEntries(samples.map((sample) => [sample.tag, sample.value]));
    expect(values).toMatchObject({
      "chamber.pressure": 2.5,
      "heater.setpoint": 180,
      "pump.running": true,
      "door.closed": true,
      "mode.auto": true,
      "batch.counter": 70_000,
      "recipe.name": "anneal",
      "alarm.word": 0x8001,
    });
    expect(values["chamber.temperature"]).toBeCloseTo(-12.3, 6);
    // The plan's requests, and the connection's id proof (two reads sent together before its second
    // input-register/2 request, which follows one of the same shape: fix12e).
    expect(simulator.stats.requests).toBe(driver.readPlan(tags.list()).requests.length + 2);
    expect(simulator.stats.protocolViolations).toBe(0);
  });

  it("serves signal generators: a counter advances on every read", async () => {
    const local = defineTags({ sequence: { dataType: "uint16", address: "HR0" } });
    const simulator = new ModbusSimulator({ tags: local, signals: { sequence: { kind: "counter", start: 10 } } });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();
    const first = (await driver.read(local.list()))[0]!.value as number;
    const served = simulator.stats.requests;
    const second = (await driver.read(local.list()))[0]!.value as number;
    // One step per read served: the second read, and before it the connection's id proof (two reads of HR0
    // sent together, fix12e).
    expect(simulator.stats.requests - served).toBe(3);
    expect(second).toBe(first + 3);
  });

  it("writes every writable type and reads the values back", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();
    await driver.write(tags.get("heater.setpoint"), 215.5);
    await driver.write(tags.get("pump.running"), true);
    await driver.write(tags.get("mode.auto"), true);
    await driver.write(tags.get("recipe.name"), "purge");
    expect(simulator.getValue("heater.setpoint")).toBe(215.5);
    expect(simulator.getValue("pump.running")).toBe(true);
    expect(simulator.getValue("mode.auto")).toBe(true);
    expect(simulator.getValue("recipe.name")).toBe("purge");
    const samples = await driver.read(tags.list());
    const values = Object.fromEntries(samples.map((sample) => [sample.tag, sample.value]));
    expect(values).toMatchObject({
      "heater.setpoint": 215.5,
      "pump.running": true,
      "mode.auto": true,
      "recipe.name": "purge",
    });
    await driver.write(tags.get("mode.auto"), false);
    expect(simulator.getValue("mode.auto")).toBe(false);
  });

  it("rejects writes to read-only tags and out-of-range values with no traffic", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();
    const before = simulator.stats.requests;
    expect(await codeOf(driver.write(tags.get("door.closed"), false))).toBe("KILN_TAG_NOT_WRITABLE");
    expect(await codeOf(driver.write(tags.get("alarm.word"), 1))).toBe("KILN_TAG_NOT_WRITABLE");
    expect(await codeOf(driver.write(tags.get("recipe.name"), "a name far too long"))).toBe("KILN_OUT_OF_RANGE");
    expect(simulator.stats.requests).toBe(before);
  });

  it("maps a device refusal of a write to KILN_WRITE_REJECTED", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await startSimulator(simulator);
    simulator.injectException({ area: "holding-register", address: 104, on: "write" }, 3);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();
    let error: unknown;
    await driver.write(tags.get("heater.setpoint"), 1).catch((caught: unknown) => (error = caught));
    expect(KilnError.is(error, "KILN_WRITE_REJECTED")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ exceptionCode: 3 });
    expect((await driver.read(tags.list())).every((sample) => sample.quality.severity === "good")).toBe(true);
  });

  it("isolates one bad address among 500 good ones: quality bad for it alone, not read again", async () => {
    const definitions: Record<string, TagDefinitionInput> = {};
    for (let address = 0; address < 501; address++) {
      definitions[`r${address}`] = { dataType: "uint16", address: `HR${address}` };
    }
    const many = defineTags(definitions);
    const list = many.list();
    const simulator = new ModbusSimulator({ tags: many });
    const { host, port } = await startSimulator(simulator);
    simulator.injectException({ area: "holding-register", address: 333 }, 2);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();

    const first = await driver.read(list);
    const bad = first.filter((sample) => sample.quality.severity !== "good");
    expect(bad.map((sample) => sample.tag)).toEqual(["r333"]);
    expect(bad[0]!.value).toBeNull();
    expect(bad[0]!.quality.code).toBe(QualityCodes.BadNodeIdUnknown);
    expect(first.filter((sample) => sample.quality.severity === "good")).toHaveLength(500);

    const seen: ModbusSimulatorRequest[] = [];
    const dispose = simulator.onRequest((request) => seen.push(request));
    const second = await driver.read(list);
    dispose();
    expect(second.filter((sample) => sample.quality.severity !== "good").map((sample) => sample.tag)).toEqual(["r333"]);
    expect(seen.some((request) => request.address <= 333 && request.address + request.quantity > 333)).toBe(false);
    expect(seen).toHaveLength(driver.readPlan(list).requests.length);
    expect(simulator.stats.protocolViolations).toBe(0);
  });

  it("learns not to read through an unmapped gap of a strict device", async () => {
    const local = defineTags({
      a: { dataType: "uint16", address: "HR0" },
      b: { dataType: "uint16", address: "HR4" },
    });
    const simulator = new ModbusSimulator({ tags: local, strict: true, initialValues: { a: 1, b: 2 } });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    await driver.connect();
    expect((await driver.read(local.list())).map((sample) => sample.value)).toEqual([1, 2]);
    // Seen once the barrier is only remembered (one refusal may be transient); the second read learns it.
    expect(driver.readPlan(local.list()).requests).toHaveLength(1);
    expect((await driver.read(local.list())).map((sample) => sample.value)).toEqual([1, 2]);
    expect(driver.readPlan(local.list()).requests.map((request) => [request.address, request.count])).toEqual([
      [0, 1],
      [4, 1],
    ]);
  });

  it("reports a silent address as quality bad (timeout) and keeps reading the rest", async () => {
    const clock = new SimulatedClock();
    const simulator = new ModbusSimulator({ tags, initialValues: { "alarm.word": 5 } });
    const { host, port } = await startSimulator(simulator);
    simulator.injectTimeout({ area: "holding-register", address: 100 });
    const driver = createDriver({ transport: { kind: "tcp", host, port }, clock, requestTimeoutMs: 1000 });
    await driver.connect();
    const silent = nextRequest(simulator, (request) => request.functionCode === 3 && request.address <= 100);
    const reading = driver.read(tags.list());
    await silent;
    await clock.advance(1000);
    const samples = await reading;
    const byTag = new Map(samples.map((sample) => [sample.tag, sample]));
    const plan = driver.readPlan(tags.list());
    const silentRequest = plan.requests.find(
      (request) => request.area === "holding-register" && request.address <= 100,
    )!;
    for (const item of silentRequest.items) {
      expect(samples[item.index]!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadTimeout });
    }
    expect(byTag.get("alarm.word")).toMatchObject({ value: 5, quality: { severity: "good" } });
    expect(byTag.get("pump.running")!.quality.severity).toBe("good");
    expect(driver.status).toBe("connected");
  });

  it("reconnects after the device drops the connection, with status events", async () => {
    const clock = new SimulatedClock();
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({
      transport: { kind: "tcp", host, port },
      clock,
      reconnect: { initialDelayMs: 100, jitter: 0 },
    });
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await driver.connect();

    const lost = nextStatus(driver, "reconnecting");
    simulator.dropConnections();
    expect((await lost).reason).toBeTruthy();
    expect(await codeOf(driver.read(tags.list()))).toBe("KILN_CONNECTION_FAILED");

    const restored = nextStatus(driver, "connected");
    await clock.advance(100);
    await restored;
    expect((await driver.read(tags.list())).every((sample) => sample.quality.severity === "good")).toBe(true);
    expect(changes.map((change) => `${change.from}->${change.to}`)).toEqual([
      "disconnected->connecting",
      "connecting->connected",
      "connected->reconnecting",
      "reconnecting->connected",
    ]);
    expect(simulator.stats.connections).toBe(2);
  });

  it("reconnects when a stopped device comes back on the same port", async () => {
    const clock = new SimulatedClock();
    const simulator = new ModbusSimulator({ tags, initialValues: { "alarm.word": 9 } });
    const { host, port } = await startSimulator(simulator);
    const driver = createDriver({
      transport: { kind: "tcp", host, port },
      clock,
      reconnect: { initialDelayMs: 50, jitter: 0 },
    });
    await driver.connect();
    const lost = nextStatus(driver, "reconnecting");
    await simulator.stop();
    await lost;
    expect(await simulator.start()).toEqual({ host, port });
    const restored = nextStatus(driver, "connected");
    await clock.advance(50);
    await restored;
    const samples = await driver.read(tags.list());
    expect(samples.find((sample) => sample.tag === "alarm.word")!.value).toBe(9);
  });

  it("fails to connect to a port nobody listens on with KILN_CONNECTION_FAILED", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { host, port } = await simulator.start();
    await simulator.stop();
    const driver = createDriver({ transport: { kind: "tcp", host, port } });
    expect(await codeOf(driver.connect())).toBe("KILN_CONNECTION_FAILED");
    expect(driver.status).toBe("disconnected");
  });
});
