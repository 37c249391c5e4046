const KILN_ERROR = Symbol.for("kiln.error");

/**
 * Every stable error code a Kiln user can meet. Codes never change within a major version;
 * `docs/errors.md` says what to do about each.
 */
export const KILN_ERROR_CODES = [
  "KILN_VALIDATION",
  "KILN_INVALID_TRANSITION",
  "KILN_TAG_UNKNOWN",
  "KILN_TAG_NOT_WRITABLE",
  "KILN_OUT_OF_RANGE",
  "KILN_NOT_CONNECTED",
  "KILN_CONNECTION_FAILED",
  "KILN_AUTHENTICATION_FAILED",
  "KILN_TIMEOUT",
  "KILN_CIRCUIT_OPEN",
  "KILN_DEVICE_ERROR",
  "KILN_WRITE_REJECTED",
  "KILN_NOT_SUPPORTED",
  "KILN_STORE_ERROR",
  "KILN_CONCURRENCY_CONFLICT",
  "KILN_NOT_FOUND",
  "KILN_ALREADY_EXISTS",
  "KILN_FORBIDDEN",
  "KILN_ABORTED",
  "KILN_LIFECYCLE",
  "KILN_BUFFER_FULL",
  "KILN_JOURNAL_FAILED",
  "KILN_JOURNAL_LOCKED",
  "KILN_AUDIT_UNAVAILABLE",
  "KILN_HISTORY_EVICTED",
] as const satisfies readonly KilnErrorCode[];

/** A stable Kiln error code. */
export type KilnErrorCode =
  | "KILN_VALIDATION"
  | "KILN_INVALID_TRANSITION"
  | "KILN_TAG_UNKNOWN"
  | "KILN_TAG_NOT_WRITABLE"
  | "KILN_OUT_OF_RANGE"
  | "KILN_NOT_CONNECTED"
  | "KILN_CONNECTION_FAILED"
  | "KILN_AUTHENTICATION_FAILED"
  | "KILN_TIMEOUT"
  | "KILN_CIRCUIT_OPEN"
  | "KILN_DEVICE_ERROR"
  | "KILN_WRITE_REJECTED"
  | "KILN_NOT_SUPPORTED"
  | "KILN_STORE_ERROR"
  | "KILN_CONCURRENCY_CONFLICT"
  | "KILN_NOT_FOUND"
  | "KILN_ALREADY_EXISTS"
  | "KILN_FORBIDDEN"
  | "KILN_ABORTED"
  | "KILN_LIFECYCLE"
  | "KILN_BUFFER_FULL"
  | "KILN_JOURNAL_FAILED"
  | "KILN_JOURNAL_LOCKED"
  | "KILN_AUDIT_UNAVAILABLE"
  | "KILN_HISTORY_EVICTED";

/** Options accepted by {@link KilnError}'s constructor. */
export interface KilnErrorOptions {
  /** The underlying error, kept for diagnosis. */
  cause?: unknown;
  /** Whether repeating the same call may succeed. Retry policies read this. @default false */
  retryable?: boolean;
  /** Structured facts about the failure (tag name, state, status code...). Never secrets. */
  details?: Record<string, unknown>;
}

/**
 * The base of every error Kiln throws on purpose. Match on {@link KilnError.code}, never on
 * the message. Use {@link KilnError.is} rather than `instanceof`: it also recognises errors
 * from a second copy of `@kiln/core` in the same process.
 *
 * @example
 * try { await system.writeTag(principal, "valve.ald1", true); }
 * catch (error) { if (KilnError.is(error, "KILN_TAG_NOT_WRITABLE")) { ... } }
 */
export class KilnError extends Error {
  /** The stable code. */
  readonly code: KilnErrorCode;
  /** Whether the same call may succeed if repeated (connection drop, timeout, open breaker). */
  readonly retryable: boolean;
  /** Structured facts about the failure. */
  readonly details: Readonly<Record<string, unknown>>;
  /** @internal brand checked by {@link KilnError.is} across duplicate installs. */
  readonly [KILN_ERROR] = true;

  constructor(code: KilnErrorCode, message: string, options: KilnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KilnError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }

  /** True when `value` is a Kiln error (from any copy of `@kiln/core`), optionally with `code`. */
  static is(value: unknown, code?: KilnErrorCode): value is KilnError {
    if (typeof value !== "object" || value === null) return false;
    if ((value as Record<symbol, unknown>)[KILN_ERROR] !== true) return false;
    return code === undefined || (value as KilnError).code === code;
  }
}

/** One problem found by validation: where (`path`, e.g. `steps[3].pulse.tag`) and which rule failed. */
export interface ValidationIssue {
  /** Dotted path of the offending field, with array indexes in brackets. Empty for the root. */
  readonly path: string;
  /** What rule the value broke, in words. */
  readonly message: string;
}

/**
 * Thrown when input breaks a rule. Lists every problem at once, each with its field path.
 * Nothing has been changed when this is thrown. Code: `KILN_VALIDATION`.
 */
export class KilnValidationError extends KilnError {
  /** Every problem found, in input order. */
  readonly issues: readonly ValidationIssue[];

  constructor(subject: string, issues: readonly ValidationIssue[], options: KilnErrorOptions = {}) {
    const list = issues.map((issue) => `${issue.path || "(root)"}: ${issue.message}`).join("; ");
    super("KILN_VALIDATION", `Invalid ${subject}: ${list}`, {
      ...options,
      details: { ...options.details, issues },
    });
    this.name = "KilnValidationError";
    this.issues = issues;
  }
}

/** True when `error` says the failed call may succeed if repeated. Unknown errors are not retryable. */
export function isRetryable(error: unknown): boolean {
  return KilnError.is(error) && error.retryable;
}
