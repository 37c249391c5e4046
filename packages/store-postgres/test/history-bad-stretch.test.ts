import { GOOD, MemoryStore, defineTags, quality, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import type { SqlClient, SqlQueryable, SqlResult } from "../src/index";
import { TARGETS, useTarget } from "./support/database";

// valueAt / interpolated over a long stretch of bad samples: the nearest-good probes read each
// row of the stretch at most once per direction, not once per requested time (ADR 0040). Rows
// read are counted from the statement's plan (EXPLAIN ANALYZE), not timed.

const T0 = Date.UTC(2026, 0, 1);
const TAG = "line.pressure";
const STRETCH = 20_000;
const tags = defineTags({ [TAG]: { dataType: "float64" } });
const BAD = quality("bad", "sensor failure");

/** Good 0 at T0, 20,000 bad samples at 1 Hz, good 100 after them. */
function data(): Sample[] {
  return [
    { tag: TAG, value: 0, timestamp: T0, quality: GOOD },
    ...Array.from({ length: STRETCH }, (_, index): Sample => ({
      tag: TAG,
      value: null,
      timestamp: T0 + (index + 1) * 1000,
      quality: BAD,
    })),
    { tag: TAG, value: 100, timestamp: T0 + (STRETCH + 1) * 1000, quality: GOOD },
  ];
}

interface PlanNode {
  readonly "Relation Name"?: string;
  readonly "Actual Rows"?: number;
  readonly "Actual Loops"?: number;
  readonly "Rows Removed by Filter"?: number;
  readonly Plans?: readonly PlanNode[];
}

/** Rows of `samples` read by a plan: returned plus removed by a filter, over all loops. */
function samplesRead(node: PlanNode): number {
  const own =
    node["Relation Name"] === "samples"
      ? ((node["Actual Rows"] ?? 0) + (node["Rows Removed by Filter"] ?? 0)) * (node["Actual Loops"] ?? 1)
      : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + samplesRead(child), 0);
}

/** Wraps `inner` so the values-at statement is first explained (ANALYZE) and its rows read recorded. */
function counting(inner: SqlClient, counts: number[]): SqlClient {
  const explain = async (queryable: SqlQueryable, text: string, parameters?: readonly unknown[]): Promise<void> => {
    if (!text.includes("WITH ORDINALITY AS times (ms, ordinality)")) return;
    const [plan] = (
      await queryable.query<{ "QUERY PLAN": unknown }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, parameters)
    ).rows;
    const json = plan!["QUERY PLAN"];
    const root = (typeof json === "string" ? JSON.parse(json) : json) as { Plan: PlanNode }[];
    counts.push(samplesRead(root[0]!.Plan));
  };
  return {
    async query<TRow>(text: string, parameters?: readonly unknown[]): Promise<SqlResult<TRow>> {
      await explain(inner, text, parameters);
      return inner.query<TRow>(text, parameters);
    },
    transaction: (work) =>
      inner.transaction((transaction) =>
        work({
          async query<TRow>(text: string, parameters?: readonly unknown[]): Promise<SqlResult<TRow>> {
            await explain(transaction, text, parameters);
            return transaction.query<TRow>(text, parameters);
          },
        }),
      ),
  };
}

for (const { kind, title, skip } of TARGETS) {
  describe.skipIf(skip)(`nearest-good probes over a bad stretch ${title}`, () => {
    const target = useTarget(kind);

    test("interpolated at 200 times across 20,000 bad rows reads each row at most once per direction, with MemoryStore's values", async () => {
      const counts: number[] = [];
      const store = await target.store(tags.list(), { client: counting(target.client(), counts) });
      await store.samples.writeBatch(data());
      const query = { start: T0 + 500, end: T0 + 500 + 200 * 100_000, intervalMs: 100_000 };
      const values = await store.history.interpolated([TAG], query);
      expect(counts).toHaveLength(1);
      // A probe from every time read ~200 × 20,000 / 2 rows each way (4 million).
      expect(counts[0]).toBeLessThan(2 * STRETCH + 8 * 200);
      const memory = new MemoryStore();
      await memory.open(tags.list());
      await memory.samples.writeBatch(data());
      expect(values).toEqual(await memory.history!.interpolated([TAG], query));
      await memory.close();
    });

    test("sibling: valueAt of one time inside the stretch still finds both good samples (one walk each way)", async () => {
      const counts: number[] = [];
      const store = await target.store(tags.list(), { client: counting(target.client(), counts) });
      await store.samples.writeBatch(data());
      const [value] = await store.history.valueAt([TAG], T0 + 5_000_500);
      // On the line from 0 to 100 over 20,001 s, 5,000.5 s in: about 25.0; uncertain (rests on bad data).
      expect(value!.value).toBeCloseTo((5_000.5 * 100) / (STRETCH + 1), 9);
      expect(value!.quality.severity).toBe("uncertain");
      expect(counts[0]).toBeLessThan(2 * STRETCH + 8);
    });
  });
}
