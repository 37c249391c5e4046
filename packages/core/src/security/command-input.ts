import { deepFreeze } from "../domain/deep-freeze";
import { KilnValidationError } from "../domain/errors";
import { TAG_NAME_MAX_LENGTH } from "../domain/tags";

/**
 * Longest name a command accepts, in UTF-16 code units: a command's target (tag name, recipe
 * name, alarm id), a principal's id and its source. Tag names follow the same rule.
 */
export const NAME_MAX_LENGTH = TAG_NAME_MAX_LENGTH;
/** Most roles a principal may carry. */
export const ROLES_MAX_COUNT = 64;
/** Longest role name, in UTF-16 code units. */
export const ROLE_MAX_LENGTH = 128;

/** Deepest nesting of a command's structured input (a recipe, its parameters). */
const MAX_DEPTH = 64;
/** Most values (objects, arrays, primitives) in one command input. */
const MAX_NODES = 100_000;

/**
 * What a command was given, read once at its call: a deep-frozen copy of plain data (objects,
 * arrays, primitives), or the validation error that refuses the command. Every check, the
 * authorization, the execution and the audit entry use `value`, never the caller's object,
 * so a getter that answers differently on each read, or a mutation after the call, changes
 * nothing (issue 15).
 */
export type InputSnapshot<TValue> =
  { readonly ok: true; readonly value: TValue } | { readonly ok: false; readonly error: KilnValidationError };

/**
 * Copies `value` once into deep-frozen plain data. Own enumerable string keys of plain objects
 * (prototype `Object.prototype` or null) and array elements are read exactly once. Never throws:
 * a cycle, a getter or proxy that throws, an object that is not plain data (a class instance, a
 * `Map`, a function), nesting deeper than 64 or more than 100,000 values gives
 * `{ ok: false, error }`, a `KILN_VALIDATION` error naming `field`.
 */
export function snapshotInput<TValue>(value: TValue, field: string): InputSnapshot<TValue> {
  const budget = { nodes: MAX_NODES };
  try {
    return { ok: true, value: deepFreeze(copy(value, field, 0, new Set(), budget)) as TValue };
  } catch (error) {
    if (error instanceof KilnValidationError) return { ok: false, error };
    return {
      ok: false,
      error: new KilnValidationError("command input", [{ path: field, message: "could not be read" }], {
        cause: error,
      }),
    };
  }
}

/** The value of a snapshot, or its error thrown. */
export function valueOf<TValue>(snapshot: InputSnapshot<TValue>): TValue {
  if (!snapshot.ok) throw snapshot.error;
  return snapshot.value;
}

function copy(value: unknown, path: string, depth: number, ancestors: Set<object>, budget: { nodes: number }): unknown {
  const refuse = (message: string): never => {
    throw new KilnValidationError("command input", [{ path, message }]);
  };
  if (budget.nodes-- <= 0) refuse(`holds more than ${MAX_NODES} values`);
  if (typeof value === "function" || typeof value === "symbol") refuse(`must be plain data, not a ${typeof value}`);
  if (typeof value !== "object" || value === null) return value;
  if (ancestors.has(value)) refuse("must not contain itself (a cycle)");
  if (depth >= MAX_DEPTH) refuse(`is nested deeper than ${MAX_DEPTH} levels`);
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      const length = value.length;
      const result: unknown[] = [];
      for (let index = 0; index < length; index++) {
        result.push(copy((value as unknown[])[index], `${path}.${index}`, depth + 1, ancestors, budget));
      }
      return result;
    }
    const prototype = Object.getPrototypeOf(value) as unknown;
    if (prototype !== Object.prototype && prototype !== null) refuse("must be plain data (an object literal)");
    const result: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      const entry = copy((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1, ancestors, budget);
      // defineProperty: a "__proto__" key stays data and cannot change the copy's prototype.
      Object.defineProperty(result, key, { value: entry, enumerable: true, writable: true, configurable: true });
    }
    return result;
  } finally {
    ancestors.delete(value);
  }
}

/**
 * `text` cut to `max` code units for echoing in an audit entry or a message, with a marker that
 * keeps its original length: `"abc…(truncated, 150000000 chars)"`. Shorter text is returned as is.
 */
export function boundedText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…(truncated, ${text.length} chars)`;
}
