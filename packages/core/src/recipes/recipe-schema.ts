import { z } from "zod";
import type { StoredRecipe } from "@kiln/core/driver-kit";
import { parseOrThrow } from "../domain/validation";

/** The kinds of recipe step, in the order the docs present them. */
export const RECIPE_STEP_KINDS = ["set", "pulse", "wait", "waitUntil", "ramp", "loop", "call"] as const;

/** A recipe step kind: the single key of a step object (`{ pulse: { ... } }` is a `pulse` step). */
export type RecipeStepKind = (typeof RECIPE_STEP_KINDS)[number];

/** The comparison operators of a `waitUntil` condition. */
export const CONDITION_OPERATORS = ["<", "<=", ">", ">=", "==", "!="] as const satisfies readonly ConditionOperator[];

/** A `waitUntil` comparison operator. */
export type ConditionOperator = "<" | "<=" | ">" | ">=" | "==" | "!=";

/** What a `waitUntil` step does when its condition does not hold within `timeoutMs`. */
export const TIMEOUT_ACTIONS = ["fail", "continue", "abort"] as const satisfies readonly TimeoutAction[];

/** `fail`: the process fails; `continue`: go on with the next step; `abort`: abort the process (safe state). */
export type TimeoutAction = "fail" | "continue" | "abort";

/** The value of a recipe parameter. */
export type ParameterValue = number | boolean | string;

/** A reference to a recipe parameter, usable wherever a value, duration or loop count is expected. */
export interface ParameterRef {
  /** The parameter's name, as declared in the recipe's `parameters`. */
  readonly param: string;
}

/** A literal value or a parameter reference. */
export type RecipeValue = ParameterValue | ParameterRef;

/** A number (milliseconds, counts, ramp endpoints) or a parameter reference. */
export type RecipeNumber = number | ParameterRef;

/** @internal the pattern of a parameter name. */
export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** @internal the message when a parameter name breaks {@link IDENTIFIER}. */
export const PARAMETER_NAME_MESSAGE = "a parameter name is letters, digits and _, not starting with a digit";

/**
 * Names no parameter may have: they are special on JavaScript objects, so a lookup by such a
 * name could reach an object's prototype instead of the parameter.
 */
export const RESERVED_PARAMETER_NAMES: readonly string[] = Object.freeze(["__proto__", "constructor", "prototype"]);

/** @internal zod schema of a parameter name: {@link IDENTIFIER}, not one of {@link RESERVED_PARAMETER_NAMES}. */
export const parameterNameSchema = z
  .string()
  .regex(IDENTIFIER, PARAMETER_NAME_MESSAGE)
  .refine((name) => !RESERVED_PARAMETER_NAMES.includes(name), {
    message: `a parameter cannot be named ${RESERVED_PARAMETER_NAMES.join(", ")} (reserved)`,
  });
const RECIPE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$/;

/** @internal zod schema of a parameter reference `{ param: "name" }`. */
export const parameterRefSchema = z.object({ param: parameterNameSchema }).strict();

const literalSchema = z.union([z.number(), z.boolean(), z.string()]);

const valueSchema = z.union([z.number(), z.boolean(), z.string(), parameterRefSchema], {
  error: "must be a number, boolean, string or { param: name }",
});

const numberOrRef = (number: z.ZodNumber, what: string) =>
  z.union([number, parameterRefSchema], { error: `must be ${what} or { param: name }` });

const durationSchema = numberOrRef(z.number().nonnegative(), "a duration in ms (>= 0)");
const anyNumberSchema = numberOrRef(z.number(), "a number");
const countSchema = numberOrRef(z.number().int().positive(), "a positive integer");
const tagNameSchema = z.string().min(1, "a tag name cannot be empty");

/** @internal zod schema of one parameter declaration ({@link ParameterDefinition}). */
export const parameterDefinitionSchema = z
  .object({
    type: z.enum(["number", "boolean", "string"]),
    default: literalSchema,
    min: z.number().optional(),
    max: z.number().optional(),
    unit: z.string().optional(),
    description: z.string().optional(),
  })
  .strict()
  .superRefine((definition, context) => {
    if (typeof definition.default !== definition.type) {
      context.addIssue({
        code: "custom",
        path: ["default"],
        message: `the default must be a ${definition.type}, got ${typeof definition.default}`,
      });
    }
    if (definition.type !== "number" && (definition.min !== undefined || definition.max !== undefined)) {
      context.addIssue({ code: "custom", path: ["type"], message: "only number parameters can have min or max" });
    }
    if (definition.min !== undefined && definition.max !== undefined && definition.min > definition.max) {
      context.addIssue({ code: "custom", path: ["min"], message: "min must not exceed max" });
    }
    const problem = checkParameterValue(definition, definition.default);
    if (problem !== undefined && typeof definition.default === definition.type) {
      context.addIssue({ code: "custom", path: ["default"], message: problem });
    }
  });

/**
 * A recipe parameter declaration. {@link parseRecipe} throws `KilnValidationError`
 * (`KILN_VALIDATION`) naming e.g. `parameters.cycles.default` when the default does not have
 * the declared type or lies outside `min`..`max`.
 */
export interface ParameterDefinition {
  /** The value's type; a value passed at start must have it. */
  readonly type: "number" | "boolean" | "string";
  /** The value used when a start passes none; of `type`, within `min`..`max`. */
  readonly default: ParameterValue;
  /** Lowest accepted value (number parameters only), in `unit`. */
  readonly min?: number | undefined;
  /** Highest accepted value (number parameters only), in `unit`; not below `min`. */
  readonly max?: number | undefined;
  /** Engineering unit of the value, e.g. `"ms"` or `"degC"` (free text). */
  readonly unit?: string | undefined;
  /** Free text for operators. */
  readonly description?: string | undefined;
}

/** @internal zod schema of the body of a `set` step. */
export const setStepBodySchema = z.object({ tag: tagNameSchema, value: valueSchema }).strict();

/** @internal zod schema of the body of a `pulse` step. */
export const pulseStepBodySchema = z
  .object({
    tag: tagNameSchema,
    durationMs: durationSchema,
    on: valueSchema.default(true),
    off: valueSchema.default(false),
  })
  .strict();

/** @internal zod schema of the body of a `wait` step. */
export const waitStepBodySchema = z.object({ durationMs: durationSchema }).strict();

/** @internal zod schema of a `waitUntil` condition: `tag op value`. */
export const conditionSchema = z
  .object({ tag: tagNameSchema, op: z.enum(CONDITION_OPERATORS), value: valueSchema })
  .strict();

/** @internal zod schema of the body of a `waitUntil` step. */
export const waitUntilStepBodySchema = z
  .object({
    condition: conditionSchema,
    timeoutMs: durationSchema,
    onTimeout: z.enum(TIMEOUT_ACTIONS).default("fail"),
  })
  .strict();

/** @internal zod schema of the body of a `ramp` step. */
export const rampStepBodySchema = z
  .object({
    tag: tagNameSchema,
    from: anyNumberSchema,
    to: anyNumberSchema,
    durationMs: durationSchema,
    steps: z.number().int().positive(),
  })
  .strict();

/** Highest recipe version: a PostgreSQL `integer` (2^31 - 1), so every store holds every version alike. */
export const RECIPE_VERSION_MAX = 2_147_483_647;

/** Longest recipe name: it is a command's audited target (see `NAME_MAX_LENGTH`). */
const RECIPE_NAME_MAX_LENGTH = 256;

const recipeNameSchema = z
  .string()
  .max(RECIPE_NAME_MAX_LENGTH, `a recipe name is at most ${RECIPE_NAME_MAX_LENGTH} characters`)
  .regex(RECIPE_NAME, "a recipe name is letters, digits and _ . - /");

const recipeVersionSchema = z
  .number()
  .int()
  .positive()
  .max(RECIPE_VERSION_MAX, `a recipe version is at most ${RECIPE_VERSION_MAX}`);

/** @internal zod schema of the body of a `call` step. */
export const callStepBodySchema = z
  .object({
    recipe: recipeNameSchema,
    version: recipeVersionSchema,
    parameters: z.record(parameterNameSchema, valueSchema).optional(),
  })
  .strict();

/**
 * @internal zod schema of a `loop` body with its steps left unchecked: recipe validation walks the
 * steps itself so that one bad step does not hide the problems of the others.
 */
export const loopStepHeadSchema = z
  .object({ count: countSchema, steps: z.array(z.unknown()).min(1, "a loop needs at least one step") })
  .strict();

/** A `waitUntil` condition: `tag op value`, e.g. `{ tag: "chamber.pressure", op: "<", value: 0.5 }`. */
export interface RecipeCondition {
  /** The tag whose current value is compared; only a good-quality sample can satisfy the condition. */
  readonly tag: string;
  /** The comparison operator. */
  readonly op: ConditionOperator;
  /** The value the tag's value is compared with. */
  readonly value: RecipeValue;
}

/**
 * One recipe step: an object with exactly one key, the step's kind (`set`, `pulse`, `wait`,
 * `waitUntil`, `ramp`, `loop`, `call`). A host narrows with `"set" in step`; one kind is
 * `Extract<RecipeStep, { set: unknown }>`.
 */
export type RecipeStep =
  /** `{ set: { tag, value } }`: writes `value` to `tag`. */
  | {
      /** The tag to write and the value to write to it. */
      readonly set: { readonly tag: string; readonly value: RecipeValue };
    }
  /** `{ pulse: { tag, durationMs, on?, off? } }`: writes `on` (default true), waits, writes `off` (default false). */
  | {
      /** The tag, how long it stays `on` (ms), and the `on` and `off` values (default `true` and `false`). */
      readonly pulse: {
        readonly tag: string;
        readonly durationMs: RecipeNumber;
        readonly on: RecipeValue;
        readonly off: RecipeValue;
      };
    }
  /** `{ wait: { durationMs } }`: waits. */
  | {
      /** How long to wait, in ms. */
      readonly wait: { readonly durationMs: RecipeNumber };
    }
  /** `{ waitUntil: { condition, timeoutMs, onTimeout? } }`: waits for a condition on a tag. */
  | {
      /** The condition, its `timeoutMs` (ms), and what to do on timeout (`onTimeout`, default `fail`). */
      readonly waitUntil: {
        readonly condition: RecipeCondition;
        readonly timeoutMs: RecipeNumber;
        readonly onTimeout: TimeoutAction;
      };
    }
  /** `{ ramp: { tag, from, to, durationMs, steps } }`: writes `from`, then `steps` more values ending at `to`. */
  | {
      /** The tag, `from` and `to` values, total `durationMs`, and number of increments after `from` (`steps`). */
      readonly ramp: {
        readonly tag: string;
        readonly from: RecipeNumber;
        readonly to: RecipeNumber;
        readonly durationMs: RecipeNumber;
        readonly steps: number;
      };
    }
  /** `{ loop: { count, steps } }`: runs `steps` `count` times. */
  | {
      /** How many times to run (a positive integer) and the steps to repeat. */
      readonly loop: { readonly count: RecipeNumber; readonly steps: readonly RecipeStep[] };
    }
  /** `{ call: { recipe, version, parameters? } }`: runs another saved recipe version inline. */
  | {
      /** The saved recipe's name and version, and the parameter values passed to it. */
      readonly call: {
        readonly recipe: string;
        readonly version: number;
        readonly parameters?: Readonly<Record<string, RecipeValue>>;
      };
    };

// The kinds by name, for the runners and the planner (ADR 0027: the public surface names the unions).
export type SetStep = Extract<RecipeStep, { readonly set: unknown }>;
export type PulseStep = Extract<RecipeStep, { readonly pulse: unknown }>;
export type WaitStep = Extract<RecipeStep, { readonly wait: unknown }>;
export type WaitUntilStep = Extract<RecipeStep, { readonly waitUntil: unknown }>;
export type RampStep = Extract<RecipeStep, { readonly ramp: unknown }>;
export type LoopStep = Extract<RecipeStep, { readonly loop: unknown }>;
export type CallStep = Extract<RecipeStep, { readonly call: unknown }>;

/**
 * A recipe step as a user writes it (defaults such as `pulse.on` may be left out). One kind is
 * `Extract<RecipeStepInput, { pulse: unknown }>`.
 */
export type RecipeStepInput =
  | Extract<RecipeStep, { readonly set: unknown }>
  /** A `pulse` step as a user writes it: `on` and `off` may be left out. */
  | {
      /** The tag, how long it stays `on` (ms, >= 0), and the `on` (@default `true`) and `off` (@default `false`) values. */
      readonly pulse: {
        readonly tag: string;
        readonly durationMs: RecipeNumber;
        readonly on?: RecipeValue | undefined;
        readonly off?: RecipeValue | undefined;
      };
    }
  | Extract<RecipeStep, { readonly wait: unknown }>
  /** A `waitUntil` step as a user writes it: `onTimeout` may be left out. */
  | {
      /** The condition, its `timeoutMs` (ms, >= 0), and what to do on timeout (`onTimeout`, @default `fail`). */
      readonly waitUntil: {
        readonly condition: RecipeCondition;
        readonly timeoutMs: RecipeNumber;
        readonly onTimeout?: TimeoutAction | undefined;
      };
    }
  | Extract<RecipeStep, { readonly ramp: unknown }>
  | { readonly loop: { readonly count: RecipeNumber; readonly steps: readonly RecipeStepInput[] } }
  | {
      readonly call: {
        recipe: string;
        version: number;
        parameters?: Readonly<Record<string, RecipeValue>>;
      };
    };

/** A `pulse` step as a user writes it, for this module. */
export type PulseStepInput = Extract<RecipeStepInput, { readonly pulse: unknown }>;
/** A `waitUntil` step as a user writes it, for this module. */
export type WaitUntilStepInput = Extract<RecipeStepInput, { readonly waitUntil: unknown }>;

const bodySchemas = {
  set: setStepBodySchema,
  pulse: pulseStepBodySchema,
  wait: waitStepBodySchema,
  waitUntil: waitUntilStepBodySchema,
  ramp: rampStepBodySchema,
  loop: z.lazy(() => loopStepBodySchema),
  call: callStepBodySchema,
};

/**
 * @internal zod schema of one recipe step (recursive through `loop`). A step is an object with exactly
 * one key naming its kind, so error paths read `steps[3].loop.steps[1].pulse.tag`.
 */
export const recipeStepSchema: z.ZodType<RecipeStep, RecipeStepInput> = z.lazy(
  () =>
    z
      .object({
        set: bodySchemas.set.optional(),
        pulse: bodySchemas.pulse.optional(),
        wait: bodySchemas.wait.optional(),
        waitUntil: bodySchemas.waitUntil.optional(),
        ramp: bodySchemas.ramp.optional(),
        loop: bodySchemas.loop.optional(),
        call: bodySchemas.call.optional(),
      })
      .strict()
      .superRefine((step, context) => {
        const kinds = Object.keys(step);
        if (kinds.length !== 1) context.addIssue({ code: "custom", path: [], message: stepKindMessage(kinds) });
      }) as unknown as z.ZodType<RecipeStep, RecipeStepInput>,
);

const loopStepBodySchema = z
  .object({ count: countSchema, steps: z.array(recipeStepSchema).min(1, "a loop needs at least one step") })
  .strict();

/** @internal zod schema of a recipe definition (see {@link Recipe}). */
export const recipeSchema = z
  .object({
    name: recipeNameSchema,
    version: recipeVersionSchema,
    description: z.string().default(""),
    parameters: z.record(parameterNameSchema, parameterDefinitionSchema).default({}),
    steps: z.array(recipeStepSchema).min(1, "a recipe needs at least one step"),
  })
  .strict();

/**
 * A recipe: named, versioned data. Values, durations, loop counts and ramp endpoints may be
 * literals or `{ param: "name" }` references to the recipe's parameters.
 *
 * @example
 * const ald: RecipeInput = {
 *   name: "ald-al2o3",
 *   version: 1,
 *   parameters: { cycles: { type: "number", default: 200, min: 1, max: 5000 } },
 *   steps: [
 *     { loop: { count: { param: "cycles" }, steps: [
 *       { pulse: { tag: "valve.tma", durationMs: 20 } },
 *       { wait: { durationMs: 50 } },
 *     ] } },
 *   ],
 * };
 */
export interface Recipe {
  /** Letters, digits and `_ . - /`, at most 256 characters, e.g. `"ald-al2o3"`. */
  readonly name: string;
  /** A positive integer, at most 2^31 - 1; a saved version is immutable. */
  readonly version: number;
  /** Free text. */
  readonly description: string;
  /** The parameters by name (letters, digits, `_`; not `__proto__`, `constructor`, `prototype`). */
  readonly parameters: Readonly<Record<string, ParameterDefinition>>;
  /** The steps, in order; at least one. */
  readonly steps: readonly RecipeStep[];
}

/**
 * A recipe as a user writes it: defaults (`description`, `parameters`, `pulse.on/off`,
 * `onTimeout`) may be left out. {@link parseRecipe} checks it and throws `KilnValidationError`
 * (`KILN_VALIDATION`) naming every bad field, e.g. `steps[2].pulse.durationMs`.
 */
export interface RecipeInput {
  /** Letters, digits and `_ . - /`, at most 256 characters. */
  readonly name: string;
  /** A positive integer, at most 2^31 - 1. */
  readonly version: number;
  /** Free text. @default `""` */
  readonly description?: string | undefined;
  /** The parameters by name. @default `{}` */
  readonly parameters?: Readonly<Record<string, ParameterDefinition>> | undefined;
  /** The steps, in order; at least one. */
  readonly steps: readonly RecipeStepInput[];
}

/**
 * Checks a recipe's structure (no catalog needed) and returns it with defaults applied. Use
 * `validateRecipe` to also check it against a tag catalog before running it.
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) naming every bad field, e.g. `steps[2].pulse.durationMs`.
 */
export function parseRecipe(input: unknown): Recipe {
  return parseOrThrow(recipeSchema, input, "recipe");
}

/**
 * The {@link StoredRecipe} to save for `recipe` (structure checked first). Saved versions are
 * immutable: save a changed recipe under a new version.
 *
 * @throws KilnValidationError (`KILN_VALIDATION`) when the recipe is malformed.
 */
export function storedRecipeOf(recipe: RecipeInput, savedAt: number): StoredRecipe {
  const parsed = parseRecipe(recipe);
  return {
    name: parsed.name,
    version: parsed.version,
    definition: JSON.parse(JSON.stringify(parsed)) as Record<string, unknown>,
    savedAt,
  };
}

/** The kind of `step` (its single key). */
export function stepKindOf(step: RecipeStep): RecipeStepKind {
  return Object.keys(step)[0] as RecipeStepKind;
}

/** True when `value` is a `{ param }` reference. */
export function isParameterRef(value: unknown): value is ParameterRef {
  return typeof value === "object" && value !== null && typeof (value as { param?: unknown }).param === "string";
}

/**
 * Checks `value` against a parameter declaration (type and range). Returns the problem in
 * words, or undefined when the value is acceptable.
 */
export function checkParameterValue(definition: ParameterDefinition, value: unknown): string | undefined {
  if (typeof value !== definition.type) return `expected a ${definition.type}, got ${typeof value}`;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return "expected a finite number";
    if (definition.min !== undefined && value < definition.min)
      return `${value} is below the minimum ${definition.min}`;
    if (definition.max !== undefined && value > definition.max)
      return `${value} is above the maximum ${definition.max}`;
  }
  return undefined;
}

/** @internal the message for a step object without exactly one kind key. */
export function stepKindMessage(kinds: readonly string[]): string {
  const expected = RECIPE_STEP_KINDS.join(", ");
  return kinds.length === 0
    ? `a step must have exactly one of: ${expected}`
    : `a step must have exactly one kind, found ${kinds.join(", ")}`;
}
