import { expect, test } from "vitest";
import { defineTags } from "../domain/tags";
import { QualityCodes } from "../domain/quality";
import { simulatedSystem } from "../../test/support/simulated-system";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", scanGroup: "fast" },
  "heater.temp": { dataType: "float64", scanGroup: "slow" },
});
const scanGroups = { fast: { periodMs: 100 }, slow: { periodMs: 1_000, mode: "subscribe" as const } };

/** Settles `promise` while advancing the simulated clock in steps; fails if it takes longer than `limitMs`. */
async function settle<T>(clock: { advance(ms: number): Promise<void> }, promise: Promise<T>, limitMs: number) {
  let done = false;
  const result = promise.finally(() => (done = true));
  for (let elapsed = 0; !done && elapsed <= limitMs; elapsed += 10) await clock.advance(10);
  expect(done).toBe(true);
  return result;
}

test("start() resolves before the first scan; ready() resolves once every tag of every group has a good sample", async () => {
  const { clock, system } = simulatedSystem({
    tags,
    scanGroups,
    sources: { "chamber.pressure": { kind: "constant", value: 2.5 }, "heater.temp": { kind: "constant", value: 180 } },
  });
  await system.start();
  expect(system.read("chamber.pressure")).toBeUndefined();
  await settle(clock, system.ready(), 100);
  expect(system.read("chamber.pressure")).toMatchObject({ value: 2.5, quality: { severity: "good" } });
  expect(system.read("heater.temp")).toMatchObject({ value: 180, quality: { severity: "good" } });
  await system.ready(); // already done: resolves at once
  await system.stop();
});

test("a device unreachable at start does not hold ready(): every tag is bad BadNoCommunication with the reason", async () => {
  const { clock, plc, system } = simulatedSystem({ tags, scanGroups });
  plc.faults.unreachable = true;
  await system.start();
  await system.ready(); // no clock advance needed: the device did not answer
  const pressure = system.read("chamber.pressure");
  expect(pressure).toMatchObject({ value: null, quality: { severity: "bad", code: QualityCodes.BadNoCommunication } });
  expect(pressure?.quality.reason).toContain("unreachable");
  expect(system.read("heater.temp")?.quality.severity).toBe("bad");
  expect(clock.now()).toBe(pressure?.timestamp);
  await system.stop();
});

test("a device that hangs holds ready() only until the driver's call timeout; earlier values stay, uncertain", async () => {
  const { clock, plc, system } = simulatedSystem({
    tags: defineTags({ "chamber.pressure": { dataType: "float64" } }),
    scanGroups: { default: { periodMs: 100 } },
    acquisition: { timeoutMs: 500 },
    sources: { "chamber.pressure": { kind: "constant", value: 2.5 } },
  });
  await system.start();
  await settle(clock, system.ready(), 100);
  await system.stop();
  await system.start();
  plc.faults.hang = true; // connected, but the first read never answers
  const started = clock.now();
  await settle(clock, system.ready(), 1_000);
  expect(clock.now() - started).toBeGreaterThanOrEqual(500);
  expect(system.read("chamber.pressure")).toMatchObject({
    value: 2.5,
    quality: { severity: "uncertain", code: QualityCodes.UncertainNoCommunicationLastUsableValue },
  });
  await system.stop();
});

test("a subscription that never notifies holds ready() no longer than lifecycleTimeoutMs", async () => {
  const { clock, plc, system } = simulatedSystem({
    tags: defineTags({ "heater.temp": { dataType: "float64", scanGroup: "slow" } }),
    scanGroups: { slow: { periodMs: 1_000, mode: "subscribe" } },
    lifecycleTimeoutMs: 2_000,
  });
  await system.start();
  plc.faults.hang = true; // connected, but no notification ever comes
  const started = clock.now();
  await settle(clock, system.ready(), 2_100);
  expect(clock.now() - started).toBeGreaterThanOrEqual(2_000);
  expect(system.read("heater.temp")).toMatchObject({ value: null, quality: { severity: "bad" } });
  expect(system.read("heater.temp")?.quality.reason).toContain("no answer within 2000 ms of start");
  await system.stop();
});

test("ready() on a stopped system rejects with KILN_LIFECYCLE; a stop while waiting rejects it with KILN_ABORTED", async () => {
  const { clock, plc, system } = simulatedSystem({
    tags: defineTags({ "heater.temp": { dataType: "float64", scanGroup: "slow" } }),
    scanGroups: { slow: { periodMs: 1_000, mode: "subscribe" } },
  });
  await expect(system.ready()).rejects.toMatchObject({ code: "KILN_LIFECYCLE" });
  await system.start();
  plc.faults.hang = true;
  const waiting = system.ready();
  await clock.advance(10);
  await system.stop();
  await expect(waiting).rejects.toMatchObject({ code: "KILN_ABORTED" });
});
