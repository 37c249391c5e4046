import { describe, expect, test } from "vitest";
import { TagPattern } from "./tag-pattern";

/** The backtracking matcher the pattern replaced, as a reference for the semantics. */
function reference(pattern: string, text: string): boolean {
  const source = pattern
    .split("*")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${source}$`, "s").test(text);
}

describe("TagPattern", () => {
  test("matches exactly what the glob means: * is any run of characters, the rest literal", () => {
    const patterns = ["heater.*", "*.setpoint", "mfc.*.flow", "*", "**", "a*a", "valve.tma", "a*b*c", "", "x*"];
    const texts = [
      "heater.setpoint",
      "heater.",
      "heater",
      "mfc.ar.flow",
      "mfc..flow",
      "a",
      "aa",
      "aba",
      "abc",
      "acbc",
      "",
      "valve.tma",
      "x",
      "x.y*z",
    ];
    for (const pattern of patterns) {
      const compiled = new TagPattern(pattern);
      for (const text of texts)
        expect([pattern, text, compiled.test(text)]).toEqual([pattern, text, reference(pattern, text)]);
    }
  });

  test("a hostile 30 kB name is matched in at most (name + 1) × (pattern + 1) comparisons", () => {
    // [pattern, name, whether it matches]: the first two take a backtracking regex seconds to minutes.
    const hostile = [
      ["a*a*a*a*a*a*a*b", "a".repeat(30_000), false],
      ["*.*.*.*.*.*.*x", ".".repeat(30_000), false],
      ["heater.*", `heater.${"*".repeat(30_000)}`, true],
      ["*aaaaaaaaab", "a".repeat(30_000), false],
    ] as const;
    for (const [pattern, text, matches] of hostile) {
      const counter = { steps: 0 };
      expect(new TagPattern(pattern).test(text, counter)).toBe(matches);
      expect(counter.steps).toBeGreaterThan(0);
      expect(counter.steps).toBeLessThanOrEqual((text.length + 1) * (pattern.length + 1));
    }
  });

  test("the comparisons grow linearly with the name for a fixed pattern", () => {
    const steps = (length: number): number => {
      const counter = { steps: 0 };
      new TagPattern("a*a*a*a*a*b").test("a".repeat(length), counter);
      return counter.steps;
    };
    // A backtracking matcher grows with length^k here; this one doubles when the name doubles.
    expect(steps(20_000)).toBeLessThanOrEqual(2 * steps(10_000) + 16);
  });
});
