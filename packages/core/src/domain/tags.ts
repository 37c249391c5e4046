import { deepFreeze } from "./deep-freeze";
import { z } from "zod";
import { KilnError, KilnValidationError, type ValidationIssue } from "./errors";
import { issuesFromZod } from "./validation";

/** The data types a tag can carry. */
export const TAG_DATA_TYPES = [
  "bool",
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
  "float32",
  "float64",
  "string",
] as const satisfies readonly TagDataType[];
/** A tag's data type. */
export type TagDataType =
  "bool" | "int16" | "uint16" | "int32" | "uint32" | "int64" | "uint64" | "float32" | "float64" | "string";

/**
 * One scalar value as Kiln carries it: numbers for numeric types, booleans, strings. 64-bit
 * integer tags (`int64`, `uint64`) carry a `bigint`, or a number when it is a safe integer.
 */
export type TagScalarValue = number | boolean | string | bigint;

/**
 * The value of an array tag (one with `arrayLength`, docs/adr/0038-array-tags.md): a frozen,
 * one-dimensional array of at most `arrayLength` elements, each in the scalar form of the tag's
 * `dataType` ({@link TagScalarValue}). Never a typed array: a value in the current value table
 * must not change under its observers. Writes also accept typed arrays (copied into a frozen array).
 */
export type TagArrayValue = readonly TagScalarValue[];

/**
 * A tag value as Kiln carries it: numbers for numeric types, booleans, strings; 64-bit integer
 * tags (`int64`, `uint64`) carry a `bigint`, or a number when it is a safe integer. A tag with
 * `arrayLength` carries a frozen, one-dimensional array of those (`TagArrayValue` in
 * `@kiln/core/driver-kit`). Code that formats or compares a value must not assume a scalar: use
 * `sameTagValue` and `formatTagValue` from `@kiln/core/driver-kit`.
 */
// Spelled out rather than `TagScalarValue | TagArrayValue`: those two live in the driver kit, and
// the main entry names no type it does not export (ADR 0027).
export type TagValue = number | boolean | string | bigint | readonly (number | boolean | string | bigint)[];

/** A typed array a write may give for an array tag: copied element by element into a frozen array before it is checked. */
type TagTypedArray =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** Largest `arrayLength` of an array tag: 65,535 elements (docs/adr/0038-array-tags.md). */
export const TAG_ARRAY_LENGTH_MAX = 65_535;

/**
 * Whether two tag values are the same: scalars by `Object.is` (`0` and `-0` differ, `NaN`
 * equals `NaN`, a number never equals a bigint); arrays element by element by the same rule and
 * of the same length. A scalar never equals an array.
 */
export function sameTagValue(a: TagValue | null | undefined, b: TagValue | null | undefined): boolean {
  if (Object.is(a, b)) return true;
  if (!Array.isArray(a) || !Array.isArray(b)) return false;
  const left = a as TagArrayValue;
  const right = b as TagArrayValue;
  if (left.length !== right.length) return false;
  for (let index = 0; index < left.length; index++) if (!Object.is(left[index], right[index])) return false;
  return true;
}

/**
 * A tag value as text for messages and logs: a scalar as `String(value)` (a string quoted with
 * JSON), an array as JSON with bigints as decimal strings and non-finite numbers by name
 * (`[1,"9007199254740993","NaN"]`). Deliberate, so an array never prints as `"1,2"`.
 */
export function formatTagValue(value: TagValue | null | undefined): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (!Array.isArray(value)) return String(value);
  return JSON.stringify(value, (_key, element: unknown) =>
    typeof element === "bigint" || (typeof element === "number" && !Number.isFinite(element))
      ? String(element)
      : element,
  );
}

/** True when `value` is a typed array (not a `DataView`): what a write may give for an array tag. */
function isTypedArray(value: unknown): value is ArrayLike<number | bigint> {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

/**
 * The array `value` holds, for an array tag: an array as is, a typed array as a plain array;
 * undefined when `value` is neither.
 * @internal
 */
export function arrayElementsOf(value: unknown): readonly unknown[] | undefined {
  if (Array.isArray(value)) return value as readonly unknown[];
  if (isTypedArray(value)) return Array.from(value);
  return undefined;
}

/**
 * `value` in the form the core carries: an array or a typed array as a new frozen plain array
 * (element values unchanged), a scalar as is. Applied to every write before it reaches a driver,
 * so neither the caller nor the driver can change the value afterwards.
 */
export function frozenTagValue(value: TagValue | TagTypedArray | ArrayBufferView): TagValue {
  const elements = arrayElementsOf(value);
  if (elements === undefined) return value as TagScalarValue;
  return Object.freeze([...(elements as readonly TagScalarValue[])]);
}

const deadbandSchema = z.object({
  kind: z.enum(["absolute", "percent"]),
  value: z.number().nonnegative(),
});

/** @internal zod schema of a tag's logging policy ({@link LoggingPolicy}). */
export const loggingPolicySchema = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("change"), deadband: deadbandSchema.optional() }),
  z.object({ mode: z.literal("periodic"), periodMs: z.number().int().positive() }),
  z.object({ mode: z.literal("none") }),
]);

/** @internal zod schema of one tag definition ({@link TagDefinitionInput}; without its name, the key in {@link defineTags}). */
export const tagDefinitionSchema = z
  .object({
    dataType: z.enum(TAG_DATA_TYPES),
    unit: z.string().optional(),
    range: z
      .object({ min: z.number(), max: z.number() })
      .refine((range) => range.min <= range.max, { message: "range.min must not exceed range.max" })
      .optional(),
    access: z.enum(["read", "readwrite"]).default("read"),
    description: z.string().optional(),
    logging: loggingPolicySchema.default({ mode: "change" }),
    scanGroup: z.string().min(1).default("default"),
    address: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
    interpolation: z.enum(["stepped", "sloped"]).optional(),
    arrayLength: z.number().int().min(1).max(TAG_ARRAY_LENGTH_MAX).optional(),
  })
  .strict()
  .superRefine((tag, context) => {
    if (tag.arrayLength !== undefined) {
      // docs/adr/0038-array-tags.md: a deadband, a slope or an alarm limit on "an array" has no
      // single meaning; a user who needs one defines a scalar tag for the element.
      if (tag.logging.mode === "change" && tag.logging.deadband !== undefined) {
        context.addIssue({
          code: "custom",
          path: ["logging", "deadband"],
          message: "an array tag (arrayLength) cannot have a deadband: every changed element is a change",
        });
      }
      if (tag.interpolation === "sloped") {
        context.addIssue({
          code: "custom",
          path: ["interpolation"],
          message: "an array tag (arrayLength) cannot be sloped: it is stepped",
        });
      }
    }
    if (tag.range && (tag.dataType === "bool" || tag.dataType === "string")) {
      context.addIssue({ code: "custom", path: ["range"], message: `a ${tag.dataType} tag cannot have a range` });
    }
    if (tag.interpolation === "sloped" && (tag.dataType === "bool" || tag.dataType === "string")) {
      context.addIssue({
        code: "custom",
        path: ["interpolation"],
        message: `a ${tag.dataType} tag cannot be sloped: only numbers can be interpolated`,
      });
    }
    if (tag.logging.mode === "change" && tag.logging.deadband?.kind === "percent" && !tag.range) {
      context.addIssue({
        code: "custom",
        path: ["logging", "deadband"],
        message: "a percent deadband needs the tag's range",
      });
    }
  });

/**
 * A deadband for on-change logging: a new value is logged only when it differs from the last
 * logged one by more than `value`.
 */
export interface LoggingDeadband {
  /** `absolute`: `value` is in the tag's engineering unit; `percent`: of the tag's range span (needs `range`). */
  readonly kind: "absolute" | "percent";
  /** The deadband, >= 0 (0 logs every change). */
  readonly value: number;
}

/**
 * A tag's logging policy, checked by {@link defineTags} (a bad policy throws `KilnValidationError`,
 * `KILN_VALIDATION`, naming e.g. `chamber.pressure.logging.periodMs`):
 * - `change`: log every change of value or quality; with a `deadband`, only changes beyond it.
 * - `periodic`: log the current value every `periodMs` (a positive integer, ms), changed or not.
 * - `none`: do not log (the tag is still acquired and shows in the current value table).
 */
export type LoggingPolicy =
  | {
      readonly mode: "change";
      /** Changes within the deadband are not logged. @default none (every change is logged) */
      readonly deadband?: LoggingDeadband | undefined;
    }
  | {
      readonly mode: "periodic";
      /** The logging period in milliseconds, a positive integer. */
      readonly periodMs: number;
    }
  | { readonly mode: "none" };

/** A tag's engineering range, in its unit: `min <= max`. Numeric tags only. */
export interface TagRange {
  /** Lowest valid value, in the tag's unit. */
  readonly min: number;
  /** Highest valid value, in the tag's unit; not below `min`. */
  readonly max: number;
}

/**
 * What a user writes for one tag (its name is the key in {@link defineTags}; defaults not yet
 * applied). {@link defineTags} checks every field and throws `KilnValidationError`
 * (`KILN_VALIDATION`) naming each bad one by path, e.g. `chamber.pressure.range`.
 */
export interface TagDefinitionInput {
  /** The value's data type. */
  readonly dataType: TagDataType;
  /** Engineering unit, e.g. `"mbar"` or `"degC"` (free text, UCUM symbols recommended). */
  readonly unit?: string | undefined;
  /** Engineering range (numeric tags only); writes outside it are refused with `KILN_VALIDATION`. */
  readonly range?: TagRange | undefined;
  /** `read` (@default) or `readwrite` (the tag can be written through the control system). */
  readonly access?: "read" | "readwrite" | undefined;
  /** Free text for operators and docs. */
  readonly description?: string | undefined;
  /** When samples are logged. @default `{ mode: "change" }` */
  readonly logging?: LoggingPolicy | undefined;
  /** The scan group that acquires the tag (must be declared in the options). @default `"default"` */
  readonly scanGroup?: string | undefined;
  /** The driver's address of the tag: a non-empty string (e.g. an OPC UA NodeId) or a driver-specific object. */
  readonly address?: string | Readonly<Record<string, unknown>> | undefined;
  /** How the value behaves between samples. @default by data type (see {@link interpolationOf}) */
  readonly interpolation?: Interpolation | undefined;
  /**
   * Makes the tag an array tag: its value is a one-dimensional array of at most `arrayLength`
   * elements of `dataType` (a frozen array); a whole number from 1 to 65,535
   * (`TAG_ARRAY_LENGTH_MAX`). `range` applies to every element. An array tag cannot have a
   * deadband, `sloped` interpolation or an alarm (`KILN_VALIDATION`); a value of the wrong shape
   * or longer than `arrayLength` is refused on write and reads `bad` `BadTypeMismatch`.
   * See docs/adr/0038-array-tags.md. @default none (a scalar tag)
   */
  readonly arrayLength?: number | undefined;
}

/** A validated tag with its name and every default applied. */
export interface Tag<TName extends string = string> {
  /** The tag's name (its key in {@link defineTags}), e.g. `"chamber.pressure"`. */
  readonly name: TName;
  /** The value's data type. */
  readonly dataType: TagDataType;
  /** Engineering unit, when declared. */
  readonly unit?: string | undefined;
  /** Engineering range in the tag's unit, when declared (numeric tags only). */
  readonly range?: TagRange | undefined;
  /** Whether the tag can be written. */
  readonly access: "read" | "readwrite";
  /** Free text, when declared. */
  readonly description?: string | undefined;
  /** When samples are logged. */
  readonly logging: LoggingPolicy;
  /** The scan group that acquires the tag. */
  readonly scanGroup: string;
  /** The driver's address of the tag, when declared. */
  readonly address?: string | Readonly<Record<string, unknown>> | undefined;
  /** The declared interpolation; {@link interpolationOf} gives the effective one. */
  readonly interpolation?: Interpolation | undefined;
  /** For an array tag, the most elements its value holds (1 – 65,535); absent for a scalar tag. */
  readonly arrayLength?: number | undefined;
}

/**
 * How a tag's value behaves between two samples (OPC UA Part 13, 3.1.5 SteppedInterpolation and
 * 3.1.6 SlopedInterpolation): `stepped` holds each value until the next one (a valve, a setpoint,
 * a counter, a state text); `sloped` changes linearly from one value to the next (a measured
 * temperature or pressure). History queries use it for values between samples and for
 * time-weighted aggregates.
 */
export type Interpolation = "stepped" | "sloped";

/**
 * The interpolation of `tag`: what it declares, else the default of its data type: `sloped` for
 * scalar `float32` and `float64`, `stepped` for booleans, integers, strings and every array tag.
 */
export function interpolationOf(tag: Pick<Tag, "dataType" | "interpolation" | "arrayLength">): Interpolation {
  if (tag.arrayLength !== undefined) return "stepped";
  return tag.interpolation ?? (tag.dataType === "float32" || tag.dataType === "float64" ? "sloped" : "stepped");
}

const TAG_NAME = /^[A-Za-z_][A-Za-z0-9_.\-/:]*$/;
/** Longest tag name, in characters: every tag name fits a command's audited target. */
export const TAG_NAME_MAX_LENGTH = 256;

/**
 * The validated, immutable set of tags of a machine. Names are typed, so `catalog.get("pressur")`
 * is a compile error when the catalog was made with {@link defineTags}.
 */
export class TagCatalog<TName extends string = string> {
  readonly #tags: ReadonlyMap<string, Tag<TName>>;

  /** @internal use {@link defineTags}. */
  constructor(tags: ReadonlyMap<string, Tag<TName>>) {
    this.#tags = tags;
  }

  /** Every tag name, in definition order. */
  get names(): readonly TName[] {
    return [...this.#tags.keys()] as TName[];
  }

  /** Number of tags. */
  get size(): number {
    return this.#tags.size;
  }

  /** Every tag, in definition order. */
  list(): readonly Tag<TName>[] {
    return [...this.#tags.values()];
  }

  /** True when a tag of that name exists. */
  has(name: string): name is TName {
    return this.#tags.has(name);
  }

  /** The tag of that name. @throws KilnError `KILN_TAG_UNKNOWN` when there is none. */
  get(name: TName | (string & {})): Tag<TName> {
    const tag = this.#tags.get(name);
    if (!tag)
      throw new KilnError("KILN_TAG_UNKNOWN", `No tag named "${name}" in the catalog.`, { details: { tag: name } });
    return tag;
  }

  /** The tag of that name, or undefined. */
  find(name: string): Tag<TName> | undefined {
    return this.#tags.get(name);
  }
}

/**
 * Validates tag definitions and returns a typed {@link TagCatalog}. Keys are tag names.
 *
 * @example
 * const tags = defineTags({
 *   "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 } },
 *   "valve.ald1": { dataType: "bool", access: "readwrite" },
 * });
 * tags.get("chamber.pressure").unit; // "mbar"
 * @throws KilnValidationError (`KILN_VALIDATION`) naming every bad field, e.g. `chamber.pressure.range`.
 */
export function defineTags<const TDefinitions extends Record<string, TagDefinitionInput>>(
  definitions: TDefinitions,
): TagCatalog<Extract<keyof TDefinitions, string>> {
  type TName = Extract<keyof TDefinitions, string>;
  if (typeof definitions !== "object" || definitions === null || Array.isArray(definitions)) {
    throw new TypeError("defineTags expects an object whose keys are tag names");
  }
  const issues: ValidationIssue[] = [];
  const tags = new Map<string, Tag<TName>>();
  for (const [name, definition] of Object.entries(definitions)) {
    if (name.length > TAG_NAME_MAX_LENGTH) {
      issues.push({ path: name.slice(0, 64), message: `tag name must be at most ${TAG_NAME_MAX_LENGTH} characters` });
      continue;
    }
    if (!TAG_NAME.test(name)) {
      issues.push({
        path: name,
        message: "tag name must start with a letter or _ and use only letters, digits, _ . - / :",
      });
      continue;
    }
    const result = tagDefinitionSchema.safeParse(definition);
    if (!result.success) {
      issues.push(...issuesFromZod(result.error, [name]));
      continue;
    }
    // Deep-frozen: a tag's range, enum, logging and every nested part are fixed once defined, so
    // no holder of the catalog can widen a range and disable the checks made against it.
    tags.set(name, deepFreeze({ ...result.data, name: name as TName }));
  }
  if (issues.length > 0) throw new KilnValidationError("tag definitions", issues);
  return new TagCatalog<TName>(tags);
}

const INTEGER_LIMITS: Partial<Record<TagDataType, readonly [number, number]>> = {
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};

/**
 * The largest finite IEEE 754 single-precision value (`FLT_MAX`, 2^128 − 2^104). A `float32` tag
 * accepts a finite number whose magnitude is at most this; it is rounded to single precision on
 * the way to the device, but a larger one has no `float32` representation at all.
 */
export const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Checks that `value` fits `tag`: its JavaScript type, the limits of its data type (integer
 * limits; `float32`: finite with |value| ≤ {@link FLOAT32_MAX}), and its engineering range.
 * For an array tag (`arrayLength`): an array or a typed array of at most `arrayLength`
 * elements, each checked by the scalar rule and the range (the problem names the element,
 * `value[3]: 12 is outside the range 0..10`); a scalar tag refuses an array.
 * Returns a problem in words, or undefined when the value is acceptable. The one check of "the
 * value fits its type" for writes, recipe parameters and every adapter that feeds a command in.
 */
export function checkTagValue(tag: Tag, value: unknown): string | undefined {
  const problem = tagValueProblem(tag, value);
  if (problem === undefined) return undefined;
  return problem.element === undefined ? problem.message : `value[${problem.element}]: ${problem.message}`;
}

/**
 * {@link checkTagValue} with the failing element apart, so a caller can name it in an issue
 * path (`value[3]`).
 * @internal
 */
export function tagValueProblem(
  tag: Tag,
  value: unknown,
): { readonly element?: number | undefined; readonly message: string } | undefined {
  if (tag.arrayLength === undefined) {
    if (Array.isArray(value) || isTypedArray(value)) {
      return { message: `expected a scalar ${tag.dataType}, got an array (the tag has no arrayLength)` };
    }
    const message = checkScalar(tag, value);
    return message === undefined ? undefined : { message };
  }
  const elements = arrayElementsOf(value);
  if (elements === undefined) {
    return { message: `expected an array of ${tag.dataType} (arrayLength ${tag.arrayLength}), got ${describe(value)}` };
  }
  if (elements.length > tag.arrayLength) {
    return { message: `expected at most ${tag.arrayLength} elements (arrayLength), got ${elements.length}` };
  }
  for (let index = 0; index < elements.length; index++) {
    const message = checkScalar(tag, elements[index]);
    if (message !== undefined) return { element: index, message };
  }
  return undefined;
}

function checkScalar(tag: Tag, value: unknown): string | undefined {
  switch (tag.dataType) {
    case "bool":
      return typeof value === "boolean" ? undefined : `expected a boolean, got ${describe(value)}`;
    case "string":
      return typeof value === "string" ? undefined : `expected a string, got ${describe(value)}`;
    case "int64":
    case "uint64": {
      if (typeof value === "number" && !Number.isSafeInteger(value)) {
        return `expected a bigint or a safe integer for ${tag.dataType}, got ${value}`;
      }
      if (typeof value !== "bigint" && typeof value !== "number") return `expected a bigint, got ${describe(value)}`;
      const big = BigInt(value);
      const [min, max] = tag.dataType === "int64" ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
      if (big < min || big > max) return `${big} does not fit ${tag.dataType}`;
      if (tag.range && (big < BigInt(Math.ceil(tag.range.min)) || big > BigInt(Math.floor(tag.range.max)))) {
        return `${big} is outside the range ${tag.range.min}..${tag.range.max}${tag.unit ? ` ${tag.unit}` : ""}`;
      }
      return undefined;
    }
    default: {
      if (typeof value !== "number" || !Number.isFinite(value))
        return `expected a finite number, got ${describe(value)}`;
      const limits = INTEGER_LIMITS[tag.dataType];
      if (limits) {
        if (!Number.isInteger(value)) return `expected an integer for ${tag.dataType}, got ${value}`;
        if (value < limits[0] || value > limits[1])
          return `${value} does not fit ${tag.dataType} (${limits[0]}..${limits[1]})`;
      }
      if (tag.dataType === "float32" && Math.abs(value) > FLOAT32_MAX) {
        return `${value} does not fit float32 (|value| ≤ ${FLOAT32_MAX})`;
      }
      if (tag.range && (value < tag.range.min || value > tag.range.max)) {
        return `${value} is outside the range ${tag.range.min}..${tag.range.max}${tag.unit ? ` ${tag.unit}` : ""}`;
      }
      return undefined;
    }
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return `"${value}"`;
  return `${typeof value} ${String(value)}`;
}
