import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer } from "./raw-tcp-device";

// ADR 0041, amendment fix12s (adv12s H1). Behind a gateway that answers out of order and stamps every answer with
// the newest request's MBAP header, unit 2's HR20 times out (its data answer comes 1.5 s later) and unit 2's HR0-2
// times out (its exception 11 comes 700 ms later). An exception carries no size: it is the answer of one of the two
// owed requests of its function, not of which. Paying the oldest (HR20's data answer) released the hold on its
// shape, and HR20's data answer, when it came, was taken by unit 1's HR10 (same function and size): 2020, good.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const EXC_DELAY = 700;
const DATA_DELAY = 1500;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  ir0: { dataType: "uint16", address: "IR0@1" },
  hr40: { dataType: "uint16", address: "HR40@1" },
  hr10: { dataType: "uint16", address: "HR10@1" },
  u2hr20: { dataType: "uint16", address: "HR20@2" },
  u2hr0: { dataType: "uint16", address: "HR0@2" },
  u2hr1: { dataType: "uint16", address: "HR1@2" },
  u2hr2: { dataType: "uint16", address: "HR2@2" },
});

/** `viaUnfit`: the exception lands on a read of IR0@1 on the wire (refused as not fitting it) instead of a pause. */
async function run(viaUnfit: boolean) {
  let slowIr = false;
  let newest = { transactionId: 0, unitId: 0 };
  const stamp = { transactionId: () => newest.transactionId, unitId: () => newest.unitId };
  const device = await startRawTcpDevice((request): RawAnswer => {
    newest = { transactionId: request.transactionId, unitId: request.unitId };
    if (request.unitId === 2 && request.address === 20) return { kind: "normal", delayMs: DATA_DELAY, ...stamp };
    if (request.unitId === 2) return { kind: "exception", code: 11, delayMs: EXC_DELAY, ...stamp };
    if (slowIr && request.functionCode === 4 && request.value === 1) return { kind: "normal", delayMs: 150, ...stamp };
    if (request.functionCode === 3 && request.address === 40) return { kind: "normal", delayMs: 300, ...stamp };
    if (request.functionCode === 3 && request.address === 10) return { kind: "normal", delayMs: 120, ...stamp };
    return { kind: "normal", delayMs: 1, ...stamp };
  });
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port: device.port, lostAnswerResyncMs: 60_000 },
    requestTimeoutMs: 200,
    planner: { maxGap: 0 },
    reconnect: { initialDelayMs: 20, jitter: 0 },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  expect((await driver.read([tags.get("ir0")]))[0]!.quality.severity).toBe("good");
  await driver.read([tags.get("hr40")]); // times out; the fence in the pause gets its own answer first
  await pause(400); // HR40's answer comes after the fence's: the gateway answers out of order
  await driver.read([tags.get("ir0")]);
  await driver.read([tags.get("u2hr20")]); // times out: its data answer (2020, holding-register/2) is owed
  await driver.read([tags.get("ir0")]);
  await driver.read(["u2hr0", "u2hr1", "u2hr2"].map((name) => tags.get(name))); // times out: exception owed
  if (viaUnfit) {
    slowIr = true;
    const until = Date.now() + EXC_DELAY + 100;
    while (Date.now() < until) await driver.read([tags.get("ir0")]);
    slowIr = false;
  } else await pause(EXC_DELAY + 100); // the exception comes while nothing is on the wire
  const wrong: string[] = [];
  let reads = 0;
  const end = Date.now() + DATA_DELAY;
  while (Date.now() < end) {
    const [sample] = await driver.read([tags.get("hr10")]);
    reads++;
    if (sample!.quality.severity === "good" && sample!.value !== rawRegister(1, 10)) wrong.push(String(sample!.value));
  }
  return { wrong, reads };
}

describe("an exception nobody took never releases another request's data hold (adv12s H1)", () => {
  it("a late exception in a pause: HR10@1 never shows unit 2's HR20 as good", async () => {
    const { wrong, reads } = await run(false);
    expect(reads).toBeGreaterThan(0);
    expect(wrong).toEqual([]);
  }, 20_000);

  it("sibling: the late exception refused by a read on the wire (unfit) releases nothing either", async () => {
    const { wrong, reads } = await run(true);
    expect(reads).toBeGreaterThan(0);
    expect(wrong).toEqual([]);
  }, 20_000);
});
