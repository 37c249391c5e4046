import { afterEach, expect, test, vi } from "vitest";
import { KilnError, defineTags, type Principal, type TagValue } from "@kiln/core";
import { ModbusDriver, type ModbusByteOrder, type ModbusSimulatorRequest } from "@kiln/plc-modbus";
import { lineTags, startModbusLine, type ModbusLine } from "../src/modbus-line";

const engineer: Principal = { id: "erin", roles: ["engineer"] };
const viewer: Principal = { id: "victor", roles: ["viewer"] };
// Real sockets and real time: waits poll until the condition holds, bounded well below the test timeout.
const within = { timeout: 2_500, interval: 20 };
const WRITE_FUNCTIONS = new Set([5, 6, 15, 16]);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function line(): Promise<ModbusLine> {
  const started = await startModbusLine();
  cleanups.push(() => started.stop());
  return started;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return KilnError.is(error) ? error.code : `non-kiln: ${String(error)}`;
  }
  return undefined;
}

/** The registers a big-endian value `A B C D ...` occupies on the wire in `order`, built without the codec. */
function wireWords(bytes: Uint8Array, order: ModbusByteOrder): number[] {
  const words: number[] = [];
  for (let index = 0; index < bytes.length; index += 2) words.push((bytes[index]! << 8) | bytes[index + 1]!);
  const wordSwapped = order === "CDAB" || order === "DCBA" ? words.reverse() : words;
  const byteSwapped = order === "BADC" || order === "DCBA";
  return wordSwapped.map((word) => (byteSwapped ? ((word & 0xff) << 8) | (word >> 8) : word));
}

function float32Bytes(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setFloat32(0, value);
  return bytes;
}

function uint32Bytes(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

test("every byte order decodes to the value the simulator serves, laid out on the wire as documented", async () => {
  const { system, simulator, endpoint } = await line();
  // Pin the signal-driven tags to distinctive values; the others keep the line's initial values.
  simulator.setValue("oven.temperature", 201.75);
  simulator.setValue("filler.weight", 498.625);
  simulator.setValue("pieces.count", 0x12345678);
  simulator.setValue("oven.exhaust.temperature", -12.5);
  const expected: Record<string, TagValue> = {
    "conveyor.run": false,
    "filler.valve": false,
    "door.closed": true,
    "oven.temperature": 201.75,
    "oven.setpoint": 180,
    "filler.weight": 498.625,
    "line.speed": 1.25,
    "pieces.count": 0x12345678,
    "oven.exhaust.temperature": -12.5,
  };
  expect(Object.keys(expected).sort()).toEqual([...lineTags.names].sort());
  for (const [tag, value] of Object.entries(expected)) expect(simulator.getValue(tag)).toBe(value);

  await system.start();
  await vi.waitFor(() => {
    for (const [tag, value] of Object.entries(expected)) {
      const sample = system.read(tag);
      expect({ tag, value: sample?.value, quality: sample?.quality.severity }).toEqual({ tag, value, quality: "good" });
    }
  }, within);

  // The registers themselves, read as plain uint16 words by a second client, follow the documented orders.
  const raw = defineTags({
    hr0: { dataType: "uint16", address: "HR0" },
    hr1: { dataType: "uint16", address: "HR1" },
    hr2: { dataType: "uint16", address: "HR2" },
    hr3: { dataType: "uint16", address: "HR3" },
    hr20: { dataType: "uint16", address: "HR20" },
    hr21: { dataType: "uint16", address: "HR21" },
    ir0: { dataType: "uint16", address: "IR0" },
    ir10: { dataType: "uint16", address: "IR10" },
    ir11: { dataType: "uint16", address: "IR11" },
    ir12: { dataType: "uint16", address: "IR12" },
    ir13: { dataType: "uint16", address: "IR13" },
  });
  const probe = new ModbusDriver({ transport: { kind: "tcp", host: endpoint.host, port: endpoint.port } });
  cleanups.push(() => probe.close());
  await probe.connect();
  const words = Object.fromEntries((await probe.read(raw.list())).map((sample) => [sample.tag, sample.value]));
  expect([words.hr0, words.hr1]).toEqual(wireWords(float32Bytes(201.75), "ABCD"));
  expect([words.hr2, words.hr3]).toEqual(wireWords(float32Bytes(180), "CDAB"));
  expect([words.ir10, words.ir11]).toEqual(wireWords(float32Bytes(498.625), "BADC"));
  expect([words.hr20, words.hr21]).toEqual(wireWords(float32Bytes(1.25), "DCBA"));
  expect([words.ir12, words.ir13]).toEqual(wireWords(uint32Bytes(0x12345678), "CDAB")); // 5678 1234
  expect(words.ir0).toBe(0x10000 - 125); // -12.5 / 0.1 as a two's complement int16
});

test("an engineer's writes land on the simulator, the counter advances, and every sample is logged", async () => {
  const { system, simulator } = await line();
  const counts: number[] = [];
  system.cvt.observe("pieces.count", ({ sample }) => void counts.push(Number(sample.value)));
  const startedAt = Date.now();
  await system.start();

  await system.writeTag(engineer, "oven.setpoint", 195.5, { comment: "product B" });
  expect(simulator.getValue("oven.setpoint")).toBe(195.5);
  await system.writeTag(engineer, "conveyor.run", true);
  expect(simulator.getValue("conveyor.run")).toBe(true);
  await system.writeTag(engineer, "line.speed", 2.5);
  expect(simulator.getValue("line.speed")).toBe(2.5);

  await vi.waitFor(() => {
    expect(system.read("oven.setpoint")?.value).toBe(195.5);
    expect(system.read("conveyor.run")?.value).toBe(true);
    expect(system.read("line.speed")?.value).toBe(2.5);
  }, within);
  await vi.waitFor(() => expect(counts.length).toBeGreaterThanOrEqual(5), within);
  for (let index = 1; index < counts.length; index++) expect(counts[index]).toBeGreaterThan(counts[index - 1]!);

  // The written setpoint reaches the store through the logging pipeline.
  await vi.waitFor(async () => {
    const logged = await system.history.samples.readSamples({
      tag: "oven.setpoint",
      from: startedAt,
      to: Date.now() + 1,
    });
    expect(logged.map((sample) => sample.value)).toContain(195.5);
  }, within);
  const audit = await system.history.audit.query({ from: startedAt, to: Date.now() + 1 });
  expect(audit.map((entry) => [entry.principal, entry.target, entry.newValue, entry.outcome])).toEqual([
    ["erin", "oven.setpoint", 195.5, "allowed"],
    ["erin", "conveyor.run", true, "allowed"],
    ["erin", "line.speed", 2.5, "allowed"],
  ]);

  await system.stop();
  const { samplesIn, samplesOut, samplesDropped } = system.health().logging;
  expect(samplesIn).toBeGreaterThan(counts.length);
  expect(samplesOut).toBe(samplesIn);
  expect(samplesDropped).toBe(0);
});

test("a viewer's write is refused with KILN_FORBIDDEN and never reaches the simulator", async () => {
  const { system, simulator } = await line();
  const writes: ModbusSimulatorRequest[] = [];
  simulator.onRequest((request) => {
    if (WRITE_FUNCTIONS.has(request.functionCode)) writes.push(request);
  });
  const startedAt = Date.now();
  await system.start();
  await vi.waitFor(() => expect(system.read("line.speed")?.value).toBe(1.25), within);

  expect(await codeOf(system.writeTag(viewer, "line.speed", 2))).toBe("KILN_FORBIDDEN");
  expect(await codeOf(system.writeTag(viewer, "conveyor.run", true))).toBe("KILN_FORBIDDEN");
  expect(simulator.getValue("line.speed")).toBe(1.25);
  expect(simulator.getValue("conveyor.run")).toBe(false);

  // The same write by an engineer does show up as a request, so the empty list above is not vacuous.
  await system.writeTag(engineer, "line.speed", 2);
  expect(writes.map((request) => [request.functionCode, request.address])).toEqual([[16, 20]]);

  const audit = await system.history.audit.query({ from: startedAt, to: Date.now() + 1 });
  expect(audit.map((entry) => [entry.principal, entry.target, entry.outcome])).toEqual([
    ["victor", "line.speed", "denied"],
    ["victor", "conveyor.run", "denied"],
    ["erin", "line.speed", "allowed"],
  ]);
});

test("the oven's HI alarm is raised when the temperature goes above 220 °C", async () => {
  const { system, simulator } = await line();
  const raised: string[] = [];
  system.bus.on("alarm-raise", (event) => void raised.push(event.alarmId));
  simulator.setValue("oven.temperature", 231.5);
  await system.start();
  await vi.waitFor(() => expect(raised).toEqual(["oven.temperature:HI"]), within);
  expect(system.health().alarms).toMatchObject({ active: 1, unacknowledged: 1 });
});
