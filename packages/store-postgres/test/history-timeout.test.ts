import { GOOD, defineTags, type Sample } from "@kiln/core";
import pg from "pg";
import { describe, expect, test } from "vitest";
import { PgPoolSqlClient, PostgresStore, type SqlClient, type SqlQueryable } from "../src/index";
import { TARGETS, expectKilnError, useTarget } from "./support/database";

// historyTimeoutMs: one time budget per history read, counted from the call: waiting in the
// store's queue, waiting for a pooled connection and the query all spend it. A read past it
// rejects with KILN_TIMEOUT wherever the time went (the server cancels a query running longer);
// a store failure within it rejects with KILN_STORE_ERROR.

const T0 = Date.UTC(2026, 0, 1);
const tags = defineTags({ "line.pressure": { dataType: "float64" }, "line.flow": { dataType: "float64" } });

/** Two tags × 20,000 samples at 1 Hz: enough work that 1 ms of statement time never suffices. */
function data(): Sample[] {
  return ["line.pressure", "line.flow"].flatMap((tag) =>
    Array.from({ length: 20_000 }, (_, second) => ({
      tag,
      value: Math.sin(second / 10),
      timestamp: T0 + second * 1000,
      quality: GOOD,
    })),
  );
}

test("historyTimeoutMs must be a whole number of ms from 1 to 2147483647 (PostgreSQL's statement_timeout)", async () => {
  for (const historyTimeoutMs of [0, -1, 1.5, Number.NaN, 2 ** 31, "30000"]) {
    expect(() => new PostgresStore({ historyTimeoutMs: historyTimeoutMs as number })).toThrowError(
      expect.objectContaining({ code: "KILN_VALIDATION", message: expect.stringContaining("historyTimeoutMs") }),
    );
  }
  expect(() => new PostgresStore({ historyTimeoutMs: 2 ** 31 - 1 })).not.toThrow();
});

for (const { kind, title, skip } of TARGETS) {
  describe.skipIf(skip)(`history query timeout ${title}`, () => {
    const target = useTarget(kind);
    // PGlite (single-threaded WebAssembly, no timer signal) accepts statement_timeout but never
    // cancels a statement: there the option has no effect (see docs/stores/postgres.md).
    const cancels = test.skipIf(kind === "pglite");

    cancels(
      "an aggregate running past historyTimeoutMs rejects with KILN_TIMEOUT naming the query and the option (needs the PostgreSQL server: PGlite never cancels a statement)",
      async () => {
        const store = await target.store(tags.list(), { historyTimeoutMs: 1 });
        await store.samples.writeBatch(data());
        const error = await expectKilnError(
          store.history.aggregate(["line.pressure", "line.flow"], {
            start: T0,
            end: T0 + 20_000_000,
            intervalMs: 2_000,
            aggregates: ["TimeAverage", "Total", "PercentGood"],
          }),
          "KILN_TIMEOUT",
        );
        expect(error.message).toContain("history.aggregate");
        expect(error.message).toContain("historyTimeoutMs (1 ms)");
        expect(error.retryable).toBe(true);
      },
    );

    cancels(
      "interpolated and downsample run under the same timeout; the store keeps answering afterwards (needs the PostgreSQL server: PGlite never cancels a statement)",
      async () => {
        const store = await target.store(tags.list(), { historyTimeoutMs: 1 });
        await store.samples.writeBatch(data());
        const interpolated = await expectKilnError(
          store.history.interpolated(["line.pressure", "line.flow"], {
            start: T0,
            end: T0 + 20_000_000,
            intervalMs: 2_000,
          }),
          "KILN_TIMEOUT",
        );
        expect(interpolated.message).toContain("history.interpolated");
        await expectKilnError(
          store.history.downsample("line.pressure", { start: T0, end: T0 + 20_000_000, points: 50_000 }),
          "KILN_TIMEOUT",
        );
        // Raw reads are history reads too, under the same budget (a HistoryRead Raw of many nodes)...
        await expectKilnError(
          store.samples.readSamples({ tag: "line.pressure", from: T0, to: T0 + 20_000_000, limit: 20_000 }),
          "KILN_TIMEOUT",
        );
        // ...while the timeout was the transactions' only (SET LOCAL): a write on the pool is not cut short.
        const rewritten = await store.samples.writeBatch(data());
        expect(rewritten ? rewritten.conflicts : []).toEqual([]);
      },
    );

    test("a read that spends its budget waiting for a pooled connection rejects with KILN_TIMEOUT, not the pool's later connect failure (KILN_STORE_ERROR)", async () => {
      // The wait for a connection is simulated: history queries hang 3 s, then fail as pg-pool
      // does when its connectionTimeoutMillis passes ("timeout exceeded when trying to connect").
      const gate = gatedClient(target.client(), { failAfterMs: 3_000 });
      const store = await target.store(tags.list(), { client: gate.client, historyTimeoutMs: 1_000 });
      await store.samples.writeBatch(data().slice(0, 100));
      gate.active = true;
      const started = performance.now();
      const error = await expectKilnError(store.history.valueAt(["line.pressure"], T0 + 500), "KILN_TIMEOUT");
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(error.message).toContain("history.valueAt");
      expect(error.message).toContain("historyTimeoutMs (1000 ms)");
      expect(error.retryable).toBe(true);
      // Sibling: a store failure within the budget stays a store failure (retryable, classified).
      gate.failAfterMs = 0;
      const failed = await expectKilnError(store.history.valueAt(["line.pressure"], T0 + 500), "KILN_STORE_ERROR");
      expect(failed.retryable).toBe(true);
      gate.active = false;
      expect(await store.history.valueAt(["line.pressure"], T0 + 500)).toHaveLength(1);
    });

    test("a read that spends its budget queued behind historyPoolSize running reads rejects with KILN_TIMEOUT and never runs", async () => {
      const gate = gatedClient(target.client(), { failAfterMs: 3_000 });
      const store = await target.store(tags.list(), {
        client: gate.client,
        historyTimeoutMs: 1_000,
        historyPoolSize: 1,
      });
      await store.samples.writeBatch(data().slice(0, 100));
      gate.active = true;
      const first = store.history.valueAt(["line.pressure"], T0 + 500);
      const queued = store.history.interpolated(["line.flow"], { start: T0, end: T0 + 10_000, intervalMs: 1_000 });
      await Promise.all([expectKilnError(queued, "KILN_TIMEOUT"), expectKilnError(first, "KILN_TIMEOUT")]);
      // The first read holds the only slot until its query ends (3 s); the queued one left without a query.
      gate.active = false;
      await gate.drained();
      expect(await store.history.valueAt(["line.pressure"], T0 + 500)).toHaveLength(1);
      expect(gate.held).toBe(1);
    });

    test("the default timeout (30 s) lets the same queries answer", async () => {
      const store = await target.store(tags.list());
      await store.samples.writeBatch(data());
      const values = await store.history.interpolated(["line.pressure"], {
        start: T0,
        end: T0 + 20_000_000,
        intervalMs: 2_000,
      });
      expect(values).toHaveLength(10_000);
    });
  });
}

describe.skipIf(TARGETS[1]!.skip)(
  "history query timeout on a host's pg.Pool (needs the PostgreSQL server: set DATABASE_URL)",
  () => {
    const target = useTarget("server");

    test("a read waiting longer than historyTimeoutMs for the pool's only connection rejects with KILN_TIMEOUT, before pg-pool's connectionTimeoutMillis fails it", async () => {
      const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1, connectionTimeoutMillis: 4_000 });
      try {
        const store = await target.store(tags.list(), { client: new PgPoolSqlClient(pool), historyTimeoutMs: 1_000 });
        await store.samples.writeBatch(data().slice(0, 100));
        const writer = await pool.connect(); // a writer holds the pool's only connection
        try {
          const started = performance.now();
          const error = await expectKilnError(store.history.valueAt(["line.pressure"], T0 + 500), "KILN_TIMEOUT");
          expect(performance.now() - started).toBeLessThan(4_000);
          expect(error.message).toContain("historyTimeoutMs (1000 ms)");
        } finally {
          writer.release();
        }
        // The pool is not left short of its connection.
        expect((await pool.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
      } finally {
        await pool.end();
      }
    });
  },
);

/**
 * `client` whose history queries (transactions, while `active`) wait `failAfterMs` and then fail
 * as pg-pool does when no connection came in time; `held` counts the transactions that waited,
 * `drained()` resolves once each has failed.
 */
function gatedClient(client: SqlClient, options: { failAfterMs: number }) {
  const waits: Promise<unknown>[] = [];
  const gate = {
    active: false,
    failAfterMs: options.failAfterMs,
    held: 0,
    drained: async () => {
      await Promise.all(waits);
      await new Promise((resolve) => setTimeout(resolve, 10)); // the slot passes on after the failure
    },
    client: {
      query: (text: string, parameters?: readonly unknown[]) => client.query(text, parameters),
      transaction: async <TResult>(work: (transaction: SqlQueryable) => Promise<TResult>): Promise<TResult> => {
        if (!gate.active) return client.transaction(work);
        if (gate.failAfterMs > 0) gate.held++;
        const wait = new Promise((resolve) => setTimeout(resolve, gate.failAfterMs));
        waits.push(wait);
        await wait;
        throw new Error("timeout exceeded when trying to connect");
      },
      ...(client.copyBinary ? { copyBinary: client.copyBinary.bind(client) } : {}),
    } as SqlClient,
  };
  return gate;
}
