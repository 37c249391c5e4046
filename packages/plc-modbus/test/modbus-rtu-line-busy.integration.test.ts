import { spawnSync } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KilnError, defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { ModbusRtuClient } from "../src/modbus-rtu-client";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// adv12 (fix12z brief) M2: after line noise the RTU client waited in an unbounded resync, with `#pending` cleared,
// so every request issued meanwhile waited too and all were written back to back when the noise stopped; a request
// whose caller had long timed out was still written (a write reported KILN_TIMEOUT sent:true went on the wire
// whenever the noise stopped), and the answer of the first was taken by the last. Now one request is on the line at
// a time, the resync is bounded by the request's timeout, and a request not written in time rejects "line busy
// (noise)", `notSent`, and is never written later.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!hasSocat)("Modbus RTU: a request never waits unbounded for a noisy line (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;

  beforeEach(async () => {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    device.registers.get(1)!.set([1000], 0);
    device.registers.get(1)!.set([1050], 50);
  });

  afterEach(async () => {
    await device.close();
    await pair.close();
  });

  it("requests issued while the line babbles are never written after their callers gave up, nor back to back", async () => {
    const client = new ModbusRtuClient();
    client.setRequestTimeout(300);
    await client.connectRTUBuffered(pair.master, { baudRate: 19200 });
    try {
      client.setID(1);
      expect((await client.readHoldingRegisters(0, 1)).data).toEqual([1000]);
      const noise = device.babble(1_000);
      await sleep(60); // the client has seen noise with no request waiting: out of step
      const before = device.received.length;
      const outcomes: string[] = [];
      const settle = (name: string, promise: Promise<{ data: number[] }>) =>
        promise.then(
          (answer) => outcomes.push(`${name}=${answer.data.join()}`),
          (error: Error & { notSent?: boolean }) =>
            outcomes.push(`${name}:${error.notSent === true ? "notSent" : error.message}`),
        );
      const first = settle("HR0", client.readHoldingRegisters(0, 1));
      await sleep(300); // HR0's caller timed out; the queue issues the next request
      const second = settle("HR50", client.readHoldingRegisters(50, 1));
      await Promise.race([Promise.all([first, second]), sleep(2_000)]);
      await noise;
      await sleep(400);
      // Both settled (before: HR0 never settled), neither was written (before: both, back to back, after the noise).
      expect(outcomes.sort()).toEqual(["HR0:notSent", "HR50:notSent"]);
      expect(device.received.slice(before).map((entry) => entry.frame.toString("hex"))).toEqual([]);
      // The line is usable again, with the right value.
      expect((await client.readHoldingRegisters(50, 1)).data).toEqual([1050]);
    } finally {
      await new Promise<void>((resolve) => client.destroy(() => resolve()));
    }
  }, 15_000);

  it("a write during noise fails sent:false and never lands later (sibling: the delayed actuation)", async () => {
    const tags = defineTags({ w: { dataType: "uint16", address: "HR5@1", access: "readwrite" } });
    const driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
    });
    await driver.connect();
    try {
      expect((await driver.read([tags.get("w")]))[0]!.quality.severity).toBe("good");
      const noise = device.babble(1_200);
      await sleep(60);
      const error: unknown = await driver.write(tags.get("w"), 7).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(KilnError.is(error), String(error)).toBe(true);
      const kiln = error as KilnError;
      expect(kiln.details.sent).toBe(false);
      expect(kiln.retryable).toBe(true);
      expect(kiln.message).toMatch(/line busy \(noise\)/);
      await noise;
      await sleep(500);
      // Before: the write, reported KILN_TIMEOUT sent:true, went on the wire once the noise stopped.
      expect(device.registers.get(1)![5]).toBe(0);
      expect(device.received.filter((entry) => entry.frame[1] === 6)).toEqual([]);
    } finally {
      await driver.close();
    }
  }, 15_000);
});
