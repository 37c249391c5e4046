import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer, type RawRequest } from "./raw-tcp-device";

// A gateway that answers each request after its own delay (out of order) and stamps every answer with the MBAP
// header (transaction id and unit id) of the newest request it received (issue 12, the flaky F2 run of
// modbus-late-ledger: HR10@3 read 1040, HR40@1's value, good). An answer owed by a request that timed out came
// after the ledger's late bound as the driver counts it (from its own send; the gateway counts its delay from
// when the request reached it, later under load) and was taken by the next request of its shape. Once such a
// device has shown that it answers out of order (an answer owed before a fence came after the fence's own),
// time proves nothing: an owed answer holds its shape until it has come.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const TIMEOUT_MS = 200;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  ir0: { dataType: "uint16", address: "IR0@1" },
  hr40: { dataType: "uint16", address: "HR40@1" },
  hr10: { dataType: "uint16", address: "HR10@1" },
  hr20u2: { dataType: "uint16", address: "HR20@2" },
  hr0u3: { dataType: "uint16", address: "HR0@3" },
});
const expected = new Map([
  ["ir0", rawRegister(1, 0)],
  ["hr40", rawRegister(1, 40)],
  ["hr10", rawRegister(1, 10)],
  ["hr20u2", rawRegister(2, 20)],
  ["hr0u3", rawRegister(3, 0)],
]);

/**
 * The gateway: HR40@1 is answered 300 ms late (inside the late bound of 400 ms), HR10@1 600 ms late (past it),
 * HR20@2 300 ms late (so it is still waiting when HR10@1's answer comes), everything else at once (HR0@3 too); `extra`
 * changes the answer to a request (a duplicate).
 */
async function outOfOrderGateway(extra: (request: RawRequest) => Partial<RawAnswer> = () => ({})) {
  let newest = { transactionId: 0, unitId: 0 };
  const device = await startRawTcpDevice((request) => {
    newest = { transactionId: request.transactionId, unitId: request.unitId };
    const key = `${request.functionCode}/${request.address}/${request.value}@${request.unitId}`;
    const delayMs = { "3/40/1@1": 300, "3/10/1@1": 600, "3/20/1@2": 300 }[key] ?? 1;
    return {
      kind: "normal",
      delayMs,
      transactionId: () => newest.transactionId,
      unitId: () => newest.unitId,
      ...extra(request),
    } as RawAnswer;
  });
  cleanups.push(() => device.stop());
  return device;
}

async function driverFor(port: number): Promise<ModbusDriver> {
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return driver;
}

/** Reads `name` alone; the sample, and its value if good and wrong. */
async function readOne(driver: ModbusDriver, name: string, wrong: string[]): Promise<Sample> {
  const [sample] = await driver.read([tags.get(name)]);
  if (sample!.quality.severity === "good" && sample!.value !== expected.get(name))
    wrong.push(`${name}=${String(sample!.value)} (true ${expected.get(name)})`);
  return sample!;
}

/**
 * The scenario: a good read (its fence reads like it), HR40@1 late but inside the bound (its answer comes after a
 * fence's own: the device answers out of order), HR10@1 late past the bound, then HR20@2 (same function and size,
 * another unit) after HR10@1's bound but before its answer.
 */
async function scenario(driver: ModbusDriver, wrong: string[]) {
  expect((await readOne(driver, "ir0", wrong)).quality.severity).toBe("good");
  await readOne(driver, "hr40", wrong); // times out; the fence in the pause gets its own answer first
  await pause(200); // HR40@1's answer comes, after the fence's
  await readOne(driver, "hr10", wrong); // times out; its answer comes 600 ms after it went
  await pause(260); // past HR10@1's late bound (400 ms from its send), before its answer
  const shared = await readOne(driver, "hr20u2", wrong);
  await pause(500); // HR10@1's answer has come (and HR20@2's, had it gone)
  return shared;
}

describe("a late answer past the bound from a device that answers out of order (issue 12, flaky F2)", () => {
  it("is never taken as the next same-shape request's value (HR10@1's word as HR20@2's, good)", async () => {
    const device = await outOfOrderGateway();
    const driver = await driverFor(device.port);
    const wrong: string[] = [];
    const shared = await scenario(driver, wrong);
    expect(wrong).toEqual([]);
    // Not sent: an answer of its shape was still owed.
    expect(shared.quality.severity).toBe("bad");
    expect(shared.quality.reason).toMatch(/not sent.*out of order/);
    // Once the owed answer has come, the shape is free again.
    const again = await readOne(driver, "hr0u3", wrong);
    expect(again.quality.severity).toBe("good");
    expect(wrong).toEqual([]);
  }, 15_000);

  it("sibling: a duplicate of another shape's answer does not account for the owed one", async () => {
    // The first fence (a read of IR0-1, like the last read answered) is answered again 500 ms later, after HR10@1
    // timed out: the copy comes unasked, with another shape than HR10@1's owed answer. Counted against that one
    // (any owed answer, whatever its shape), HR20@2 would go and take HR10@1's word.
    let fences = 0;
    const device = await outOfOrderGateway((request) =>
      request.functionCode === 4 && request.value === 2 && fences++ === 0 ? { duplicateAfterMs: 500 } : {},
    );
    const driver = await driverFor(device.port);
    const wrong: string[] = [];
    const shared = await scenario(driver, wrong);
    expect(wrong).toEqual([]);
    expect(shared.quality.severity).toBe("bad");
    expect((await readOne(driver, "hr0u3", wrong)).quality.severity).toBe("good");
    expect(wrong).toEqual([]);
  }, 15_000);
});
