import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawRequest } from "./raw-tcp-device";

// The ledger of possibly late answers (adv12q F1/F2): a gateway to a serial line stamps every answer with the
// whole MBAP header of the NEWEST request it received (transaction id and unit id), and every 5th answer comes
// 390 ms late, under the documented late bound (twice the 200 ms request timeout). A request answered early by
// another request's late answer (a mismatch) still has its own answer on the way: before the fix the quiet time
// after such a mismatch was counted from the mismatch, ended before that answer came, and the answer was taken
// for the next request of the same shape: wrong values shown good, and a bit write's read-modify-write wrote
// HR20@2's word into HR10@1. Every request that ended without its own answer now holds its shape back until
// its send time plus the late bound.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 200;
const LATE_MS = 390;

/**
 * The gateway: register `a` of unit `u` holds `1000 * u + a` until written (FC 6, recorded in `writes`); every
 * `lateEvery`-th request (or every request to a unit of `slowUnits`) is answered `LATE_MS` late, others at once,
 * each answer stamped with the newest request's transaction id and unit id when it is sent.
 */
async function newestStampingGateway(options: { lateEvery?: number; slowUnits?: readonly number[] } = {}) {
  let newest = { transactionId: 0, unitId: 0 };
  let count = 0;
  const registers = new Map<string, number>();
  const writes: RawRequest[] = [];
  const device = await startRawTcpDevice((request) => {
    newest = { transactionId: request.transactionId, unitId: request.unitId };
    count++;
    const late =
      (options.lateEvery !== undefined && count % options.lateEvery === 0) ||
      (options.slowUnits ?? []).includes(request.unitId);
    if (request.functionCode === 6) {
      registers.set(`${request.unitId}/${request.address}`, request.value);
      writes.push(request);
    }
    const values =
      request.functionCode === 3 || request.functionCode === 4
        ? Array.from({ length: request.value }, (_, index) => {
            const address = request.address + index;
            const written = request.functionCode === 3 ? registers.get(`${request.unitId}/${address}`) : undefined;
            return written ?? rawRegister(request.unitId, address);
          })
        : undefined;
    return {
      kind: "normal",
      delayMs: late ? LATE_MS : 1,
      transactionId: () => newest.transactionId,
      unitId: () => newest.unitId,
      ...(values ? { values } : {}),
    };
  });
  cleanups.push(() => device.stop());
  return { device, writes };
}

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

/** Good samples whose value is not the register's (`1000 * unit + address`, from the tag's address). */
function wrongGood(samples: readonly Sample[], expected: ReadonlyMap<string, number>): string[] {
  return samples
    .filter((sample) => sample.quality.severity === "good" && sample.value !== expected.get(sample.tag))
    .map((sample) => `${sample.tag}=${String(sample.value)} (true ${expected.get(sample.tag)})`);
}

describe("late answers stamped with the newest request's id, within the late bound (adv12q)", () => {
  it("a bit write never writes another register's late word back (F1: HR20@2's word written into HR10@1)", async () => {
    // Every 7th, not 5th: a round is 5 requests since a bit write reads twice (fix12ab), and every 5th made the same
    // request of each round late (its second read: no write ever went through), a pattern, not a device.
    const { device, writes } = await newestStampingGateway({ lateEvery: 7 });
    const tags = defineTags({
      a: { dataType: "uint16", address: "HR20@2" },
      b: { dataType: "uint16", address: "IR20@1" },
      bit: { dataType: "bool", access: "readwrite", address: "HR10.3@1" },
    });
    const expected = new Map([
      ["a", rawRegister(2, 20)],
      ["b", rawRegister(1, 20)],
    ]);
    const driver = await driverFor(device.port);
    const wrong: string[] = [];
    const corrupt: string[] = [];
    let written = 0;
    let good = 0;
    for (let round = 0; round < 80; round++) {
      const samples = await driver.read([tags.get("a"), tags.get("b")]);
      wrong.push(...wrongGood(samples, expected));
      good += samples.filter((sample) => sample.quality.severity === "good").length;
      const state = round % 2 === 0;
      const before = writes.length;
      const ok = await driver.write(tags.get("bit"), state).then(
        () => true,
        () => false,
      );
      const sent = writes.slice(before).filter((request) => request.unitId === 1 && request.address === 10);
      const due = rawRegister(1, 10) | (state ? 8 : 0);
      for (const request of sent)
        if (request.value !== due) corrupt.push(`round ${round}: wrote ${request.value}, due ${due}`);
      if (ok) written++;
    }
    expect(corrupt).toEqual([]);
    expect(wrong).toEqual([]);
    // Not everything bad: most reads and writes go through.
    // Every 5th answer late and out of order: each write waits for a fence's proof and the ledger (ADR 0041).
    expect(written).toBeGreaterThan(5);
    expect(good).toBeGreaterThan(20);
  }, 60_000);

  it("reads of 3 units × 8 tags one at a time never show a wrong value good (F2)", async () => {
    const { device } = await newestStampingGateway({ lateEvery: 5 });
    const { tags, expected } = unitTags();
    const driver = await driverFor(device.port);
    const wrong: string[] = [];
    let good = 0;
    for (let scan = 0; scan < 25; scan++) {
      const samples = await driver.read(tags.list());
      wrong.push(...wrongGood(samples, expected));
      good += samples.filter((sample) => sample.quality.severity === "good").length;
    }
    expect(wrong).toEqual([]);
    expect(good).toBeGreaterThan(60);
  }, 60_000);

  it("pipelined (maxInFlight 8) with unit 2 always 390 ms late: no wrong good value, from the first scan (F2)", async () => {
    const { device } = await newestStampingGateway({ slowUnits: [2] });
    const { tags, expected } = unitTags();
    const driver = await driverFor(device.port, { maxInFlight: 8 });
    const wrong: string[] = [];
    let good = 0;
    for (let scan = 0; scan < 4; scan++) {
      const samples = await driver.read(tags.list());
      wrong.push(...wrongGood(samples, expected));
      good += samples.filter((sample) => sample.quality.severity === "good" && !sample.tag.endsWith("u2")).length;
    }
    expect(wrong).toEqual([]);
    expect(good).toBeGreaterThan(16);
  }, 60_000);
});

/** HR and IR 0, 10, 20, 40 of units 1-3 (`HR10u2`), and each one's true value. */
function unitTags() {
  const definitions: Record<string, { dataType: "uint16"; address: string }> = {};
  const expected = new Map<string, number>();
  for (const unit of [1, 2, 3]) {
    for (const address of [0, 10, 20, 40]) {
      for (const area of ["HR", "IR"]) {
        const name = `${area}${address}u${unit}`;
        definitions[name] = { dataType: "uint16", address: `${area}${address}@${unit}` };
        expected.set(name, rawRegister(unit, address));
      }
    }
  }
  return { tags: defineTags(definitions), expected };
}

describe("fences and probes stay within the address space (adv12q F5)", () => {
  it("the fence before a read of HR65535 (and of coil 65535) asks nothing past address 65535", async () => {
    const silenced = new Set<number>();
    const device = await startRawTcpDevice((request) => {
      // The first read of each area's last address (its own size, 1) times out: the next read of its shape is fenced.
      if (request.value !== 1 || silenced.has(request.functionCode)) return { kind: "normal" };
      silenced.add(request.functionCode);
      return { kind: "silent" };
    });
    cleanups.push(() => device.stop());
    const edge = defineTags({
      last: { dataType: "uint16", address: "HR65535" },
      coil: { dataType: "bool", address: "C65535" },
    });
    const driver = await driverFor(device.port);
    const good: string[] = [];
    // One tag at a time: an answer of another shape since the timeout would make the fence needless.
    for (const name of ["last", "last", "coil", "coil"]) {
      const [sample] = await driver.read([edge.get(name)]);
      if (sample!.quality.severity === "good") good.push(name);
      await new Promise((resolve) => setTimeout(resolve, 2 * TIMEOUT_MS + 50));
    }
    expect(good).toEqual(["last", "coil"]);
    // A fence (another size) went out for each, and every request ends within 0-65535.
    const sizes = device.requests.map((request) => `${request.functionCode}/${request.address}/${request.value}`);
    // (A fence reads like the last read answered: HR65534-65535 here; see ADR 0041.)
    expect(sizes).toEqual(expect.arrayContaining(["3/65534/2"]));
    const past = device.requests.filter((request) => request.address + request.value > 65_536);
    expect(past).toEqual([]);
  }, 30_000);
});
