import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer } from "./raw-tcp-device";

// ADR 0041, amendment fix12y (adv12z F1, not fixed: pinned). Behind a gateway that answers out of order, a unit's
// answer owed past its late bound holds every request of its shape, whatever the unit: the shape leaves the unit
// out on TCP with the guard, because a transparent gateway stamps a late answer with the newest request's whole
// MBAP header, unit id included. A live unit's request of a dead (or slow) unit's shape is therefore held (bad, named),
// never sent to take the other unit's late word. This test pins that: with the unit id in the shape, the late answer
// of unit 2 below, stamped with unit 1's header, would be decoded as HR10@1's value, good.

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
  hr30: { dataType: "uint32", address: "HR30@1" },
});
const expected = new Map<string, number>([
  ["ir0", rawRegister(1, 0)],
  ["hr40", rawRegister(1, 40)],
  ["hr10", rawRegister(1, 10)],
  ["hr20u2", rawRegister(2, 20)],
  ["hr30", rawRegister(1, 30) * 0x10000 + rawRegister(1, 31)],
]);

/**
 * A gateway that answers each request after its own delay, out of order, and stamps every answer with the MBAP
 * header (transaction and unit id) of the newest request it received: HR40@1 300 ms late (shows it answers out of
 * order), HR20@2 after `unit2DelayMs` (a unit whose answers come after the request timeout), HR10@1 after 100 ms
 * (in time), the rest at once.
 */
async function stampingGateway(unit2DelayMs: number) {
  let newest = { transactionId: 0, unitId: 0 };
  const device = await startRawTcpDevice((request) => {
    newest = { transactionId: request.transactionId, unitId: request.unitId };
    const key = `${request.functionCode}/${request.address}/${request.value}@${request.unitId}`;
    const delays: Record<string, number> = { "3/40/1@1": 300, "3/20/1@2": unit2DelayMs, "3/10/1@1": 100 };
    const delayMs = delays[key] ?? 1;
    return {
      kind: "normal",
      delayMs,
      transactionId: () => newest.transactionId,
      unitId: () => newest.unitId,
    } as RawAnswer;
  });
  cleanups.push(() => device.stop());
  return device;
}

describe("a late answer of one unit behind an out-of-order gateway (ADR 0041, amendment fix12y, adv12z F1)", () => {
  it("holds the live unit's request of the same shape, named, and never decodes the other unit's word as its value", async () => {
    const device = await stampingGateway(700);
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host: "127.0.0.1", port: device.port, lostAnswerResyncMs: 5000 },
      requestTimeoutMs: TIMEOUT_MS,
      planner: { maxGap: 0 },
      reconnect: { initialDelayMs: 20, jitter: 0 },
    });
    cleanups.push(() => driver.close());
    await driver.connect();
    const wrong: string[] = [];
    const reasons: string[] = [];
    const read = async (names: string[]) => {
      const samples = await driver.read(names.map((name) => tags.get(name)));
      samples.forEach((sample, index) => {
        const name = names[index]!;
        if (sample.quality.severity !== "good") reasons.push(`${name}: ${sample.quality.reason ?? ""}`);
        else if (sample.value !== expected.get(name)) wrong.push(`${name}=${String(sample.value)}`);
      });
      return samples;
    };
    expect((await read(["ir0"]))[0]!.quality.severity).toBe("good");
    await read(["hr40"]); // times out; the fence in the pause gets its own answer first
    await pause(200); // HR40@1's answer comes after the fence's: the gateway answers out of order
    let hr10Good = 0;
    for (let scan = 0; scan < 14; scan++) {
      // Unit 2 first: its HR20 times out and its answer comes 700 ms after it was sent, while unit 1's HR10 (the same
      // shape, answered in 100 ms) would be on the wire, sent about 620 ms after it: stamped with HR10's header.
      await read(["hr20u2"]);
      await pause(420);
      const [hr10] = await read(["hr10", "hr30"]);
      if (hr10!.quality.severity === "good") hr10Good++;
      await pause(60);
    }
    expect(wrong).toEqual([]);
    // The cost pinned: HR10@1 shares HR20@2's shape (holding-register/2) and is held while its answer is owed.
    expect(reasons.some((reason) => /^hr10: .*shape holding-register\/2 is held/.test(reason))).toBe(true);
    expect(hr10Good).toBeGreaterThan(0); // released when the late answer comes
    // Sibling: the live unit's block of another shape (HR30@1, holding-register/4) is good in every read.
    expect(reasons.filter((reason) => reason.startsWith("hr30"))).toEqual([]);
  }, 30_000);
});
