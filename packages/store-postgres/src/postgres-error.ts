import { KilnError } from "@kiln/core";

/** SQLSTATE of a unique violation. */
export const UNIQUE_VIOLATION = "23505";

/**
 * SQLSTATE classes that are a definite answer about the call's own content, so repeating the
 * same call fails the same way (PostgreSQL manual, appendix A "PostgreSQL Error Codes"): 22 data
 * exception (a value the column cannot hold, a NUL character), 23 integrity constraint violation
 * and 54 program limit exceeded (a value too large for an index row). Every other SQLSTATE is
 * about the server, its schema or the session (08 connection, 28 authorization, 3D database,
 * 40 rollback, 42 a dropped table or a revoked grant, 53 resources, 57 shutdown, 58 I/O...):
 * an administrator can fix it, and the entry or sample waits for that.
 */
const CONTENT_CLASSES: readonly string[] = ["22", "23", "54"];

/** Five characters, digits and capitals; no SQLSTATE class starts with E, unlike `EPIPE`, `EPERM`. */
const SQLSTATE = /^(?!E)[0-9A-Z]{5}$/;

/**
 * JavaScript's own errors for a value it could not handle (an encoding bug, a value of the wrong
 * type): about the call's content, not the server.
 */
const CONTENT_ERRORS: readonly (new (...args: never[]) => Error)[] = [TypeError, RangeError];

/** The SQLSTATE carried by a `pg` or PGlite error, if any. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = codeOf(error);
  return code !== undefined && SQLSTATE.test(code) ? code : undefined;
}

/**
 * Whether a failed database call may succeed if repeated. Not retryable, only: an answer about
 * the call's own content: a SQLSTATE of class 22 (data exception), 23 (integrity constraint
 * violation) or 54 (program limit exceeded), a `TypeError` or `RangeError`, or a `KilnError`
 * that says so. Everything else is retryable: every failure to reach the server (a refused,
 * reset or dropped connection, a Unix socket that is not there while the server restarts
 * (`ENOENT`), a host name that does not resolve (`ENOTFOUND`, `EAI_AGAIN`, `EAI_NONAME`), a pool
 * timeout, TLS refused), every other SQLSTATE (the server's condition, schema or grants), and an
 * error nothing here recognises: kept and retried is the safe default, never skipped or dropped.
 * Causes and `AggregateError` members are inspected: any retryable one makes the whole retryable.
 * Both the sample pipeline (retry and spool vs. bisect and drop) and the audit backlog (keep vs.
 * skip) act on this answer.
 */
export function isRetryablePostgresError(error: unknown): boolean {
  return !isContentError(error, 0);
}

/** True only when `error` (and every member or cause it carries) is a definite answer about the content. */
function isContentError(error: unknown, depth: number): boolean {
  if (typeof error !== "object" || error === null || depth > 4) return false;
  if (KilnError.is(error)) return !error.retryable;
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.every((inner) => isContentError(inner, depth + 1));
  }
  const code = codeOf(error);
  if (code !== undefined && SQLSTATE.test(code)) return CONTENT_CLASSES.includes(code.slice(0, 2));
  const cause = (error as { cause?: unknown }).cause;
  if (cause !== undefined) return isContentError(cause, depth + 1);
  return code === undefined && CONTENT_ERRORS.some((type) => error instanceof type);
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

/**
 * SQLSTATEs of a connection the server ended or refused: class 08 (connection exception) and
 * 57P01 admin_shutdown (`pg_terminate_backend`, a fast shutdown), 57P02 crash_shutdown,
 * 57P03 cannot_connect_now.
 */
const CONNECTION_ENDED = /^(08...|57P0[123])$/;

/** Node socket errors of a connection lost under a query. */
const SOCKET_LOST: ReadonlySet<string> = new Set(["ECONNRESET", "EPIPE", "ECONNREFUSED", "ENOTCONN", "ETIMEDOUT"]);

/**
 * True when `error` says the connection a query ran on is gone: the server ended it (see
 * `CONNECTION_ENDED`), its socket failed (`SOCKET_LOST`), or pg reports it closed ("Connection
 * terminated", "Connection terminated unexpectedly", a client "not queryable" after a
 * connection error). Such a failure is the store's, and retrying on a new connection may succeed.
 */
export function isConnectionLost(error: unknown): boolean {
  for (let current = error, depth = 0; typeof current === "object" && current !== null && depth < 5; depth++) {
    const code = codeOf(current);
    if (code !== undefined && (CONNECTION_ENDED.test(code) || SOCKET_LOST.has(code))) return true;
    const message = (current as { message?: unknown }).message;
    if (typeof message === "string" && /^Connection terminated|is not queryable/.test(message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
