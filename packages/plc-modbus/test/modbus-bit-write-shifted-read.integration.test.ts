import { afterEach, describe, expect, it } from "vitest";
import { KilnError, defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawRequest } from "./raw-tcp-device";

// Issue 12 (adv12x HIGH-2, ADR 0041 amendment fix12ab): behind a transparent TCP-to-RTU gateway (every answer stamped
// with the newest request's transaction id) a repeated answer of a one-register read (HR30's) came while the read half
// of a bit write's read-modify-write at HR200 waited. It fitted by every check, was taken, and the driver wrote HR30's
// word, bit 3 set, into HR200: another register's contents written into the device. The read half now reads twice and
// writes only when both reads agree; here they disagree (HR30's word, then HR200's own), so nothing is written.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  other: { dataType: "uint16", address: "HR30@1" },
  flag: { dataType: "bool", access: "readwrite", address: "HR200.3@1" },
});

/** A gateway: answers after 15 ms stamped with the newest request's id; `repeatAt` gets HR30's answer first. */
async function gateway(repeatAt: (request: RawRequest) => boolean) {
  let newest = 0;
  const writes: number[] = [];
  const device = await startRawTcpDevice((request) => {
    newest = request.transactionId;
    const stamp = () => newest;
    if (request.functionCode === 6) writes.push(request.value);
    if (request.functionCode === 3 && repeatAt(request))
      // HR30's answer again (a retransmission) lands in this request's window; its own comes 15 ms later.
      return {
        kind: "normal",
        values: [rawRegister(1, 30)],
        transactionId: stamp,
        thenOwnAfterMs: 15,
        ownStamped: true,
      };
    return { kind: "normal", delayMs: 15, transactionId: stamp };
  });
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port },
    requestTimeoutMs: 300,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { driver, device, writes };
}

describe("a bit write's read-modify-write whose read takes another register's answer", () => {
  it("refuses the write, sent: false, and writes nothing (adv12x HIGH-2: wrote HR30's word into HR200)", async () => {
    let first = true;
    const { driver, writes } = await gateway((request) => {
      if (request.address !== 200 || !first) return false;
      first = false;
      return true;
    });
    expect((await driver.read([tags.get("other")!]))[0]!.value).toBe(rawRegister(1, 30));
    const error = await driver.write(tags.get("flag")!, true).catch((caught: unknown) => caught);
    // Before: resolved, and the device got 1038 (HR30's 1030 with bit 3) at HR200.
    expect(writes).toEqual([]);
    expect(KilnError.is(error, "KILN_DEVICE_ERROR")).toBe(true);
    expect((error as KilnError).details.sent).toBe(false);
    expect((error as KilnError).retryable).toBe(true);
    expect((error as Error).message).toMatch(/mask-write/);
    // Written again once the answers are in step: HR200's own word with bit 3 set.
    let ok = false;
    for (let attempt = 0; attempt < 20 && !ok; attempt++)
      ok = await driver.write(tags.get("flag")!, true).then(
        () => true,
        () => new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200)),
      );
    expect(ok).toBe(true);
    // Every word written is HR200's own with bit 3 set (a refused attempt writes nothing).
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.every((value) => value === (rawRegister(1, 200) | 8))).toBe(true);
  });

  it("writes as before when the answers are in step: two reads, then the word (sibling)", async () => {
    const { driver, device, writes } = await gateway(() => false);
    await driver.write(tags.get("flag")!, true);
    expect(writes).toEqual([rawRegister(1, 200) | 8]);
    expect(device.requests.map((request) => request.functionCode)).toEqual([3, 3, 6]);
  });
});
