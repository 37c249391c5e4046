import { validateRecipe, type RecipeInput } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { aldTags } from "./ald-reactor-plc";
import { aldRecipe, phaseOfStep } from "./ald-recipe";

describe("aldRecipe", () => {
  test("validates against the reactor's tags, and expands to 4 steps per cycle", async () => {
    const plan = await validateRecipe(aldRecipe, {
      catalog: aldTags,
      parameters: { cyclesBeforeHold: 2, cyclesAfterHold: 3 },
    });
    expect(plan.parameters).toMatchObject({ cyclesBeforeHold: 2, cyclesAfterHold: 3, pulseMs: 150 });
  });

  test("rejects a run parameter out of its range with KILN_VALIDATION", async () => {
    const error = await validateRecipe(aldRecipe, { catalog: aldTags, parameters: { pulseMs: 1 } }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toMatchObject({ code: "KILN_VALIDATION" });
  });
});

describe("phaseOfStep", () => {
  test("classifies every step kind of the recipe by its run-time path", () => {
    expect(phaseOfStep("steps[0]")).toEqual({ kind: "heat-up", label: "ramp heater.setpoint" });
    expect(phaseOfStep("steps[1]")).toEqual({ kind: "condition", label: "wait for temperature" });
    expect(phaseOfStep("steps[2].loop[0].steps[0]")).toEqual({ kind: "tma", label: "TMA pulse" });
    expect(phaseOfStep("steps[2].loop[14].steps[1]")).toEqual({ kind: "purge", label: "purge" });
    expect(phaseOfStep("steps[5].loop[3].steps[2]")).toEqual({ kind: "h2o", label: "H2O pulse" });
    expect(phaseOfStep("steps[3]")).toEqual({ kind: "hold", label: "purge hold" });
    expect(phaseOfStep("steps[4]")).toEqual({ kind: "condition", label: "wait for base pressure" });
    expect(phaseOfStep("steps[6]")).toEqual({ kind: "set", label: "set heater.setpoint" });
  });

  test("containers and paths that do not resolve give undefined", () => {
    expect(phaseOfStep("steps[2]")).toBeUndefined(); // the loop itself
    expect(phaseOfStep("steps[9]")).toBeUndefined();
    expect(phaseOfStep("steps[0].loop[0].steps[0]")).toBeUndefined(); // a ramp has no body steps
    expect(phaseOfStep("steps[2].call.steps[0]")).toBeUndefined();
    expect(phaseOfStep("nonsense")).toBeUndefined();
  });

  test("works on any recipe: a wait outside a loop is a hold, other pulses are named by tag", () => {
    const recipe: RecipeInput = {
      name: "other",
      version: 1,
      steps: [{ wait: { durationMs: 10 } }, { pulse: { tag: "valve.n2", durationMs: 5 } }],
    };
    expect(phaseOfStep("steps[0]", recipe)?.kind).toBe("hold");
    expect(phaseOfStep("steps[1]", recipe)).toEqual({ kind: "other", label: "pulse valve.n2" });
  });
});
