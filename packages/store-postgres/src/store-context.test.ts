import { describe, expect, test } from "vitest";
import { historyError } from "./store-context";

// How a failed history read is classified (ADR 0040): a connection lost under the read is the
// retryable KILN_STORE_ERROR it is, even when it arrives once the budget is spent (it was
// KILN_TIMEOUT then, and a caller took a dead connection for a slow query).

const withCode = (message: string, code: string): Error => Object.assign(new Error(message), { code });

describe("historyError", () => {
  test.each([
    ["pg_terminate_backend (57P01)", withCode("terminating connection due to administrator command", "57P01")],
    [
      "a crash shutdown (57P02)",
      withCode("terminating connection because of crash of another server process", "57P02"),
    ],
    ["a connection exception (08006)", withCode("connection failure", "08006")],
    ["a reset socket", withCode("read ECONNRESET", "ECONNRESET")],
    ["pg's closed connection", new Error("Connection terminated unexpectedly")],
    ["a client left unusable", new Error("Client has encountered a connection error and is not queryable")],
  ])("%s is a retryable KILN_STORE_ERROR, within the budget or after it", (_name, error) => {
    for (const elapsedMs of [10, 1_000, 5_000]) {
      const classified = historyError(error, "history.valuesAt", 1_000, elapsedMs);
      expect([classified.code, classified.retryable, classified.cause]).toEqual(["KILN_STORE_ERROR", true, error]);
    }
  });

  test("sibling: the server's statement timeout, and any other failure once the budget is spent, are KILN_TIMEOUT", () => {
    const statementTimeout = withCode("canceling statement due to statement timeout", "57014");
    expect(historyError(statementTimeout, "history.aggregate", 1_000, 10).code).toBe("KILN_TIMEOUT");
    const late = new Error("timeout exceeded when trying to connect");
    expect(historyError(late, "history.aggregate", 1_000, 1_000).code).toBe("KILN_TIMEOUT");
    expect(historyError(late, "history.aggregate", 1_000, 10).code).toBe("KILN_STORE_ERROR");
    // An administrator's cancel (57014 without "statement timeout") is not a timeout.
    const cancel = withCode("canceling statement due to user request", "57014");
    expect(historyError(cancel, "history.aggregate", 1_000, 10).code).toBe("KILN_STORE_ERROR");
  });
});
