import { GOOD, defineTags, type Sample } from "@kiln/core";
import pg from "pg";
import { afterAll, describe, expect, test } from "vitest";
import { PostgresStore, type PostgresStoreOptions } from "../src/index";
import { NEEDS_SERVER, databaseUrl, expectKilnError, uniqueSchema } from "./support/database";

// History reads run on a bounded set of connections (ADR 0040): the store's own history pool
// (connectionString) or at most historyPoolSize at once on a pool the host passes. Slow history
// reads never take the connections writers need. Ordering, not time, is asserted: with history
// reads queued on the writers' pool, a write waits behind all of them.

const T0 = Date.UTC(2026, 0, 1);
const tags = defineTags({ "line.pressure": { dataType: "float64" }, "line.flow": { dataType: "float64" } });
const READS = 8;

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

/** A history read that scans both tags' 40,000 rows into 20,000 time-weighted intervals. */
function slowRead(store: PostgresStore): Promise<unknown> {
  return store.history.aggregate(["line.pressure", "line.flow"], {
    start: T0,
    end: T0 + 20_000_000,
    intervalMs: 2_000,
    aggregates: ["TimeAverage", "Total", "PercentGood"],
  });
}

/** Starts {@link READS} slow reads, then one write; returns how many reads had settled when the write resolved. */
async function readsSettledWhenWritten(store: PostgresStore): Promise<number> {
  let settled = 0;
  const reads = Array.from({ length: READS }, () => slowRead(store).finally(() => settled++));
  await store.samples.writeBatch([{ tag: "line.flow", value: 1, timestamp: T0 - 1000, quality: GOOD }]);
  const atWrite = settled;
  await Promise.all(reads);
  return atWrite;
}

describe.skipIf(databaseUrl === undefined)(`history reads on bounded connections ${NEEDS_SERVER}`, () => {
  const schemas: string[] = [];
  const stores: PostgresStore[] = [];
  const admin = databaseUrl === undefined ? undefined : new pg.Pool({ connectionString: databaseUrl, max: 3 });
  afterAll(async () => {
    await Promise.all(stores.map((store) => store.close()));
    for (const schema of schemas) await admin!.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin!.end();
  });
  const open = async (options: PostgresStoreOptions): Promise<PostgresStore> => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = new PostgresStore({ ...options, schema });
    stores.push(store);
    await store.open(tags.list());
    return store;
  };

  test("own pool: a write succeeds while 8 slow history reads are still running (they use the history pool)", async () => {
    const store = await open({ connectionString: databaseUrl!, maxConnections: 2, historyPoolSize: 2 });
    await store.samples.writeBatch(data());
    // At most two reads run at once; the write needs none of their connections. The others wait in
    // the store, not in pg's queue (where connectTimeoutMs failed them on a loaded machine).
    expect(await readsSettledWhenWritten(store)).toBeLessThan(4);
  });

  test("own pool: reads waiting for a history connection wait in the store, not in pg's queue (whose connectTimeoutMs would fail them)", async () => {
    const store = await open({
      connectionString: databaseUrl!,
      historyPoolSize: 1,
      connectTimeoutMs: 250,
      historyTimeoutMs: 120_000,
    });
    await store.samples.writeBatch(data());
    // Seven reads wait behind the first, each longer than 250 ms in all: none fails.
    const results = await Promise.allSettled(Array.from({ length: READS }, () => slowRead(store)));
    expect(results.map((result) => result.status)).toEqual(new Array(READS).fill("fulfilled"));
  });

  test("host's pool: history reads take at most historyPoolSize of its connections; a write gets one of the rest", async () => {
    const store = await open({ pool: admin!, historyPoolSize: 2 });
    await store.samples.writeBatch(data());
    expect(await readsSettledWhenWritten(store)).toBeLessThan(4);
  });

  test("own pool: the history connections carry historyTimeoutMs; a longer read (raw reads too) rejects with KILN_TIMEOUT naming the query and the option, writes are not cut short", async () => {
    const store = await open({ connectionString: databaseUrl!, historyTimeoutMs: 1 });
    // The writers' pool has no statement_timeout: 40,000 rows load in one statement.
    await store.samples.writeBatch(data());
    const error = await expectKilnError(slowRead(store), "KILN_TIMEOUT");
    expect(error.message).toContain("history.aggregate");
    expect(error.message).toContain("historyTimeoutMs (1 ms)");
    expect(error.retryable).toBe(true);
    // Sibling: a query without sortFree is sent alone (no transaction) and is cancelled the same way.
    const interpolated = await expectKilnError(
      store.history.interpolated(["line.pressure", "line.flow"], {
        start: T0,
        end: T0 + 20_000_000,
        intervalMs: 2_000,
      }),
      "KILN_TIMEOUT",
    );
    expect(interpolated.message).toContain("history.interpolated");
    // Sibling: a raw read of many samples is a history read, on the same connections and budget.
    await expectKilnError(
      store.samples.readSamples({ tag: "line.flow", from: T0, to: T0 + 20_000_000, limit: 20_000 }),
      "KILN_TIMEOUT",
    );
    const rewritten = await store.samples.writeBatch(data());
    expect(rewritten ? rewritten.conflicts : []).toEqual([]);
  });
});

test("historyPoolSize must be a whole number of at least 1", () => {
  for (const historyPoolSize of [0, -1, 1.5, Number.NaN, "2"]) {
    expect(() => new PostgresStore({ historyPoolSize: historyPoolSize as number })).toThrowError(
      expect.objectContaining({ code: "KILN_VALIDATION", message: expect.stringContaining("historyPoolSize") }),
    );
  }
});
