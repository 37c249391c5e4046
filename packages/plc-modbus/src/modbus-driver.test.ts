import { describe, expect, it } from "vitest";
import { defineTags, KilnError, QualityCodes } from "@kiln/core";
import { type DriverStatusChange } from "@kiln/core/driver-kit";
import { SimulatedClock } from "@kiln/core/testing";
import { FakeModbusDevice } from "../test/fake-modbus-device";
import { loadSerialSupport } from "./modbus-client";
import { ModbusDriver } from "./modbus-driver";
import type { ModbusDriverOptions } from "./modbus-driver-options";
import { chunkWrite } from "./modbus-writer";

const tags = defineTags({
  "tank.level": { dataType: "float32", address: "HR0:float32:CDAB" },
  "tank.temperature": {
    dataType: "float32",
    address: { area: "input-register", address: 10, type: "int16", scale: 0.1 },
  },
  "pump.running": { dataType: "bool", access: "readwrite", address: "C3" },
  "pump.speed": { dataType: "uint16", access: "readwrite", address: "HR2" },
  "pump.total": { dataType: "uint32", access: "readwrite", address: "HR20:uint32" },
  "mode.auto": { dataType: "bool", access: "readwrite", address: "HR4.2" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "HR100:string:10" },
  "door.closed": { dataType: "bool", access: "readwrite", address: "DI0" },
  "alarm.word": { dataType: "uint16", address: "HR5" },
});

function setup(overrides: Partial<ModbusDriverOptions> = {}) {
  const clock = new SimulatedClock();
  const device = new FakeModbusDevice();
  const changes: DriverStatusChange[] = [];
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "plc.local", port: 5020 },
    clock,
    clientFactory: device.factory,
    requestTimeoutMs: 500,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400, jitter: 0 },
    ...overrides,
  });
  driver.onStatusChange((change) => changes.push(change));
  return { clock, device, driver, changes };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return KilnError.is(error) ? error.code : `non-kiln: ${String(error)}`;
  }
  return undefined;
}

describe("ModbusDriver: lifecycle", () => {
  it("connects, reports status changes and closes", async () => {
    const { driver, device, changes } = setup();
    expect(driver.status).toBe("disconnected");
    expect(driver.name).toBe("modbus:plc.local:5020");
    expect(driver.capabilities).toEqual({ subscribe: false, browse: false });
    await driver.connect();
    await driver.connect();
    expect(device.calls).toEqual([{ method: "connectTCP", unitId: 1, args: ["plc.local", 5020] }]);
    await driver.close();
    await driver.close();
    expect(device.current?.destroyed).toBe(true);
    expect(changes.map((change) => change.to)).toEqual(["connecting", "connected", "closed"]);
  });

  it("rejects calls before connect() and after close() with KILN_NOT_CONNECTED", async () => {
    const { driver, device } = setup();
    expect(await codeOf(driver.read(tags.list()))).toBe("KILN_NOT_CONNECTED");
    expect(await codeOf(driver.write(tags.get("pump.speed"), 1))).toBe("KILN_NOT_CONNECTED");
    await driver.connect();
    await driver.close();
    expect(await codeOf(driver.read(tags.list()))).toBe("KILN_NOT_CONNECTED");
    expect(device.requests).toEqual([]);
  });

  it("fails a refused connection with a retryable KILN_CONNECTION_FAILED", async () => {
    const { driver, device, changes } = setup();
    device.connectBehaviour = "refuse";
    let error: unknown;
    await driver.connect().catch((caught: unknown) => (error = caught));
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    expect(driver.status).toBe("disconnected");
    expect(changes.map((change) => change.to)).toEqual(["connecting", "disconnected"]);
  });

  it("gives up on a connection attempt after connectTimeoutMs", async () => {
    const { driver, device, clock } = setup({ connectTimeoutMs: 2000 });
    device.connectBehaviour = "hang";
    const outcome = codeOf(driver.connect());
    await clock.advance(1999);
    expect(driver.status).toBe("connecting");
    await clock.advance(1);
    expect(await outcome).toBe("KILN_CONNECTION_FAILED");
    expect(device.current?.destroyed).toBe(true);
  });

  it("aborts a connection attempt with KILN_ABORTED", async () => {
    const { driver, device } = setup();
    device.connectBehaviour = "hang";
    const controller = new AbortController();
    const outcome = codeOf(driver.connect(controller.signal));
    controller.abort();
    expect(await outcome).toBe("KILN_ABORTED");
    expect(driver.status).toBe("disconnected");
  });

  it("validates its options, naming the field", () => {
    let caught: unknown;
    try {
      new ModbusDriver({ transport: { kind: "tcp", host: "x", port: 70000 } });
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect(JSON.stringify((caught as KilnError).details)).toContain("transport.port");
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ["an unknown key (a typo)", { maxInflight: 4 }, /Unrecognized key: "maxInflight"/],
    ["an unknown nested key", { unitHealth: { offlinAfter: 2 } }, /unitHealth: Unrecognized key: "offlinAfter"/],
    ["a timeout over 1 hour", { requestTimeoutMs: 2 ** 40 }, /requestTimeoutMs: must be at most 3600000/],
    ["a probe delay over 1 hour", { unitHealth: { probeMaxDelayMs: 7_200_000 } }, /probeMaxDelayMs: must be at most/],
    ["unit 0 (broadcast)", { unitId: 0 }, /unitId: must be 1-255: unit 0 is the broadcast address/],
    [
      "unit 0 in a forbidden range (adv12p LOW)",
      { planner: { forbidden: [{ area: "holding-register", start: 0, end: 1, unitId: 0 }] } },
      /planner\.forbidden\[0\]\.unitId: must be 1-255/,
    ],
    [
      "a baud rate of 1e12 (adv12p LOW)",
      { transport: { kind: "rtu", path: "/dev/ttyUSB0", baudRate: 1e12 } },
      /transport\.baudRate: must be at most 12000000 baud/,
    ],
    [
      "an unknown frame check",
      { transport: { kind: "tcp", host: "x", frameCheck: "paranoid" } },
      /transport\.frameCheck/,
    ],
    ["a quiet gap of 0", { transport: { kind: "tcp", host: "x", frameQuietGapMs: 0 } }, /transport\.frameQuietGapMs/],
    [
      "a late-answer guard that is not a boolean",
      { transport: { kind: "tcp", host: "x", lateAnswerGuard: "off" } },
      /transport\.lateAnswerGuard/,
    ],
    [
      "a late-answer guard on RTU (always on there)",
      { transport: { kind: "rtu", path: "/dev/ttyUSB0", lateAnswerGuard: false } },
      /Unrecognized key: "lateAnswerGuard"/,
    ],
    [
      "a logger without child (adv fix12z L4: a TypeError at construction before)",
      { logger: { debug() {}, info() {}, warn() {}, error() {} } },
      /logger: must be a Logger/,
    ],
    ["a logger that is a function", { logger: () => undefined }, /logger: must be a Logger/],
    [
      "a reconnect initialDelayMs of 0 (adv13f F4: threw at the first loss, in the socket's close handler)",
      { reconnect: { initialDelayMs: 0 } },
      /reconnect\.initialDelayMs: must be a finite number > 0/,
    ],
    [
      "a reconnect maxDelayMs below initialDelayMs (sibling)",
      { reconnect: { initialDelayMs: 5_000, maxDelayMs: 1_000 } },
      /reconnect\.maxDelayMs: must be a finite number > 0, at least initialDelayMs/,
    ],
  ])("refuses %s with KILN_VALIDATION naming it", (_case, extra, message) => {
    let caught: unknown;
    try {
      new ModbusDriver({ transport: { kind: "tcp", host: "x" }, ...extra } as never);
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect((caught as KilnError).message).toMatch(message);
  });
});

describe("ModbusDriver: read", () => {
  it("returns one sample per tag, in order, decoded with type, order and scale", async () => {
    const { driver, device, clock } = setup();
    device.holding.set([0x0000, 0x4148], 0); // 12.5 as float32 CDAB
    device.holding[2] = 1500;
    device.holding[4] = 0b100;
    device.holding.set([0x0001, 0x0002], 20);
    device.holding.set([0x4b69, 0x6c6e], 100);
    device.input[10] = 0xff9c; // -100 → -10.0
    device.coils[3] = 1;
    device.discrete[0] = 1;
    await driver.connect();
    const samples = await driver.read(tags.list());
    expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.severity])).toEqual([
      ["tank.level", 12.5, "good"],
      ["tank.temperature", -10, "good"],
      ["pump.running", true, "good"],
      ["pump.speed", 1500, "good"],
      ["pump.total", 0x00010002, "good"],
      ["mode.auto", true, "good"],
      ["recipe.name", "Kiln", "good"],
      ["door.closed", true, "good"],
      ["alarm.word", 0, "good"],
    ]);
    expect(samples.every((sample) => sample.timestamp === clock.now())).toBe(true);
    expect(device.requests.map((call) => [call.method, ...call.args])).toEqual([
      ["readCoils", 3, 1],
      ["readDiscreteInputs", 0, 1],
      ["readInputRegisters", 10, 1],
      ["readHoldingRegisters", 0, 6],
      ["readHoldingRegisters", 20, 2],
      ["readHoldingRegisters", 100, 10],
    ]);
  });

  it("uses the tag's unit id, else the connection's", async () => {
    const local = defineTags({
      a: { dataType: "int16", address: "HR0@9" },
      b: { dataType: "int16", address: "HR0" },
    });
    const { driver, device } = setup({ unitId: 4 });
    await driver.connect();
    await driver.read(local.list());
    // The tags' own one-register reads (the connection's id proof, fix12e, reads two other sizes between them).
    const own = device.requests.filter((call) => call.args[1] === 1);
    expect(own.map((call) => call.unitId).sort()).toEqual([4, 9]);
  });

  it("applies the connection's default byte order to tags without one", async () => {
    const local = defineTags({ value: { dataType: "float32", address: "HR0" } });
    const { driver, device } = setup({ byteOrder: "CDAB" });
    device.holding.set([0x0000, 0x3f80], 0);
    await driver.connect();
    expect((await driver.read(local.list()))[0]?.value).toBe(1);
  });

  it("reports a request's exception as bad quality on its tags only", async () => {
    const { driver, device } = setup();
    device.behaviour = (call) => (call.method === "readInputRegisters" ? { exception: 4 } : "answer");
    await driver.connect();
    const samples = await driver.read(tags.list());
    const temperature = samples.find((sample) => sample.tag === "tank.temperature")!;
    expect(temperature.value).toBeNull();
    expect(temperature.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadDeviceFailure });
    expect(samples.filter((sample) => sample.quality.severity === "good")).toHaveLength(tags.size - 1);
  });

  it("isolates an illegal address in a coalesced request and skips it on the next scan", async () => {
    const local = defineTags({
      a: { dataType: "int16", address: "HR0" },
      b: { dataType: "int16", address: "HR1" },
      c: { dataType: "int16", address: "HR2" },
      d: { dataType: "int16", address: "HR3" },
    });
    const list = local.list();
    const { driver, device } = setup();
    device.behaviour = (call) => {
      const [address, length] = call.args as [number, number];
      return address <= 2 && address + length > 2 ? { exception: 2 } : "answer";
    };
    await driver.connect();
    const first = await driver.read(list);
    expect(first.map((sample) => sample.quality.severity)).toEqual(["good", "good", "bad", "good"]);
    expect(first[2]!.quality.code).toBe(QualityCodes.BadNodeIdUnknown);
    expect(driver.learned.poisoned).toEqual([
      expect.objectContaining({ area: "holding-register", address: 2, exceptionCode: 2 }),
    ]);
    device.calls.length = 0;
    const second = await driver.read(list);
    expect(second.map((sample) => sample.quality.severity)).toEqual(["good", "good", "bad", "good"]);
    expect(device.requests.map((call) => call.args)).toEqual([
      [0, 2],
      [3, 1],
    ]);
  });

  it("reports a silent device as quality bad (timeout) and reconnects after maxConsecutiveTimeouts", async () => {
    const { driver, device, clock, changes } = setup({ maxConsecutiveTimeouts: 2 });
    const local = defineTags({ a: { dataType: "int16", address: "HR0" } }).list();
    await driver.connect();
    device.behaviour = "silent";
    const first = driver.read(local);
    await clock.advance(500);
    const samples = await first;
    expect(samples[0]!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadTimeout });
    expect(driver.status).toBe("connected");
    const second = driver.read(local);
    // After a timeout the answer stream is suspect: a fence goes first and waits up to the late bound (two
    // request timeouts, lateAnswerGuard); it gets no answer either, which counts against the link.
    await clock.advance(1000);
    await second;
    expect(driver.status).toBe("reconnecting");
    expect(changes.at(-1)).toMatchObject({ from: "connected", to: "reconnecting" });
    device.behaviour = "answer";
    await clock.advance(100);
    expect(driver.status).toBe("connected");
    expect(device.clients).toHaveLength(2);
    expect((await driver.read(local))[0]!.quality.severity).toBe("good");
  });

  it("rejects the read with a retryable KILN_CONNECTION_FAILED when the connection drops", async () => {
    const { driver, device, clock } = setup();
    await driver.connect();
    device.behaviour = "silent";
    const reading = codeOf(driver.read(tags.list()));
    await clock.advance(0);
    device.current!.emitClose();
    expect(await reading).toBe("KILN_CONNECTION_FAILED");
    expect(driver.status).toBe("reconnecting");
    expect(await codeOf(driver.read(tags.list()))).toBe("KILN_CONNECTION_FAILED");
  });

  it("aborts a read with KILN_ABORTED", async () => {
    const { driver, device, clock } = setup();
    await driver.connect();
    device.behaviour = "silent";
    const controller = new AbortController();
    const reading = codeOf(driver.read(tags.list(), controller.signal));
    await clock.advance(0);
    controller.abort();
    expect(await reading).toBe("KILN_ABORTED");
  });

  it("caches the plan per tag array", async () => {
    const { driver } = setup();
    const list = tags.list();
    expect(driver.readPlan(list)).toBe(driver.readPlan(list));
    expect(driver.readPlan(list).requests).toHaveLength(6);
  });
});

describe("ModbusDriver: reconnection", () => {
  it("retries with capped exponential backoff and reports the outcome", async () => {
    const { driver, device, clock, changes } = setup();
    await driver.connect();
    device.connectBehaviour = "refuse";
    device.current!.emitClose();
    expect(driver.status).toBe("reconnecting");
    const attempts = (): number => device.calls.filter((call) => call.method === "connectTCP").length - 1;
    await clock.advance(99);
    expect(attempts()).toBe(0);
    await clock.advance(1); // 100
    expect(attempts()).toBe(1);
    await clock.advance(200); // 300
    expect(attempts()).toBe(2);
    await clock.advance(400); // 700: 100, 200, 400...
    expect(attempts()).toBe(3);
    await clock.advance(400); // ...capped at 400
    expect(attempts()).toBe(4);
    device.connectBehaviour = "accept";
    await clock.advance(400);
    expect(driver.status).toBe("connected");
    const transitions = changes.slice(2).filter((change) => change.from !== change.to);
    expect(transitions.map((change) => [change.from, change.to])).toEqual([
      ["connected", "reconnecting"],
      ["reconnecting", "connected"],
    ]);
    // Each refused attempt is reported with its own reason (reconnecting -> reconnecting).
    const attemptsReported = changes.filter((change) => change.from === "reconnecting" && change.to === "reconnecting");
    expect(attemptsReported).toHaveLength(4);
    expect(attemptsReported.every((change) => typeof change.reason === "string" && change.reason.length > 0)).toBe(
      true,
    );
  });

  it("connect() while reconnecting resolves on the next successful attempt", async () => {
    const { driver, device, clock } = setup();
    await driver.connect();
    device.current!.emitClose();
    const connecting = driver.connect();
    await clock.advance(100);
    await expect(connecting).resolves.toBeUndefined();
    expect(driver.status).toBe("connected");
  });

  it("close() stops reconnecting", async () => {
    const { driver, device, clock } = setup();
    await driver.connect();
    device.connectBehaviour = "refuse";
    device.current!.emitClose();
    await driver.close();
    await clock.advance(10_000);
    expect(device.calls.filter((call) => call.method === "connectTCP")).toHaveLength(1);
    expect(driver.status).toBe("closed");
  });
});

describe("ModbusDriver: write", () => {
  it("uses function codes 5 and 6 for one coil or register, 16 for more", async () => {
    const { driver, device } = setup();
    await driver.connect();
    await driver.write(tags.get("pump.running"), true);
    await driver.write(tags.get("pump.speed"), 1200);
    await driver.write(tags.get("pump.total"), 0x00030004);
    const setpoint = defineTags({ sp: { dataType: "float32", access: "readwrite", address: "HR0:float32:CDAB" } });
    await driver.write(setpoint.get("sp"), 12.5);
    expect(device.requests.map((call) => [call.method, ...call.args])).toEqual([
      ["writeCoil", 3, true],
      ["writeRegister", 2, 1200],
      ["writeRegisters", 20, [0x0003, 0x0004]],
      ["writeRegisters", 0, [0x0000, 0x4148]],
    ]);
    expect(device.coils[3]).toBe(1);
  });

  it("uses function codes 15 and 16 only when singleWriteFunctions is off", async () => {
    const { driver, device } = setup({ write: { singleWriteFunctions: false } });
    await driver.connect();
    await driver.write(tags.get("pump.running"), false);
    await driver.write(tags.get("pump.speed"), 7);
    expect(device.requests.map((call) => [call.method, ...call.args])).toEqual([
      ["writeCoils", 3, [false]],
      ["writeRegisters", 2, [7]],
    ]);
  });

  it("chunks a long write to maxRegistersPerWrite", async () => {
    const { driver, device } = setup({ write: { maxRegistersPerWrite: 4 } });
    await driver.connect();
    await driver.write(tags.get("recipe.name"), "0123456789abcdefgh");
    expect(device.requests.map((call) => [call.method, call.args[0], (call.args[1] as number[]).length])).toEqual([
      ["writeRegisters", 100, 4],
      ["writeRegisters", 104, 4],
      ["writeRegisters", 108, 2],
    ]);
    expect(device.holding[100]).toBe(0x3031);
  });

  it("splits writes at the protocol limits", () => {
    expect(
      chunkWrite(
        10,
        Array.from({ length: 250 }, () => 0),
        123,
      ).map((chunk) => [chunk.address, chunk.values.length]),
    ).toEqual([
      [10, 123],
      [133, 123],
      [256, 4],
    ]);
    expect(
      chunkWrite(
        0,
        Array.from({ length: 2000 }, () => true),
        1968,
      ).map((chunk) => chunk.values.length),
    ).toEqual([1968, 32]);
  });

  it("writes a bit by read-modify-write, keeping the other bits", async () => {
    const { driver, device } = setup();
    device.holding[4] = 0b1001;
    await driver.connect();
    await driver.write(tags.get("mode.auto"), true);
    expect(device.holding[4]).toBe(0b1101);
    await driver.write(tags.get("mode.auto"), false);
    expect(device.holding[4]).toBe(0b1001);
    // The register is read twice and written only when both reads agree (ADR 0041, amendment fix12ab).
    expect(device.requests.map((call) => call.method)).toEqual([
      "readHoldingRegisters",
      "readHoldingRegisters",
      "writeRegister",
      "readHoldingRegisters",
      "readHoldingRegisters",
      "writeRegister",
    ]);
  });

  it("writes a bit with function code 22 in mask-write mode", async () => {
    const { driver, device } = setup({ write: { bitWriteMode: "mask-write" } });
    device.holding[4] = 0b1001;
    await driver.connect();
    await driver.write(tags.get("mode.auto"), true);
    expect(device.requests.map((call) => [call.method, ...call.args])).toEqual([
      ["maskWriteRegister", 4, 0xfffb, 0b100],
    ]);
    expect(device.holding[4]).toBe(0b1101);
  });

  it("rejects read-only tags and areas with KILN_TAG_NOT_WRITABLE before any traffic", async () => {
    const { driver, device } = setup();
    await driver.connect();
    expect(await codeOf(driver.write(tags.get("alarm.word"), 1))).toBe("KILN_TAG_NOT_WRITABLE");
    expect(await codeOf(driver.write(tags.get("door.closed"), true))).toBe("KILN_TAG_NOT_WRITABLE");
    expect(device.requests).toEqual([]);
  });

  it("checks values by the control system's rules before sending: 1.5 to an integer tag is refused, not rounded", async () => {
    const { driver, device } = setup();
    await driver.connect();
    const checked = defineTags({
      "valve.step": { dataType: "int16", access: "readwrite", address: "HR30" },
      "heater.power": { dataType: "float64", access: "readwrite", address: "HR31:int16", range: { min: 0, max: 100 } },
      "heater.offset": { dataType: "float64", access: "readwrite", address: "HR32:int16" },
      "heater.tenths": {
        dataType: "float32",
        access: "readwrite",
        address: { area: "holding-register", address: 33, type: "int16", scale: 0.1 },
      },
    });
    for (const [name, value, code] of [
      ["valve.step", 1.5, "KILN_VALIDATION"],
      ["valve.step", 40_000, "KILN_VALIDATION"],
      ["valve.step", true, "KILN_VALIDATION"],
      ["heater.power", 101, "KILN_OUT_OF_RANGE"],
      ["heater.power", Number.NaN, "KILN_VALIDATION"],
      ["heater.offset", 40_000, "KILN_OUT_OF_RANGE"], // fits float64, not the int16 register
      ["heater.offset", 1.5, "KILN_VALIDATION"], // a float tag on an int16 register: not stored as 2 (adv12p LOW)
      ["heater.tenths", 0.15, "KILN_VALIDATION"], // between two 0.1 steps: not stored as 0.1
    ] as const) {
      expect(await codeOf(driver.write(checked.get(name), value)), `${name} = ${String(value)}`).toBe(code);
    }
    expect(await codeOf(driver.write(tags.get("pump.speed"), 70_000))).toBe("KILN_VALIDATION");
    expect(await codeOf(driver.write(tags.get("recipe.name"), "x".repeat(21)))).toBe("KILN_OUT_OF_RANGE");
    expect(await codeOf(driver.write(tags.get("pump.speed"), "fast"))).toBe("KILN_VALIDATION");
    expect(device.requests).toEqual([]);
    await driver.write(checked.get("valve.step"), -2);
    expect(device.requests).toHaveLength(1);
    // Sibling: scale round-off is not a fraction of a step (0.3 / 0.1 = 2.9999999999999996 is step 3).
    await driver.write(checked.get("heater.tenths"), 0.3);
    expect(device.holding[33]).toBe(3);
  });

  it("maps a device exception to KILN_WRITE_REJECTED and silence to KILN_TIMEOUT", async () => {
    const { driver, device, clock } = setup();
    await driver.connect();
    device.behaviour = { exception: 3 };
    let error: unknown;
    await driver.write(tags.get("pump.speed"), 1).catch((caught: unknown) => (error = caught));
    expect(KilnError.is(error, "KILN_WRITE_REJECTED")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ tag: "pump.speed", exceptionCode: 3 });
    expect((error as KilnError).retryable).toBe(false);
    // The device answers first, so its 6 comes in its usual time: the device's own busy answer, final (a 6 before
    // any answer was timed on the connection may be a queued gateway's giving up, ADR 0041 fix12k).
    device.behaviour = "answer";
    for (let write = 0; write < 4; write++) await driver.write(tags.get("pump.speed"), 1);
    device.behaviour = { exception: 6 };
    await driver.write(tags.get("pump.speed"), 1).catch((caught: unknown) => (error = caught));
    expect(KilnError.is(error, "KILN_WRITE_REJECTED")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    device.behaviour = "silent";
    const writing = codeOf(driver.write(tags.get("pump.speed"), 1));
    await clock.advance(500);
    expect(await writing).toBe("KILN_TIMEOUT");
  });
});

describe("ModbusDriver: RTU", () => {
  it("hands a custom client the serial path and line settings", async () => {
    const { driver, device } = setup({
      transport: { kind: "rtu", path: "/dev/ttyUSB0", baudRate: 19200, parity: "even" },
    });
    expect(driver.name).toBe("modbus:/dev/ttyUSB0");
    expect(await codeOf(driver.connect())).toBeUndefined();
    expect(device.calls[0]).toEqual({
      method: "connectRTUBuffered",
      unitId: 1,
      args: ["/dev/ttyUSB0", { baudRate: 19200, dataBits: 8, stopBits: 1, parity: "even" }],
    });
  });

  it("fails with KILN_NOT_SUPPORTED saying what helps: reinstall optional deps, or rebuild the binding", async () => {
    const caught = (importer: () => Promise<unknown>) =>
      loadSerialSupport(importer).then(
        () => undefined,
        (error: unknown) => error as KilnError,
      );
    const missing = await caught(() => Promise.reject(new Error("Cannot find module 'serialport'")));
    expect(KilnError.is(missing, "KILN_NOT_SUPPORTED")).toBe(true);
    expect(missing!.message).toContain("optional dependency of modbus-serial");
    expect(missing!.details.package).toBe("serialport");
    const binding = await caught(() => Promise.reject(new Error("No native build was found for platform=freebsd")));
    expect(binding!.message).toContain("npm rebuild @serialport/bindings-cpp");
    expect(binding!.details.package).toBe("@serialport/bindings-cpp");
    await expect(loadSerialSupport(() => Promise.resolve({}))).rejects.toMatchObject({ code: "KILN_NOT_SUPPORTED" });
    class SerialPort {}
    await expect(loadSerialSupport(() => Promise.resolve({ SerialPort }))).resolves.toBe(SerialPort);
    // A CommonJS build seen through an interop layer puts it under `default`.
    await expect(loadSerialSupport(() => Promise.resolve({ default: { SerialPort } }))).resolves.toBe(SerialPort);
  });
});
