import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { KilnError, defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { openSerialPair, type SerialPair } from "./serial-pair";
import { RtuLineDevice } from "./rtu-line-device";

// Modbus RTU sibling of adv12x HIGH-2 (probe p56, ADR 0041 amendment fix12ab): a device answering after 15 ms, and one
// extra copy of HR30's answer (a repeater's retransmission, older than the client's repeat window) lands while the
// read half of a bit write's read-modify-write at HR200 waits. It was taken (same unit, function and size) and HR30's
// word, bit 3 set, was written into HR200. Now the read half reads twice and writes only when both agree.

const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  other: { dataType: "uint16", address: "HR30@1" },
  third: { dataType: "uint16", address: "HR10@1" },
  flag: { dataType: "bool", access: "readwrite", address: "HR200.3@1" },
});

describe.skipIf(!hasSocat)("Modbus RTU: a bit write whose read half takes a repeated answer (needs socat)", () => {
  let pair: SerialPair;
  let device: RtuLineDevice;
  let driver: ModbusDriver | undefined;

  afterEach(async () => {
    await driver?.close();
    await device.close();
    await pair.close();
  });

  it("refuses the write, sent: false, and writes nothing (p56 wrote HR30's 1030 into HR200)", async () => {
    pair = await openSerialPair();
    device = await RtuLineDevice.open(pair.device, [1]);
    device.registers.get(1)!.set([1030], 30);
    device.registers.get(1)!.set([1010], 10);
    device.registers.get(1)!.set([1200], 200);
    let repeat: Buffer | undefined;
    device.lateBy = (_index, request) => {
      if (repeat !== undefined && request[1] === 3 && request.readUInt16BE(2) === 200) {
        // HR30's answer again, on the line before this request's own (15 ms later).
        device.write(repeat);
        repeat = undefined;
      }
      return 15;
    };
    driver = new ModbusDriver({
      transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
      requestTimeoutMs: 300,
    });
    await driver.connect();
    expect((await driver.read([tags.get("other")!]))[0]!.value).toBe(1030);
    const hr30 = device.lastSent;
    // Older than the client's 250 ms window for byte-identical repeats, and not the last answer on the line.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect((await driver.read([tags.get("third")!]))[0]!.value).toBe(1010);
    repeat = hr30;
    const error = await driver.write(tags.get("flag")!, true).catch((caught: unknown) => caught);
    const writes = () =>
      device.received.filter(({ frame }) => frame[1] === 6).map(({ frame }) => frame.readUInt16BE(4));
    // Before: resolved, and the device got 1038 (HR30's 1030 with bit 3) at HR200.
    expect(writes()).toEqual([]);
    expect(KilnError.is(error, "KILN_DEVICE_ERROR")).toBe(true);
    expect((error as KilnError).details.sent).toBe(false);
    // Written once the line is in step again: HR200's own word with bit 3 set.
    let ok = false;
    for (let attempt = 0; attempt < 20 && !ok; attempt++)
      ok = await driver.write(tags.get("flag")!, true).then(
        () => true,
        () => new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300)),
      );
    expect(ok).toBe(true);
    // Every word written is HR200's own with bit 3 set (a refused attempt writes nothing).
    expect(writes().length).toBeGreaterThan(0);
    expect(writes().every((value) => value === 1208)).toBe(true);
  }, 30_000);
});
