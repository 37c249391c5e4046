import { KilnError } from "@kiln/core";

/** SQLSTATE of a unique violation. */
export const UNIQUE_VIOLATION = "23505";

/**
 * SQLSTATE classes after which repeating the same call may succeed (PostgreSQL manual, appendix
 * A "PostgreSQL Error Codes"): 08 connection exception, 40 transaction rollback (serialization
 * failure, deadlock), 53 insufficient resources (disk full, out of memory, too many
 * connections), 57 operator intervention (statement cancel or timeout, administrator or crash
 * shutdown, cannot connect now) and 58 system error (I/O error). These describe the server's
 * condition, not the call.
 */
const RETRYABLE_CLASSES: readonly string[] = ["08", "40", "53", "57", "58"];

/**
 * Single SQLSTATEs of otherwise definite classes that are transient: lock not available (55P03)
 * and read-only transaction (25006, a standby or a primary demoted by a failover until the
 * client reaches the new primary).
 */
const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set(["55P03", "25006"]);

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
 * Whether a failed database call may succeed if repeated. Retryable: connection failures (refused,
 * reset, terminated, pool timeout) and the SQLSTATE classes of the server's condition: 08
 * connection exception, 40 transaction rollback, 53 insufficient resources, 57 operator
 * intervention, 58 system error, plus 55P03 (lock not available) and 25006 (read-only after a
 * failover). Not retryable: every other SQLSTATE, a definite answer about the call itself
 * (class 22 data exception, 23 integrity constraint violation, 42 syntax or access rule
 * violation...), and everything unrecognised. Causes and `AggregateError` members are inspected
 * too. Both the sample pipeline (retry and spool vs. bisect and drop) and the audit backlog (keep
 * vs. skip) act on this answer.
 */
export function isRetryablePostgresError(error: unknown): boolean {
  return inspect(error, 0);
}

function inspect(error: unknown, depth: number): boolean {
  if (typeof error !== "object" || error === null || depth > 4) return false;
  if (KilnError.is(error)) return error.retryable;
  const code = codeOf(error);
  if (code !== undefined) {
    if (RETRYABLE_NODE_CODES.has(code)) return true;
    if (SQLSTATE.test(code) && (RETRYABLE_SQLSTATES.has(code) || RETRYABLE_CLASSES.includes(code.slice(0, 2)))) {
      return true;
    }
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
