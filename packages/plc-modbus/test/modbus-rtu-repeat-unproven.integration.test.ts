import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice, type AnswerFault } from "./rtu-line-device";

// adv12 fix12e H2 (ADR 0041, amendment fix12e): a usually fast device behind a repeater. The repeat of HR0's answer
// came while HR20's request waited; HR20's real answer came 100 ms later, after the repeat hold (twice the last
// latency plus the quiet time, ~55 ms for a fast device), so the repeat was taken: HR20 showed HR0's 1000, good.
// No wait can prove a repeat (the device's time is not known): an answer byte-identical to the previous answer on
// the line, which answered another request, is uncertain unless it is this request's own proven answer.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  b: { dataType: "uint16", address: "HR20@1" },
  c: { dataType: "uint16", address: "HR40@1" },
});

describe.skipIf(!hasSocat)("Modbus RTU: a repeat after the hold is never good (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  async function open(values: Record<string, number>) {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    device.registers.get(1)!.set([values.a!], 0);
    device.registers.get(1)!.set([values.b!], 20);
    device.registers.get(1)!.set([values.c!], 40);
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
      planner: { maxGap: 0 },
    });
    await driver.connect();
  }

  async function scans(count: number, truth: Record<string, number>) {
    const wrong: string[] = [];
    const counts = { good: 0, uncertain: 0, bad: 0 };
    for (let scan = 0; scan < count; scan++) {
      for (const sample of await driver!.read(tags.list())) {
        counts[sample.quality.severity]++;
        if (sample.quality.severity === "good" && sample.value !== truth[sample.tag]) {
          wrong.push(`scan ${scan}: ${sample.tag}=${String(sample.value)}`);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { wrong, counts };
  }

  it("the repeat of HR0's answer, with HR20's real answer 100 ms behind it, is never HR20's value good", async () => {
    const truth = { a: 1000, b: 1020, c: 1040 };
    await open(truth);
    // HR0's answer again 15 ms later, while HR20's request waits; HR20 answered 100 ms late, the rest at once.
    device.repeatAfter = (request) => (request.readUInt16BE(2) === 0 ? 15 : 0);
    device.lateBy = (_, request) => (request.readUInt16BE(2) === 20 ? 100 : 0);
    const { wrong, counts } = await scans(6, truth);
    expect(wrong).toEqual([]);
    expect(counts.good).toBeGreaterThanOrEqual(6);
  }, 30_000);

  // adv12b H3/H4 (fix12f): no exemption for an answer equal to the request's own last one, no promotion by silence:
  // registers that really hold equal values read in turn stay uncertain where one follows the other (the cost).
  it("sibling: registers that really hold the same value are never wrong and never bad (some stay uncertain)", async () => {
    const truth = { a: 0, b: 0, c: 0 };
    await open(truth);
    const first = await scans(1, truth);
    expect(first.wrong).toEqual([]);
    expect(first.counts.bad).toBe(0);
    const later = await scans(5, truth);
    expect(later.wrong).toEqual([]);
    console.log("equal registers, 5 scans:", later.counts);
    expect(later.counts.bad).toBe(0);
    expect(later.counts.good).toBeGreaterThan(0);
  }, 30_000);

  /** A fault for the reads of register `address` only (the others pass): `fault` for the `nth` of them from now. */
  function onRead(address: number, fault: (answer: Buffer, nth: number) => Buffer | null, times: number) {
    let nth = 0;
    const each: AnswerFault = (answer, request) => {
      const mine = request[1] === 3 && request.readUInt16BE(2) === address && request.readUInt16BE(4) === 1;
      if (mine) nth++;
      if (nth < times || !mine) device.faults.unshift(each);
      return mine ? fault(answer, nth) : answer;
    };
    device.faults.push(each);
  }

  it("adv12b H3 (once20): a repeat equal to the request's own last answer is not good, its late real answer lands nowhere", async () => {
    const truth = { a: 0, b: 0, c: 0 };
    await open(truth);
    await scans(3, truth);
    device.registers.get(1)![20] = 1;
    // On HR20's next read a repeater sends the previous answer on the line (HR0's "0") first, the real one 120 ms later.
    onRead(
      20,
      (answer) => {
        const repeat = device.lastSent!;
        setTimeout(() => device.write(answer), 120);
        return repeat;
      },
      1,
    );
    const after = await scans(4, { a: 0, b: 1, c: 0 });
    expect(after.wrong).toEqual([]);
  }, 30_000);

  it("adv12b H4 (swap20): a repeat whose real answer was lost is not proven by silence (two reads in a row)", async () => {
    const truth = { a: 100, b: 200, c: 300 };
    await open(truth);
    await scans(2, truth);
    // On HR20's next two reads the repeater sends HR0's answer instead; HR20's own is lost.
    onRead(20, () => device.lastSent!, 2);
    const after = await scans(4, truth);
    expect(after.wrong).toEqual([]);
  }, 30_000);
});
