// Array tags (docs/adr/0038-array-tags.md): definition, writes, acquisition, change detection,
// logging, alarms and the in-memory store.
import { describe, expect, test } from "vitest";
import { KilnError, type KilnValidationError } from "./errors";
import { GOOD, QualityCodes } from "./quality";
import { checkSample, sameSamplePayload, type Sample } from "./sample";
import { checkTagValue, defineTags, formatTagValue, interpolationOf, sameTagValue, type TagValue } from "./tags";
import { coerceToTagType } from "../driver-kit/coerce-to-tag-type";
import { checkDriverSamples } from "../acquisition/driver-samples";
import { CurrentValueTable } from "../cvt/current-value-table";
import { LoggingFilter } from "../logging/logging-filter";
import { defineAlarms } from "../alarms/alarm-definition";
import { MemoryStore } from "../memory/memory-store";
import { Tokens } from "../compose/tokens";
import { createControlSystem } from "../compose/create-control-system";
import { SimulatedClock } from "../memory/simulated-clock";

const tags = defineTags({
  zones: { dataType: "float64", arrayLength: 4, range: { min: 0, max: 500 }, access: "readwrite" },
  counts: { dataType: "int32", arrayLength: 3, access: "readwrite" },
  totals: { dataType: "uint64", arrayLength: 2 },
  names: { dataType: "string", arrayLength: 2 },
  flags: { dataType: "bool", arrayLength: 8 },
  pressure: { dataType: "float64", access: "readwrite" },
});

function validationIssues(run: () => unknown): { path: string; message: string }[] {
  try {
    run();
  } catch (error) {
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    return [...(error as KilnValidationError).issues];
  }
  throw new Error("expected KILN_VALIDATION");
}

describe("array tag definition", () => {
  test("arrayLength is a whole number from 1 to 65535", () => {
    expect(tags.get("zones").arrayLength).toBe(4);
    expect(tags.get("pressure").arrayLength).toBeUndefined();
    for (const arrayLength of [0, -1, 1.5, 65_536]) {
      const issues = validationIssues(() => defineTags({ a: { dataType: "float64", arrayLength } }));
      expect(issues.map((issue) => issue.path)).toEqual(["a.arrayLength"]);
    }
    expect(defineTags({ a: { dataType: "int16", arrayLength: 65_535 } }).get("a").arrayLength).toBe(65_535);
  });

  test("a deadband or sloped interpolation on an array tag is refused; arrays are stepped", () => {
    const issues = validationIssues(() =>
      defineTags({
        a: {
          dataType: "float64",
          arrayLength: 3,
          logging: { mode: "change", deadband: { kind: "absolute", value: 1 } },
        },
        b: { dataType: "float64", arrayLength: 3, interpolation: "sloped" },
      }),
    );
    expect(issues.map((issue) => issue.path)).toEqual(["a.logging.deadband", "b.interpolation"]);
    expect(interpolationOf(tags.get("zones"))).toBe("stepped");
    expect(interpolationOf(tags.get("pressure"))).toBe("sloped");
  });

  test("an alarm on an array tag (or suppressed by one) is refused at definition", () => {
    const issues = validationIssues(() =>
      defineAlarms(
        [
          { tag: "zones", kind: "HI", setpoint: 5, priority: 1 },
          { tag: "pressure", kind: "HI", setpoint: 5, priority: 1, suppressWhen: { tag: "flags", equals: true } },
        ],
        tags,
      ),
    );
    expect(issues.map((issue) => issue.path)).toEqual(["[0].tag", "[1].suppressWhen.tag"]);
  });
});

describe("array values: checks and formatting", () => {
  test("checkTagValue: shape, length, each element by the scalar rule and the range", () => {
    expect(checkTagValue(tags.get("zones"), [1, 2, 3, 4])).toBeUndefined();
    expect(checkTagValue(tags.get("zones"), [])).toBeUndefined();
    expect(checkTagValue(tags.get("zones"), new Float64Array([1, 2]))).toBeUndefined();
    expect(checkTagValue(tags.get("zones"), [1, 2, 3, 4, 5])).toBe("expected at most 4 elements (arrayLength), got 5");
    expect(checkTagValue(tags.get("zones"), [1, 2, 3, 501])).toBe("value[3]: 501 is outside the range 0..500");
    expect(checkTagValue(tags.get("zones"), 3)).toMatch(/expected an array of float64/);
    expect(checkTagValue(tags.get("pressure"), [3])).toMatch(/expected a scalar float64, got an array/);
    expect(checkTagValue(tags.get("counts"), [1, 2.5])).toBe("value[1]: expected an integer for int32, got 2.5");
    expect(checkTagValue(tags.get("totals"), [2n ** 64n - 1n, 5])).toBeUndefined();
    expect(checkTagValue(tags.get("totals"), new BigUint64Array([1n]))).toBeUndefined();
    expect(checkTagValue(tags.get("names"), ["a", 1])).toBe("value[1]: expected a string, got number 1");
  });

  test("formatTagValue prints an array as JSON, bigint and non-finite numbers as strings", () => {
    expect(formatTagValue([1, 2n ** 60n, Number.NaN, -Infinity])).toBe('[1,"1152921504606846976","NaN","-Infinity"]');
    expect(formatTagValue("a")).toBe('"a"');
    expect(formatTagValue(3)).toBe("3");
  });

  test("sameTagValue compares element-wise with Object.is", () => {
    expect(sameTagValue([1, Number.NaN], [1, Number.NaN])).toBe(true);
    expect(sameTagValue([0], [-0])).toBe(false);
    expect(sameTagValue([1, 2], [1, 2, 3])).toBe(false);
    expect(sameTagValue([1], 1)).toBe(false);
    expect(sameTagValue([1n], [1])).toBe(false);
  });

  test("checkSample accepts arrays of scalars, names a bad element", () => {
    const sample = (value: unknown) => ({ tag: "zones", value, timestamp: 0, quality: GOOD });
    expect(checkSample(sample([1, "a", true, 2n]))).toEqual([]);
    expect(checkSample(sample([1, null]))).toEqual([{ path: "value[1]", message: "must not be null" }]);
    expect(checkSample(sample([1, 2n ** 70n]))[0]?.path).toBe("value[1]");
    expect(checkSample(sample([{}]))[0]?.path).toBe("value[0]");
    const a: Sample = { tag: "zones", value: [1, 2], timestamp: 0, quality: GOOD };
    expect(sameSamplePayload(a, { ...a, value: [1, 2] })).toBe(true);
    expect(sameSamplePayload(a, { ...a, value: [1, 3] })).toBe(false);
  });
});

describe("acquisition: values of the wrong shape read bad BadTypeMismatch", () => {
  test("coerceToTagType converts each element exactly into a new frozen array", () => {
    const coerced = coerceToTagType(new Float32Array([1.5, 2]), tags.get("zones"), "Float");
    expect(coerced).toEqual({ ok: true, value: [1.5, 2] });
    expect(coerced.ok && Object.isFrozen(coerced.value)).toBe(true);
    expect(coerceToTagType([1n, 2], tags.get("counts"))).toEqual({ ok: true, value: [1, 2] });
    expect(coerceToTagType([2n ** 60n, 1], tags.get("totals"))).toEqual({ ok: true, value: [2n ** 60n, 1] });
  });

  test.each<[string, TagValue | Float64Array, RegExp]>([
    ["zones", 3, /^scalar Double 3 cannot be carried by float64\[4\] tag "zones"$/],
    ["pressure", [1, 2], /^Double\[2\] cannot be carried by scalar float64 tag "pressure"$/],
    ["zones", new Float64Array(5), /^Double\[5\] cannot be carried by float64\[4\] tag "zones"$/],
    ["counts", [1, 1.5], /^Double\[2\] element \[1\] 1.5 cannot be carried exactly by int32\[3\] tag "counts"$/],
  ])("%s ← %s", (name, value, reason) => {
    const coerced = coerceToTagType(value, tags.get(name), "Double");
    expect(coerced.ok).toBe(false);
    if (coerced.ok) return;
    expect(coerced.quality.code).toBe(QualityCodes.BadTypeMismatch);
    expect(coerced.quality.reason).toMatch(reason);
  });

  test("checkDriverSamples (the one place acquisition accepts driver values) applies it", () => {
    const asked = new Map([
      ["zones", tags.get("zones")],
      ["pressure", tags.get("pressure")],
      ["counts", tags.get("counts")],
    ]);
    const reply: Sample[] = [
      { tag: "zones", value: [1, 2, 3, 4, 5], timestamp: 10, quality: GOOD },
      { tag: "pressure", value: [1], timestamp: 10, quality: GOOD },
      { tag: "counts", value: [1, 2, 3], timestamp: 10, quality: GOOD },
    ];
    const { samples } = checkDriverSamples(reply, asked, true, 10);
    expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.severity])).toEqual([
      ["zones", null, "bad"],
      ["pressure", null, "bad"],
      ["counts", [1, 2, 3], "good"],
    ]);
    expect(samples[0]!.quality.reason).toMatch(/array\[5\] cannot be carried by float64\[4\]/);
  });
});

describe("change detection and logging compare arrays element-wise", () => {
  test("CVT: an equal array is a repeat, a changed element is a change; the held value is frozen", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const changes: boolean[] = [];
    cvt.observe("zones", (change) => void changes.push(change.valueChanged));
    const given = [1, 2, 3, 4];
    cvt.update([{ tag: "zones", value: given, timestamp: 1, quality: GOOD }], 1);
    cvt.update([{ tag: "zones", value: [1, 2, 3, 4], timestamp: 2, quality: GOOD }], 2);
    cvt.update([{ tag: "zones", value: [1, 2, 3, 5], timestamp: 3, quality: GOOD }], 3);
    expect(changes).toEqual([true, false, true]);
    given[0] = 99;
    const held = cvt.value("zones");
    expect(held).toEqual([1, 2, 3, 5]);
    expect(Object.isFrozen(held)).toBe(true);
  });

  test("LoggingFilter logs an array only when an element changed", () => {
    const filter = new LoggingFilter(tags.list(), { now: () => 0, monotonicNow: () => 0 });
    const values: TagValue[] = [
      [1, 2],
      [1, 2],
      [1, 3],
      [1, 3, 0],
    ];
    const logged = values.flatMap(
      (value, index) => filter.select({ tag: "counts", value, timestamp: index + 1, quality: GOOD }) ?? [],
    );
    expect(logged.map((sample) => sample.timestamp)).toEqual([1, 3, 4]);
  });
});

describe("writes", () => {
  test("an array or typed array is checked element-wise and reaches the driver as a frozen array", async () => {
    const clock = new SimulatedClock({ start: 1_000_000 });
    const written: [string, unknown][] = [];
    const system = createControlSystem({
      machineId: "m",
      tags,
      scanGroups: { default: { periodMs: 1_000 } },
      clock,
      register: (registry) =>
        registry.override(Tokens.TagWriter, () => ({
          write: async (tag, value) => void written.push([tag, value]),
        })),
    });
    await system.start();
    const engineer = { id: "eng", roles: ["engineer"] };
    try {
      await system.writeTag(engineer, "zones", new Float64Array([10, 20]));
      await system.writeTag(engineer, "counts", [1, 2, 3]);
      const error = await system.writeTag(engineer, "zones", [1, 2, 600]).catch((caught: unknown) => caught);
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnValidationError).issues).toEqual([
        { path: "value[2]", message: "600 is outside the range 0..500" },
      ]);
      const tooLong = await system.writeTag(engineer, "counts", [1, 2, 3, 4]).catch((caught: unknown) => caught);
      expect((tooLong as KilnValidationError).issues[0]?.path).toBe("value");
      const scalar = await system.writeTag(engineer, "pressure", [1]).catch((caught: unknown) => caught);
      expect(KilnError.is(scalar, "KILN_VALIDATION")).toBe(true);
    } finally {
      await system.stop();
    }
    expect(written).toEqual([
      ["zones", [10, 20]],
      ["counts", [1, 2, 3]],
    ]);
    expect(written.every(([, value]) => Array.isArray(value) && Object.isFrozen(value))).toBe(true);
  });
});

describe("MemoryStore", () => {
  test("stores and reads back arrays; aggregates and downsampling over array tags are KILN_NOT_SUPPORTED", async () => {
    const store = new MemoryStore();
    await store.open(tags.list());
    const value = [1, Number.NaN, -0, 4];
    await store.samples.writeBatch([{ tag: "zones", value, timestamp: 1_000, quality: GOOD }]);
    value[0] = 99;
    const read = await store.samples.readSamples({ tag: "zones", from: 0, to: 2_000 });
    expect(read.map((sample) => sample.value)).toEqual([[1, Number.NaN, -0, 4]]);
    expect(Object.is((read[0]!.value as number[])[2], -0)).toBe(true);
    const [at] = await store.history.valueAt(["zones"], 1_500);
    expect(at?.value).toEqual([1, Number.NaN, -0, 4]);
    const aggregate = await store.history
      .aggregate(["pressure", "zones"], { start: 0, end: 2_000, intervalMs: 1_000, aggregates: ["Average"] })
      .catch((caught: unknown) => caught);
    expect(KilnError.is(aggregate, "KILN_NOT_SUPPORTED")).toBe(true);
    expect((aggregate as KilnError).details).toEqual({ tags: ["zones"] });
    const downsample = await store.history
      .downsample("zones", { start: 0, end: 2_000, points: 10 })
      .catch((caught: unknown) => caught);
    expect(KilnError.is(downsample, "KILN_NOT_SUPPORTED")).toBe(true);
  });
});
