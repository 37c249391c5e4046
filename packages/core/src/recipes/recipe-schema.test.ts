import { describe, expect, test } from "vitest";
import { KilnValidationError } from "../domain/errors";
import { parseRecipe, recipeSchema, stepKindOf, storedRecipeOf, type RecipeInput } from "./recipe-schema";

const ald: RecipeInput = {
  name: "ald-al2o3",
  version: 3,
  parameters: {
    cycles: { type: "number", default: 200, min: 1, max: 5000 },
    pulseMs: { type: "number", default: 20, min: 1, max: 500, unit: "ms" },
  },
  steps: [
    { waitUntil: { condition: { tag: "chamber.pressure", op: "<", value: 0.5 }, timeoutMs: 60_000 } },
    {
      loop: {
        count: { param: "cycles" },
        steps: [{ pulse: { tag: "valve.tma", durationMs: { param: "pulseMs" } } }, { wait: { durationMs: 50 } }],
      },
    },
    { call: { recipe: "cooldown", version: 1, parameters: { rateCPerMin: 5 } } },
  ],
};

function issuesOf(input: unknown): string[] {
  try {
    parseRecipe(input);
  } catch (error) {
    if (error instanceof KilnValidationError) return error.issues.map((issue) => issue.path);
    throw error;
  }
  throw new Error("expected the recipe to be rejected");
}

describe("parseRecipe", () => {
  test("applies defaults: description, pulse on/off, waitUntil onTimeout", () => {
    const recipe = parseRecipe(ald);
    expect(recipe.description).toBe("");
    expect(recipe.steps[0]).toEqual({
      waitUntil: { condition: { tag: "chamber.pressure", op: "<", value: 0.5 }, timeoutMs: 60_000, onTimeout: "fail" },
    });
    expect(recipe.steps[1]).toEqual({
      loop: {
        count: { param: "cycles" },
        steps: [
          { pulse: { tag: "valve.tma", durationMs: { param: "pulseMs" }, on: true, off: false } },
          { wait: { durationMs: 50 } },
        ],
      },
    });
    expect(recipe.steps.map(stepKindOf)).toEqual(["waitUntil", "loop", "call"]);
    expect(parseRecipe({ name: "x", version: 1, steps: [{ wait: { durationMs: 1 } }] }).parameters).toEqual({});
  });

  test("a version above 2^31 - 1 (recipe or called recipe) or a name over 256 characters is refused, so every store holds every recipe alike", () => {
    const steps = [{ wait: { durationMs: 1 } }];
    expect(issuesOf({ name: "x", version: 2 ** 31, steps })).toEqual(["version"]);
    expect(parseRecipe({ name: "x", version: 2 ** 31 - 1, steps }).version).toBe(2 ** 31 - 1);
    expect(issuesOf({ name: "x", version: 1, steps: [{ call: { recipe: "y", version: 2 ** 40 } }] })).toEqual([
      "steps[0].call.version",
    ]);
    expect(issuesOf({ name: "n".repeat(257), version: 1, steps })).toEqual(["name"]);
  });

  test("reports every structural problem with its path, through nested loops", () => {
    expect(
      issuesOf({
        name: "bad name!",
        version: 0,
        parameters: { pulseMs: { type: "number", default: 900, max: 500 }, flag: { type: "boolean", default: 1 } },
        steps: [
          { pulse: { tag: "valve.tma", durationMs: -5 } },
          { wait: { durationMs: 10 }, set: { tag: "valve.tma", value: true } },
          { loop: { count: 0, steps: [{ ramp: { tag: "x", from: 0, to: 1, durationMs: 10, steps: 1.5 } }] } },
          { waitUntil: { condition: { tag: "p", op: "=<", value: 1 }, timeoutMs: 10, onTimeout: "retry" } },
          {},
        ],
      }),
    ).toEqual([
      "name",
      "version",
      "parameters.pulseMs.default",
      "parameters.flag.default",
      "steps[0].pulse.durationMs",
      "steps[1]",
      "steps[2].loop.count",
      "steps[2].loop.steps[0].ramp.steps",
      "steps[3].waitUntil.condition.op",
      "steps[3].waitUntil.onTimeout",
      "steps[4]",
    ]);
  });

  test("rejects an empty recipe, an empty loop and unknown fields", () => {
    expect(issuesOf({ name: "x", version: 1, steps: [] })).toEqual(["steps"]);
    expect(issuesOf({ name: "x", version: 1, steps: [{ loop: { count: 2, steps: [] } }] })).toEqual([
      "steps[0].loop.steps",
    ]);
    expect(
      issuesOf({ name: "x", version: 1, steps: [{ wait: { durationMs: 1, extra: true } }], author: "me" }),
    ).toEqual(["steps[0].wait", ""]);
  });

  test("storedRecipeOf keeps the definition with defaults applied, and it parses back to the same recipe", () => {
    const stored = storedRecipeOf(ald, 1234);
    expect(stored).toMatchObject({ name: "ald-al2o3", version: 3, savedAt: 1234 });
    expect(parseRecipe(stored.definition)).toEqual(parseRecipe(ald));
    expect(recipeSchema.safeParse(stored.definition).success).toBe(true);
  });
});
