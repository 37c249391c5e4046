import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { freePort } from "./free-port";
import { pymodbusPython, startPymodbus } from "./pymodbus-peer";
import { openSerialPair } from "./serial-pair";

// ADR 0041, amendment fix12s (adv12s H2). A fence read past the end of the device's map: after a dead unit's
// timeout, the fence read at the last read answered (HR99, the last register of pymodbus's map) with another size,
// was refused (exception 2), proved nothing, and every later fence too; then "no fence of a distinct shape could be
// built" and the live unit was bad for good, with no traffic at all. A fence now reads only inside reads that
// answered, and a scope no fence can be built for is resynchronised on a backoff.
const hasSocat = spawnSync("socat", ["-V"], { stdio: "ignore" }).status === 0;

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0@1" },
  b: { dataType: "uint16", address: "HR20@1" },
  c: { dataType: "uint16", address: "HR50@1" },
  f: { dataType: "uint16", address: "HR99@1" },
  d: { dataType: "uint16", address: "HR0@2" },
  e: { dataType: "uint16", address: "HR20@2" },
});
/** pymodbus-server.py's holding registers of unit 1 (HR0 111, HR20 222, HR50 555, HR99 0). */
const expected: Record<string, number> = { a: 111, b: 222, c: 555, f: 0 };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Scans `names` `scans` times; per scan, the live unit's tags good and values shown good that are wrong. */
async function scan(driver: ModbusDriver, names: string[], scans: number, each?: (scan: number) => void) {
  const goodScans: boolean[] = [];
  const wrong: string[] = [];
  for (let index = 0; index < scans; index++) {
    each?.(index);
    let samples: Sample[] = [];
    try {
      samples = await driver.read(
        names.map((name) => tags.get(name)),
        AbortSignal.timeout(2000),
      );
    } catch {
      // a resync mid-read rejects the read, like any lost link
    }
    const live = samples.filter((sample) => sample.tag in expected);
    goodScans.push(live.length > 0 && live.every((sample) => sample.quality.severity === "good"));
    for (const sample of live)
      if (sample.quality.severity === "good" && sample.value !== expected[sample.tag])
        wrong.push(`${sample.tag}=${String(sample.value)}`);
    await pause(300);
  }
  return { goodScans, wrong };
}

describe.skipIf(!pymodbusPython)(
  "a fence reads only where the device answered (adv12s H2; needs python3-pymodbus)",
  () => {
    it("over TCP, a dead unit beside a live one reading HR99 (the map's end): the live unit is good again", async () => {
      const port = await freePort();
      startPymodbus("tcp", String(port), cleanups);
      const driver = new ModbusDriver({
        transport: { kind: "tcp", host: "127.0.0.1", port },
        requestTimeoutMs: 200,
        reconnect: { initialDelayMs: 20, jitter: 0 },
      });
      cleanups.push(() => driver.close());
      for (let attempt = 0; ; attempt++) {
        const up = await driver.connect().then(
          () => true,
          () => false,
        );
        if (up || attempt > 50) break;
        await pause(100);
      }
      // Until pymodbus is up and unit 1 answers.
      for (let attempt = 0; attempt < 50; attempt++) {
        const [sample] = await driver.read([tags.get("a")]);
        if (sample!.quality.severity === "good") break;
        await pause(100);
      }
      const { goodScans, wrong } = await scan(driver, ["a", "b", "c", "d", "e", "f"], 10);
      expect(wrong).toEqual([]);
      // Before: bad from the first timeout of unit 2 to the end, nothing sent any more.
      expect(goodScans.slice(-4)).toEqual([true, true, true, true]);
    }, 30_000);

    it.skipIf(!hasSocat)(
      "sibling, over RTU: the device stops for 700 ms (every answered read one register): good again after the backoff",
      async () => {
        const pair = await openSerialPair();
        cleanups.push(() => pair.close());
        const server = startPymodbus("rtu", pair.device, cleanups);
        await pause(1500);
        const driver = new ModbusDriver({
          transport: { kind: "rtu", path: pair.master, baudRate: 19200 },
          requestTimeoutMs: 300,
          reconnect: { initialDelayMs: 20, jitter: 0 },
        });
        cleanups.push(() => driver.close());
        await driver.connect();
        const { goodScans, wrong } = await scan(driver, ["a", "b", "f"], 12, (index) => {
          if (index !== 3) return;
          server.kill("SIGSTOP");
          setTimeout(() => server.kill("SIGCONT"), 700);
        });
        expect(wrong).toEqual([]);
        expect(goodScans.slice(0, 3)).toEqual([true, true, true]);
        // Before: bad from scan 3 to the end ("no fence of a distinct shape could be built").
        expect(goodScans.slice(-4)).toEqual([true, true, true, true]);
      },
      30_000,
    );
  },
);
