import { z } from "zod";
import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import { checkTagValue, type Tag, type TagCatalog } from "../domain/tags";
import { formatPath } from "../domain/validation";
import type { RecipeRepository } from "@kiln/core/driver-kit";
import { planRecipe, recipeKey, writeSetOf, type RecipePlan } from "./recipe-plan";
import {
  RECIPE_STEP_KINDS,
  callStepBodySchema,
  loopStepHeadSchema,
  pulseStepBodySchema,
  rampStepBodySchema,
  setStepBodySchema,
  waitStepBodySchema,
  waitUntilStepBodySchema,
  checkParameterValue,
  isParameterRef,
  parameterDefinitionSchema,
  parameterNameSchema,
  RESERVED_PARAMETER_NAMES,
  recipeSchema,
  stepKindMessage,
  type CallStep,
  type ParameterDefinition,
  type ParameterValue,
  type PulseStep,
  type RampStep,
  type Recipe,
  type RecipeStepKind,
  type RecipeValue,
  type SetStep,
  type WaitUntilStep,
} from "./recipe-schema";

/**
 * Finds a saved recipe version for a `call` step: resolves with its definition (as saved), or
 * undefined when there is no such version.
 */
export type RecipeResolver = (name: string, version: number) => Promise<unknown>;

/** A {@link RecipeResolver} reading the definitions saved in a {@link RecipeRepository}. */
export function recipeResolver(repository: Pick<RecipeRepository, "get">): RecipeResolver {
  return async (name, version) => (await repository.get(name, version))?.definition;
}

/** Bounds that keep a recipe finite and its run predictable. */
export interface RecipeLimits {
  /** Largest loop count accepted. @default 100000 */
  readonly maxLoopCount: number;
  /** Largest number of steps a run may execute, with loops and calls expanded. @default 1000000 */
  readonly maxExpandedSteps: number;
  /** Largest number of increments of a `ramp`. @default 10000 */
  readonly maxRampSteps: number;
}

/** The default {@link RecipeLimits}. */
export const DEFAULT_RECIPE_LIMITS: RecipeLimits = Object.freeze({
  maxLoopCount: 100_000,
  maxExpandedSteps: 1_000_000,
  maxRampSteps: 10_000,
});

/** Options of {@link validateRecipe}. */
export interface RecipeValidationOptions {
  /** The machine's tags: every tag a step names must be in it. */
  readonly catalog: TagCatalog;
  /** Finds the recipes named by `call` steps. Without it, any `call` step is a problem. */
  readonly resolveRecipe?: RecipeResolver;
  /** Parameter values for this run; the recipe's defaults fill the rest. */
  readonly parameters?: Readonly<Record<string, unknown>>;
  /** Overrides of {@link DEFAULT_RECIPE_LIMITS}. */
  readonly limits?: Partial<RecipeLimits>;
}

/**
 * Checks a recipe before it runs, against the machine's tag catalog, and reports every
 * problem at once with its path (`steps[3].loop.steps[1].pulse.tag`):
 *
 * - the structure (step kinds, field types, durations >= 0, counts >= 1, parameter declarations
 *   whose defaults fit their type and range);
 * - every tag exists; every tag written by `set`, `pulse` or `ramp` is writable (`readwrite`);
 * - every value written (set value, pulse on/off, ramp endpoints) fits the tag's type and range;
 *   a `waitUntil` value has the tag's type and its operator suits it (`<` needs a number);
 * - every `{ param }` reference names a declared parameter whose value suits its use, and the
 *   values given for the run are declared and fit their declarations;
 * - loop counts are between 1 and `limits.maxLoopCount`, ramps have at most
 *   `limits.maxRampSteps` increments, and the whole run expands to at most
 *   `limits.maxExpandedSteps` steps;
 * - every `call` resolves, without cycles, and the called recipe passes the same checks (its
 *   problems are reported under the call's path: `steps[4].call.steps[1].pulse.tag`).
 *
 * A step whose structure is wrong is reported and skipped; the other steps are still checked.
 *
 * @returns the {@link RecipePlan} to run: its steps tagged by kind, callees resolved, and its write set.
 * @throws KilnValidationError (`KILN_VALIDATION`) listing every problem, in document order.
 */
export async function validateRecipe(input: unknown, options: RecipeValidationOptions): Promise<RecipePlan> {
  const limits = checkLimits({ ...DEFAULT_RECIPE_LIMITS, ...options.limits });
  const validation = new RecipeValidation(options, limits);
  const root = await validation.document(input, {
    prefix: "",
    overrides: options.parameters ?? {},
    overridesPath: "parameters",
    stack: [],
  });
  if (root.count > limits.maxExpandedSteps) {
    validation.issue(
      "steps",
      `the run expands to ${root.count} steps, more than the limit of ${limits.maxExpandedSteps} (limits.maxExpandedSteps)`,
    );
  }
  if (validation.issues.length > 0 || root.recipe === undefined) {
    throw new KilnValidationError("recipe", validation.issues);
  }
  const planned = planRecipe(root.recipe, validation.calls);
  return {
    ...planned,
    parameters: root.values,
    calls: validation.calls,
    expandedSteps: root.count,
    writeSet: writeSetOf(planned.steps),
  };
}

function checkLimits(limits: RecipeLimits): RecipeLimits {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`limits.${name} must be a positive integer`);
  }
  return limits;
}

interface DocumentContext {
  /** Path prefix of this document's fields (`""` for the root, `steps[4].call.` for a callee). */
  readonly prefix: string;
  /** Parameter values given by the caller (run options or the call step). */
  readonly overrides: Readonly<Record<string, unknown>>;
  /** Where the overrides sit, for messages (`parameters`, `steps[4].call.parameters`). */
  readonly overridesPath: string;
  /** Keys of the recipes being validated, outermost first, to detect call cycles. */
  readonly stack: readonly string[];
  /** The key the document was resolved under (for callees), checked against its name and version. */
  readonly expectedKey?: string;
}

interface Scope {
  readonly values: Readonly<Record<string, ParameterValue>>;
  /** Every declared parameter name, including those whose declaration is invalid. */
  readonly declared: ReadonlySet<string>;
  readonly stack: readonly string[];
}

type ValueUse = "value" | "number" | "duration" | "count";

const documentHeadSchema = recipeSchema.extend({
  parameters: z.record(z.string(), z.unknown()).default({}),
  steps: z.array(z.unknown()).min(1, "a recipe needs at least one step"),
});

class RecipeValidation {
  readonly issues: ValidationIssue[] = [];
  readonly calls = new Map<string, Recipe>();
  readonly #options: RecipeValidationOptions;
  readonly #limits: RecipeLimits;
  readonly #fetched = new Map<string, Promise<unknown>>();

  constructor(options: RecipeValidationOptions, limits: RecipeLimits) {
    this.#options = options;
    this.#limits = limits;
  }

  issue(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  async document(
    raw: unknown,
    context: DocumentContext,
  ): Promise<{ recipe: Recipe | undefined; values: Record<string, ParameterValue>; count: number }> {
    const before = this.issues.length;
    const head = documentHeadSchema.safeParse(raw);
    if (!head.success) this.#zodIssues(head.error, context.prefix);
    const object = isPlainObject(raw) ? raw : {};

    const rawParameters = isPlainObject(object.parameters) ? object.parameters : {};
    const definitions = new Map<string, ParameterDefinition>();
    for (const [name, definition] of Object.entries(rawParameters)) {
      // Checked here, not by the head schema: zod drops a "__proto__" key before checking it.
      const named = parameterNameSchema.safeParse(name);
      if (!named.success) {
        this.#zodIssues(named.error, `${context.prefix}parameters.${name}`);
        continue;
      }
      const parsed = parameterDefinitionSchema.safeParse(definition);
      if (parsed.success) definitions.set(name, parsed.data);
      else this.#zodIssues(parsed.error, `${context.prefix}parameters.${name}`);
    }
    const values = this.#parameterValues(definitions, new Set(Object.keys(rawParameters)), context);

    if (context.expectedKey !== undefined && head.success) {
      const actual = recipeKey(head.data.name, head.data.version);
      if (actual !== context.expectedKey) {
        this.issue(`${context.prefix}name`, `the recipe resolved for ${context.expectedKey} is ${actual}`);
      }
    }
    const key = head.success ? recipeKey(head.data.name, head.data.version) : (context.expectedKey ?? "(recipe)");
    const scope: Scope = { values, declared: new Set(Object.keys(rawParameters)), stack: [...context.stack, key] };
    const steps = Array.isArray(object.steps) ? object.steps : [];
    const count = await this.#steps(steps, `${context.prefix}steps`, scope);

    let recipe: Recipe | undefined;
    if (this.issues.length === before) {
      const parsed = recipeSchema.safeParse(raw);
      if (parsed.success) recipe = parsed.data;
      else this.#zodIssues(parsed.error, context.prefix);
    }
    return { recipe, values, count };
  }

  #parameterValues(
    definitions: ReadonlyMap<string, ParameterDefinition>,
    declared: ReadonlySet<string>,
    context: DocumentContext,
  ): Record<string, ParameterValue> {
    const values = nullPrototype<ParameterValue>();
    for (const [name, definition] of definitions) values[name] = definition.default;
    for (const [name, value] of Object.entries(context.overrides)) {
      const path = `${context.overridesPath}.${name}`;
      const definition = definitions.get(name);
      if (definition === undefined) {
        if (!declared.has(name)) this.issue(path, `unknown parameter "${name}"${declaredList(declared)}`);
        continue;
      }
      const problem = checkParameterValue(definition, value);
      if (problem !== undefined) this.issue(path, problem);
      else values[name] = value as ParameterValue;
    }
    return values;
  }

  async #steps(steps: readonly unknown[], path: string, scope: Scope): Promise<number> {
    let total = 0;
    for (const [index, step] of steps.entries()) total += await this.#step(step, `${path}[${index}]`, scope);
    return total;
  }

  async #step(raw: unknown, path: string, scope: Scope): Promise<number> {
    if (!isPlainObject(raw)) {
      this.issue(path, stepKindMessage([]));
      return 0;
    }
    const keys = Object.keys(raw);
    const kinds = keys.filter((key): key is RecipeStepKind => (RECIPE_STEP_KINDS as readonly string[]).includes(key));
    for (const key of keys) if (!kinds.includes(key as RecipeStepKind)) this.issue(path, `Unrecognized key: "${key}"`);
    if (kinds.length !== 1) {
      this.issue(path, stepKindMessage(kinds));
      return 0;
    }
    const kind = kinds[0]!;
    const bodyPath = `${path}.${kind}`;
    const body = raw[kind];
    switch (kind) {
      case "set":
        return this.#counted(setStepBodySchema, body, bodyPath, (data) => this.#set(data, bodyPath, scope));
      case "pulse":
        return this.#counted(pulseStepBodySchema, body, bodyPath, (data) => this.#pulse(data, bodyPath, scope));
      case "wait":
        return this.#counted(waitStepBodySchema, body, bodyPath, (data) =>
          this.#resolve(data.durationMs, `${bodyPath}.durationMs`, scope, "duration"),
        );
      case "waitUntil":
        return this.#counted(waitUntilStepBodySchema, body, bodyPath, (data) => this.#waitUntil(data, bodyPath, scope));
      case "ramp":
        return this.#counted(rampStepBodySchema, body, bodyPath, (data) => this.#ramp(data, bodyPath, scope));
      case "loop":
        return this.#loop(body, this.#parsed(loopStepHeadSchema, body, bodyPath) !== undefined, bodyPath, scope);
      case "call": {
        const data = this.#parsed(callStepBodySchema, body, bodyPath);
        // zod drops a "__proto__" key of a record before checking it: check the names given to a call here.
        if (isPlainObject(body) && isPlainObject(body.parameters)) {
          const reserved = Object.keys(body.parameters).find((name) => RESERVED_PARAMETER_NAMES.includes(name));
          if (reserved !== undefined) {
            this.#zodIssues(parameterNameSchema.safeParse(reserved).error!, `${bodyPath}.parameters.${reserved}`);
            return 0;
          }
        }
        return data === undefined ? 0 : this.#call(data, bodyPath, scope);
      }
    }
  }

  /** Parses a step body, reporting its problems under `path`; undefined when it is malformed. */
  #parsed<TSchema extends z.ZodType>(schema: TSchema, raw: unknown, path: string): z.output<TSchema> | undefined {
    const parsed = schema.safeParse(raw);
    if (parsed.success) return parsed.data;
    this.#zodIssues(parsed.error, path);
    return undefined;
  }

  /** Parses and checks a leaf step body: it counts 1 step when well formed, 0 otherwise. */
  #counted<TSchema extends z.ZodType>(
    schema: TSchema,
    raw: unknown,
    path: string,
    check: (body: z.output<TSchema>) => unknown,
  ): number {
    const body = this.#parsed(schema, raw, path);
    if (body === undefined) return 0;
    check(body);
    return 1;
  }

  #set(body: SetStep["set"], path: string, scope: Scope): void {
    const tag = this.#tag(body.tag, `${path}.tag`, true);
    this.#written(tag, body.value, `${path}.value`, scope);
  }

  #pulse(body: PulseStep["pulse"], path: string, scope: Scope): void {
    const tag = this.#tag(body.tag, `${path}.tag`, true);
    this.#resolve(body.durationMs, `${path}.durationMs`, scope, "duration");
    this.#written(tag, body.on, `${path}.on`, scope);
    this.#written(tag, body.off, `${path}.off`, scope);
  }

  #waitUntil(body: WaitUntilStep["waitUntil"], path: string, scope: Scope): void {
    const conditionPath = `${path}.condition`;
    const tag = this.#tag(body.condition.tag, `${conditionPath}.tag`, false);
    const value = this.#resolve(body.condition.value, `${conditionPath}.value`, scope, "value");
    this.#resolve(body.timeoutMs, `${path}.timeoutMs`, scope, "duration");
    if (tag === undefined || value === undefined) return;
    if (tag.arrayLength !== undefined) {
      // A comparison with "an array" has no single meaning (ADR 0038): `[1] < 2` would hold in JavaScript.
      this.issue(`${conditionPath}.tag`, `"${tag.name}" is an array tag: wait on an element through a scalar tag`);
      return;
    }
    const expected = tag.dataType === "bool" ? "boolean" : tag.dataType === "string" ? "string" : "number";
    if (typeof value !== expected) {
      this.issue(
        `${conditionPath}.value`,
        `${describeSource(body.condition.value)}tag "${tag.name}" is ${tag.dataType}: expected a ${expected}, got ${typeof value}`,
      );
    } else if (expected !== "number" && body.condition.op !== "==" && body.condition.op !== "!=") {
      this.issue(`${conditionPath}.op`, `a ${tag.dataType} tag can only be compared with == or !=`);
    }
  }

  #ramp(body: RampStep["ramp"], path: string, scope: Scope): void {
    const tag = this.#tag(body.tag, `${path}.tag`, true);
    if (tag !== undefined && (tag.dataType === "bool" || tag.dataType === "string")) {
      this.issue(`${path}.tag`, `a ramp needs a numeric tag; "${tag.name}" is ${tag.dataType}`);
    }
    const numeric = tag !== undefined && tag.dataType !== "bool" && tag.dataType !== "string" ? tag : undefined;
    this.#written(numeric, body.from, `${path}.from`, scope, "number");
    this.#written(numeric, body.to, `${path}.to`, scope, "number");
    this.#resolve(body.durationMs, `${path}.durationMs`, scope, "duration");
    if (body.steps > this.#limits.maxRampSteps) {
      this.issue(
        `${path}.steps`,
        `${body.steps} exceeds the limit of ${this.#limits.maxRampSteps} (limits.maxRampSteps)`,
      );
    }
  }

  async #loop(raw: unknown, headValid: boolean, path: string, scope: Scope): Promise<number> {
    let count = 1;
    const body = isPlainObject(raw) ? raw : {};
    if (headValid) {
      const resolved = this.#resolve(body.count as RecipeValue, `${path}.count`, scope, "count");
      if (typeof resolved === "number") {
        if (resolved > this.#limits.maxLoopCount) {
          this.issue(
            `${path}.count`,
            `${describeSource(body.count as RecipeValue)}${resolved} exceeds the limit of ${this.#limits.maxLoopCount} (limits.maxLoopCount)`,
          );
        }
        count = resolved;
      }
    }
    const steps = Array.isArray(body.steps) ? body.steps : [];
    return count * (await this.#steps(steps, `${path}.steps`, scope));
  }

  async #call(body: CallStep["call"], path: string, scope: Scope): Promise<number> {
    const key = recipeKey(body.recipe, body.version);
    if (scope.stack.includes(key)) {
      this.issue(path, `call cycle: ${[...scope.stack, key].join(" → ")}`);
      return 0;
    }
    const overrides = nullPrototype<unknown>();
    for (const [name, value] of Object.entries(body.parameters ?? {})) {
      const resolved = this.#resolve(value, `${path}.parameters.${name}`, scope, "value");
      if (resolved !== undefined) overrides[name] = resolved;
    }
    const resolver = this.#options.resolveRecipe;
    if (resolver === undefined) {
      this.issue(`${path}.recipe`, "call steps need a recipe resolver (options.resolveRecipe)");
      return 0;
    }
    let fetched = this.#fetched.get(key);
    if (fetched === undefined) {
      fetched = resolver(body.recipe, body.version);
      this.#fetched.set(key, fetched);
    }
    const definition = await fetched;
    if (definition === undefined || definition === null) {
      this.issue(`${path}.recipe`, `recipe "${body.recipe}" version ${body.version} not found`);
      return 0;
    }
    const callee = await this.document(definition, {
      prefix: `${path}.`,
      overrides,
      overridesPath: `${path}.parameters`,
      stack: scope.stack,
      expectedKey: key,
    });
    if (callee.recipe !== undefined) this.calls.set(key, callee.recipe);
    return callee.count;
  }

  /** The tag named `name`, reporting when it is unknown or (for `writable`) read-only. */
  #tag(name: string, path: string, writable: boolean): Tag | undefined {
    const tag = this.#options.catalog.find(name);
    if (tag === undefined) {
      this.issue(path, `unknown tag "${name}"`);
      return undefined;
    }
    if (writable && tag.access !== "readwrite") this.issue(path, `tag "${name}" is read-only`);
    return tag;
  }

  /** Resolves a value written to `tag` and checks that it fits the tag. */
  #written(tag: Tag | undefined, value: RecipeValue, path: string, scope: Scope, use: ValueUse = "value"): void {
    const resolved = this.#resolve(value, path, scope, use);
    if (tag === undefined || resolved === undefined) return;
    const problem = checkTagValue(tag, resolved);
    if (problem !== undefined) this.issue(path, `${describeSource(value)}${problem} for tag "${tag.name}"`);
  }

  /** Resolves a literal or `{ param }` reference, checking a referenced value suits `use`. */
  #resolve(value: RecipeValue, path: string, scope: Scope, use: ValueUse): ParameterValue | undefined {
    if (!isParameterRef(value)) return value;
    const name = value.param;
    if (!Object.hasOwn(scope.values, name)) {
      if (!scope.declared.has(name))
        this.issue(`${path}.param`, `unknown parameter "${name}"${declaredList(scope.declared)}`);
      return undefined;
    }
    const resolved = scope.values[name]!;
    const problem = useProblem(resolved, use);
    if (problem !== undefined) {
      this.issue(path, `${describeSource(value)}${problem}`);
      return undefined;
    }
    return resolved;
  }

  #zodIssues(error: z.ZodError, prefix: string): void {
    for (const issue of error.issues) {
      this.issue(joinPath(prefix, formatPath(issue.path)), issue.message);
    }
  }
}

function useProblem(value: ParameterValue, use: ValueUse): string | undefined {
  switch (use) {
    case "value":
      return undefined;
    case "number":
      return typeof value === "number" ? undefined : `expected a number, got ${typeof value}`;
    case "duration":
      return typeof value === "number" && value >= 0 ? undefined : "a duration must be a number of ms >= 0";
    case "count":
      return typeof value === "number" && Number.isInteger(value) && value >= 1
        ? undefined
        : "a count must be a positive integer";
  }
}

function describeSource(value: RecipeValue): string {
  return isParameterRef(value) ? `parameter "${value.param}": ` : "";
}

function declaredList(declared: ReadonlySet<string>): string {
  return declared.size === 0 ? " (the recipe declares none)" : `; declared: ${[...declared].join(", ")}`;
}

/** Joins a path prefix (`steps[0].pulse`, `steps[4].call.`, or empty) and a zod sub-path. */
function joinPath(base: string, sub: string): string {
  const trimmed = base.endsWith(".") ? base.slice(0, -1) : base;
  if (sub === "") return trimmed;
  if (trimmed === "") return sub;
  return sub.startsWith("[") ? `${trimmed}${sub}` : `${trimmed}.${sub}`;
}

/** A record without a prototype: a caller-chosen key can never reach `Object.prototype`. */
function nullPrototype<TValue>(): Record<string, TValue> {
  return Object.create(null) as Record<string, TValue>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
