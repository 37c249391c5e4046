import { defineTags, QualityCodes, type Sample } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, type OpcuaDriver, type OpcuaSimulator } from "../src/index";
import { simulatorWithDriver } from "./support/simulator-with-driver";
import { waitFor } from "./support/wait-for";

// Issue 13, fault 4: a float64 tag on an Int64 node read a bigint marked good; an int32 tag on
// a Double node read 1.5. Now exact conversions only, else bad BadTypeMismatch naming both types.
const NS = OPCUA_SIMULATOR_NAMESPACE_URI;
const served = defineTags({
  big: { dataType: "int64", address: `nsu=${NS};s=Kiln.Big`, access: "readwrite" },
  real: { dataType: "float64", address: `nsu=${NS};s=Kiln.Real`, access: "readwrite" },
});
const tags = defineTags({
  "as.float": { dataType: "float64", address: `nsu=${NS};s=Kiln.Big` },
  "as.int": { dataType: "int32", address: `nsu=${NS};s=Kiln.Real` },
});

let simulator: OpcuaSimulator;
let driver: OpcuaDriver;
let stop: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ simulator, driver, stop } = await simulatorWithDriver("types", {
    tags: served,
    signals: { big: { kind: "constant", value: 7 }, real: { kind: "constant", value: 2 } },
  }));
});

afterAll(async () => {
  await stop?.();
});

const mismatch = (from: string, to: string) => ({
  value: null,
  quality: { severity: "bad", code: QualityCodes.BadTypeMismatch, reason: expect.stringMatching(`${from}.*${to}`) },
});

describe("values whose type differs from the tag's (issue 13, fault 4)", () => {
  test("read: exact conversions are good, inexact ones bad BadTypeMismatch", async () => {
    simulator.setValue("big", 7n);
    simulator.setValue("real", 2);
    expect(await driver.read(tags.list())).toMatchObject([
      { value: 7, quality: { severity: "good" } },
      { value: 2, quality: { severity: "good" } },
    ]);
    simulator.setValue("big", 2n ** 60n);
    simulator.setValue("real", 1.5);
    expect(await driver.read(tags.list())).toMatchObject([mismatch("Int64", "float64"), mismatch("Double", "int32")]);
  });

  test("subscription: the same rule", async () => {
    simulator.setValue("big", 7n);
    simulator.setValue("real", 2);
    const received: Sample[] = [];
    const dispose = await driver.subscribe(tags.list(), { samplingIntervalMs: 50 }, (samples) =>
      received.push(...samples),
    );
    try {
      await waitFor(() => received.some((s) => s.tag === "as.int" && s.value === 2), { what: "2 for as.int" });
      simulator.setValue("big", 2n ** 60n);
      simulator.setValue("real", 1.5);
      await waitFor(() => received.filter((s) => s.quality.severity === "bad").length >= 2, { what: "bad samples" });
      const last = (name: string) => received.filter((s) => s.tag === name).at(-1);
      expect(last("as.float")).toMatchObject(mismatch("Int64", "float64"));
      expect(last("as.int")).toMatchObject(mismatch("Double", "int32"));
      expect(received.some((s) => s.quality.severity === "good" && typeof s.value !== "number")).toBe(false);
    } finally {
      dispose();
    }
  });
});
