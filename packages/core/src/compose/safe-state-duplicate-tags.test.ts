import { describe, expect, test } from "vitest";
import { createControlSystem, defineTags, MemoryStore, SimulatedPlc } from "../index";
import type { TagValue } from "../domain/tags";
import { checkSafeState } from "../recipes/safe-state";

// Adversarial review 15m (ADR 0042, amendment 15n), M2: a tag listed twice in the safe state
// (`machine.safeState`, the recipe executor's `safeState`) with two values left it ambiguous what
// the tag must end with, and made the safe state's writes of the tag alternate between two
// values. Each tag may appear once: a second entry is refused KILN_VALIDATION naming it.

const tags = defineTags({
  heater: { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  valve: { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  stirrer: { dataType: "float64", access: "readwrite", scanGroup: "fast" },
});

const build = (safeState: { tag: string; value: TagValue }[]) =>
  createControlSystem({
    machineId: "oven-1",
    tags,
    driver: new SimulatedPlc({ tags }),
    store: new MemoryStore(),
    scanGroups: { fast: { periodMs: 20 } },
    machine: { model: "kiln", safeState },
  });

describe("each tag at most once in the safe state (review 15m, M2)", () => {
  test("M2: machine.safeState naming a tag twice with two values is refused KILN_VALIDATION, naming the second entry and the rule", () => {
    let caught: unknown;
    try {
      build([
        { tag: "heater", value: 0 },
        { tag: "valve", value: false },
        { tag: "stirrer", value: 0 },
        { tag: "heater", value: 20 },
      ]);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({
      code: "KILN_VALIDATION",
      issues: [
        {
          path: "machine.safeState[3].tag",
          message: expect.stringMatching(/"heater" is already in the safe state at machine\.safeState\[0\].*once/),
        },
      ],
    });
  });

  test("(sibling) the same tag twice with the same value is refused too (ambiguous configuration)", () => {
    expect(() =>
      build([
        { tag: "valve", value: false },
        { tag: "valve", value: false },
      ]),
    ).toThrow(
      expect.objectContaining({
        code: "KILN_VALIDATION",
        issues: [expect.objectContaining({ path: "machine.safeState[1].tag" })],
      }),
    );
  });

  test("(sibling) the recipe executor's own check (safeState) refuses it the same way; a tag three times names each repeat", () => {
    expect(() =>
      checkSafeState(tags, [
        { tag: "heater", value: 0 },
        { tag: "heater", value: 0 },
        { tag: "valve", value: false },
        { tag: "heater", value: 10 },
      ]),
    ).toThrow(
      expect.objectContaining({
        code: "KILN_VALIDATION",
        issues: [
          expect.objectContaining({ path: "safeState[1].tag", message: expect.stringContaining("safeState[0]") }),
          expect.objectContaining({ path: "safeState[3].tag", message: expect.stringContaining("safeState[0]") }),
        ],
      }),
    );
    // Distinct tags pass, frozen.
    const checked = checkSafeState(tags, [
      { tag: "heater", value: 0 },
      { tag: "valve", value: false },
    ]);
    expect(Object.isFrozen(checked)).toBe(true);
  });
});
