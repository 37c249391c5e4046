import { spawnSync } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryStore, createControlSystem, defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice, withCrc, type AnswerFault } from "./rtu-line-device";

// Modbus RTU over a virtual serial pair (socat): the driver on one end, a small RTU device on the other.
const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  "unit1.a": { dataType: "uint16", address: "HR0@1", access: "readwrite" },
  "unit1.b": { dataType: "uint16", address: "HR20@1" },
  "unit1.c": { dataType: "uint16", address: "HR40@1" },
  "unit1.pump": { dataType: "bool", address: "C3@1", access: "readwrite" },
  "unit2.a": { dataType: "uint16", address: "HR0@2" },
  "unit3.a": { dataType: "uint16", address: "HR0@3" },
  "unit4.a": { dataType: "uint16", address: "HR0@4" },
  "unit5.a": { dataType: "uint16", address: "HR0@5" },
});

describe.skipIf(!hasSocat)("Modbus RTU on a serial line (needs socat: apt-get install socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  const drivers: ModbusDriver[] = [];

  beforeEach(async () => {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1, 2]);
    device.registers.get(1)!.set([111], 0);
    device.registers.get(1)!.set([222], 20);
    device.registers.get(2)!.set([333], 0);
  });

  afterEach(async () => {
    for (const driver of drivers.splice(0)) await driver.close();
    await device.close();
    await pair.close();
  });

  async function connect(options: Partial<ModbusDriverOptions> = {}): Promise<ModbusDriver> {
    const driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
      planner: { maxGap: 0 },
      ...options,
    });
    drivers.push(driver);
    await driver.connect();
    return driver;
  }

  const byName = (samples: readonly Sample[]) => Object.fromEntries(samples.map((sample) => [sample.tag, sample]));
  const read = async (driver: ModbusDriver, names: string[]) =>
    byName(await driver.read(names.map((name) => tags.get(name))));

  it("reads and writes registers and coils of two units on one bus", async () => {
    const driver = await connect();
    const first = await read(driver, ["unit1.a", "unit1.b", "unit2.a", "unit1.pump"]);
    expect(first["unit1.a"]!.value).toBe(111);
    expect(first["unit1.b"]!.value).toBe(222);
    expect(first["unit2.a"]!.value).toBe(333);
    expect(first["unit1.pump"]!.value).toBe(false);
    await driver.write(tags.get("unit1.a"), 4242);
    await driver.write(tags.get("unit1.pump"), true);
    expect(device.registers.get(1)![0]).toBe(4242);
    const second = await read(driver, ["unit1.a", "unit1.pump"]);
    expect(second["unit1.a"]).toMatchObject({ value: 4242, quality: { severity: "good" } });
    expect(second["unit1.pump"]!.value).toBe(true);
  });

  it("answers a silent unit's tags bad (timeout) while the other unit stays good", async () => {
    const driver = await connect();
    const samples = await read(driver, ["unit1.a", "unit3.a"]);
    expect(samples["unit1.a"]).toMatchObject({ value: 111, quality: { severity: "good" } });
    expect(samples["unit3.a"]!.quality).toMatchObject({ severity: "bad", reason: "modbus request timed out" });
  });

  it("keeps the live units good on every scan with three dead units on the line (control system, 300 ms scans)", async () => {
    const driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
    });
    drivers.push(driver);
    const names = ["unit1.a", "unit2.a", "unit3.a", "unit4.a", "unit5.a"];
    const gateway = defineTags(
      Object.fromEntries(names.map((name) => [name, { dataType: "uint16", address: `HR0@${name.slice(4, 5)}` }])),
    );
    const system = createControlSystem({
      machineId: "rtu",
      tags: gateway,
      store: new MemoryStore(),
      driver,
      scanGroups: { default: { periodMs: 300 } },
      acquisition: { timeoutMs: 600 },
    });
    const live: Sample[] = [];
    system.cvt.observe("unit1.a", (change) => live.push(change.sample));
    system.cvt.observe("unit2.a", (change) => live.push(change.sample));
    await system.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      // Before: each dead unit's probe kept the line quiet two timeouts (its own and the late-answer guard), ahead
      // of the live requests: two good values in 15 s at 1 s scans. The guard now holds back only requests an
      // answer of the silent unit could pass for.
      expect(live.filter((sample) => sample.quality.severity !== "good")).toEqual([]);
      const group = system.health().acquisition.groups[0]!;
      expect(group.failedReads).toBe(0);
      expect(group.skippedCycles).toBeLessThanOrEqual(2);
      expect(live.filter((sample) => sample.tag === "unit1.a").length).toBeGreaterThanOrEqual(7);
    } finally {
      await system.stop();
    }
  }, 15_000);

  it("late answers after a pause never shift a value into another tag (the late-bytes case)", async () => {
    const driver = await connect();
    device.pause();
    const during = await read(driver, ["unit1.a", "unit1.b"]);
    expect(during["unit1.a"]!.quality.severity).toBe("bad");
    expect(during["unit1.b"]!.quality.severity).toBe("bad");
    // The device wakes up and answers the held requests back to back, while the driver is already asking again.
    setTimeout(() => device.resume(), 100);
    const seen: Sample[] = [];
    for (let scan = 0; scan < 8; scan++) seen.push(...(await driver.read([tags.get("unit1.a"), tags.get("unit1.b")])));
    const truth: Record<string, number> = { "unit1.a": 111, "unit1.b": 222 };
    const good = seen.filter((sample) => sample.quality.severity === "good");
    for (const sample of good) expect(sample.value).toBe(truth[sample.tag]);
    // And the line recovers: the last scans are good.
    expect(seen.slice(-4).every((sample) => sample.quality.severity === "good")).toBe(true);
  });

  // A busy device answers after the request timed out and ignores the next request meanwhile: the late
  // answer has the next request's unit, function code and length, so only timing tells them apart.
  const lateModes: readonly (readonly [string, (index: number) => number])[] = [
    ["answers two requests late, ignoring the next while busy", (index) => (index === 1 || index === 2 ? 420 : 0)],
    ["answers every third request late (steady state)", (index) => (index % 3 === 2 ? 420 : 0)],
  ];
  it.each(lateModes)("a late answer is never taken for the next request: the device %s", async (_, lateBy) => {
    // A block answered late on every read is backed off after 3 reads (block health); its probe is due 100 ms later.
    const driver = await connect({ unitHealth: { offlineAfter: 3, probeInitialDelayMs: 100, probeMaxDelayMs: 100 } });
    device.registers.get(1)!.set([444], 40);
    const names = ["unit1.a", "unit1.b", "unit1.c"];
    const list = [tags.get("unit1.a"), tags.get("unit1.b"), tags.get("unit1.c")];
    device.lateBy = lateBy;
    const truth: Record<string, number> = { "unit1.a": 111, "unit1.b": 222, "unit1.c": 444 };
    let good = 0;
    for (let scan = 0; scan < 6; scan++) {
      for (const sample of await driver.read(list)) {
        if (sample.quality.severity !== "good") continue;
        good++;
        expect(sample.value, `${sample.tag} in scan ${scan}`).toBe(truth[sample.tag]);
      }
    }
    expect(good).toBeGreaterThan(0);
    device.lateBy = () => 0;
    await new Promise((resolve) => setTimeout(resolve, 450));
    const after = await read(driver, names);
    for (const name of names) expect(after[name]).toMatchObject({ value: truth[name], quality: { severity: "good" } });
  });

  const faults: readonly (readonly [string, AnswerFault, string])[] = [
    [
      "a CRC error",
      (answer) => Buffer.concat([answer.subarray(0, -1), Buffer.from([answer.at(-1)! ^ 0xff])]),
      "CRC error",
    ],
    [
      "another unit id",
      (answer) => withCrc(Buffer.concat([Buffer.from([7]), answer.subarray(1)])),
      "answer from unit 7",
    ],
    [
      "another function code",
      (answer) => withCrc(Buffer.concat([answer.subarray(0, 1), Buffer.from([4]), answer.subarray(2)])),
      "function code 4",
    ],
    ["a short frame", (answer) => answer.subarray(0, answer.length - 3), "short frame"],
    ["a long frame", (answer) => Buffer.concat([answer, Buffer.from([0, 0])]), "noise or another frame"],
    [
      "an exception answer for another request",
      (answer) => withCrc(Buffer.from([answer[0]!, 0x84, 2, 0, 0])),
      "function code 132",
    ],
    [
      "garbage before the frame",
      (answer) => Buffer.concat([Buffer.from([0x55, 0xaa]), answer]),
      "noise or another frame",
    ],
    [
      "a wrong byte count",
      (answer) => withCrc(Buffer.concat([answer.subarray(0, 2), Buffer.from([4]), answer.subarray(3)])),
      "byte count 4",
    ],
  ];

  it.each(faults)("turns %s into bad quality with the reason, then reads correctly again", async (_, fault, reason) => {
    const driver = await connect();
    device.faults.push(fault);
    const bad = await read(driver, ["unit1.a"]);
    expect(bad["unit1.a"]!.value).toBeNull();
    expect(bad["unit1.a"]!.quality.severity).toBe("bad");
    expect(bad["unit1.a"]!.quality.reason).toContain(reason);
    const next = await read(driver, ["unit1.a", "unit1.b"]);
    expect(next["unit1.a"]).toMatchObject({ value: 111, quality: { severity: "good" } });
    expect(next["unit1.b"]).toMatchObject({ value: 222, quality: { severity: "good" } });
  });

  it("garbage between frames is never decoded, and the next read is right", async () => {
    const driver = await connect();
    device.faults.push((answer) => Buffer.concat([answer, Buffer.from([1, 3, 2, 0x12, 0x34])]));
    const first = await read(driver, ["unit1.a"]);
    expect(first["unit1.a"]!.quality.severity).toBe("bad");
    const next = await read(driver, ["unit1.b"]);
    expect(next["unit1.b"]).toMatchObject({ value: 222, quality: { severity: "good" } });
  });

  it("late answers of a device answering each request on its own schedule, overlapping, are never taken for another request's (adv12q F3)", async () => {
    // Every 7th request answered 450 ms late (past the 300 ms timeout, within the late bound of two timeouts),
    // while the device keeps answering later requests: two late answers can be on the line at once. A request
    // answered early by another's late answer (a mismatch) still has its own answer on the way.
    device.concurrent = true;
    device.lateBy = (index) => (index % 7 === 6 ? 450 : 0);
    const definitions: Record<string, { dataType: "uint16"; address: string }> = {};
    const expected = new Map<string, number>();
    for (const unit of [1, 2]) {
      for (const address of [0, 5, 9, 20]) {
        device.registers.get(unit)![address] = unit * 1000 + address;
        definitions[`h${address}u${unit}`] = { dataType: "uint16", address: `HR${address}@${unit}` };
        expected.set(`h${address}u${unit}`, unit * 1000 + address);
      }
      for (const address of [1, 6]) {
        device.registers.get(unit)![address] = unit * 1000 + address;
        definitions[`i${address}u${unit}`] = { dataType: "uint16", address: `IR${address}@${unit}` };
        expected.set(`i${address}u${unit}`, unit * 1000 + address);
      }
    }
    const many = defineTags(definitions);
    const driver = await connect();
    const wrong: string[] = [];
    let good = 0;
    for (let scan = 0; scan < 30; scan++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      for (const sample of await driver.read(many.list())) {
        if (sample.quality.severity !== "good") continue;
        good++;
        if (sample.value !== expected.get(sample.tag))
          wrong.push(`scan ${scan}: ${sample.tag}=${String(sample.value)}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(good).toBeGreaterThan(60);
  }, 60_000);

  it("reads bad while the device is gone and good again when it comes back", async () => {
    const driver = await connect();
    device.faults.push(
      () => null,
      () => null,
    );
    const gone = await read(driver, ["unit1.a"]);
    expect(gone["unit1.a"]!.quality.reason).toBe("modbus request timed out");
    const back = await read(driver, ["unit1.a"]);
    expect(back["unit1.a"]!.quality.severity).toBe("bad");
    const again = await read(driver, ["unit1.a"]);
    expect(again["unit1.a"]).toMatchObject({ value: 111, quality: { severity: "good" } });
    expect(driver.status).toBe("connected");
  });
});
