import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

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

  it("sibling: registers that really hold the same value are uncertain on the first scan only, then good", async () => {
    const truth = { a: 0, b: 0, c: 0 };
    await open(truth);
    const first = await scans(1, truth);
    expect(first.wrong).toEqual([]);
    expect(first.counts.bad).toBe(0);
    const later = await scans(5, truth);
    expect(later.wrong).toEqual([]);
    expect(later.counts).toEqual({ good: 15, uncertain: 0, bad: 0 });
  }, 30_000);
});
