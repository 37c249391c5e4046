import { spawnSync } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// adv12b H5: fix12e M3 took a frame of the answer's length that failed only its CRC for the request's own answer,
// corrupted, and owed nothing after it. But a radio hop with ARQ (or a device one answer behind) sends the clean
// frame again: it arrived in the next same-shape read's slot and was delivered good as that read's value
// (HR20 = 100). A CRC-failed frame owes its answer again, as any frame that did not fit (safety over availability).

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  b: { dataType: "uint16", address: "HR20@1" },
  c: { dataType: "uint16", address: "HR60@1" },
});
const truth: Record<string, number> = { a: 100, b: 200, c: 300 };
const corrupt = (answer: Buffer) => {
  const copy = Buffer.from(answer);
  copy[4]! ^= 0x01; // a data bit flipped on the line: the CRC no longer fits
  return copy;
};

describe.skipIf(!hasSocat)("Modbus RTU: a corrupted answer is still owed (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  beforeEach(async () => {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    device.registers.get(1)!.set([100], 0);
    device.registers.get(1)!.set([200], 20);
    device.registers.get(1)!.set([300], 60);
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
      planner: { maxGap: 0 },
    });
    await driver.connect();
  });

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  const wrongGood = (samples: readonly Sample[]) =>
    samples
      .filter((sample) => sample.quality.severity === "good" && sample.value !== truth[sample.tag])
      .map((sample) => `${sample.tag}=${String(sample.value)}`);

  it("a clean retransmission of a CRC-failed answer is not taken as the next read's answer (crc20)", async () => {
    const names = ["a", "b", "c"];
    for (let scan = 0; scan < 2; scan++) await driver!.read(names.map((name) => tags.get(name)));
    // A radio hop with ARQ: the corrupted answer is sent again clean 400 ms later (within the late bound of
    // 300 ms timeout + 300 ms guard), or sooner in the next one-register read's slot, 10 ms before that read's own
    // answer (a fence of another size is answered cleanly).
    let retransmission: Buffer | undefined;
    let timer: NodeJS.Timeout | undefined;
    device.faults.push((answer) => {
      retransmission = answer;
      timer = setTimeout(() => {
        if (retransmission) device.write(retransmission);
        retransmission = undefined;
      }, 400);
      return corrupt(answer);
    });
    const slot = (answer: Buffer, request: Buffer): Buffer | Buffer[] => {
      if (retransmission === undefined) return answer;
      if (request.readUInt16BE(4) !== 1) {
        device.faults.unshift(slot);
        return answer;
      }
      clearTimeout(timer);
      const early = retransmission;
      retransmission = undefined;
      return [early, answer];
    };
    device.faults.push(slot);
    const wrong: string[] = [];
    for (let scan = 0; scan < 4; scan++) {
      wrong.push(...wrongGood(await driver!.read(names.map((name) => tags.get(name)))));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    clearTimeout(timer);
    expect(wrong).toEqual([]);
  }, 30_000);

  it("sibling: a device one answer behind after a CRC error delivers no wrong value good", async () => {
    const names = ["a", "b", "c"];
    for (let scan = 0; scan < 2; scan++) await driver!.read(names.map((name) => tags.get(name)));
    let behind: Buffer | undefined;
    device.faults.push((answer) => {
      behind = answer;
      return corrupt(answer);
    });
    // From then on each answer is the previous request's (a one-behind device), for a few answers.
    for (let index = 0; index < 6; index++) {
      device.faults.push((answer) => {
        const sent = behind!;
        behind = answer;
        return sent;
      });
    }
    const wrong: string[] = [];
    for (let scan = 0; scan < 5; scan++) {
      wrong.push(...wrongGood(await driver!.read(names.map((name) => tags.get(name)))));
    }
    expect(wrong).toEqual([]);
  }, 30_000);
});
