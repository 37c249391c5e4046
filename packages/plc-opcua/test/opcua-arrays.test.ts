import { defineTags, QualityCodes, type Sample } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, type OpcuaDriver, type OpcuaSimulator } from "../src/index";
import { simulatorWithDriver } from "./support/simulator-with-driver";
import { waitFor } from "./support/wait-for";

// Issue 13, item 3 (ADR 0038): a Double[10] variable read bad BadTypeMismatch and browsed as a
// scalar float64. One-dimensional arrays now read, write, subscribe and browse as array tags.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const tags = defineTags({
  zones: { dataType: "float64", arrayLength: 10, address: `nsu=${NS};s=Kiln.Zones`, access: "readwrite" },
  steps: { dataType: "int32", arrayLength: 4, address: `nsu=${NS};s=Kiln.Steps`, access: "readwrite" },
  valves: { dataType: "bool", arrayLength: 3, address: `nsu=${NS};s=Kiln.Valves`, access: "readwrite" },
  names: { dataType: "string", arrayLength: 2, address: `nsu=${NS};s=Kiln.Names`, access: "readwrite" },
  totals: { dataType: "uint64", arrayLength: 2, address: `nsu=${NS};s=Kiln.Totals`, access: "readwrite" },
});
// The same nodes read with the wrong shape or a shorter bound.
const misfits = defineTags({
  "zones.scalar": { dataType: "float64", address: `nsu=${NS};s=Kiln.Zones` },
  "zones.short": { dataType: "float64", arrayLength: 5, address: `nsu=${NS};s=Kiln.Zones` },
  "scalar.as.array": { dataType: "float64", arrayLength: 4, address: `nsu=${NS};s=Kiln.Level` },
});
const level = defineTags({ level: { dataType: "float64", address: `nsu=${NS};s=Kiln.Level` } });
const served = [...tags.list(), ...level.list()];

let simulator: OpcuaSimulator;
let driver: OpcuaDriver;
let stop: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ simulator, driver, stop } = await simulatorWithDriver("arrays", {
    tags: served,
  }));
});

afterAll(async () => {
  await stop?.();
});

const ZONES = [20.5, 21, 22.25, 23, 24, 25, 26, 27, 28, 29.75];

describe("one-dimensional OPC UA arrays (ADR 0038)", () => {
  test("read: Double, Int32, Boolean, String and UInt64 arrays are good frozen arrays", async () => {
    simulator.setValue("zones", ZONES);
    simulator.setValue("steps", [1, -2, 2147483647]);
    simulator.setValue("valves", [true, false, true]);
    simulator.setValue("names", ["LOT-42", ""]);
    simulator.setValue("totals", [2n ** 64n - 1n, 5n]);
    const samples = await driver.read(tags.list());
    expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.severity])).toEqual([
      ["zones", ZONES, "good"],
      ["steps", [1, -2, 2147483647], "good"],
      ["valves", [true, false, true], "good"],
      ["names", ["LOT-42", ""], "good"],
      ["totals", [2n ** 64n - 1n, 5], "good"],
    ]);
    expect(samples.every((sample) => Object.isFrozen(sample.value))).toBe(true);
  });

  test("read: the wrong shape or a longer array is bad BadTypeMismatch naming both", async () => {
    simulator.setValue("zones", ZONES);
    simulator.setValue("level", 3);
    const samples = await driver.read(misfits.list());
    expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.code])).toEqual([
      ["zones.scalar", null, QualityCodes.BadTypeMismatch],
      ["zones.short", null, QualityCodes.BadTypeMismatch],
      ["scalar.as.array", null, QualityCodes.BadTypeMismatch],
    ]);
    expect(samples[0]!.quality.reason).toMatch(/Double\[10\] cannot be carried by scalar float64 tag "zones.scalar"/);
    expect(samples[1]!.quality.reason).toMatch(/Double\[10\] cannot be carried by float64\[5\] tag "zones.short"/);
    expect(samples[2]!.quality.reason).toMatch(
      /scalar Double 3 cannot be carried by float64\[4\] tag "scalar.as.array"/,
    );
  });

  test("write: arrays of each type reach the server as arrays", async () => {
    await driver.write(tags.get("zones"), [1, 2, 3]);
    await driver.write(tags.get("steps"), [4, 5, 6, 7]);
    await driver.write(tags.get("valves"), [false, true]);
    await driver.write(tags.get("names"), ["a", "b"]);
    await driver.write(tags.get("totals"), [2n ** 63n, 0]);
    expect(simulator.valueOf("zones")).toEqual([1, 2, 3]);
    expect(simulator.valueOf("steps")).toEqual([4, 5, 6, 7]);
    expect(simulator.valueOf("valves")).toEqual([false, true]);
    expect(simulator.valueOf("names")).toEqual(["a", "b"]);
    expect(simulator.valueOf("totals")).toEqual([2n ** 63n, 0n]);
    const read = await driver.read([tags.get("steps")]);
    expect(read[0]).toMatchObject({ value: [4, 5, 6, 7], quality: { severity: "good" } });
  });

  test("subscribe: a changed element delivers the whole array", async () => {
    simulator.setValue("zones", ZONES);
    simulator.setValue("names", ["x", "y"]);
    const received: Sample[] = [];
    const dispose = await driver.subscribe(
      [tags.get("zones"), tags.get("names")],
      { samplingIntervalMs: 50 },
      (samples) => received.push(...samples),
    );
    try {
      await waitFor(() => received.some((s) => s.tag === "zones" && Array.isArray(s.value)), { what: "zones" });
      const changed = [...ZONES];
      changed[9] = -1;
      simulator.setValue("zones", changed);
      simulator.setValue("names", ["x", "z"]);
      await waitFor(
        () =>
          received.some((s) => s.tag === "zones" && (s.value as number[] | null)?.[9] === -1) &&
          received.some((s) => s.tag === "names" && (s.value as string[] | null)?.[1] === "z"),
        { what: "changed arrays" },
      );
      expect(received.every((s) => s.quality.severity === "good")).toBe(true);
      expect(received.filter((s) => s.tag === "zones").at(-1)?.value).toEqual(changed);
    } finally {
      dispose();
    }
  });

  test("browse: reports valueRank and arrayDimensions and proposes arrayLength", async () => {
    const browsed = await driver.browse();
    const byName = new Map(browsed.map((variable) => [variable.name, variable]));
    expect(byName.get("zones")).toMatchObject({
      dataType: "float64",
      nativeType: "Double",
      valueRank: 1,
      arrayDimensions: [10],
      arrayLength: 10,
    });
    expect(byName.get("steps")).toMatchObject({ dataType: "int32", valueRank: 1, arrayLength: 4 });
    expect(byName.get("valves")).toMatchObject({ dataType: "bool", valueRank: 1, arrayLength: 3 });
    expect(byName.get("names")).toMatchObject({ dataType: "string", valueRank: 1, arrayLength: 2 });
    const level = byName.get("level")!;
    expect(level.valueRank).toBe(-1);
    expect(level.arrayLength).toBeUndefined();
  });
});
