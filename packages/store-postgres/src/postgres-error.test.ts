import { KilnError } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { isRetryablePostgresError, sqlStateOf, toStoreError } from "./postgres-error";

/** An error shaped like pg's DatabaseError (and PGlite's): a message and a SQLSTATE `code`. */
function databaseError(code: string, message = `server error ${code}`): Error {
  return Object.assign(new Error(message), { code, severity: "ERROR" });
}

/** An error shaped like Node's socket errors. */
function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code, syscall: "connect" });
}

describe("isRetryablePostgresError", () => {
  test.each([
    ["serialization failure", databaseError("40001")],
    ["deadlock", databaseError("40P01")],
    [
      "admin shutdown (pg_terminate_backend)",
      databaseError("57P01", "terminating connection due to administrator command"),
    ],
    ["crash shutdown", databaseError("57P02")],
    ["cannot connect now", databaseError("57P03")],
    ["too many connections", databaseError("53300", "sorry, too many clients already")],
    ["connection failure (class 08)", databaseError("08006")],
    ["lock not available", databaseError("55P03")],
    ["statement timeout", databaseError("57014")],
    ["disk full", databaseError("53100")],
    ["out of memory", databaseError("53200")],
    ["configuration limit exceeded", databaseError("53400")],
    ["I/O error", databaseError("58030")],
    ["system error", databaseError("58000")],
    ["read-only transaction after a failover", databaseError("25006")],
    ["idle session timeout", databaseError("57P05")],
    ["transaction rollback", databaseError("40000")],
    ["statement completion unknown", databaseError("40003")],
    ["SQL client unable to establish connection", databaseError("08001")],
    ["connection refused", socketError("ECONNREFUSED")],
    ["connection reset", socketError("ECONNRESET")],
    ["broken pipe", socketError("EPIPE")],
    ["socket timeout", socketError("ETIMEDOUT")],
    ["connection lost mid-query", new Error("Connection terminated unexpectedly")],
    ["pool connect timeout", new Error("timeout exceeded when trying to connect")],
    ["unqueryable client", new Error("Client has encountered a connection error and is not queryable")],
    ["refused on every address", new AggregateError([socketError("ECONNREFUSED"), socketError("ECONNREFUSED")], "")],
    ["wrapped cause", new Error("write failed", { cause: databaseError("40P01") })],
    ["a retryable KilnError", new KilnError("KILN_TIMEOUT", "timed out", { retryable: true })],
  ])("%s is retryable", (_name, error) => {
    expect(isRetryablePostgresError(error)).toBe(true);
  });

  // Issue 15, fifth review: a failure to reach the server, whatever its form, is never a reason
  // to skip an audit entry or drop a sample.
  test.each([
    ["the Unix socket is gone while the server restarts", socketError("ENOENT")],
    ["a host name that does not resolve", socketError("ENOTFOUND")],
    ["DNS temporarily failing", socketError("EAI_AGAIN")],
    ["no such name", socketError("EAI_NONAME")],
    ["a socket permission error", socketError("EACCES")],
    ["too many open files", socketError("EMFILE")],
    ["TLS refused by the server", new Error("The server does not support SSL connections")],
    ["authentication failure", databaseError("28P01")],
    ["database does not exist", databaseError("3D000")],
    ["undefined table (dropped by an administrator)", databaseError("42P01")],
    ["permission denied", databaseError("42501")],
    ["an invalid transaction state other than read-only", databaseError("25001")],
    ["object in use", databaseError("55006")],
    ["internal error", databaseError("XX000", "Connection terminated")],
    ["a plain error nothing recognises", new Error("boom")],
    ["a non-error value", "Connection terminated"],
    ["nothing", undefined],
    [
      "a content error wrapped with a connection error",
      new AggregateError([databaseError("22P02"), socketError("ENOENT")]),
    ],
  ])("%s is retryable (kept and retried, never skipped or dropped)", (_name, error) => {
    expect(isRetryablePostgresError(error)).toBe(true);
  });

  test.each([
    ["unique violation", databaseError("23505")],
    ["foreign key violation", databaseError("23503")],
    ["not-null violation", databaseError("23502")],
    ["invalid text representation", databaseError("22P02")],
    ["a NUL character in text", databaseError("22021")],
    ["datetime overflow", databaseError("22008")],
    ["check violation", databaseError("23514")],
    ["index row too large", databaseError("54000")],
    ["a value JavaScript could not encode", new TypeError("Do not know how to serialize a BigInt")],
    ["a wrapped content error", new Error("write failed", { cause: databaseError("22P02") })],
    ["content errors only", new AggregateError([databaseError("22P02"), databaseError("23505")])],
    ["a KilnError that is not retryable", new KilnError("KILN_VALIDATION", "bad")],
  ])("%s is not retryable (an answer about the content)", (_name, error) => {
    expect(isRetryablePostgresError(error)).toBe(false);
  });
});

describe("sqlStateOf", () => {
  test("reads SQLSTATEs and ignores Node error codes", () => {
    expect(sqlStateOf(databaseError("40P01"))).toBe("40P01");
    expect(sqlStateOf(socketError("EPIPE"))).toBeUndefined();
    expect(sqlStateOf(socketError("ECONNRESET"))).toBeUndefined();
    expect(sqlStateOf(new Error("no code"))).toBeUndefined();
  });
});

describe("toStoreError", () => {
  test("wraps a failure as KILN_STORE_ERROR with retryable, cause, operation and SQLSTATE", () => {
    const cause = databaseError("57P01");
    const error = toStoreError(cause, "samples.writeBatch");
    expect(error.code).toBe("KILN_STORE_ERROR");
    expect(error.retryable).toBe(true);
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ operation: "samples.writeBatch", sqlState: "57P01" });
    const refused = toStoreError(socketError("ECONNREFUSED"), "open");
    expect([refused.retryable, refused.details]).toEqual([true, { operation: "open" }]);
    expect(toStoreError(databaseError("22P02"), "migrate").retryable).toBe(false);
  });

  test("passes a KilnError through unchanged", () => {
    const conflict = new KilnError("KILN_CONCURRENCY_CONFLICT", "stale");
    expect(toStoreError(conflict, "events.append")).toBe(conflict);
  });
});
