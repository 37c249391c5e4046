import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// Modbus RTU (issue 12, ADR 0041 amendment fix12v): an RTU answer has no transaction id. A device busy with a
// late answer ignores the requests it gets meanwhile; an answer later than the ledger's late bound (two request
// timeouts) came while the next request of its shape (same unit, function and size) waited for its own, which the
// device had ignored, and was decoded as that request's value, good (HR0 showed HR20's 222). A fence (a read of
// another size, sent alone after the anomaly, at the same unit) now proves the unit answers the current request before
// any request of that shape goes: its own answer can only come once the device is done with the older one.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  b: { dataType: "uint16", address: "HR20@1" },
  c: { dataType: "uint16", address: "HR40@1" },
});
const truth: Record<string, number> = { a: 111, b: 222, c: 444 };

describe.skipIf(!hasSocat)(
  "Modbus RTU: an answer later than the late bound (needs socat: apt-get install socat)",
  () => {
    let pair: SerialPair;
    let device: RtuLineDevice;
    let driver: ModbusDriver | undefined;

    afterEach(async () => {
      await driver?.close();
      await device.close();
      await pair.close();
    });

    async function scans(lateBy: (index: number) => number, count: number) {
      pair = await openSerialPair();
      device = await RtuLineDevice.open(pair.device, [1]);
      device.registers.get(1)!.set([111], 0);
      device.registers.get(1)!.set([222], 20);
      device.registers.get(1)!.set([444], 40);
      device.lateBy = lateBy;
      driver = new ModbusDriver({
        transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
        requestTimeoutMs: 300,
        planner: { maxGap: 0 },
      });
      await driver.connect();
      const wrong: string[] = [];
      let good = 0;
      for (let scan = 0; scan < count; scan++) {
        for (const sample of await driver.read(tags.list())) {
          if (sample.quality.severity !== "good") continue;
          good++;
          if (sample.value !== truth[sample.tag]) wrong.push(`scan ${scan}: ${sample.tag}=${String(sample.value)}`);
        }
      }
      return { wrong, good };
    }

    it("is never decoded as the next same-shape request's value (HR20's answer 750 ms late, past the 600 ms bound)", async () => {
      const { wrong, good } = await scans((index) => (index === 1 ? 750 : 0), 8);
      expect(wrong).toEqual([]);
      expect(good).toBeGreaterThan(10);
    }, 30_000);

    it("sibling: two answers late past the bound in a row, each ignoring the requests sent meanwhile", async () => {
      const { wrong, good } = await scans((index) => (index === 1 || index === 6 ? 700 : 0), 10);
      expect(wrong).toEqual([]);
      expect(good).toBeGreaterThan(10);
    }, 30_000);
  },
);

// Siblings on a multi-drop line: each unit is its own device (`busyPerUnit`), proven by its own fence; a unit that
// answers proves nothing about another's late answer, and a dead unit still goes offline.
describe.skipIf(!hasSocat)("Modbus RTU multi-drop: late and dead units (needs socat: apt-get install socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  const line = defineTags({
    live: { dataType: "uint16", address: "HR0@1" },
    a: { dataType: "uint16", address: "HR0@2" },
    b: { dataType: "uint16", address: "HR20@2" },
    c: { dataType: "uint16", address: "HR40@2" },
  });
  const expected: Record<string, number> = { live: 1000, a: 2000, b: 2020, c: 2040 };

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  async function open(offlineAfter = 3): Promise<ModbusDriver> {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1, 2]);
    device.busyPerUnit = true;
    device.registers.get(1)!.set([1000], 0);
    for (const address of [0, 20, 40]) device.registers.get(2)![address] = 2000 + address;
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
      planner: { maxGap: 0 },
      unitHealth: { offlineAfter },
    });
    await driver.connect();
    return driver;
  }

  it("unit 2's answer past the bound is never taken by its next same-shape request, while unit 1 answers on", async () => {
    const driver = await open();
    // Unit 2's first read of HR20 is answered 750 ms late (past the 600 ms bound); unit 2 ignores requests meanwhile.
    let lateSent = false;
    device.lateBy = (_, request) => {
      if (lateSent || request[0] !== 2 || request.readUInt16BE(2) !== 20) return 0;
      lateSent = true;
      return 750;
    };
    const wrong: string[] = [];
    const good = new Map<string, number>();
    for (let scan = 0; scan < 8; scan++) {
      for (const sample of await driver.read(line.list())) {
        if (sample.quality.severity !== "good") continue;
        good.set(sample.tag, (good.get(sample.tag) ?? 0) + 1);
        if (sample.value !== expected[sample.tag]) wrong.push(`scan ${scan}: ${sample.tag}=${String(sample.value)}`);
      }
    }
    expect(lateSent).toBe(true);
    expect(wrong).toEqual([]);
    // Unit 1 is not held back by unit 2's fences, and unit 2 is good again once its own fence answered.
    expect(good.get("live")).toBeGreaterThanOrEqual(7);
    expect(good.get("c")).toBeGreaterThanOrEqual(3);
  }, 30_000);

  it("a unit that answered and then goes silent still goes offline, its fences' silence counted, unit 1 good", async () => {
    const driver = await open(3);
    expect((await driver.read(line.list())).every((sample) => sample.quality.severity === "good")).toBe(true);
    // Unit 2 dies: no answer to anything any more (requests to a unit not on the line get silence).
    device.registers.delete(2);
    device.coils.delete(2);
    let liveGood = 0;
    let scans = 0;
    for (; scans < 12; scans++) {
      const samples = await driver.read(line.list());
      if (samples.find((sample) => sample.tag === "live")!.quality.severity === "good") liveGood++;
      for (const sample of samples) if (sample.tag !== "live") expect(sample.quality.severity).toBe("bad");
      if (driver.units().find((unit) => unit.unitId === 2)?.state === "offline") break;
    }
    expect(driver.units().find((unit) => unit.unitId === 2)?.state).toBe("offline");
    expect(liveGood).toBe(scans + 1);
  }, 60_000);
});
