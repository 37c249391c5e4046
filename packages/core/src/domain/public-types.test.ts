/**
 * The public input and output types are written out by hand (with TSDoc) so the zod schemas stay
 * internal; this file keeps each one in lock-step with its schema. It is checked by `tsc`
 * (`npm run typecheck`): a field added, removed, made optional or retyped on either side fails
 * the build. The runtime test only makes vitest list the file.
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import type { z } from "zod";
import { alarmDefinitionSchema, type AlarmDefinitionInput } from "../alarms/alarm-definition";
import { signalSpecSchema, type SignalSpec } from "../memory/signals";
import {
  parameterDefinitionSchema,
  pulseStepBodySchema,
  recipeSchema,
  waitUntilStepBodySchema,
  type ParameterDefinition,
  type PulseStepInput,
  type Recipe,
  type RecipeInput,
  type WaitUntilStepInput,
} from "../recipes/recipe-schema";
import { loggingPolicySchema, tagDefinitionSchema, type LoggingPolicy, type Tag, type TagDefinitionInput } from "./tags";

/** Strips `readonly` at every depth (the written types are readonly, zod's are not); functions stay as they are. */
type Mutable<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly (infer TItem)[]
    ? Mutable<TItem>[]
    : T extends object
      ? { -readonly [TKey in keyof T]: Mutable<T[TKey]> }
      : T;

describe("public types written out from the schemas", () => {
  it("are checked at compile time", () => {
    expectTypeOf<Mutable<TagDefinitionInput>>().toEqualTypeOf<Mutable<z.input<typeof tagDefinitionSchema>>>();
    expectTypeOf<Mutable<Omit<Tag, "name">>>().toEqualTypeOf<Mutable<z.output<typeof tagDefinitionSchema>>>();
    expectTypeOf<Tag<"a.b">["name"]>().toEqualTypeOf<"a.b">();
    expectTypeOf<Mutable<LoggingPolicy>>().toEqualTypeOf<Mutable<z.output<typeof loggingPolicySchema>>>();
    expectTypeOf<Mutable<ParameterDefinition>>().toEqualTypeOf<Mutable<z.output<typeof parameterDefinitionSchema>>>();
    expectTypeOf<Mutable<PulseStepInput["pulse"]>>().toEqualTypeOf<Mutable<z.input<typeof pulseStepBodySchema>>>();
    expectTypeOf<Mutable<WaitUntilStepInput["waitUntil"]>>().toEqualTypeOf<
      Mutable<z.input<typeof waitUntilStepBodySchema>>
    >();
    expectTypeOf<Mutable<Recipe>>().toEqualTypeOf<Mutable<z.output<typeof recipeSchema>>>();
    expectTypeOf<Mutable<RecipeInput>>().toEqualTypeOf<Mutable<z.input<typeof recipeSchema>>>();
    expectTypeOf<Mutable<AlarmDefinitionInput>>().toEqualTypeOf<Mutable<z.input<typeof alarmDefinitionSchema>>>();
    expectTypeOf<Mutable<SignalSpec>>().toEqualTypeOf<Mutable<z.input<typeof signalSpecSchema>>>();
    expect(true).toBe(true);
  });
});
