import { afterEach, describe, expect, it } from "vitest";
import { defineTags, KilnError } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// adv12x LOW (issue 12): with every unit offline, read() answers bad without traffic at once; a
// caller reading in a tight loop (`while (...) await driver.read(tags)`) then never let a timer or
// socket callback run: the loop's awaits were all microtasks. A read that sends nothing now yields
// to the event loop before it answers.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({ dead: { dataType: "uint16", access: "readwrite", address: "HR0@2" } });

describe("a read that sends nothing", () => {
  it("lets timers run while a tight loop reads an offline unit", async () => {
    const simulator = new ModbusSimulator({ tags, initialValues: { dead: 2 } });
    const { host, port } = await simulator.start();
    cleanups.push(() => simulator.stop());
    const restore = simulator.injectSilence(2);
    cleanups.push(async () => restore());
    const driver = new ModbusDriver({
      transport: { kind: "tcp", host, port },
      requestTimeoutMs: 100,
      unitHealth: { offlineAfter: 1, probeInitialDelayMs: 60_000, probeMaxDelayMs: 60_000 },
    });
    await driver.connect();
    cleanups.push(() => driver.close());
    // The unit goes offline after one timeout.
    const first = await driver.read(tags.list());
    expect(first[0]!.quality.severity).toBe("bad");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let reads = 0;
    const until = Date.now() + 300;
    // Bounded by reads as well: without yielding, Date.now() still advances, the timer never fires.
    while (Date.now() < until && reads < 1_000_000) {
      const [sample] = await driver.read(tags.list());
      expect(sample!.quality.severity).toBe("bad");
      reads++;
    }
    clearInterval(timer);
    expect(reads).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(10);
  }, 20_000);

  it("lets timers run while a tight loop writes with the link down", async () => {
    const simulator = new ModbusSimulator({ tags, initialValues: { dead: 2 } });
    const { host, port } = await simulator.start();
    const driver = new ModbusDriver({ transport: { kind: "tcp", host, port }, requestTimeoutMs: 100 });
    await driver.connect();
    cleanups.push(() => driver.close());
    await simulator.stop();
    const deadline = Date.now() + 10_000;
    while (driver.status === "connected" && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(driver.status).not.toBe("connected");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let calls = 0;
    let refused = 0;
    const until = Date.now() + 300;
    while (Date.now() < until && calls < 1_000_000) {
      try {
        await driver.write(tags.get("dead"), 7);
      } catch (error) {
        if (!(error instanceof KilnError)) throw error;
        refused++;
      }
      calls++;
    }
    clearInterval(timer);
    expect(refused).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(10);
  }, 20_000);
});
