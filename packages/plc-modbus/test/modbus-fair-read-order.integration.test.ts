import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type TagDefinitionInput } from "@kiln/core";
import { ModbusDriver, type ModbusDriverOptions } from "../src/index";
import { startRawTcpDevice } from "./raw-tcp-device";
import { readDeadline } from "./read-deadline";

// adv12 M2: a unit that answers every request, but slowly, used a read's whole deadline every scan, and the read
// order never changed between scans: a fast unit behind the same gateway (and the slow unit's own later requests)
// were never read, and units()/endpoints() did not list the unit. The order is now fair: a request that missed its
// turn goes first next scan, so every request is read within a bounded number of scans.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const SLOW_MS = 100;
const DEADLINE_MS = 800;

/** `slowUnit` answers each request in 100 ms, every other unit at once; one-register blocks (maxGap 0). */
async function setup(
  spec: Record<string, TagDefinitionInput>,
  slowUnit: number,
  options: Partial<ModbusDriverOptions> = {},
) {
  const device = await startRawTcpDevice((request) => ({
    kind: "normal",
    delayMs: request.unitId === slowUnit ? SLOW_MS : 0,
  }));
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port },
    requestTimeoutMs: 500,
    planner: { maxGap: 0 },
    ...options,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { driver, tags: defineTags(spec).list() };
}

function registers(unitId: number, addresses: readonly number[]): Record<string, TagDefinitionInput> {
  return Object.fromEntries(
    addresses.map((address) => [`u${unitId}.hr${address}`, { dataType: "uint16", address: `HR${address}@${unitId}` }]),
  );
}

const TENS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90];

describe("fair read order under a deadline", () => {
  it("a slow but answering unit first in the plan does not starve a fast unit behind the same gateway, which is listed from the first read", async () => {
    const { driver, tags } = await setup({ ...registers(1, TENS), ...registers(2, [0, 10, 20]) }, 1);
    const good = new Map<string, number>();
    for (let scan = 0; scan < 6; scan++) {
      const samples = await driver.read(tags, readDeadline(DEADLINE_MS));
      if (scan === 0) {
        // Unit 1's ten 100 ms requests outlast the deadline: unit 2 was not asked yet, and is listed all the same.
        expect(driver.units().find((unit) => unit.unitId === 2)).toMatchObject({ state: "not-yet-answered" });
        expect(driver.endpoints().map((endpoint) => endpoint.endpoint)).toContain("unit 2");
      }
      for (const sample of samples) {
        if (sample.quality.severity === "good") good.set(sample.tag, (good.get(sample.tag) ?? 0) + 1);
        else expect(sample.quality.reason).toMatch(/not answered within the read's deadline/);
      }
    }
    // Before: unit 2's tags and unit 1's last ones 0 of 6.
    for (const tag of tags) expect(good.get(tag.name) ?? 0, tag.name).toBeGreaterThanOrEqual(2);
    expect(driver.units().find((unit) => unit.unitId === 2)).toMatchObject({ state: "online", consecutiveFailures: 0 });
  });

  it("one slow unit alone: its later requests take their turn, and a request left out offlineAfter scans in a row is named", async () => {
    const { driver, tags } = await setup(registers(1, TENS), 1, { unitHealth: { offlineAfter: 1 } });
    const first = await driver.read(tags, readDeadline(DEADLINE_MS));
    const missed = first.filter((sample) => sample.quality.severity !== "good").map((sample) => sample.tag);
    expect(missed).toContain("u1.hr90");
    expect(driver.endpoints()).toContainEqual(
      expect.objectContaining({
        endpoint: "unit 1 HR90",
        state: "offline",
        lastError: expect.stringMatching(/^not read within the read's deadline for 1 scans in a row/),
      }),
    );
    const second = await driver.read(tags, readDeadline(DEADLINE_MS));
    for (const tag of missed) {
      expect(second.find((sample) => sample.tag === tag)!.quality.severity, tag).toBe("good");
    }
    expect(driver.endpoints().map((endpoint) => endpoint.endpoint)).not.toContain("unit 1 HR90");
  });
});
