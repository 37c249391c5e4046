import ModbusRTU from "modbus-serial";
import { afterEach, describe, expect, it, vi } from "vitest";
import { KilnError, defineTags } from "@kiln/core";
import { SimulatedClock } from "@kiln/core/testing";
import { ModbusSimulator } from "../src/index";

const tags = defineTags({
  level: { dataType: "float32", address: "HR10:float32" },
  speed: { dataType: "uint16", access: "readwrite", address: "HR12" },
  running: { dataType: "bool", access: "readwrite", address: "C2" },
  door: { dataType: "bool", address: "DI1" },
  temperature: { dataType: "float32", address: { area: "input-register", address: 3, type: "int16", scale: 0.5 } },
  remote: { dataType: "int16", address: "HR0@5" },
});

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function started(simulator: ModbusSimulator): Promise<{ host: string; port: number }> {
  const address = await simulator.start();
  cleanups.push(() => simulator.stop());
  return address;
}

async function client(port: number, unitId = 1): Promise<ModbusRTU> {
  const raw = new ModbusRTU();
  await raw.connectTCP("127.0.0.1", { port });
  raw.setID(unitId);
  raw.setTimeout(1_000);
  cleanups.push(() => new Promise<void>((resolve) => raw.destroy(() => resolve())));
  return raw;
}

async function exceptionOf(promise: Promise<unknown>): Promise<number | string | undefined> {
  try {
    await promise;
  } catch (error) {
    return (error as { modbusCode?: number }).modbusCode ?? String(error);
  }
  return undefined;
}

describe("ModbusSimulator", () => {
  it("listens on a free loopback port and serves tags at their addresses", async () => {
    const clock = new SimulatedClock();
    const simulator = new ModbusSimulator({
      tags,
      clock,
      signals: { level: { kind: "ramp", from: 0, to: 100, periodMs: 1000 } },
      initialValues: { speed: 1450, running: true, door: true, temperature: -20, remote: -7 },
    });
    const { host, port } = await started(simulator);
    expect(host).toBe("127.0.0.1");
    expect(port).toBeGreaterThan(0);
    const raw = await client(port);
    await clock.advance(250);
    const words = (await raw.readHoldingRegisters(10, 3)).data;
    expect(words).toEqual([0x41c8, 0x0000, 1450]); // 25.0 as float32 ABCD, then speed
    expect((await raw.readCoils(0, 4)).data.slice(0, 4)).toEqual([false, false, true, false]);
    expect((await raw.readDiscreteInputs(1, 1)).data[0]).toBe(true);
    expect((await raw.readInputRegisters(3, 1)).data).toEqual([0xffd8]); // -20 / 0.5 = -40
    raw.setID(5);
    expect((await raw.readHoldingRegisters(0, 1)).data).toEqual([0xfff9]);
    expect(simulator.stats).toMatchObject({ requests: 5, connections: 1, protocolViolations: 0 });
    expect(simulator.stats.byFunction).toEqual({ 1: 1, 2: 1, 3: 2, 4: 1 });
  });

  it("accepts writes, and a written tag keeps its value over its signal", async () => {
    const simulator = new ModbusSimulator({ tags, signals: { speed: { kind: "counter" } } });
    const { port } = await started(simulator);
    const raw = await client(port);
    await raw.writeRegister(12, 999);
    await raw.writeCoil(2, true);
    expect(simulator.getValue("speed")).toBe(999);
    expect(simulator.getValue("running")).toBe(true);
    expect((await raw.readHoldingRegisters(12, 1)).data).toEqual([999]);
    expect((await raw.readHoldingRegisters(12, 1)).data).toEqual([999]);
    await raw.writeRegisters(10, [0x3f80, 0x0000]);
    expect(simulator.getValue("level")).toBe(1);
    simulator.setValue("level", 2.5);
    expect((await raw.readHoldingRegisters(10, 2)).data).toEqual([0x4020, 0x0000]);
  });

  it("answers injected exceptions until the fault is removed", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { port } = await started(simulator);
    const raw = await client(port);
    const remove = simulator.injectException({ area: "holding-register", address: 11 }, 2);
    expect(await exceptionOf(raw.readHoldingRegisters(10, 3))).toBe(2);
    expect(await exceptionOf(raw.readHoldingRegisters(12, 1))).toBeUndefined();
    simulator.injectException({ area: "coil", address: 2, on: "write" }, 4);
    expect(await exceptionOf(raw.writeCoil(2, true))).toBe(4);
    expect(await exceptionOf(raw.readCoils(2, 1))).toBeUndefined();
    remove();
    expect(await exceptionOf(raw.readHoldingRegisters(10, 3))).toBeUndefined();
    simulator.clearFaults();
    expect(await exceptionOf(raw.writeCoil(2, true))).toBeUndefined();
  });

  it("never answers a request hit by an injected timeout, while answering later ones", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { port } = await started(simulator);
    const raw = await client(port);
    const remove = simulator.injectTimeout({ area: "holding-register", address: 10 });
    let answered = false;
    const silent = raw.readHoldingRegisters(10, 2).then(
      () => (answered = true),
      () => (answered = true),
    );
    expect((await raw.readHoldingRegisters(12, 1)).data).toHaveLength(1);
    expect((await raw.readCoils(0, 8)).data).toHaveLength(8);
    expect(answered).toBe(false);
    remove();
    expect((await raw.readHoldingRegisters(10, 2)).data).toHaveLength(2);
    expect(answered).toBe(false);
    void silent;
  });

  it("answers exception 3 to a read over the protocol limit and counts the violation", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { port } = await started(simulator);
    const raw = await client(port);
    expect(await exceptionOf(raw.readHoldingRegisters(0, 126))).toBe(3);
    expect(await exceptionOf(raw.readHoldingRegisters(0, 125))).toBeUndefined();
    expect(simulator.stats.protocolViolations).toBe(1);
  });

  it("in strict mode, refuses addresses no tag occupies", async () => {
    const simulator = new ModbusSimulator({ tags, strict: true });
    const { port } = await started(simulator);
    const raw = await client(port);
    expect(await exceptionOf(raw.readHoldingRegisters(10, 3))).toBeUndefined();
    expect(await exceptionOf(raw.readHoldingRegisters(10, 4))).toBe(2);
    expect(await exceptionOf(raw.writeRegister(13, 1))).toBe(2);
    expect(await exceptionOf(raw.readCoils(3, 1))).toBe(2);
  });

  it("drops connections on demand and keeps listening", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { port } = await started(simulator);
    const raw = await client(port);
    const closed = new Promise<void>((resolve) => raw.on("close", () => resolve()));
    simulator.dropConnections();
    await closed;
    const again = await client(port);
    expect((await again.readHoldingRegisters(12, 1)).data).toHaveLength(1);
  });

  it("stops cleanly and starts again on the same port", async () => {
    const simulator = new ModbusSimulator({ tags });
    const { port } = await started(simulator);
    const raw = await client(port);
    const closed = new Promise<void>((resolve) => raw.on("close", () => resolve()));
    await simulator.stop();
    await closed;
    expect(simulator.address).toBeUndefined();
    await expect(client(port)).rejects.toBeDefined();
    expect(await simulator.start()).toEqual({ host: "127.0.0.1", port });
    expect((await (await client(port)).readHoldingRegisters(12, 1)).data).toHaveLength(1);
    await simulator.stop();
    await simulator.stop();
  });

  it("fails to start on a port already in use with KILN_CONNECTION_FAILED", async () => {
    const first = new ModbusSimulator({ tags });
    const { port } = await started(first);
    const second = new ModbusSimulator({ tags, port });
    let caught: unknown;
    await second.start().catch((error: unknown) => (caught = error));
    expect(KilnError.is(caught, "KILN_CONNECTION_FAILED")).toBe(true);
    expect(second.address).toBeUndefined();
  });

  it("names an unknown tag with KILN_TAG_UNKNOWN and checks values it is given", () => {
    const simulator = new ModbusSimulator({ tags });
    expect(() => simulator.getValue("nope")).toThrow(expect.objectContaining({ code: "KILN_TAG_UNKNOWN" }));
    let caught: unknown;
    try {
      simulator.setValue("speed", 70_000);
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_OUT_OF_RANGE")).toBe(true);
  });

  it("rejects a tag without a Modbus address", () => {
    const bad = defineTags({ orphan: { dataType: "int16" } });
    expect(() => new ModbusSimulator({ tags: bad })).toThrow(expect.objectContaining({ code: "KILN_VALIDATION" }));
  });
});

/** Sends one raw MBAP frame (`pdu` for unit 1) and resolves with the response PDU, or undefined after 300 ms. */
async function rawExchange(
  port: number,
  pdu: readonly number[],
  unitId = 1,
  protocolId = 0,
): Promise<number[] | undefined> {
  const { connect } = await import("node:net");
  const socket = connect({ host: "127.0.0.1", port });
  cleanups.push(async () => void socket.destroy());
  await new Promise((resolve) => socket.once("connect", resolve));
  const header = [0, 7, protocolId >> 8, protocolId & 0xff, (pdu.length + 1) >> 8, (pdu.length + 1) & 0xff, unitId];
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 300);
    socket.once("data", (data: Buffer) => {
      clearTimeout(timer);
      expect(data.readUInt16BE(0)).toBe(7); // the transaction id comes back
      resolve([...data.subarray(7)]);
    });
    socket.write(Buffer.from([...header, ...pdu]));
  });
}

describe("ModbusSimulator answers like a device", () => {
  it("exception 01 for unsupported function codes (7, 17, 43) and frames too short for their function", async () => {
    const { port } = await started(new ModbusSimulator({ tags }));
    expect(await rawExchange(port, [7])).toEqual([0x87, 1]);
    expect(await rawExchange(port, [17])).toEqual([0x91, 1]);
    expect(await rawExchange(port, [43, 14, 1, 0])).toEqual([0xab, 1]);
    expect(await rawExchange(port, [3, 0])).toEqual([0x83, 1]);
    expect(await rawExchange(port, [16, 0, 0, 0, 1])).toEqual([0x90, 1]);
  });

  it("stays silent, like a real gateway, to a broadcast (unit 0) and to a frame of another protocol id", async () => {
    const { port } = await started(new ModbusSimulator({ tags }));
    expect(await rawExchange(port, [3, 0, 12, 0, 1])).toEqual([3, 2, 0, 0]);
    expect(await rawExchange(port, [3, 0, 12, 0, 1], 0)).toBeUndefined();
    expect(await rawExchange(port, [3, 0, 12, 0, 1], 1, 1)).toBeUndefined();
  });

  it("exception 03 for illegal quantities and byte counts, 02 past the end of the address space", async () => {
    const { port } = await started(new ModbusSimulator({ tags }));
    const raw = await client(port);
    expect(await exceptionOf(raw.readHoldingRegisters(0, 126))).toBe(3);
    expect(await exceptionOf(raw.readInputRegisters(0, 126))).toBe(3);
    expect(await exceptionOf(raw.readCoils(0, 2001))).toBe(3);
    expect(await exceptionOf(raw.readDiscreteInputs(0, 2001))).toBe(3);
    expect(await rawExchange(port, [16, 0, 0, 0, 124, 248])).toEqual([0x90, 3]); // 124 registers cannot fit a frame
    expect(await rawExchange(port, [3, 0, 0, 0, 0])).toEqual([0x83, 3]);
    expect(await rawExchange(port, [16, 0, 0, 0, 2, 2, 0, 1])).toEqual([0x90, 3]); // byte count 2 for 2 registers
    expect(await rawExchange(port, [5, 0, 2, 0x12, 0x34])).toEqual([0x85, 3]); // coil value neither 0 nor FF00
    expect(await exceptionOf(raw.readHoldingRegisters(65_500, 100))).toBe(2);
    expect(await exceptionOf(raw.readHoldingRegisters(65_436, 100))).toBeUndefined();
    expect(await rawExchange(port, [22, 0, 12, 0xff, 0x00, 0x00, 0x05])).toEqual([22, 0, 12, 0xff, 0x00, 0x00, 0x05]);
  });

  it("refuses a request longer than its fields imply (an FC 6 with a trailing byte) with exception 03, unexecuted (fix12aa)", async () => {
    // Before: FC 6 with a trailing byte wrote the register and echoed it, as if well formed.
    const simulator = new ModbusSimulator({ tags, initialValues: { speed: 9 } });
    const { port } = await started(simulator);
    expect(await rawExchange(port, [6, 0, 12, 0, 5, 0xaa])).toEqual([0x86, 3]);
    expect(simulator.getValue("speed")).toBe(9);
    // Siblings: FC 3 with a trailing byte, FC 16 with more data than its byte count, FC 22 with one byte too many.
    expect(await rawExchange(port, [3, 0, 12, 0, 1, 0])).toEqual([0x83, 3]);
    expect(await rawExchange(port, [16, 0, 12, 0, 1, 2, 0, 5, 0])).toEqual([0x90, 3]);
    expect(await rawExchange(port, [22, 0, 12, 0xff, 0x00, 0x00, 0x05, 0])).toEqual([0x96, 3]);
    expect(simulator.getValue("speed")).toBe(9);
    expect(await rawExchange(port, [6, 0, 12, 0, 5])).toEqual([6, 0, 12, 0, 5]);
    expect(simulator.getValue("speed")).toBe(5);
  });

  it("in strict mode a unit no tag names gets 0x0B like a gateway, or no answer like a device (fix12aa)", async () => {
    // Before: exception 2 (illegal data address), which a driver learns as a hole in a live unit's map.
    const gateway = await started(new ModbusSimulator({ tags, strict: true }));
    expect(await rawExchange(gateway.port, [3, 0, 12, 0, 1], 9)).toEqual([0x83, 0x0b]);
    expect(await rawExchange(gateway.port, [3, 0, 12, 0, 1], 1)).toEqual([3, 2, 0, 0]);
    const device = await started(new ModbusSimulator({ tags, strict: true, unservedUnits: "silent" }));
    expect(await rawExchange(device.port, [3, 0, 12, 0, 1], 9)).toBeUndefined();
    // Not strict: every unit is served, as before.
    const loose = await started(new ModbusSimulator({ tags }));
    expect(await rawExchange(loose.port, [3, 0, 12, 0, 1], 9)).toEqual([3, 2, 0, 0]);
  });

  it("injects silence per unit, late replies and connection resets", async () => {
    const simulator = new ModbusSimulator({ tags, initialValues: { speed: 9, remote: -7 } });
    const { port } = await started(simulator);
    const silence = simulator.injectSilence(5);
    expect(await rawExchange(port, [3, 0, 0, 0, 1], 5)).toBeUndefined();
    expect(await rawExchange(port, [3, 0, 12, 0, 1], 1)).toEqual([3, 2, 0, 9]);
    silence();
    expect(await rawExchange(port, [3, 0, 0, 0, 1], 5)).toEqual([3, 2, 0xff, 0xf9]);

    const late = simulator.injectDelay(150, { area: "holding-register", address: 12 });
    const raw = await client(port);
    const startedAt = Date.now();
    expect((await raw.readHoldingRegisters(12, 1)).data).toEqual([9]);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(140);
    late();

    simulator.injectReset({ area: "holding-register", address: 12 });
    const { connect } = await import("node:net");
    const socket = connect({ host: "127.0.0.1", port });
    cleanups.push(async () => void socket.destroy());
    await new Promise((resolve) => socket.once("connect", resolve));
    const failure = new Promise<string | undefined>((resolve) => {
      socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code));
      socket.once("close", () => resolve(undefined));
    });
    socket.write(Buffer.from([0, 1, 0, 0, 0, 6, 1, 3, 0, 12, 0, 1]));
    expect(await failure).toBe("ECONNRESET");
  });

  it("answers each request as it comes, with no timer (its speed is measured in bench/modbus-read)", async () => {
    const { port } = await started(new ModbusSimulator({ tags }));
    const raw = await client(port);
    // A timer per request (the server library's, 1.4 ms a request) would never fire with the clock stopped: the
    // read would hang, caught by a real timer taken before the fake ones, and no answer would count.
    const realSetTimeout = globalThis.setTimeout;
    const realClearTimeout = globalThis.clearTimeout;
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "setImmediate"] });
    let answered = 0;
    try {
      for (let request = 0; request < 200; request++) {
        let guard: ReturnType<typeof setTimeout> | undefined;
        const hung = new Promise<"hung">((resolve) => {
          guard = realSetTimeout(() => resolve("hung"), 2_000);
        });
        const result = await Promise.race([raw.readHoldingRegisters(0, 100), hung]);
        realClearTimeout(guard);
        if (result === "hung") break;
        answered++;
      }
    } finally {
      vi.useRealTimers();
    }
    expect(answered).toBe(200);
  });
});
