import { describe, expect, test } from "vitest";
import { KILN_ERROR_CODES, KilnError, KilnValidationError, isRetryable } from "./errors";

describe("KilnError", () => {
  test("carries code, cause, retryable and details", () => {
    const cause = new Error("socket hang up");
    const error = new KilnError("KILN_CONNECTION_FAILED", "Cannot reach the PLC.", {
      cause,
      retryable: true,
      details: { endpoint: "opc.tcp://plc:4840" },
    });
    expect(error.code).toBe("KILN_CONNECTION_FAILED");
    expect(error.cause).toBe(cause);
    expect(error.retryable).toBe(true);
    expect(error.details).toEqual({ endpoint: "opc.tcp://plc:4840" });
    expect(error).toBeInstanceOf(Error);
    expect(isRetryable(error)).toBe(true);
  });

  test("is not retryable unless said so", () => {
    expect(isRetryable(new KilnError("KILN_TIMEOUT", "x"))).toBe(false);
    expect(isRetryable(new Error("plain"))).toBe(false);
  });

  test("is() recognises an error from another copy of the package by its global brand", () => {
    const foreign = Object.assign(new Error("from a duplicate install"), {
      code: "KILN_TIMEOUT",
      [Symbol.for("kiln.error")]: true,
    });
    expect(KilnError.is(foreign)).toBe(true);
    expect(KilnError.is(foreign, "KILN_TIMEOUT")).toBe(true);
    expect(KilnError.is(foreign, "KILN_FORBIDDEN")).toBe(false);
    expect(KilnError.is(new Error("plain"))).toBe(false);
    expect(KilnError.is(null)).toBe(false);
    expect(KilnError.is("KILN_TIMEOUT")).toBe(false);
  });

  test("codes are unique and prefixed", () => {
    expect(new Set(KILN_ERROR_CODES).size).toBe(KILN_ERROR_CODES.length);
    for (const code of KILN_ERROR_CODES) expect(code).toMatch(/^KILN_[A-Z_]+$/);
  });
});

describe("KilnValidationError", () => {
  test("lists every issue with its path in the message and keeps them structured", () => {
    const error = new KilnValidationError("recipe", [
      { path: "steps[3].pulse.tag", message: "unknown tag" },
      { path: "", message: "too many steps" },
    ]);
    expect(error.code).toBe("KILN_VALIDATION");
    expect(error.issues).toHaveLength(2);
    expect(error.message).toContain("steps[3].pulse.tag: unknown tag");
    expect(error.message).toContain("(root): too many steps");
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
  });
});
