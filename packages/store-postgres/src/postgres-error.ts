import { KilnError } from "@kiln/core";

/** SQLSTATE of a unique violation. */
export const UNIQUE_VIOLATION = "23505";

/**
 * SQLSTATEs after which repeating the same call may succeed: serialization failure, deadlock,
 * lock not available, statement timeout or cancel, too many connections, administrator or crash
 * shutdown and "cannot connect now" (server starting or in recovery).
 */
const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  "40001",
  "40P01",
  "55P03",
  "57014",
  "53300",
  "57P01",
  "57P02",
  "57P03",
]);

/** Socket errors that mean the connection failed or dropped, not that the call was wrong. */
const RETRYABLE_NODE_CODES: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTCONN",
  "EAI_AGAIN",
]);

/** Five characters, digits and capitals; no SQLSTATE class starts with E, unlike `EPIPE`, `EPERM`. */
const SQLSTATE = /^(?!E)[0-9A-Z]{5}$/;

/** Messages of `pg` for a connection lost mid-call or a pool that could not connect in time. */
const RETRYABLE_MESSAGES: readonly RegExp[] = [
  /connection terminated/i,
  /encountered a connection error and is not queryable/i,
  /timeout exceeded when trying to connect/i,
  /terminating connection due to administrator command/i,
];

/** The SQLSTATE carried by a `pg` or PGlite error, if any. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = codeOf(error);
  return code !== undefined && SQLSTATE.test(code) ? code : undefined;
}

/**
 * Whether a failed database call may succeed if repeated: connection failures (refused, reset,
 * terminated, pool timeout), class 08 connection exceptions, administrator shutdown, serialization
 * failures, deadlocks and too many connections are; constraint violations, syntax errors and
 * everything unrecognised are not. Causes and `AggregateError` members are inspected too.
 */
export function isRetryablePostgresError(error: unknown): boolean {
  return inspect(error, 0);
}

function inspect(error: unknown, depth: number): boolean {
  if (typeof error !== "object" || error === null || depth > 4) return false;
  if (KilnError.is(error)) return error.retryable;
  const code = codeOf(error);
  if (code !== undefined) {
    if (RETRYABLE_SQLSTATES.has(code) || code.startsWith("08") || RETRYABLE_NODE_CODES.has(code)) return true;
    // A SQLSTATE we did not list is a definite answer from the server: not retryable.
    if (SQLSTATE.test(code)) return false;
  }
  const message = (error as { message?: unknown }).message;
  if (typeof message === "string" && RETRYABLE_MESSAGES.some((pattern) => pattern.test(message))) return true;
  if (error instanceof AggregateError && error.errors.some((inner) => inspect(inner, depth + 1))) return true;
  return inspect((error as { cause?: unknown }).cause, depth + 1);
}

function codeOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Converts a database failure of `operation` into a `KilnError` with code `KILN_STORE_ERROR`,
 * `retryable` set by {@link isRetryablePostgresError}, the original error as `cause` and the
 * SQLSTATE (when there is one) in `details.sqlState`. A `KilnError` passes through unchanged.
 */
export function toStoreError(error: unknown, operation: string): KilnError {
  if (KilnError.is(error)) return error;
  const retryable = isRetryablePostgresError(error);
  const sqlState = sqlStateOf(error);
  const reason = error instanceof Error ? error.message : String(error);
  const advice = retryable
    ? "The connection or transaction failed transiently: retrying the call may succeed."
    : "Retrying will not help: check the database, its schema and the input.";
  return new KilnError("KILN_STORE_ERROR", `PostgreSQL ${operation} failed: ${reason}. ${advice}`, {
    cause: error,
    retryable,
    details: sqlState === undefined ? { operation } : { operation, sqlState },
  });
}
