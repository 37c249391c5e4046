import { GOOD, defineTags, isRetryable, type Sample } from "@kiln/core";
import pg from "pg";
import { describe, expect, test } from "vitest";
import { PostgresStore } from "../src/index";
import { NEEDS_SERVER, databaseUrl, uniqueSchema } from "./support/database";

const T0 = Date.UTC(2026, 0, 1);
const BATCHES = 40;
const BATCH_SIZE = 5_000;
const WRITERS = 2;
const MAX_ATTEMPTS = 25;
/** Batches during whose write the store's connections are terminated. */
const KILL_DURING = new Set([3, 9, 16, 24, 31, 37]);

function sequenceBatch(batch: number): Sample[] {
  return Array.from({ length: BATCH_SIZE }, (_unused, index) => {
    const sequence = batch * BATCH_SIZE + index;
    return { tag: "sequence", value: sequence, timestamp: T0 + sequence, quality: GOOD };
  });
}

describe.skipIf(databaseUrl === undefined)(`PostgresStore under connection faults ${NEEDS_SERVER}`, () => {
  test(`every sequence number is stored exactly once while pg_terminate_backend kills the store's connections ${NEEDS_SERVER}`, async () => {
    const schema = uniqueSchema("kiln_fault");
    const applicationName = `kiln_fault_${process.pid}`;
    const url = new URL(databaseUrl!);
    url.searchParams.set("application_name", applicationName);
    const store = new PostgresStore({ connectionString: url.toString(), schema, maxConnections: WRITERS });
    const admin = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    const killed: number[] = [];
    const retried: string[] = [];

    const terminateStoreConnections = async (): Promise<void> => {
      const result = await admin.query<{ killed: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int4 AS killed
         FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
        [applicationName],
      );
      killed.push(result.rows[0]!.killed);
    };

    /** Writes one batch with the pipeline's retry rule: repeat while the error says it is retryable. */
    const writeWithRetry = async (batch: number): Promise<void> => {
      const samples = sequenceBatch(batch);
      for (let attempt = 1; ; attempt++) {
        // Settled into a value at once, so the rejection is handled while the kill runs.
        const write = store.samples.writeBatch(samples).then(
          () => undefined,
          (error: unknown) => error ?? new Error("rejected with nothing"),
        );
        // Kill while this batch is in flight (on the first attempt), so some writes die mid-COPY
        // or between commit and acknowledgement.
        if (attempt === 1 && KILL_DURING.has(batch)) await terminateStoreConnections();
        const error = await write;
        if (error === undefined) return;
        if (!isRetryable(error) || attempt >= MAX_ATTEMPTS) throw error;
        retried.push((error as Error).message);
      }
    };

    try {
      await store.open(defineTags({ sequence: { dataType: "int32" } }).list());
      let next = 0;
      await Promise.all(
        Array.from({ length: WRITERS }, async () => {
          while (next < BATCHES) await writeWithRetry(next++);
        }),
      );

      expect(killed).toHaveLength(KILL_DURING.size);
      expect(killed.every((count) => count >= 1)).toBe(true);
      // The kills landed on writes in flight, and each failure was classified retryable.
      expect(retried.length).toBeGreaterThan(0);
      const totals = await admin.query<{ rows: number; distinct_values: number; low: number; high: number }>(
        `SELECT count(*)::int4 AS rows, count(DISTINCT value_float)::int4 AS distinct_values,
                min(value_float) AS low, max(value_float) AS high
         FROM "${schema}".samples s JOIN "${schema}".tags t ON t.id = s.tag_id WHERE t.name = 'sequence'`,
      );
      const total = BATCHES * BATCH_SIZE;
      expect(totals.rows[0]).toEqual({ rows: total, distinct_values: total, low: 0, high: total - 1 });
      const misplaced = await admin.query(
        `SELECT 1 FROM "${schema}".samples
         WHERE value_float <> (extract(epoch from time) * 1000 - $1::float8) LIMIT 1`,
        [T0],
      );
      expect(misplaced.rows).toEqual([]);
    } finally {
      await store.close();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
      console.info(`connection fault test: terminated ${killed.join("+")} backends, ${retried.length} retries`);
    }
  });
});
