import { GOOD, KilnError, MemoryStore, defineTags, quality, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { PostgresStore, type SqlClient, type SqlQueryable, type SqlResult } from "../src/index";
import { NEEDS_SERVER, TARGETS, databaseUrl, uniqueSchema, useTarget } from "./support/database";

// valuesAt answers any set of times (an OPC UA ReadAtTime's uneven times) in ONE statement, and a
// history read whose connection is killed under it fails at once with the connection's error.
// Statements are counted through a wrapping client, not timed.

const T0 = Date.UTC(2026, 0, 1);
const TAG = "line.pressure";
const OTHER = "line.valve";
const tags = defineTags({ [TAG]: { dataType: "float64" }, [OTHER]: { dataType: "bool" } });
const BAD = quality("bad", "sensor failure");

/** A ramp at 1 Hz for 2 hours with a 40-minute bad stretch; the valve toggles each minute. */
function data(): Sample[] {
  const samples: Sample[] = [];
  for (let second = 0; second < 7_200; second++) {
    const bad = second >= 1_800 && second < 4_200;
    samples.push({
      tag: TAG,
      value: bad ? null : second / 10,
      timestamp: T0 + second * 1000,
      quality: bad ? BAD : GOOD,
    });
    if (second % 60 === 0)
      samples.push({ tag: OTHER, value: second % 120 === 0, timestamp: T0 + second * 1000, quality: GOOD });
  }
  return samples;
}

/** 1,000 uneven times over the data (and beyond both ends), newest first, some on stored samples. */
const TIMES = Array.from({ length: 1_000 }, (_, index) => T0 - 5_000 + Math.floor((index * index * 7.3) % 7_300_000))
  .map((time, index) => (index % 9 === 0 ? time - (time % 1000) : time))
  .reverse();

/** Wraps `inner`, counting the statements that read the samples table. */
function counting(inner: SqlClient, statements: string[]): SqlClient {
  const note = (text: string): void => {
    if (/\.samples\b/.test(text) && /^\s*(WITH|SELECT)/.test(text)) statements.push(text);
  };
  const queryable = (target: SqlQueryable): SqlQueryable => ({
    query<TRow>(text: string, parameters?: readonly unknown[]): Promise<SqlResult<TRow>> {
      note(text);
      return target.query<TRow>(text, parameters);
    },
  });
  return {
    ...queryable(inner),
    transaction: (work) => inner.transaction((transaction) => work(queryable(transaction))),
  };
}

for (const { kind, title, skip } of TARGETS) {
  describe.skipIf(skip)(`valuesAt ${title}`, () => {
    const target = useTarget(kind);

    test("1,000 uneven times of two tags are one statement, with MemoryStore's values and raw flags", async () => {
      const statements: string[] = [];
      const store = await target.store(tags.list(), { client: counting(target.client(), statements) });
      await store.samples.writeBatch(data());
      statements.length = 0;
      const values = await store.history.valuesAt([TAG, OTHER], TIMES);
      expect(statements).toHaveLength(1);
      expect(values).toHaveLength(2 * TIMES.length);
      const memory = new MemoryStore();
      await memory.open(tags.list());
      await memory.samples.writeBatch(data());
      expect(values).toEqual(await memory.history.valuesAt([TAG, OTHER], TIMES));
      // Raw exactly where a good sample is stored at the time.
      const stored = new Set(
        data()
          .filter((sample) => sample.quality.severity === "good")
          .map((s) => `${s.tag}@${s.timestamp}`),
      );
      expect(values.map((value) => value.raw)).toEqual(
        values.map((value) => stored.has(`${value.tag}@${value.timestamp}`)),
      );
      expect(values.some((value) => value.raw)).toBe(true);
      await memory.close();
    });

    test("sibling: valueAt and interpolated are one statement each too, and valueAt(t) is valuesAt([t]) without raw", async () => {
      const statements: string[] = [];
      const store = await target.store(tags.list(), { client: counting(target.client(), statements) });
      await store.samples.writeBatch(data());
      statements.length = 0;
      const time = T0 + 2_000_500;
      const [single] = await store.history.valueAt([TAG], time);
      const [{ raw, ...batched }] = (await store.history.valuesAt([TAG], [time])) as [Sample & { raw: boolean }];
      await store.history.interpolated([TAG], { start: T0, end: T0 + 7_200_000, intervalMs: 7_200 });
      expect(statements).toHaveLength(3);
      expect(batched).toEqual(single);
      expect(raw).toBe(false);
    });
  });
}

const server = TARGETS.find((entry) => entry.kind === "server")!;
describe.skipIf(server.skip)(`a history read whose connection is killed ${NEEDS_SERVER}`, () => {
  const target = useTarget("server");

  for (const source of ["the host's pool", "the store's own history pool"] as const) {
    test(`fails at once with a retryable KILN_STORE_ERROR, not a KILN_TIMEOUT at the end of its budget (${source})`, async () => {
      const schema = uniqueSchema();
      // A budget far beyond the test's timeout: only the connection's own error can end the read in time.
      const historyTimeoutMs = 2_000_000_000;
      const store =
        source === "the host's pool"
          ? target.create({ schema, historyTimeoutMs })
          : new PostgresStore({ connectionString: databaseUrl!, schema, historyTimeoutMs });
      try {
        await store.open(tags.list());
        await store.samples.writeBatch(data().slice(0, 100));
        // The read waits on a lock held here, so it is mid-query when its connection is killed.
        const error = await target.client().transaction(async (transaction) => {
          await transaction.query(`LOCK TABLE "${schema}".samples IN ACCESS EXCLUSIVE MODE`);
          const reading = store.history.valuesAt([TAG], TIMES).then(
            () => undefined,
            (reason: unknown) => reason,
          );
          for (let attempt = 0; attempt < 250; attempt++) {
            const { rows } = await transaction.query<{ pid: number }>(
              `SELECT pid FROM pg_locks WHERE relation = '"${schema}".samples'::regclass AND NOT granted`,
            );
            if (rows.length > 0) {
              await transaction.query("SELECT pg_terminate_backend($1)", [rows[0]!.pid]);
              return reading;
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          throw new Error("the history read never waited on the lock");
        });
        expect(KilnError.is(error) ? [error.code, error.retryable, error.details] : error).toEqual([
          "KILN_STORE_ERROR",
          true,
          { operation: "history.valuesAt", sqlState: "57P01" },
        ]);
      } finally {
        await store.close();
        await target.sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      }
    }, 20_000);
  }
});
