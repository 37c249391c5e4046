import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer } from "./raw-tcp-device";

// ADR 0041, amendment fix12u (2026-12-01, adv12v). Behind a gateway that answers out of order and stamps every answer
// with the newest request's whole MBAP header, a dead unit's exception answer that comes past the late bound lands on
// whatever request is on the wire. An exception carries no size: it fits any request of its function, a live unit's
// of another data shape too (not held). While an answer of its function is owed by such a device, an exception is
// not trusted: it counts against no unit and teaches no hole.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 200;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  ir0: { dataType: "uint16", address: "IR0@1" },
  hr40: { dataType: "uint16", address: "HR40@1" },
  hr0: { dataType: "uint16", address: "HR0@1" },
  hr1: { dataType: "uint16", address: "HR1@1" },
  hr2: { dataType: "uint16", address: "HR2@1" },
  hr3: { dataType: "uint16", address: "HR3@1" },
  hr4: { dataType: "uint16", address: "HR4@1" },
  hr20u2: { dataType: "uint16", address: "HR20@2" },
  hr30u2: { dataType: "uint32", address: "HR30@2" },
  hr40u2: { dataType: "float64", address: "HR40@2" },
});
const live = ["hr0", "hr1", "hr2", "hr3", "hr4"];
const dead = ["hr20u2", "hr30u2", "hr40u2"];

/**
 * A gateway answering each request after its own delay, out of order, every answer stamped with the MBAP header
 * (transaction and unit id) of the newest request received: HR40@1 300 ms late (shows it answers out of order),
 * HR0@1 after 100 ms (in time), every request to unit 2 with exception `code` after 700 ms (past the late bound,
 * 400 ms), the rest at once.
 */
async function stampingGateway(code: number) {
  let newest = { transactionId: 0, unitId: 0 };
  const stamp = { transactionId: () => newest.transactionId, unitId: () => newest.unitId };
  const device = await startRawTcpDevice((request): RawAnswer => {
    newest = { transactionId: request.transactionId, unitId: request.unitId };
    if (request.unitId === 2) return { kind: "exception", code, delayMs: 700, ...stamp };
    let delayMs = 1;
    if (request.functionCode === 3 && request.address === 40) delayMs = 300;
    if (request.functionCode === 3 && request.address === 0) delayMs = 100;
    return { kind: "normal", delayMs, ...stamp };
  });
  cleanups.push(() => device.stop());
  return device;
}

async function run(code: number) {
  const device = await stampingGateway(code);
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port: device.port, lostAnswerResyncMs: 60_000 },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
    reconnect: { initialDelayMs: 20, jitter: 0 },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  const wrong: string[] = [];
  const liveBad: string[] = [];
  const liveStates: string[] = [];
  let liveGood = 0;
  const check = (names: string[], samples: Sample[]) =>
    samples.forEach((sample, index) => {
      const name = names[index]!;
      if (sample.quality.severity === "good" && sample.value !== rawRegister(1, Number(name.slice(2))))
        wrong.push(`${name}=${String(sample.value)}`);
    });
  expect((await driver.read([tags.get("ir0")]))[0]!.quality.severity).toBe("good");
  await driver.read([tags.get("hr40")]); // times out; the fence in the pause gets its own answer first
  await pause(400); // HR40@1's answer comes after the fence's: the gateway answers out of order
  for (let scan = 0; scan < 6; scan++) {
    await driver.read(dead.map((name) => tags.get(name)));
    // Unit 2's exception comes 700 ms after its request, while HR0@1 (sent about 620 ms after it) is on the wire.
    await pause(420);
    const samples = await driver.read(live.map((name) => tags.get(name)));
    check(live, samples);
    if (samples[0]!.quality.severity === "good") liveGood++;
    else liveBad.push(samples[0]!.quality.reason ?? "");
    liveStates.push(driver.units().find((unit) => unit.unitId === 1)!.state);
    await pause(300);
  }
  return { driver, wrong, liveBad, liveStates, liveGood };
}

describe("a dead unit's late exception behind an out-of-order gateway (ADR 0041, amendment fix12u, adv12v)", () => {
  it("exception 11 landing on a live unit's read is not trusted: the live unit stays online, the dead unit is blamed", async () => {
    const { driver, wrong, liveBad, liveStates, liveGood } = await run(11);
    expect(wrong).toEqual([]);
    expect(liveStates.every((state) => state === "online")).toBe(true);
    // Bad only for the scans a late exception landed on, named as possibly another request's answer.
    for (const reason of liveBad) expect(reason).toMatch(/not trusted/);
    expect(liveGood).toBeGreaterThan(0);
    const units = new Map(driver.units().map((unit) => [unit.unitId, unit.state]));
    expect(units.get(1)).toBe("online");
    expect(units.get(2)).toBe("offline");
    expect((await driver.read([tags.get("ir0")]))[0]!.quality.severity).toBe("good");
    expect(driver.learned.poisoned).toEqual([]);
  }, 30_000);

  it("exception 2 landing on a live unit's read teaches no hole (sibling)", async () => {
    const { driver, wrong, liveBad, liveStates, liveGood } = await run(2);
    expect(wrong).toEqual([]);
    expect(driver.learned.poisoned).toEqual([]);
    for (const reason of liveBad) expect(reason).toMatch(/not trusted/);
    expect(liveStates.every((state) => state === "online")).toBe(true);
    expect(liveGood).toBeGreaterThan(0);
  }, 30_000);
});
