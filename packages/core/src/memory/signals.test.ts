import { describe, expect, test } from "vitest";
import { KilnValidationError } from "../domain/errors";
import { SimulatedPlc } from "./simulated-plc";
import { createSignal, type SignalSpec } from "./signals";
import { defineTags } from "../domain/tags";

describe("createSignal", () => {
  test("a bad spec is a KilnValidationError naming the field, not a raw zod error", () => {
    let caught: unknown;
    try {
      createSignal({ kind: "ramp", from: 0, to: 1 } as unknown as SignalSpec);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(KilnValidationError);
    expect((caught as KilnValidationError).code).toBe("KILN_VALIDATION");
    expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual(["periodMs"]);
  });

  test("SimulatedPlc refuses a bad source with the same typed error", () => {
    const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
    expect(
      () => new SimulatedPlc({ tags, sources: { "chamber.pressure": { kind: "sine", amplitude: "1" } as never } }),
    ).toThrow(KilnValidationError);
  });
});
