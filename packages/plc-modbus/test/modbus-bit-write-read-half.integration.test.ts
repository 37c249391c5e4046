import { afterEach, describe, expect, it } from "vitest";
import { KilnError, defineTags } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// Issue 12 (fix12aa, item 4): a bit write's read-modify-write whose read half timed out failed "No reply to write of
// ..." although no write went out. The error now names the read half, and says nothing was written (sent: false).

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  flag: { dataType: "bool", access: "readwrite", address: "HR5.3" },
  word: { dataType: "uint16", access: "readwrite", address: "HR6" },
});

async function setup() {
  const simulator = new ModbusSimulator({ tags, initialValues: { flag: false, word: 1 } });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 200 });
  cleanups.push(() => driver.close());
  await driver.connect();
  const writes: number[] = [];
  simulator.onRequest((request) => {
    if (request.functionCode === 6 || request.functionCode === 16) writes.push(request.address);
  });
  return { simulator, driver, writes };
}

describe("a bit write whose read half gets no answer", () => {
  it("says the read half got no reply and nothing was written (the brief's example)", async () => {
    const { simulator, driver, writes } = await setup();
    simulator.injectTimeout({ area: "holding-register", address: 5, on: "read" });
    const error = await driver.write(tags.get("flag")!, true).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_TIMEOUT")).toBe(true);
    const message = (error as Error).message;
    // Before: "No reply to write of "flag" (HR5.3) within 200 ms."
    expect(message).not.toMatch(/^No reply to write of/);
    expect(message).toMatch(/No reply to the read half of the write of "flag"/);
    expect(message).toMatch(/nothing written/);
    expect((error as KilnError).details.sent).toBe(false);
    expect(writes).toEqual([]);
  });

  it("a word write that times out still says 'No reply to write of', sent (sibling)", async () => {
    const { simulator, driver, writes } = await setup();
    simulator.injectTimeout({ area: "holding-register", address: 6, on: "write" });
    const error = await driver.write(tags.get("word")!, 7).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/^No reply to write of "word"/);
    expect((error as KilnError).details.sent).toBe(true);
    expect(writes).toEqual([6]);
  });
});
