import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// Modbus RTU (issue 12, review adv12 HIGH 1, ADR 0041 amendment fix12a): a device behind a repeater or radio modem
// answers every request after 60 ms and repeats its answer to HR0 30 ms later. The repeat came while HR20's request
// waited, fitted it (same unit, function and size) and was taken: HR20 showed HR0's 1000, good, every other scan;
// HR20's real answer then came with nothing waiting and was dropped unseen. Now an answer byte-identical to a recent
// one is taken only once the line stayed quiet after it, every frame no request waited for is reported and counted,
// and it makes its unit's answer stream suspect until a fence's own answer.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  b: { dataType: "uint16", address: "HR20@1" },
});
const truth: Record<string, number> = { a: 1000, b: 1020 };

describe.skipIf(!hasSocat)("Modbus RTU: a device that repeats its answer (needs socat: apt-get install socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  async function scans(interRequestDelayMs: number, count: number) {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    device.registers.get(1)!.set([1000], 0);
    device.registers.get(1)!.set([1020], 20);
    device.lateBy = () => 60;
    // The answer to a one-register read of HR0, again 30 ms later.
    device.repeatAfter = (request) => (request.readUInt16BE(2) === 0 && request.readUInt16BE(4) === 1 ? 30 : 0);
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
      interRequestDelayMs,
      planner: { maxGap: 0 },
    });
    await driver.connect();
    const wrong: string[] = [];
    const good = { a: 0, b: 0 };
    for (let scan = 0; scan < count; scan++) {
      for (const sample of await driver.read(tags.list())) {
        if (sample.quality.severity !== "good") continue;
        good[sample.tag as keyof typeof good]++;
        if (sample.value !== truth[sample.tag]) wrong.push(`scan ${scan}: ${sample.tag}=${String(sample.value)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    return { wrong, good };
  }

  it("never takes the repeat for the next same-shape request's value (HR20 showed 1000 before)", async () => {
    const { wrong, good } = await scans(0, 6);
    expect(wrong).toEqual([]);
    expect(good.a).toBeGreaterThanOrEqual(5);
    expect(driver!.answerStream.anomalies).toBeGreaterThan(0);
  }, 30_000);

  it("sibling: a repeat that comes while no request waits is counted and fenced, never dropped unseen", async () => {
    const { wrong, good } = await scans(50, 6);
    expect(wrong).toEqual([]);
    expect(good.a + good.b).toBeGreaterThanOrEqual(10);
    // One repeat per scan, each reported (before: dropped unseen, the stream "aligned" throughout).
    expect(driver!.answerStream.strays).toBeGreaterThanOrEqual(5);
    expect(driver!.answerStream.anomalies).toBeGreaterThanOrEqual(5);
  }, 30_000);
});
