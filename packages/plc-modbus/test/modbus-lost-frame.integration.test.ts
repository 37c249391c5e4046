import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// One answer lost on the way (one timeout) must not blank a healthy unit for the next scan while another unit
// is healthy: the unit is probed inline, within the read's deadline, and its tags are good when it answers.
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  "unit1.a": { dataType: "uint16", address: "HR0@1" },
  "unit2.a": { dataType: "uint16", address: "HR0@2" },
  "unit2.b": { dataType: "uint16", address: "HR20@2" },
  "unit3.a": { dataType: "uint16", address: "HR0@3" },
  "unit3.b": { dataType: "uint16", address: "HR20@3" },
});
const values: Record<string, number> = {
  "unit1.a": 11,
  "unit2.a": 21,
  "unit2.b": 22,
  "unit3.a": 31,
  "unit3.b": 32,
};

async function start(): Promise<{ simulator: ModbusSimulator; driver: ModbusDriver }> {
  const simulator = new ModbusSimulator({ tags });
  for (const [name, value] of Object.entries(values)) simulator.setValue(name, value);
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host, port },
    requestTimeoutMs: 150,
    planner: { maxGap: 0 },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { simulator, driver };
}

/** Drops the next answer of `unitId` (the request gets no answer), then answers again. */
function dropNextAnswer(simulator: ModbusSimulator, unitId: number): void {
  const silence = simulator.injectSilence(unitId);
  const stop = simulator.onRequest((request) => {
    if (request.unitId !== unitId) return;
    stop();
    // After this request was handled (silenced): the next one is answered.
    queueMicrotask(silence);
  });
}

function read(driver: ModbusDriver, names: readonly string[]): Promise<Sample[]> {
  return driver.read(names.map((name) => tags.get(name)));
}

const severities = (samples: readonly Sample[]) => samples.map((sample) => sample.quality.severity);

describe("one lost answer of a healthy unit", () => {
  it("the next scan probes the unit inline and delivers its tags good", async () => {
    const { simulator, driver } = await start();
    const names = ["unit1.a", "unit2.a", "unit2.b"];
    expect(severities(await read(driver, names))).toEqual(["good", "good", "good"]);
    dropNextAnswer(simulator, 2);
    const lost = await read(driver, names);
    expect(severities(lost)).toEqual(["good", "bad", "bad"]);
    const next = await read(driver, names);
    expect(next.map((sample) => [sample.quality.severity, sample.value])).toEqual([
      ["good", 11],
      ["good", 21],
      ["good", 22],
    ]);
    expect(driver.units().find((unit) => unit.unitId === 2)).toMatchObject({ consecutiveFailures: 0 });
  });

  it("two units each losing one answer in the same scan are both good on the next", async () => {
    const { simulator, driver } = await start();
    const names = ["unit1.a", "unit2.a", "unit2.b", "unit3.a", "unit3.b"];
    expect(severities(await read(driver, names))).toEqual(names.map(() => "good"));
    dropNextAnswer(simulator, 2);
    dropNextAnswer(simulator, 3);
    const lost = await read(driver, names);
    expect(lost[0]!.quality.severity).toBe("good");
    const next = await read(driver, names);
    expect(next.map((sample) => [sample.tag, sample.quality.severity, sample.value])).toEqual(
      names.map((name) => [name, "good", values[name]]),
    );
  });

  it("a unit that stays silent gets its tags bad; the read waits for it once, then no more", async () => {
    const { simulator, driver } = await start();
    const names = ["unit1.a", "unit2.a", "unit2.b"];
    expect(severities(await read(driver, names))).toEqual(["good", "good", "good"]);
    simulator.injectSilence(2);
    expect(severities(await read(driver, names))).toEqual(["good", "bad", "bad"]);
    const startedAt = Date.now();
    const probed = await read(driver, names);
    expect(severities(probed)).toEqual(["good", "bad", "bad"]);
    expect(probed[2]!.quality.reason).toMatch(/unit 2 did not answer earlier in this read/);
    expect(Date.now() - startedAt).toBeLessThan(1000); // one request timeout (150 ms), not more
    // Failed twice now: no longer probed inline, the read does not wait for it.
    const deferredAt = Date.now();
    expect(severities(await read(driver, names))).toEqual(["good", "bad", "bad"]);
    expect(Date.now() - deferredAt).toBeLessThan(100);
  });
});
