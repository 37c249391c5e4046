import { describe, expect, test } from "vitest";
import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import { defineTags } from "../domain/tags";
import { MemoryStore } from "../memory/memory-store";
import { storedRecipeOf, type LoopStep, type RecipeInput } from "./recipe-schema";
import { recipeResolver, validateRecipe, type RecipeValidationOptions } from "./recipe-validation";

const tags = defineTags({
  "valve.tma": { dataType: "bool", access: "readwrite" },
  "valve.h2o": { dataType: "bool", access: "readwrite" },
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, unit: "°C" },
  "mfc.flow": { dataType: "uint16", access: "readwrite", range: { min: 0, max: 1000 } },
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 }, unit: "mbar" },
  "recipe.label": { dataType: "string", access: "readwrite" },
});

function recipe(steps: unknown[], extra: Record<string, unknown> = {}): RecipeInput {
  return { name: "test", version: 1, steps, ...extra } as RecipeInput;
}

async function issues(input: unknown, options: Partial<RecipeValidationOptions> = {}): Promise<ValidationIssue[]> {
  const error: unknown = await validateRecipe(input, { catalog: tags, ...options }).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof KilnValidationError)) throw new Error(`expected a validation error, got ${String(error)}`);
  expect(error.code).toBe("KILN_VALIDATION");
  return [...error.issues];
}

async function paths(input: unknown, options: Partial<RecipeValidationOptions> = {}): Promise<string[]> {
  return (await issues(input, options)).map((issue) => issue.path);
}

test("a waitUntil on an array tag, or a set of a scalar to one, is refused (ADR 0038)", async () => {
  const catalog = defineTags({
    "zones.setpoint": { dataType: "float64", arrayLength: 4, access: "readwrite" },
    "zones.actual": { dataType: "float64", arrayLength: 4 },
  });
  const found = await issues(
    recipe([
      { waitUntil: { condition: { tag: "zones.actual", op: "<", value: 2 }, timeoutMs: 100 } },
      { set: { tag: "zones.setpoint", value: 5 } },
    ]),
    { catalog },
  );
  expect(found.map((issue) => issue.path)).toEqual(["steps[0].waitUntil.condition.tag", "steps[1].set.value"]);
});

async function withRecipes(...recipes: RecipeInput[]) {
  const store = new MemoryStore();
  await store.open(tags.list());
  for (const saved of recipes) await store.recipes.save(storedRecipeOf(saved, 0));
  return recipeResolver(store.recipes);
}

const ald = recipe(
  [
    { set: { tag: "heater.setpoint", value: { param: "temperature" } } },
    {
      loop: {
        count: { param: "cycles" },
        steps: [
          { pulse: { tag: "valve.tma", durationMs: { param: "pulseMs" } } },
          { wait: { durationMs: 50 } },
          { pulse: { tag: "valve.h2o", durationMs: { param: "pulseMs" } } },
          { wait: { durationMs: 50 } },
        ],
      },
    },
  ],
  {
    parameters: {
      cycles: { type: "number", default: 200, min: 1, max: 5000 },
      pulseMs: { type: "number", default: 20, min: 1, max: 500 },
      temperature: { type: "number", default: 250, min: 100, max: 350 },
    },
  },
);

describe("validateRecipe", () => {
  test("returns the plan: recipe with defaults, resolved parameters, expanded step count", async () => {
    const plan = await validateRecipe(ald, { catalog: tags, parameters: { cycles: 300 } });
    expect(plan.parameters).toEqual({ cycles: 300, pulseMs: 20, temperature: 250 });
    expect(plan.expandedSteps).toBe(1 + 300 * 4);
    expect(plan.calls.size).toBe(0);
    expect(plan.recipe.steps[1]).toMatchObject({ loop: { count: { param: "cycles" } } });
    expect((plan.recipe.steps[1] as LoopStep).loop.steps[0]).toMatchObject({ pulse: { on: true, off: false } });
  });

  test("reports every catalog problem at once, with the step path of each", async () => {
    const found = await issues(
      recipe(
        [
          { set: { tag: "heater.setpoint", value: 500 } },
          { set: { tag: "chamber.pressure", value: 1 } },
          { pulse: { tag: "valve.nope", durationMs: 20 } },
          {
            loop: {
              count: 3,
              steps: [
                { wait: { durationMs: { param: "purgeMs" } } },
                { pulse: { tag: "valve.tma", durationMs: { param: "missing" } } },
                { pulse: { tag: "chamber.pressure", durationMs: 5 } },
              ],
            },
          },
          { waitUntil: { condition: { tag: "valve.tma", op: "<", value: true }, timeoutMs: 100 } },
          { waitUntil: { condition: { tag: "chamber.pressure", op: "<", value: "low" }, timeoutMs: 100 } },
          { ramp: { tag: "valve.h2o", from: 0, to: 1, durationMs: 100, steps: 5 } },
          { ramp: { tag: "mfc.flow", from: 0, to: 1001, durationMs: 100, steps: 20_000 } },
          { loop: { count: 200_000, steps: [{ wait: { durationMs: 1 } }] } },
          { set: { tag: "mfc.flow", value: { param: "label" } } },
          { wait: { durationMs: { param: "label" } } },
        ],
        {
          parameters: {
            purgeMs: { type: "number", default: 50, min: 0 },
            label: { type: "string", default: "run" },
          },
        },
      ),
    );
    expect(found.map((issue) => issue.path)).toEqual([
      "steps[0].set.value",
      "steps[1].set.tag",
      "steps[2].pulse.tag",
      "steps[3].loop.steps[1].pulse.durationMs.param",
      "steps[3].loop.steps[2].pulse.tag",
      "steps[3].loop.steps[2].pulse.on",
      "steps[3].loop.steps[2].pulse.off",
      "steps[4].waitUntil.condition.op",
      "steps[5].waitUntil.condition.value",
      "steps[6].ramp.tag",
      "steps[7].ramp.to",
      "steps[7].ramp.steps",
      "steps[8].loop.count",
      "steps[9].set.value",
      "steps[10].wait.durationMs",
    ]);
    expect(found[0]?.message).toContain("outside the range 0..400");
    expect(found[1]?.message).toContain("read-only");
    expect(found[3]?.message).toContain('unknown parameter "missing"');
  });

  test("structural and catalog problems are reported together; a malformed step does not hide the others", async () => {
    expect(
      await paths(
        recipe(
          [
            { pulse: { tag: "valve.tma", durationMs: -5 } },
            { wait: { durationMs: 10 }, set: { tag: "valve.tma", value: true } },
            { bogus: {} },
            { set: { tag: "valve.nope", value: true } },
            { loop: { count: 0, steps: [{ pulse: { tag: "valve.gone", durationMs: 1 } }] } },
          ],
          { parameters: { pulseMs: { type: "number", default: 900, max: 500 } } },
        ),
      ),
    ).toEqual([
      "parameters.pulseMs.default",
      "steps[0].pulse.durationMs",
      "steps[1]",
      "steps[2]",
      "steps[2]",
      "steps[3].set.tag",
      "steps[4].loop.count",
      "steps[4].loop.steps[0].pulse.tag",
    ]);
  });

  test("checks the parameter values given for the run against their declarations", async () => {
    expect(await paths(ald, { parameters: { cycles: 0, pulseMs: "fast", nope: 1 } })).toEqual([
      "parameters.cycles",
      "parameters.pulseMs",
      "parameters.nope",
    ]);
    // A parameter value can break a tag's range even when the default does not.
    const hot = recipe([{ set: { tag: "heater.setpoint", value: { param: "temperature" } } }], {
      parameters: { temperature: { type: "number", default: 250 } },
    });
    expect(await paths(hot, { parameters: { temperature: 450 } })).toEqual(["steps[0].set.value"]);
  });

  test("bounds the expanded step count (configurable)", async () => {
    const nested = recipe([
      { loop: { count: 1000, steps: [{ loop: { count: 1000, steps: [{ wait: { durationMs: 1 } }] } }] } },
    ]);
    expect((await validateRecipe(nested, { catalog: tags })).expandedSteps).toBe(1_000_000);
    expect(await paths(nested, { limits: { maxExpandedSteps: 999_999 } })).toEqual(["steps"]);
    expect(await paths(ald, { limits: { maxLoopCount: 100 } })).toEqual(["steps[1].loop.count"]);
    await expect(validateRecipe(ald, { catalog: tags, limits: { maxLoopCount: 0 } })).rejects.toThrow(RangeError);
  });
});

describe("validateRecipe: calls", () => {
  const purge = recipe([{ pulse: { tag: "valve.h2o", durationMs: { param: "ms" } } }], {
    name: "purge",
    version: 2,
    parameters: { ms: { type: "number", default: 100, min: 10, max: 1000 } },
  });

  test("resolves calls through the recipe repository and counts their steps", async () => {
    const resolveRecipe = await withRecipes(purge);
    const plan = await validateRecipe(
      recipe([{ loop: { count: 5, steps: [{ call: { recipe: "purge", version: 2, parameters: { ms: 200 } } }] } }]),
      { catalog: tags, resolveRecipe },
    );
    expect([...plan.calls.keys()]).toEqual(["purge@2"]);
    expect(plan.expandedSteps).toBe(5);
  });

  test("the plan tags every step by kind, resolves each call to its planned callee, and lists the write set", async () => {
    const resolveRecipe = await withRecipes(purge);
    const plan = await validateRecipe(
      recipe([
        { set: { tag: "heater.setpoint", value: 200 } },
        { loop: { count: 2, steps: [{ call: { recipe: "purge", version: 2 } }, { wait: { durationMs: 5 } }] } },
        { ramp: { tag: "mfc.flow", from: 0, to: 100, durationMs: 10, steps: 2 } },
      ]),
      { catalog: tags, resolveRecipe },
    );
    expect(plan.steps.map((step) => step.kind)).toEqual(["set", "loop", "ramp"]);
    const loop = plan.steps[1]!;
    if (loop.kind !== "loop") throw new Error("expected a loop");
    const call = loop.body.steps[0]!;
    if (call.kind !== "call") throw new Error("expected a call");
    expect(call.callee.recipe.name).toBe("purge");
    expect(call.callee.steps).toEqual([
      { kind: "pulse", body: { tag: "valve.h2o", durationMs: { param: "ms" }, on: true, off: false } },
    ]);
    expect(plan.writeSet).toEqual(["heater.setpoint", "valve.h2o", "mfc.flow"]);
  });

  test("a missing recipe, bad call parameters and the callee's own problems are reported under the call's path", async () => {
    const broken = recipe([{ set: { tag: "chamber.pressure", value: 1 } }], { name: "broken", version: 1 });
    const resolveRecipe = await withRecipes(purge, broken);
    expect(
      await paths(
        recipe([
          { call: { recipe: "purge", version: 1 } },
          { call: { recipe: "purge", version: 2, parameters: { ms: 5, other: 1 } } },
          { call: { recipe: "broken", version: 1 } },
        ]),
        { resolveRecipe },
      ),
    ).toEqual([
      "steps[0].call.recipe",
      "steps[1].call.parameters.ms",
      "steps[1].call.parameters.other",
      "steps[2].call.steps[0].set.tag",
    ]);
    expect(await paths(recipe([{ call: { recipe: "purge", version: 2 } }]))).toEqual(["steps[0].call.recipe"]);
  });

  test("detects call cycles, direct and indirect, and names the cycle", async () => {
    const a = recipe([{ call: { recipe: "b", version: 1 } }], { name: "a", version: 1 });
    const b = recipe([{ wait: { durationMs: 1 } }, { call: { recipe: "a", version: 1 } }], { name: "b", version: 1 });
    const self = recipe([{ call: { recipe: "self", version: 1 } }], { name: "self", version: 1 });
    const resolveRecipe = await withRecipes(a, b, self);
    const found = await issues(a, { resolveRecipe });
    expect(found).toEqual([{ path: "steps[0].call.steps[1].call", message: "call cycle: a@1 → b@1 → a@1" }]);
    expect(await paths(self, { resolveRecipe })).toEqual(["steps[0].call"]);
  });
});

describe("validateRecipe: reserved parameter names", () => {
  test("__proto__, constructor and prototype are rejected by path; nothing is skipped silently", async () => {
    const input = JSON.parse(
      JSON.stringify({
        name: "proto",
        version: 1,
        parameters: { PROTO: { type: "number", default: 5000 } },
        steps: [{ wait: { durationMs: { param: "PROTO" } } }],
      }).replaceAll("PROTO", "__proto__"),
    ) as unknown;
    const found = await issues(input);
    expect(found.map((issue) => issue.path)).toContain("parameters.__proto__");
    for (const name of ["constructor", "prototype"]) {
      const named = recipe([{ wait: { durationMs: { param: name } } }], {
        parameters: { [name]: { type: "number", default: 10 } },
      });
      expect(await paths(named)).toContain(`parameters.${name}`);
    }
  });

  test("a call passing a value named __proto__ is rejected at the call's path", async () => {
    const resolveRecipe = await withRecipes(recipe([{ wait: { durationMs: 10 } }], { name: "inner", version: 1 }));
    const input = JSON.parse(
      '{"name":"outer","version":1,"steps":[{"call":{"recipe":"inner","version":1,"parameters":{"__proto__":5}}}]}',
    ) as unknown;
    expect(await paths(input, { resolveRecipe })).toEqual(["steps[0].call.parameters.__proto__"]);
  });

  test("run-time values keyed __proto__ or constructor are unknown parameters, never a prototype", async () => {
    const overrides = JSON.parse('{"__proto__": 7, "constructor": 3}') as Record<string, unknown>;
    expect(await paths(ald, { parameters: overrides })).toEqual(["parameters.__proto__", "parameters.constructor"]);
    const plan = await validateRecipe(ald, { catalog: tags });
    expect(Object.getPrototypeOf(plan.parameters)).toBeNull();
  });
});
