import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer } from "./raw-tcp-device";

// adv (fix12z brief) M1: on Modbus TCP with the default late-answer guard, one answer of unit 2 overtaken by a
// later one (legal on Modbus TCP) classified the device "out of order" for the driver's life, not even reset by a
// new connection. Every later lost answer of unit 2 then held its shape (which leaves the unit out on TCP) for every
// unit until the forget horizon (30 s), then forced a reconnect: unit 1, live all along, had HR0 bad for 30 s. The
// classification now belongs to a connection and ends after answers in order with nothing owed (ADR 0041,
// amendment fix12z); a lost answer owed while classified still holds its shape (the safety property).

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  b: { dataType: "uint16", address: "HR0@2" },
});

/**
 * A device with correct transaction ids answering each request on its own: unit 2's request number `late` (from 1)
 * 450 ms late (a later request's answer overtakes it), its request `lost` never, its request `reset` by closing
 * the connection; everything else at once.
 */
async function device(unit2: { late: number; lost: number; reset?: number }) {
  let count = 0;
  const started = await startRawTcpDevice((request): RawAnswer => {
    if (request.unitId !== 2) return { kind: "normal" };
    count++;
    if (count === unit2.late) return { kind: "normal", delayMs: 450 };
    if (count === unit2.lost) return { kind: "silent" };
    if (count === unit2.reset) return { kind: "reset" };
    return { kind: "normal" };
  });
  cleanups.push(() => started.stop());
  return started;
}

async function scan(port: number, seconds: number) {
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port },
    requestTimeoutMs: 300,
    reconnect: { initialDelayMs: 20, jitter: 0 },
  });
  cleanups.push(() => driver.close());
  const resyncs: string[] = [];
  driver.onStatusChange(({ to, reason }) => {
    if (to === "reconnecting" && /resynchronis/.test(reason ?? "")) resyncs.push(reason ?? "");
  });
  await driver.connect();
  const unit1Bad: string[] = [];
  let wrong = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    let samples;
    try {
      samples = await driver.read(tags.list());
    } catch {
      // the link the device dropped: the read fails retryable, the driver reconnects
      await pause(200);
      continue;
    }
    const a = samples[0]!;
    if (a.quality.severity !== "good") unit1Bad.push(String(a.quality.reason));
    for (const [index, sample] of samples.entries()) {
      if (sample.quality.severity === "good" && sample.value !== rawRegister(index + 1, 0)) wrong++;
    }
    await pause(200);
  }
  return { unit1Bad, resyncs, wrong };
}

describe("Modbus TCP: one overtaken late answer does not hold every unit's reads for the forget horizon", () => {
  it("unit 1 stays good when unit 2 loses an answer seconds after one late answer (the adv M1 example)", async () => {
    const { port } = await device({ late: 5, lost: 20 });
    const { unit1Bad, resyncs, wrong } = await scan(port, 9);
    // Before: HR0@1 bad from the loss to the end of the run ("shape holding-register/2 is held ..."), 25+ reads.
    expect(unit1Bad.filter((reason) => /is held/.test(reason))).toEqual([]);
    expect(unit1Bad.length).toBeLessThanOrEqual(1);
    expect(resyncs).toEqual([]);
    expect(wrong).toBe(0);
  }, 20_000);

  it("a new connection starts unclassified: a loss right after a reconnect holds nothing past its late bound (sibling)", async () => {
    // Late (classified), then the device drops the link two requests later, then a loss shortly after the reconnect:
    // too few answers in between for the decay, so only the reset on the new connection releases it.
    const { port } = await device({ late: 5, reset: 7, lost: 9 });
    const { unit1Bad, resyncs, wrong } = await scan(port, 6);
    expect(unit1Bad.filter((reason) => /is held/.test(reason))).toEqual([]);
    expect(resyncs).toEqual([]);
    expect(wrong).toBe(0);
  }, 20_000);
});
