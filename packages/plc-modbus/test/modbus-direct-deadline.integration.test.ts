import { afterEach, describe, expect, it } from "vitest";
import { KilnError, defineTags } from "@kiln/core";
import { deadlineSignal } from "@kiln/core/driver-kit";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// Issue 12 (fix12aa, item 3): a read called directly honoured a deadline only when the core's port policy gave it
// one (its signal registered through an internal of @kiln/core): `driver.read(tags,
// AbortSignal.timeout(ms))` rejected KILN_ABORTED, discarding the samples it had finished. `deadlineSignal(ms)`,
// exported by @kiln/core/driver-kit, gives a direct caller the same: finished samples good, the rest bad.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  live: { dataType: "uint16", address: "HR0@1" },
  dead: { dataType: "uint16", address: "HR0@2" },
});

async function gateway() {
  const simulator = new ModbusSimulator({ tags, initialValues: { live: 42, dead: 7 } });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  simulator.injectSilence(2);
  const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 2_000 });
  cleanups.push(() => driver.close());
  await driver.connect();
  return driver;
}

describe("a direct read under deadlineSignal returns what it finished", () => {
  it("the live unit's sample good, the silent unit's bad, within the deadline (the brief's example)", async () => {
    const driver = await gateway();
    const started = Date.now();
    const samples = await driver.read(tags.list(), deadlineSignal(800));
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(samples.map((sample) => sample.quality.severity)).toEqual(["good", "bad"]);
    expect(samples[0]!.value).toBe(42);
    expect(String(samples[1]!.quality.reason)).toMatch(/deadline/);
  });

  it("a plain AbortSignal still rejects KILN_ABORTED, and the caller's own signal aborts a deadlineSignal (sibling)", async () => {
    const driver = await gateway();
    const plain = await driver.read(tags.list(), AbortSignal.timeout(400)).catch((error: unknown) => error);
    expect(KilnError.is(plain, "KILN_ABORTED")).toBe(true);
    const own = new AbortController();
    const signal = deadlineSignal(60_000, { signal: own.signal });
    own.abort(new Error("operator cancelled"));
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe("operator cancelled");
    expect(() => deadlineSignal(-1)).toThrow(/timeoutMs: must be a finite number of ms/);
  });
});
