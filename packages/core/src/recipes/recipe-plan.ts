import type { ParameterValue, Recipe, RecipeNumber, RecipeStep } from "./recipe-schema";

/**
 * One step of a validated recipe, tagged by its kind so a runner switches on `kind` and reads a
 * typed `body`. A `call` carries its resolved callee; a `loop` its planned steps.
 */
export type PlannedStep =
  | { readonly kind: "set"; readonly body: Extract<RecipeStep, { readonly set: unknown }>["set"] }
  | { readonly kind: "pulse"; readonly body: Extract<RecipeStep, { readonly pulse: unknown }>["pulse"] }
  | { readonly kind: "wait"; readonly body: Extract<RecipeStep, { readonly wait: unknown }>["wait"] }
  | { readonly kind: "waitUntil"; readonly body: Extract<RecipeStep, { readonly waitUntil: unknown }>["waitUntil"] }
  | { readonly kind: "ramp"; readonly body: Extract<RecipeStep, { readonly ramp: unknown }>["ramp"] }
  | {
      readonly kind: "loop";
      readonly body: { readonly count: RecipeNumber; readonly steps: readonly PlannedStep[] };
    }
  | {
      readonly kind: "call";
      readonly body: Extract<RecipeStep, { readonly call: unknown }>["call"];
      readonly callee: PlannedRecipe;
    };

/** A recipe version with its steps planned. */
export interface PlannedRecipe {
  /** The recipe, defaults applied. */
  readonly recipe: Recipe;
  /** Its steps, tagged by kind. */
  readonly steps: readonly PlannedStep[];
}

/** A recipe that passed `validateRecipe`, with everything its run needs resolved. */
export interface RecipePlan extends PlannedRecipe {
  /**
   * The parameter values of the run: the defaults overridden by the values given. A
   * null-prototype map: only declared names are keys.
   */
  readonly parameters: Readonly<Record<string, ParameterValue>>;
  /** Every recipe reached through `call` steps, keyed `name@version`. */
  readonly calls: ReadonlyMap<string, Recipe>;
  /** How many steps the run executes, loops and calls expanded (containers not counted). */
  readonly expandedSteps: number;
  /**
   * Every tag the run can write, in document order, each once: the tags of its `set`, `pulse`
   * and `ramp` steps, inside loops and called recipes included. (The machine's safe state is
   * the executor's, not the recipe's: see `RecipeExecutor.writeSet`.)
   */
  readonly writeSet: readonly string[];
}

/** The key of a recipe version in {@link RecipePlan.calls}: `name@version`. */
export function recipeKey(name: string, version: number): string {
  return `${name}@${version}`;
}

/**
 * Tags each step of `recipe` (and of every recipe it calls, found in `calls`) by kind.
 * `calls` must hold every callee: validation guarantees it, and that there are no cycles.
 */
export function planRecipe(recipe: Recipe, calls: ReadonlyMap<string, Recipe>): PlannedRecipe {
  const planned = new Map<string, PlannedRecipe>();
  const plan = (target: Recipe): PlannedRecipe => ({ recipe: target, steps: target.steps.map(planStep) });
  const callee = (key: string): PlannedRecipe => {
    let found = planned.get(key);
    if (found === undefined) {
      const definition = calls.get(key);
      if (definition === undefined) throw new Error(`internal: the plan has no recipe ${key}`);
      found = plan(definition);
      planned.set(key, found);
    }
    return found;
  };
  const planStep = (step: RecipeStep): PlannedStep => {
    if ("set" in step) return { kind: "set", body: step.set };
    if ("pulse" in step) return { kind: "pulse", body: step.pulse };
    if ("wait" in step) return { kind: "wait", body: step.wait };
    if ("waitUntil" in step) return { kind: "waitUntil", body: step.waitUntil };
    if ("ramp" in step) return { kind: "ramp", body: step.ramp };
    if ("loop" in step) return { kind: "loop", body: { count: step.loop.count, steps: step.loop.steps.map(planStep) } };
    return { kind: "call", body: step.call, callee: callee(recipeKey(step.call.recipe, step.call.version)) };
  };
  return plan(recipe);
}

/** Every tag `steps` can write (set, pulse, ramp; through loops and calls), in document order, each once. */
export function writeSetOf(steps: readonly PlannedStep[]): string[] {
  const tags = new Set<string>();
  const visited = new Set<PlannedRecipe>();
  const walk = (list: readonly PlannedStep[]): void => {
    for (const step of list) {
      switch (step.kind) {
        case "set":
        case "pulse":
        case "ramp":
          tags.add(step.body.tag);
          break;
        case "loop":
          walk(step.body.steps);
          break;
        case "call":
          if (!visited.has(step.callee)) {
            visited.add(step.callee);
            walk(step.callee.steps);
          }
          break;
        case "wait":
        case "waitUntil":
          break;
      }
    }
  };
  walk(steps);
  return [...tags];
}
