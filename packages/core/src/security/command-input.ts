import { deepFreeze } from "../domain/deep-freeze";
import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import { TAG_NAME_MAX_LENGTH } from "../domain/tags";

/**
 * Longest name a command accepts, in UTF-16 code units (JavaScript's `length`; every length
 * rule of a command, the principal's included, counts these, never code points): a command's target (tag name, recipe
 * name, alarm id), a principal's id and its source. Tag names follow the same rule.
 */
export const NAME_MAX_LENGTH = TAG_NAME_MAX_LENGTH;
/** Most roles a principal may carry. */
export const ROLES_MAX_COUNT = 64;
/** Longest role name, in UTF-16 code units. */
export const ROLE_MAX_LENGTH = 128;

/**
 * The characters no identifier holds and every audited text writes out: Unicode control (category
 * Cc: C0, DEL, C1) and format (Cf) characters, line and paragraph separators (Zl U+2028, Zp
 * U+2029), lone surrogates (Cs), default-ignorable code points (variation selectors U+FE0F and
 * U+E0100…, the combining grapheme joiner U+034F, the Hangul fillers U+3164 and U+115F), every space
 * but U+0020 (Zs: U+00A0, U+3000, …) and the Braille blank U+2800: invisible, breaking a line,
 * reordering what is shown around them (U+202E right-to-left override, U+2066–2069 isolates), or
 * showing as a plain space or nothing. Never part of an identifier: `ada\u202Enimda` reads as
 * `adaadmin` in a log or an audit viewer, `eng\u2028… allowed` forges a line, and `(system)\u00A0`
 * or `ad\u034Fmin` read as `(system)` and `admin` (adversarial review adv15g MEDIUM-1).
 */
const INVISIBLE_CLASS =
  "\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}\\p{Cs}\\p{Default_Ignorable_Code_Point}\\u00A0\\u1680\\u2000-\\u200A\\u202F\\u205F\\u3000\\u2800";
const INVISIBLE_CHARACTER = new RegExp(`[${INVISIBLE_CLASS}]`, "u");
/** {@link INVISIBLE_CHARACTER}, every occurrence (for replacing them: `auditablePrincipalId`). */
export const INVISIBLE_CHARACTERS = new RegExp(`[${INVISIBLE_CLASS}]`, "gu");
/**
 * What {@link visibleText} writes out: the invisible characters, and the backslash itself, so a
 * literal `\u{000A}` typed by a caller can never read the same as an escaped real newline
 * (adversarial review 15j).
 */
const ESCAPED_CHARACTERS = new RegExp(`[\\\\${INVISIBLE_CLASS}]`, "gu");

/** The message of the one identifier character rule (see {@link identifierCharacterProblem}). */
export const IDENTIFIER_CHARACTER_MESSAGE =
  "must not contain control, format or line-separator characters, invisible (default-ignorable) ones, spaces other than U+0020, or lone surrogates (Unicode Cc, Cf, Zl, Zp, Cs, Default_Ignorable_Code_Point, Zs but U+0020, U+2800)";

/**
 * The one character rule of every identifier a command is given (principal id, roles and
 * source, target, process id): true when `text` holds a control or format character. Tag and
 * recipe names are narrower still (ASCII letters, digits and a few marks).
 */
export function identifierCharacterProblem(text: string): boolean {
  return INVISIBLE_CHARACTER.test(text);
}

/**
 * `text` with every control and format character, and every backslash, written out as
 * `\u{XXXX}` (a backslash as `\u{005C}`), so echoing a refused identifier (in an audit entry, a
 * message) shows what it held instead of letting it reorder or hide the text around it, and text
 * that spells an escape (`\u{000A}` typed literally) stays distinct from the character it names:
 * the escaping cannot be imitated (review 15j).
 */
export function visibleText(text: string): string {
  return text.replace(
    ESCAPED_CHARACTERS,
    (character) => `\\u{${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}}`,
  );
}

/**
 * The rule a caller-supplied identifier breaks (a process id, a command's target), or undefined
 * when it is a string of 1 to {@link NAME_MAX_LENGTH} UTF-16 code units without control or
 * format characters. Checked at the command boundary, before anything runs.
 */
export function checkIdentifier(value: unknown, path: string): ValidationIssue | undefined {
  if (typeof value !== "string" || value === "") return { path, message: "must be a non-empty string" };
  if (value.length > NAME_MAX_LENGTH) {
    return { path, message: `must be at most ${NAME_MAX_LENGTH} characters, not ${value.length}` };
  }
  if (identifierCharacterProblem(value)) return { path, message: IDENTIFIER_CHARACTER_MESSAGE };
  return undefined;
}

/**
 * A name the system itself made (the active process's id), fitted to the target rule for its
 * audit entry: returned as is when it has 1 to `max` code units, else cut so that, with a
 * trailing "…", it has `max` (never inside a surrogate pair). A safety command's target is never
 * refused for its form.
 */
export function fittedName(text: string, max: number = NAME_MAX_LENGTH): string {
  if (text === "") return "(unnamed)";
  return text.length <= max ? text : `${cutText(text, max - 1)}…`;
}

/** `text`'s first `max` UTF-16 code units, one fewer when that would split a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

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
 * `text` cut to `max` UTF-16 code units (one fewer rather than split a surrogate pair) for
 * echoing in an audit entry or a message, with a marker that keeps its original length in code
 * units: `"abc…(truncated, 150000000 chars)"`. Shorter text is returned as is.
 */
export function boundedText(text: string, max: number): string {
  return text.length <= max ? text : `${cutText(text, max)}…(truncated, ${text.length} chars)`;
}

/** Longest action category an audit entry records (the part of the action before its first `.`). */
export const CATEGORY_MAX_LENGTH = 64;

/**
 * Caller-influenced text as an audit entry records it (action, category, principal, source,
 * target, reason, a name inside newValue): control and format characters written out as
 * `\u{XXXX}` ({@link visibleText}), so a newline, NUL or a bidi override (U+202E, U+2066–2069)
 * can neither fake a line nor reorder what an audit view shows, then cut to `max` UTF-16 code
 * units with a marker keeping the original length ({@link boundedText}; for text longer than `max`,
 * the length the caller gave). Only the part kept is escaped, so its cost is bounded by `max`, not
 * by the text. The one escaping rule of every text field of an entry (issue 15).
 */
export function auditedText(text: string, max: number): string {
  if (text.length <= max) return boundedText(visibleText(text), max);
  // Escaping never shortens text, so the first max + 1 code units hold all that is kept: escaping the whole of a
  // caller's 1 MiB target (or principal id, recipe name) held the event loop about 1 s per refused command
  // (adversarial review adv15n, MEDIUM-2). The marker keeps the length the caller gave.
  return `${cutText(visibleText(text.slice(0, max + 1)), max)}…(truncated, ${text.length} chars)`;
}

/** The mark of an error whose message is already visible text (see {@link withVisibleMessage}); shared by duplicate installs. */
const VISIBLE_MESSAGE = Symbol.for("kiln.visibleMessage");

/**
 * Marks `error` as one whose message echoes caller text only through {@link auditedText} or
 * {@link visibleText} (a refused target, a principal id): an audit entry's reason then takes the
 * message as it is, cut to its bound but not escaped again (`reasonOf`), so the entry shows what
 * the caller was shown, each character written out once (ADR 0007, amendment fix20e). Only for
 * messages built wholly so: an unmarked error's message is escaped when it is recorded.
 */
export function withVisibleMessage<TError extends Error>(error: TError): TError {
  Object.defineProperty(error, VISIBLE_MESSAGE, { value: true });
  return error;
}

/** Whether {@link withVisibleMessage} marked `error`. */
export function hasVisibleMessage(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as Record<symbol, unknown>)[VISIBLE_MESSAGE] === true;
}

/**
 * A command target as Kiln echoes it, in an audit entry's `target` and in every event or message
 * that names a refused target (`command-refuse`, adapters' own refusal events): control and format
 * characters written out as `\u{XXXX}` and cut to 256 code units (`NAME_MAX_LENGTH`) with a
 * marker keeping its original length; `"(invalid target)"` for anything but a
 * non-empty string. The one function, so an event never shows more than the audit entry does.
 */
export function auditedTarget(target: unknown): string {
  return typeof target === "string" && target !== "" ? auditedText(target, NAME_MAX_LENGTH) : "(invalid target)";
}

/**
 * An identifier held inside an audit entry's value (a recipe's name, a machine command's name):
 * echoed as {@link auditedTarget} echoes a target, control and format characters written out as
 * `\u{XXXX}` and cut to `NAME_MAX_LENGTH`. Anything but a string is returned as is (the audit
 * snapshot bounds it). Values (a string written to a tag, a parameter's value) are free text and
 * never go through it.
 */
export function auditedName(name: unknown): unknown {
  return typeof name === "string" ? auditedText(name, NAME_MAX_LENGTH) : name;
}
