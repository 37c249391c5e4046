import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";
import { rtuFrame } from "../src/modbus-rtu-frame";

// Modbus RTU (issue 12, ADR 0041 amendment fix12h): an answer carries no id, so one extra frame of the right size
// (a device's answer out of order past the late bound, a repeater's copy past the repeat window) taken by a request
// leaves that request's own answer to land on the next request of its shape, and so on. The client's answer-time rule
// (fix12c) ends such a chain only while each shifted answer comes sooner than the unit answers; under load the host
// reads bytes late and sends later, and the rule stops catching it (seen in the full project run: 6 shifted values
// in one scan). Here the timing is made such that the rule cannot catch it, deterministically: from the extra frame
// on, the device answers in 60 ms (as a loaded host reads a 15 ms device's answers late), and the extra frame comes
// 28 ms after a request, so every shifted answer comes 28 ms into the next request's window, later than the 15 ms
// the unit was learned to answer in. Before: the chain ran on through every later read. Now a read of another size
// goes after 8 one-register reads in a row (for a minute after an anomaly): at most 8 values of a chain are taken.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

/** 20 one-register tags, 10 registers apart: 20 requests of one shape per scan, each register's value its own. */
const addresses = Array.from({ length: 20 }, (_, index) => index * 10);
const tags = defineTags(
  Object.fromEntries(addresses.map((address) => [`hr${address}`, { dataType: "uint16", address: `HR${address}@1` }])),
);
const truth = (tag: string): number => 1000 + Number(tag.slice(2));
/** The separator's rule (`SAME_SHAPE_RUN` in the request queue): at most this many values of one chain. */
const RUN = 8;

describe.skipIf(!hasSocat)("Modbus RTU: a shift the answer-time rule cannot catch is bounded (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  async function line(): Promise<void> {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    for (const address of addresses) device.registers.get(1)![address] = 1000 + address;
    device.concurrent = true;
    device.lateBy = () => 15;
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
      planner: { maxGap: 0 },
    });
    await driver.connect();
  }

  /** Scans back to back; a wrong good value is the extra frame itself (`extra`) or a shifted one. */
  async function scans(count: number, extra: number) {
    const wrong: string[] = [];
    const shifted: string[] = [];
    let good = 0;
    for (let scan = 0; scan < count; scan++) {
      for (const sample of await driver!.read(tags.list())) {
        if (sample.quality.severity !== "good") continue;
        good++;
        if (sample.value === truth(sample.tag)) continue;
        const seen = `scan ${scan}: ${sample.tag}=${String(sample.value)}`;
        (sample.value === extra ? wrong : shifted).push(seen);
      }
    }
    return { wrong, shifted, good };
  }

  /**
   * From the first one-register read of HR100 at or after `from()` (ms, `performance.now()`), puts `frame` on the line 28 ms
   * after it (in its window, later than the unit was learned to answer) and answers that request and every later
   * one in 60 ms. Resolves the count of frames put (0 or 1) through `sent()`.
   */
  function extraFrameAt(from: () => number | undefined, frame: Buffer, before: (request: Buffer) => number) {
    let sent = 0;
    let slow = false;
    device.lateBy = (_index, request) => {
      const at = from();
      const hr100 = request[1] === 3 && request.readUInt16BE(2) === 100 && request.readUInt16BE(4) === 1;
      if (!slow && at !== undefined && performance.now() >= at && hr100) {
        slow = true;
        setTimeout(() => (sent++, device.write(frame)), 28);
      }
      return slow ? 60 : before(request);
    };
    return { sent: () => sent };
  }

  it("an answer the device sends 1 s late (3.3× the timeout) is taken by at most 8 reads (the chain ran on before)", async () => {
    await line();
    const warm = await scans(3, -1);
    expect([...warm.wrong, ...warm.shifted]).toEqual([]);
    // HR50's request is never answered in its time: its answer (1050) comes at least 1 s later, in HR100's window
    // (mid-scan: the request before it was answered in step, so HR100's is not guarded by a quiet time).
    let abandonedAt: number | undefined;
    const late = rtuFrame(1, Buffer.from([3, 2, 1050 >> 8, 1050 & 0xff]));
    const extra = extraFrameAt(
      () => (abandonedAt === undefined ? undefined : abandonedAt + 1000),
      late,
      (request) => {
        if (abandonedAt === undefined && request.readUInt16BE(2) === 50) {
          abandonedAt = performance.now();
          device.faults.push(() => null); // this request's answer (sent at once) is the one that comes late
          return 0;
        }
        return 15;
      },
    );
    const { wrong, shifted, good } = await scans(10, 1050);
    expect(extra.sent()).toBe(1);
    // The late frame itself may be taken (nothing tells it apart); its chain is at most RUN values in all.
    expect(wrong.length).toBeLessThanOrEqual(1);
    expect(shifted.length, shifted.join(", ")).toBeLessThanOrEqual(RUN - 1);
    expect(good).toBeGreaterThanOrEqual(10 * 20 - 60);
    expect(driver!.answerStream.anomalies).toBeGreaterThan(0);
  }, 60_000);

  it("sibling: a repeater's copy past the repeat window, on a line where it repeated before, is taken by at most 8 reads", async () => {
    await line();
    const warm = await scans(3, -1);
    expect([...warm.wrong, ...warm.shifted]).toEqual([]);
    // The repeater first repeats HR30's answer 2 ms after it (in HR40's window, caught: an anomaly), then, past its
    // 250 ms repeat window, once more 28 ms into a later HR100's window.
    const copy = rtuFrame(1, Buffer.from([3, 2, 1030 >> 8, 1030 & 0xff]));
    let repeatedAt: number | undefined;
    const extra = extraFrameAt(
      () => (repeatedAt === undefined ? undefined : repeatedAt + 400),
      copy,
      (request) => {
        if (repeatedAt === undefined && request.readUInt16BE(2) === 30) {
          repeatedAt = performance.now();
          setTimeout(() => device.write(copy), 17);
        }
        return 15;
      },
    );
    const { wrong, shifted, good } = await scans(10, 1030);
    expect(extra.sent()).toBe(1);
    // The early copy is refused, the late one may be taken (nothing tells it apart): at most one each.
    expect(wrong.length).toBeLessThanOrEqual(2);
    expect(shifted.length, shifted.join(", ")).toBeLessThanOrEqual(RUN - 1);
    expect(good).toBeGreaterThanOrEqual(10 * 20 - 60);
  }, 60_000);
});
