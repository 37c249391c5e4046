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

  it("two units each about to lose one answer: the read waits one timeout, each is good on the scan after its loss", async () => {
    const { simulator, driver } = await start();
    const names = ["unit1.a", "unit2.a", "unit2.b", "unit3.a", "unit3.b"];
    expect(severities(await read(driver, names))).toEqual(names.map(() => "good"));
    dropNextAnswer(simulator, 2);
    dropNextAnswer(simulator, 3);
    const unit3Asked: number[] = [];
    const stop = simulator.onRequest((request) => {
      if (request.unitId === 3) unit3Asked.push(request.address);
    });
    // Unit 2 loses its answer; unit 3, not heard from in this read yet, is not waited for after that timeout.
    const lost = await read(driver, names);
    stop();
    expect(severities(lost)).toEqual(["good", "bad", "bad", "bad", "bad"]);
    expect(lost[3]!.quality.reason).toMatch(/^unit 3 not asked in this read: another request timed out first/);
    expect(unit3Asked).toEqual([]);
    // Unit 3 (in good health) goes before suspect unit 2 and now loses its answer: after that timeout unit 2
    // is not waited for either, its probe goes in the background, after the read.
    const next = await read(driver, names);
    expect(severities(next)).toEqual(["good", "bad", "bad", "bad", "bad"]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = await read(driver, names);
    expect(after.map((sample) => [sample.tag, sample.quality.severity, sample.value])).toEqual(
      names.map((name) => [name, "good", values[name]]),
    );
  });

  it("a unit that stays silent gets its tags bad; the read waits for it once, then no more", async () => {
    const { simulator, driver } = await start();
    const names = ["unit1.a", "unit2.a", "unit2.b"];
    expect(severities(await read(driver, names))).toEqual(["good", "good", "good"]);
    simulator.injectSilence(2);
    expect(severities(await read(driver, names))).toEqual(["good", "bad", "bad"]);
    let unit2Requests = 0;
    simulator.onRequest((request) => {
      if (request.unitId === 2) unit2Requests++;
    });
    const probed = await read(driver, names);
    expect(severities(probed)).toEqual(["good", "bad", "bad"]);
    // Its block that timed out goes last, so the probe is its other block; the first one is not asked after it:
    // one request to unit 2 (one request timeout), not more.
    expect(probed[1]!.quality.reason).toMatch(/unit 2 did not answer earlier in this read/);
    expect(unit2Requests).toBe(1);
    // Failed twice now: no longer probed inline, the read sends unit 2 nothing, so no request of its own times
    // out (unit 1's read of the same size may still wait out the late-answer quiet of unit 2's last timeout).
    expect(severities(await read(driver, names))).toEqual(["good", "bad", "bad"]);
    expect(unit2Requests).toBe(1);
  });
});
