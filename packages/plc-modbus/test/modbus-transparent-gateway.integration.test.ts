import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions } from "../src/index";
import { rtuFrame } from "../src/modbus-rtu-frame";
import { freePort } from "./free-port";
import { rawRegister, startRawTcpDevice, type RawRequest } from "./raw-tcp-device";

// A transparent Modbus TCP -> RTU gateway (many serial servers): the MBAP header is stripped, the RTU request
// goes out on the serial line, and whatever RTU answer comes back is wrapped with the MBAP header of the NEWEST
// request. An answer that comes back after its request timed out is then stamped with the next request's
// transaction id: the driver must not take it as that request's answer (adv12e HIGH: HR50's late answer
// delivered good as HR0's value). Both devices here work like a serial line: one request at a time, in order.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 300;
/** How long the device takes for the slow answer: after its request timed out, within the next timeout. */
const SLOW_MS = 450;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0" },
  b: { dataType: "uint16", address: "HR50" },
});

async function driverFor(port: number, options: Partial<ModbusDriverOptions> = {}): Promise<ModbusDriver> {
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
    ...options,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return driver;
}

/** Every good sample's value, and whether any good value differs from `expected`. */
function wrongGood(samples: readonly Sample[], expected: Record<string, number>): string[] {
  return samples
    .filter((sample) => sample.quality.severity === "good" && sample.value !== expected[sample.tag])
    .map((sample) => `${sample.tag}=${String(sample.value)} (true ${expected[sample.tag]})`);
}

// The slow (or held) answer is the n-th of a tag's own one-register reads: since separation is on by default
// (fix12e), the id proof, separators and fences also read at these addresses, with other sizes.
describe("a transparent TCP-to-RTU gateway stamps a late answer with the next request's transaction id", () => {
  /** A raw device behind such a gateway: the `slowAt`-th request to HR50 takes SLOW_MS, everything else 2 ms. */
  async function serialGateway(slowAt = 2) {
    let lineFreeAt = 0;
    let newest = 0;
    let hr50 = 0;
    const device = await startRawTcpDevice((request) => {
      newest = request.transactionId;
      const now = Date.now();
      const slow = request.address === 50 && request.value === 1 && ++hr50 === slowAt; // the tag's own read
      lineFreeAt = Math.max(now, lineFreeAt) + (slow ? SLOW_MS : 2);
      return { kind: "normal", delayMs: lineFreeAt - now, transactionId: () => newest };
    });
    cleanups.push(() => device.stop());
    return device;
  }

  it("the late answer is never delivered as the next same-shape request's value", async () => {
    const device = await serialGateway();
    const driver = await driverFor(device.port);
    const expected = { a: rawRegister(1, 0), b: rawRegister(1, 50) };
    const first = await driver.read(tags.list());
    expect(first.map((sample) => [sample.value, sample.quality.severity])).toEqual([
      [expected.a, "good"],
      [expected.b, "good"],
    ]);
    const second = await driver.read(tags.list());
    expect(second[1]).toMatchObject({ value: null, quality: { severity: "bad" } });
    // The next scan at once: HR0 has the same answer shape as the HR50 that timed out.
    const wrong: string[] = [];
    const later: Sample[][] = [];
    for (let scan = 0; scan < 4; scan++) {
      const samples = await driver.read(tags.list());
      later.push(samples);
      wrong.push(...wrongGood(samples, expected));
    }
    expect(wrong).toEqual([]);
    // Not just bad: the guard waits for quiet, then the right answers come.
    expect(later.at(-1)!.map((sample) => [sample.value, sample.quality.severity])).toEqual([
      [expected.a, "good"],
      [expected.b, "good"],
    ]);
  });

  it("with 4 requests allowed in flight (sibling: pipelining behind the same gateway), no good value is wrong", async () => {
    const device = await serialGateway();
    const many = defineTags({
      a: { dataType: "uint16", address: "HR0" },
      b: { dataType: "uint16", address: "HR50" },
      c: { dataType: "uint16", address: "HR100" },
      d: { dataType: "uint16", address: "IR7" },
    });
    const expected = { a: rawRegister(1, 0), b: rawRegister(1, 50), c: rawRegister(1, 100), d: rawRegister(1, 7) };
    const driver = await driverFor(device.port, { maxInFlight: 4 });
    const wrong: string[] = [];
    let good = 0;
    for (let scan = 0; scan < 8; scan++) {
      const samples = await driver.read(many.list());
      wrong.push(...wrongGood(samples, expected));
      good += samples.filter((sample) => sample.quality.severity === "good").length;
    }
    expect(wrong).toEqual([]);
    expect(good).toBeGreaterThan(16);
  });

  it("a gateway that holds the late answer until the next request arrives hands it to a fence, not to a tag", async () => {
    // The late answer of HR100 comes only when the next request arrives (whenever that is), stamped with its id;
    // that request's own answer follows 20 ms later. No quiet time helps: the driver first sends a read of
    // another size (a fence), which the late answer does not fit.
    let held: RawRequest | undefined;
    let done = false;
    const device = await startRawTcpDevice((request) => {
      if (request.address === 100 && !done && held === undefined) {
        held = request;
        return { kind: "silent" };
      }
      if (held !== undefined) {
        const late = held;
        held = undefined;
        done = true;
        return {
          kind: "normal",
          values: [rawRegister(late.unitId, late.address)],
          registers: late.value,
          thenOwnAfterMs: 20,
        };
      }
      return { kind: "normal" };
    });
    cleanups.push(() => device.stop());
    const twoTags = defineTags({
      a: { dataType: "uint16", address: "HR0" },
      b: { dataType: "uint16", address: "HR100" },
    });
    const driver = await driverFor(device.port);
    const expected = { a: rawRegister(1, 0), b: rawRegister(1, 100) };
    const wrong: string[] = [];
    let last: Sample[] = [];
    for (let scan = 0; scan < 5; scan++) {
      last = await driver.read(twoTags.list());
      wrong.push(...wrongGood(last, expected));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(wrong).toEqual([]);
    expect(last.map((sample) => [sample.value, sample.quality.severity])).toEqual([
      [expected.a, "good"],
      [expected.b, "good"],
    ]);
  });

  /**
   * A gateway that stamps each answer with the whole MBAP header of the newest request (transaction id AND unit
   * id): the `slowAt`-th request to unit 2 takes SLOW_MS, everything else 2 ms; the line serves one at a time.
   * Holding register `a` of a unit holds `1000 * unit + a` until written (`registers`).
   */
  async function wholeHeaderGateway(slowAt = 2) {
    let lineFreeAt = 0;
    let newest = { transactionId: 0, unitId: 0 };
    let unit2 = 0;
    const registers = new Map<string, number>();
    const device = await startRawTcpDevice((request) => {
      newest = { transactionId: request.transactionId, unitId: request.unitId };
      const now = Date.now();
      const slow = request.unitId === 2 && request.value === 1 && ++unit2 === slowAt; // a tag's own read
      lineFreeAt = Math.max(now, lineFreeAt) + (slow ? SLOW_MS : 2);
      const key = `${request.unitId}/${request.address}`;
      if (request.functionCode === 6) registers.set(key, request.value);
      const values =
        request.functionCode === 3 ? [registers.get(key) ?? rawRegister(request.unitId, request.address)] : undefined;
      return {
        kind: "normal",
        delayMs: lineFreeAt - now,
        transactionId: () => newest.transactionId,
        unitId: () => newest.unitId,
        ...(values && request.value === 1 ? { values } : {}),
      };
    });
    cleanups.push(() => device.stop());
    return { device, registers };
  }

  it("a late answer stamped with the newest request's unit id too is never delivered as another unit's value (adv12p HIGH)", async () => {
    const { device } = await wholeHeaderGateway();
    const units = defineTags({
      a: { dataType: "uint16", address: "HR0@2" },
      b: { dataType: "uint16", address: "HR0@3" },
    });
    const expected = { a: rawRegister(2, 0), b: rawRegister(3, 0) };
    const driver = await driverFor(device.port);
    const wrong: string[] = [];
    let last: Sample[] = [];
    for (let scan = 0; scan < 5; scan++) {
      last = await driver.read(units.list());
      wrong.push(...wrongGood(last, expected));
    }
    expect(wrong).toEqual([]);
    expect(last.map((sample) => [sample.value, sample.quality.severity])).toEqual([
      [expected.a, "good"],
      [expected.b, "good"],
    ]);
  });

  it("a bit write to unit 3 right after unit 2's read timed out does not write unit 2's late word (sibling)", async () => {
    const { device, registers } = await wholeHeaderGateway();
    const units = defineTags({
      a: { dataType: "uint16", address: "HR0@2" },
      flag: { dataType: "bool", access: "readwrite", address: "HR0.2@3" },
    });
    const driver = await driverFor(device.port);
    await driver.read([units.get("a")]);
    const [late] = await driver.read([units.get("a")]);
    expect(late).toMatchObject({ value: null, quality: { severity: "bad" } });
    await driver.write(units.get("flag"), true);
    expect(registers.get("3/0")).toBe(rawRegister(3, 0) | 4);
  });

  it("a bit write's read-modify-write read is fenced: a held late answer of HR5 is not written to HR0 (adv12p HIGH)", async () => {
    // The gateway holds HR5's second answer back until the next request arrives, and sends it first, stamped
    // with that request's id (then that request's own answer 20 ms later).
    const written = new Map<number, number>();
    let hr5 = 0;
    let held: RawRequest | undefined;
    const device = await startRawTcpDevice((request) => {
      if (request.functionCode === 6) written.set(request.address, request.value);
      if (held !== undefined) {
        const late = held;
        held = undefined;
        return { kind: "normal", values: [rawRegister(1, late.address)], registers: 1, thenOwnAfterMs: 20 };
      }
      if (request.functionCode === 3 && request.address === 5 && request.value === 1 && ++hr5 === 2) {
        held = request;
        return { kind: "silent" };
      }
      return { kind: "normal" };
    });
    cleanups.push(() => device.stop());
    const bits = defineTags({
      x: { dataType: "uint16", address: "HR5" },
      flag: { dataType: "bool", access: "readwrite", address: "HR0.2" },
    });
    const driver = await driverFor(device.port);
    await driver.read([bits.get("x")]);
    const [late] = await driver.read([bits.get("x")]);
    expect(late).toMatchObject({ value: null, quality: { severity: "bad" } });
    await driver.write(bits.get("flag"), true);
    expect(written.get(0)).toBe(rawRegister(1, 0) | 4);
  });

  /** A serial line behind a gateway stamping the newest id: HR50 is refused (exception 2) after `refuseMs`. */
  async function refusingGateway(refuseMs: number) {
    let lineFreeAt = 0;
    let newest = 0;
    const device = await startRawTcpDevice((request) => {
      newest = request.transactionId;
      const now = Date.now();
      const refused = request.address === 50;
      lineFreeAt = Math.max(now, lineFreeAt) + (refused ? refuseMs : 2);
      if (refused) return { kind: "exception", code: 2, delayMs: lineFreeAt - now, transactionId: () => newest };
      return { kind: "normal", delayMs: lineFreeAt - now, transactionId: () => newest };
    });
    cleanups.push(() => device.stop());
    return device;
  }

  it("a late exception is not learned as a hole of the request it landed on (adv12p MEDIUM)", async () => {
    // HR50's refusal comes after its request timed out and lands on HR0:uint32 (another size, sent at once).
    const device = await refusingGateway(SLOW_MS);
    const mixed = defineTags({
      v: { dataType: "uint32", address: "HR0:uint32" },
      s: { dataType: "uint16", address: "HR50" },
    });
    const driver = await driverFor(device.port);
    for (let scan = 0; scan < 6; scan++) {
      const samples = await driver.read(mixed.list());
      expect(wrongGood(samples, { v: rawRegister(1, 0) * 65536 + rawRegister(1, 1) })).toEqual([]);
    }
    expect(driver.learned.poisoned.filter((hole) => hole.address === 0)).toEqual([]);
  });

  it("a refusal that comes in time is still learned as a hole (sibling)", async () => {
    const device = await refusingGateway(2);
    const mixed = defineTags({
      v: { dataType: "uint32", address: "HR0:uint32" },
      s: { dataType: "uint16", address: "HR50" },
    });
    // No minimum span: six scans in a row here take well under learnRefusalSpanMs's default 10 s.
    const driver = await driverFor(device.port, { planner: { maxGap: 0, learnRefusalSpanMs: 0 } });
    for (let scan = 0; scan < 6; scan++) await driver.read(mixed.list());
    expect(driver.learned.poisoned.map((hole) => hole.address)).toEqual([50]);
  });

  it("lateAnswerGuard: false (a device trusted to stamp its own ids) sends the next request at once", async () => {
    // What the guard prevents, shown by turning it off: the late HR50 answer is taken as HR0's.
    const device = await serialGateway();
    const driver = await driverFor(device.port, {
      transport: { kind: "tcp", host: "127.0.0.1", port: device.port, lateAnswerGuard: false },
    });
    await driver.read(tags.list());
    await driver.read(tags.list());
    const [a] = await driver.read(tags.list());
    expect(a).toMatchObject({ value: rawRegister(1, 50), quality: { severity: "good" } });
  });
});

// The same kind against a third-party Modbus stack: pymodbus's RTU framer over TCP is the serial device, a
// small transparent gateway written here sits in front of it.
const script = fileURLToPath(new URL("./pymodbus-server.py", import.meta.url));
const python = ["python3", "/usr/bin/python3"].find(
  (command) => spawnSync(command, ["-c", "import pymodbus"], { stdio: "ignore" }).status === 0,
);

/** Connects to pymodbus's RTU-over-TCP server, retrying while the Python process starts. */
async function connectSerialSide(port: number): Promise<net.Socket> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
        socket.once("error", reject);
      });
    } catch (error) {
      if (attempt > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * A transparent gateway in front of `serial`: requests go to the serial device one at a time in arrival
 * order (a serial line), the `slowAt`-th request for HR50 only after `SLOW_MS`; every RTU answer is wrapped
 * with the MBAP header of the newest request received.
 */
async function transparentGateway(serial: net.Socket, slowAt = 2): Promise<number> {
  let newest = { transactionId: 0, unitId: 1 };
  let client: net.Socket | undefined;
  let line = Promise.resolve();
  let hr50 = 0;
  let received = Buffer.alloc(0);
  serial.on("data", (data) => {
    received = Buffer.concat([received, data]);
    while (received.length >= 5) {
      const functionCode = received[1]!;
      const length = functionCode & 0x80 ? 5 : functionCode <= 4 ? 5 + received[2]! : 8;
      if (received.length < length) break;
      const pdu = received.subarray(1, length - 2);
      const header = Buffer.alloc(7);
      header.writeUInt16BE(newest.transactionId, 0);
      header.writeUInt16BE(pdu.length + 1, 4);
      header[6] = received[0]!;
      received = received.subarray(length);
      client?.write(Buffer.concat([header, pdu]));
    }
  });
  const server = net.createServer((socket) => {
    client = socket;
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    socket.on("data", (data) => {
      buffer = Buffer.concat([buffer, data]);
      while (buffer.length >= 7 && buffer.length >= 6 + buffer.readUInt16BE(4)) {
        const length = buffer.readUInt16BE(4);
        const unitId = buffer[6]!;
        const pdu = Buffer.from(buffer.subarray(7, 6 + length));
        newest = { transactionId: buffer.readUInt16BE(0), unitId };
        buffer = buffer.subarray(6 + length);
        const slow = pdu[0] === 3 && pdu.readUInt16BE(1) === 50 && pdu.readUInt16BE(3) === 1 && ++hr50 === slowAt;
        line = line.then(async () => {
          if (slow) await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
          serial.write(rtuFrame(unitId, pdu));
          await new Promise((resolve) => setTimeout(resolve, 5));
        });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        client?.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

describe.skipIf(!python)(
  "pymodbus (RTU) behind a transparent gateway (needs python3-pymodbus: apt-get install python3-pymodbus)",
  () => {
    it("a late answer stamped with the next request's id is not delivered as its value", async () => {
      const serialPort = await freePort();
      const server: ChildProcess = spawn(python!, [script, "rtu-tcp", String(serialPort)], { stdio: "ignore" });
      cleanups.push(async () => {
        if (server.exitCode !== null) return;
        const exited = new Promise((resolve) => server.once("exit", resolve));
        server.kill();
        await exited;
      });
      const serial = await connectSerialSide(serialPort);
      cleanups.push(() => void serial.destroy());
      const driver = await driverFor(await transparentGateway(serial));
      const expected = { a: 111, b: 555 };
      const first = await driver.read(tags.list());
      expect(first.map((sample) => [sample.value, sample.quality.severity])).toEqual([
        [111, "good"],
        [555, "good"],
      ]);
      const second = await driver.read(tags.list());
      expect(second[1]!.quality.severity).toBe("bad");
      const wrong: string[] = [];
      let last: Sample[] = [];
      for (let scan = 0; scan < 4; scan++) {
        last = await driver.read(tags.list());
        wrong.push(...wrongGood(last, expected));
      }
      expect(wrong).toEqual([]);
      expect(last.map((sample) => [sample.value, sample.quality.severity])).toEqual([
        [111, "good"],
        [555, "good"],
      ]);
    }, 20_000);
  },
);
