/**
 * The public input and output types are written out by hand (with TSDoc) so the zod schemas stay
 * internal; this file keeps each one in lock-step with its schema. It is checked by `tsc`
 * (`npm run typecheck`): a field added, removed, made optional or retyped on either side fails
 * the build. The runtime test only makes vitest list the file.
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import type { z } from "zod";
import {
  type ALARM_KINDS,
  type NUMERIC_ALARM_KINDS,
  type alarmDefinitionSchema,
  type AlarmDefinitionInput,
  type AlarmKind,
  type NumericAlarmKind,
} from "../alarms/alarm-definition";
import { type signalSpecSchema, type SignalSpec } from "../memory/signals";
import {
  type parameterDefinitionSchema,
  type pulseStepBodySchema,
  type CONDITION_OPERATORS,
  type TIMEOUT_ACTIONS,
  type recipeSchema,
  type waitUntilStepBodySchema,
  type ConditionOperator,
  type TimeoutAction,
  type ParameterDefinition,
  type PulseStepInput,
  type Recipe,
  type RecipeInput,
  type WaitUntilStepInput,
} from "../recipes/recipe-schema";
import {
  type KILN_MACHINE_COMMANDS,
  KILN_MACHINE_STATES,
  type KilnMachineCommand,
  type KilnMachineState,
} from "../fsm/kiln-machine-model";
import { type PACKML_COMMANDS, type PACKML_STATES, type PackmlCommand, type PackmlState } from "../fsm/packml-model";
import { KILN_ERROR_CODES, type KilnErrorCode } from "./errors";
import {
  type TAG_DATA_TYPES,
  type loggingPolicySchema,
  type tagDefinitionSchema,
  type LoggingPolicy,
  type Tag,
  type TagDataType,
  type TagDefinitionInput,
} from "./tags";

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

describe("written-out unions and the lists that enumerate them", () => {
  it("are checked at compile time", () => {
    expectTypeOf<(typeof KILN_MACHINE_STATES)[number]>().toEqualTypeOf<KilnMachineState>();
    expectTypeOf<(typeof KILN_MACHINE_COMMANDS)[number]>().toEqualTypeOf<KilnMachineCommand>();
    expectTypeOf<(typeof PACKML_STATES)[number]>().toEqualTypeOf<PackmlState>();
    expectTypeOf<(typeof PACKML_COMMANDS)[number]>().toEqualTypeOf<PackmlCommand>();
    expect(new Set(KILN_MACHINE_STATES).size).toBe(KILN_MACHINE_STATES.length);
  });
});

describe("error codes, tag data types, alarm kinds and timeout actions", () => {
  it("list every member of their union, and nothing else", () => {
    expectTypeOf<(typeof KILN_ERROR_CODES)[number]>().toEqualTypeOf<KilnErrorCode>();
    expectTypeOf<(typeof TAG_DATA_TYPES)[number]>().toEqualTypeOf<TagDataType>();
    expectTypeOf<(typeof ALARM_KINDS)[number]>().toEqualTypeOf<AlarmKind>();
    expectTypeOf<(typeof NUMERIC_ALARM_KINDS)[number]>().toEqualTypeOf<NumericAlarmKind>();
    expectTypeOf<(typeof TIMEOUT_ACTIONS)[number]>().toEqualTypeOf<TimeoutAction>();
    expectTypeOf<(typeof CONDITION_OPERATORS)[number]>().toEqualTypeOf<ConditionOperator>();
    expect(new Set(KILN_ERROR_CODES).size).toBe(KILN_ERROR_CODES.length);
  });
});
