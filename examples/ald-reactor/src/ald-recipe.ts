import type { RecipeInput, RecipeStepInput } from "@kiln/core";

/**
 * The demo's recipe: Al2O3 from TMA and H2O. Heat up along a ramp, wait for the temperature,
 * run the first block of cycles (TMA pulse, purge, H2O pulse, purge), hold with the valves
 * closed, wait for base pressure (on a good-quality value, so a lost PLC link holds the recipe
 * here until it is back), run the second block, and return the heater to standby.
 */
export const aldRecipe: RecipeInput = {
  name: "ald-al2o3-demo",
  version: 1,
  description: "Al2O3 by TMA/H2O: heat-up, two blocks of ALD cycles around a purge hold, back to standby",
  parameters: {
    standbyC: { type: "number", default: 180, min: 20, max: 300, unit: "°C", description: "Heater standby" },
    temperatureC: { type: "number", default: 200, min: 20, max: 300, unit: "°C", description: "Process temperature" },
    readyC: { type: "number", default: 198, min: 20, max: 300, unit: "°C", description: "Start cycling above" },
    heatUpMs: { type: "number", default: 2_000, min: 0, max: 600_000, unit: "ms" },
    cyclesBeforeHold: { type: "number", default: 15, min: 1, max: 5_000 },
    cyclesAfterHold: { type: "number", default: 15, min: 1, max: 5_000 },
    pulseMs: { type: "number", default: 150, min: 5, max: 5_000, unit: "ms" },
    purgeMs: { type: "number", default: 500, min: 10, max: 60_000, unit: "ms" },
    holdMs: { type: "number", default: 3_000, min: 0, max: 600_000, unit: "ms" },
    basePressureMbar: { type: "number", default: 0.3, min: 0, max: 10, unit: "mbar", description: "Resume below" },
    conditionTimeoutMs: { type: "number", default: 30_000, min: 100, max: 600_000, unit: "ms" },
  },
  steps: [
    {
      ramp: {
        tag: "heater.setpoint",
        from: { param: "standbyC" },
        to: { param: "temperatureC" },
        durationMs: { param: "heatUpMs" },
        steps: 10,
      },
    },
    {
      waitUntil: {
        condition: { tag: "heater.temperature", op: ">=", value: { param: "readyC" } },
        timeoutMs: { param: "conditionTimeoutMs" },
        onTimeout: "fail",
      },
    },
    { loop: { count: { param: "cyclesBeforeHold" }, steps: aldCycle() } },
    { wait: { durationMs: { param: "holdMs" } } },
    {
      waitUntil: {
        condition: { tag: "chamber.pressure", op: "<=", value: { param: "basePressureMbar" } },
        timeoutMs: { param: "conditionTimeoutMs" },
        onTimeout: "fail",
      },
    },
    { loop: { count: { param: "cyclesAfterHold" }, steps: aldCycle() } },
    { set: { tag: "heater.setpoint", value: { param: "standbyC" } } },
  ],
};

function aldCycle(): RecipeStepInput[] {
  return [
    { pulse: { tag: "valve.tma", durationMs: { param: "pulseMs" } } },
    { wait: { durationMs: { param: "purgeMs" } } },
    { pulse: { tag: "valve.h2o", durationMs: { param: "pulseMs" } } },
    { wait: { durationMs: { param: "purgeMs" } } },
  ];
}

/** What a step does, for progress lines and the shading of the report's charts. */
export type AldPhaseKind = "heat-up" | "condition" | "tma" | "h2o" | "purge" | "hold" | "set" | "other";

/** A classified recipe step. */
export interface AldPhase {
  readonly kind: AldPhaseKind;
  /** Short human label, e.g. "TMA pulse", "purge", "wait for base pressure". */
  readonly label: string;
}

/**
 * Classifies the step at a run-time path of the executor's events (`steps[2].loop[7].steps[0]`)
 * by looking it up in `recipe`. Containers (`loop`, `call`) and paths that do not resolve give
 * `undefined`.
 */
export function phaseOfStep(path: string, recipe: RecipeInput = aldRecipe): AldPhase | undefined {
  const resolved = resolveStep(path, recipe);
  if (!resolved) return undefined;
  const { step, inLoop } = resolved;
  if ("pulse" in step) {
    const tag = step.pulse.tag;
    if (tag === "valve.tma") return { kind: "tma", label: "TMA pulse" };
    if (tag === "valve.h2o") return { kind: "h2o", label: "H2O pulse" };
    return { kind: "other", label: `pulse ${tag}` };
  }
  if ("wait" in step) return inLoop ? { kind: "purge", label: "purge" } : { kind: "hold", label: "purge hold" };
  if ("ramp" in step) return { kind: "heat-up", label: `ramp ${step.ramp.tag}` };
  if ("waitUntil" in step) {
    const tag = step.waitUntil.condition.tag;
    const what = tag === "heater.temperature" ? "temperature" : tag === "chamber.pressure" ? "base pressure" : tag;
    return { kind: "condition", label: `wait for ${what}` };
  }
  if ("set" in step) return { kind: "set", label: `set ${step.set.tag}` };
  return undefined;
}

/** Walks `steps[i](.loop[n].steps[j])*`; `call` bodies live in other recipes and do not resolve. */
function resolveStep(path: string, recipe: RecipeInput): { step: RecipeStepInput; inLoop: boolean } | undefined {
  const match = /^steps\[(\d+)\]((?:\.loop\[\d+\]\.steps\[\d+\])*)$/.exec(path);
  if (!match) return undefined;
  let step = recipe.steps[Number(match[1])];
  let inLoop = false;
  for (const [, index] of (match[2] ?? "").matchAll(/\.loop\[\d+\]\.steps\[(\d+)\]/g)) {
    if (!step || !("loop" in step)) return undefined;
    step = step.loop.steps[Number(index)];
    inLoop = true;
  }
  if (!step || "loop" in step || "call" in step) return undefined;
  return { step, inLoop };
}
