import { KilnError } from "../domain/errors";
import type { KilnErrorCode } from "@kiln/core";

/** The two matchers the conformance suites need. vitest's and jest's `expect` results fit. */
export interface ConformanceAssertion {
  /** Strict (`Object.is`) equality. */
  toBe(expected: unknown): unknown;
  /** Deep equality, where an `undefined` property equals a missing one. */
  toEqual(expected: unknown): unknown;
}

/**
 * The caller's test runner, typed structurally so the suites depend on no test framework:
 * vitest's or jest's `test`/`expect`/`describe` fit as they are.
 */
export interface ConformanceRunner {
  /** Registers one test (the runner's `test` or `it`). */
  readonly test: (name: string, body: () => Promise<void>) => unknown;
  /** Makes assertions (the runner's `expect`). */
  readonly expect: (actual: unknown) => ConformanceAssertion;
  /** Groups tests; without it, test names are prefixed with the group name instead. */
  readonly describe?: (name: string, body: () => void) => unknown;
}

/** Registers `register`'s tests under `name`, with the runner's `describe` or as a name prefix. */
export function group(
  runner: ConformanceRunner,
  name: string,
  register: (test: ConformanceRunner["test"]) => void,
): void {
  if (runner.describe) runner.describe(name, () => register(runner.test));
  else register((testName, body) => runner.test(`${name}: ${testName}`, body));
}

/**
 * Awaits `operation` and asserts it rejected with a `KilnError` of `code` (checked with
 * `KilnError.is`, so errors from another copy of `@kiln/core` count). Returns the error. A
 * failure message names what happened instead (`resolved`, another code, a non-Kiln error).
 *
 * @example
 * const error = await expectKilnError(expect, system.writeTag(viewer, "valve.ald1", true), "KILN_FORBIDDEN");
 */
export async function expectKilnError(
  expect: ConformanceRunner["expect"],
  operation: Promise<unknown>,
  code: KilnErrorCode,
): Promise<unknown> {
  const error = await operation.then(
    () => undefined,
    (reason: unknown) => reason ?? new Error("rejected with nothing"),
  );
  // Compare strings rather than booleans so a failure shows what happened instead.
  expect(KilnError.is(error, code) ? code : describeOutcome(error)).toBe(code);
  return error;
}

function describeOutcome(error: unknown): string {
  if (error === undefined) return "resolved";
  if (KilnError.is(error)) return error.code;
  return `non-Kiln error: ${String(error)}`;
}
