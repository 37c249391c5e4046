import { describe, expect, expectTypeOf, test } from "vitest";
import { KilnError, KilnValidationError } from "./errors";
import { checkTagValue, defineTags, FLOAT32_MAX, interpolationOf, type TagDefinitionInput } from "./tags";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 } },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "int16", access: "readwrite", range: { min: 0, max: 400 }, unit: "°C" },
});

describe("defineTags", () => {
  test("applies defaults", () => {
    const pressure = tags.get("chamber.pressure");
    expect(pressure).toMatchObject({
      name: "chamber.pressure",
      access: "read",
      logging: { mode: "change" },
      scanGroup: "default",
    });
    expect(tags.names).toEqual(["chamber.pressure", "valve.ald1", "heater.setpoint"]);
    expect(tags.size).toBe(3);
  });

  test("types tag names", () => {
    expectTypeOf(tags.names).toEqualTypeOf<readonly ("chamber.pressure" | "valve.ald1" | "heater.setpoint")[]>();
  });

  test("a tag name longer than 256 characters is refused (every name fits an audited command target)", () => {
    expect(() => defineTags({ ["t".repeat(257)]: { dataType: "bool" } })).toThrow(
      expect.objectContaining({ code: "KILN_VALIDATION" }),
    );
    expect(defineTags({ ["t".repeat(256)]: { dataType: "bool" } }).list()).toHaveLength(1);
  });

  test("an unknown tag fails with KILN_TAG_UNKNOWN", () => {
    expect(() => tags.get("nope")).toThrow(expect.objectContaining({ code: "KILN_TAG_UNKNOWN" }));
    expect(tags.find("nope")).toBeUndefined();
  });

  test("reports every bad field with its path and changes nothing", () => {
    let caught: unknown;
    try {
      defineTags({
        good: { dataType: "float32" },
        "bad range": { dataType: "float32" },
        inverted: { dataType: "float64", range: { min: 5, max: 1 } },
        wrongType: { dataType: "float128" as "float64" },
        percentWithoutRange: {
          dataType: "float64",
          logging: { mode: "change", deadband: { kind: "percent", value: 1 } },
        },
        boolWithRange: { dataType: "bool", range: { min: 0, max: 1 } },
      });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(KilnValidationError);
    const paths = (caught as KilnValidationError).issues.map((issue) => issue.path);
    expect(paths).toEqual([
      "bad range",
      "inverted.range",
      "wrongType.dataType",
      "percentWithoutRange.logging.deadband",
      "boolWithRange.range",
    ]);
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
  });

  test("rejects unknown keys so typos do not pass silently", () => {
    expect(() => defineTags({ t: { dataType: "bool", acess: "readwrite" } as never })).toThrow(KilnValidationError);
  });
});

describe("checkTagValue", () => {
  test("accepts values of the right type inside the range", () => {
    expect(checkTagValue(tags.get("chamber.pressure"), 2.5)).toBeUndefined();
    expect(checkTagValue(tags.get("valve.ald1"), false)).toBeUndefined();
  });

  test("names the rule that failed", () => {
    expect(checkTagValue(tags.get("chamber.pressure"), 11)).toBe("11 is outside the range 0..10 mbar");
    expect(checkTagValue(tags.get("valve.ald1"), 1)).toBe("expected a boolean, got number 1");
    expect(checkTagValue(tags.get("heater.setpoint"), 1.5)).toBe("expected an integer for int16, got 1.5");
    expect(checkTagValue(tags.get("chamber.pressure"), Number.NaN)).toBe("expected a finite number, got number NaN");
  });
});

describe("float32 tags (issue 15, fault 1)", () => {
  const narrow = defineTags({
    free: { dataType: "float32", access: "readwrite" },
    wide: { dataType: "float32", access: "readwrite", range: { min: -1e40, max: 1e40 } },
  });

  test("refuse a finite number beyond float32's range, even inside a wider engineering range", () => {
    expect(checkTagValue(narrow.get("free"), 3.5e39)).toMatch(/does not fit float32/);
    expect(checkTagValue(narrow.get("wide"), 3.5e39)).toMatch(/does not fit float32/);
    expect(checkTagValue(narrow.get("wide"), -3.5e39)).toMatch(/does not fit float32/);
    expect(checkTagValue(narrow.get("free"), Number.NEGATIVE_INFINITY)).toMatch(/expected a finite number/);
  });

  test("accept FLT_MAX itself and values that only round to single precision", () => {
    expect(checkTagValue(narrow.get("free"), FLOAT32_MAX)).toBeUndefined();
    expect(checkTagValue(narrow.get("free"), -FLOAT32_MAX)).toBeUndefined();
    expect(checkTagValue(narrow.get("free"), 1e-50)).toBeUndefined();
    expect(checkTagValue(narrow.get("free"), 0.1)).toBeUndefined();
  });
});

describe("64-bit integer tags", () => {
  const wide = defineTags({
    counter: { dataType: "uint64", access: "readwrite" },
    offset: { dataType: "int64", access: "readwrite", range: { min: -10, max: 10 } },
  });

  test("take a bigint or a safe integer within the type and range", () => {
    expect(checkTagValue(wide.get("counter"), 2n ** 64n - 1n)).toBeUndefined();
    expect(checkTagValue(wide.get("counter"), 42)).toBeUndefined();
    expect(checkTagValue(wide.get("counter"), 2n ** 64n)).toBe("18446744073709551616 does not fit uint64");
    expect(checkTagValue(wide.get("counter"), -1n)).toBe("-1 does not fit uint64");
    expect(checkTagValue(wide.get("offset"), 11n)).toBe("11 is outside the range -10..10");
    expect(checkTagValue(wide.get("counter"), 2 ** 60)).toMatch(/^expected a bigint or a safe integer for uint64/);
    expect(checkTagValue(wide.get("counter"), "1")).toBe('expected a bigint, got "1"');
  });
});

describe("interpolation", () => {
  test("floats default to sloped; booleans, integers and strings to stepped; a declaration wins", () => {
    const tags = defineTags({
      pressure: { dataType: "float64" },
      ratio: { dataType: "float32" },
      valve: { dataType: "bool" },
      count: { dataType: "uint32" },
      total: { dataType: "int64" },
      state: { dataType: "string" },
      setpoint: { dataType: "float64", interpolation: "stepped" },
      speed: { dataType: "int16", interpolation: "sloped" },
    });
    expect(tags.list().map((tag) => [tag.name, interpolationOf(tag)])).toEqual([
      ["pressure", "sloped"],
      ["ratio", "sloped"],
      ["valve", "stepped"],
      ["count", "stepped"],
      ["total", "stepped"],
      ["state", "stepped"],
      ["setpoint", "stepped"],
      ["speed", "sloped"],
    ]);
  });

  test("a bool or string tag cannot be sloped, and an unknown interpolation is refused", () => {
    const paths = (definitions: Record<string, TagDefinitionInput>): string[] => {
      try {
        defineTags(definitions);
        return [];
      } catch (error) {
        return error instanceof KilnValidationError
          ? error.issues.map((issue) => issue.path)
          : ["not a validation error"];
      }
    };
    expect(paths({ valve: { dataType: "bool", interpolation: "sloped" } })).toEqual(["valve.interpolation"]);
    expect(paths({ state: { dataType: "string", interpolation: "sloped" } })).toEqual(["state.interpolation"]);
    expect(paths({ level: { dataType: "float64", interpolation: "linear" as "sloped" } })).toEqual([
      "level.interpolation",
    ]);
  });
});
