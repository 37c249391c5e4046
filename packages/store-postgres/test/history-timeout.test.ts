import { GOOD, defineTags, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { PostgresStore } from "../src/index";
import { TARGETS, expectKilnError, useTarget } from "./support/database";

// historyTimeoutMs: each history query runs under a server-side statement_timeout of its own
// transaction; a query running longer is cancelled by the server and rejects with KILN_TIMEOUT.

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
        // The timeout was the transaction's only (SET LOCAL): other statements on the pool are not cut short.
        const read = await store.samples.readSamples({
          tag: "line.pressure",
          from: T0,
          to: T0 + 20_000_000,
          limit: 20_000,
        });
        expect(read).toHaveLength(20_000);
      },
    );

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
