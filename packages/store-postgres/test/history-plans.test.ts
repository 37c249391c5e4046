import { GOOD, MemoryStore, defineTags, quality, type Sample } from "@kiln/core";
import { describe, expect, test } from "vitest";
import type { SqlClient, SqlQueryable, SqlResult } from "../src/index";
import { TARGETS, useTarget } from "./support/database";

// The shape of the history statements' plans, as the store runs them (no timings here: the
// figures are in docs/benchmarks.md). Each statement that scans samples is explained, with the
// same parameters, in the transaction the store runs it in.

const T0 = Date.UTC(2026, 0, 1);
const TAG = "line.pressure";
const OTHER = "line.flow";
const tags = defineTags({ [TAG]: { dataType: "float64" }, [OTHER]: { dataType: "float64" } });
const BAD = quality("bad", "sensor failure");

/** Ten minutes of 1 Hz data per tag, with a 10 s bad stretch (null values) every minute. */
function data(tag: string): Sample[] {
  return Array.from({ length: 600 }, (_, second) => {
    const bad = second % 60 > 20 && second % 60 <= 30;
    return {
      tag,
      value: bad ? null : 50 + Math.sin(second / 10),
      timestamp: T0 + second * 1000,
      quality: bad ? BAD : GOOD,
    };
  });
}

interface Explained {
  readonly sql: string;
  /** `SHOW jit` in the statement's own transaction (or outside any, when it ran outside one). */
  readonly jit: string;
  readonly inTransaction: boolean;
  readonly nodeTypes: readonly string[];
  readonly tempWrittenBlocks: number;
}

interface PlanNode {
  readonly "Node Type": string;
  readonly "Temp Written Blocks"?: number;
  readonly Plans?: readonly PlanNode[];
}

function nodeTypes(node: PlanNode): string[] {
  return [node["Node Type"], ...(node.Plans ?? []).flatMap(nodeTypes)];
}

/** Wraps `inner` so every statement that scans samples is first explained (ANALYZE, BUFFERS) where it runs. */
function explaining(inner: SqlClient, explained: Explained[]): SqlClient {
  const scans = (text: string): boolean => /^\s*WITH (input|numeric_samples) AS/.test(text);
  const wrap = (queryable: SqlQueryable, inTransaction: boolean): SqlQueryable["query"] =>
    async function query<TRow>(text: string, parameters?: readonly unknown[]): Promise<SqlResult<TRow>> {
      if (scans(text)) {
        const [plan] = await queryable
          .query<{ "QUERY PLAN": unknown }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, parameters)
          .then((result) => result.rows);
        const json = plan!["QUERY PLAN"];
        const root = (typeof json === "string" ? JSON.parse(json) : json) as { Plan: PlanNode }[];
        const [jit] = (await queryable.query<{ jit: string }>("SHOW jit")).rows;
        explained.push({
          sql: text,
          jit: jit!.jit,
          inTransaction,
          nodeTypes: nodeTypes(root[0]!.Plan),
          tempWrittenBlocks: root[0]!.Plan["Temp Written Blocks"] ?? 0,
        });
      }
      return queryable.query<TRow>(text, parameters);
    };
  return {
    query: wrap(inner, false),
    transaction: (work) => inner.transaction((transaction) => work({ query: wrap(transaction, true) })),
  };
}

for (const { kind, title, skip } of TARGETS) {
  describe.skipIf(skip)(`history statement plans ${title}`, () => {
    const target = useTarget(kind);

    async function explainedStore() {
      const explained: Explained[] = [];
      const store = await target.store(tags.list(), { client: explaining(target.client(), explained) });
      await store.samples.writeBatch([...data(TAG), ...data(OTHER)]);
      explained.length = 0; // the writes' statements
      return { store, explained };
    }

    test("TimeAverage, Total and PercentGood read each tag's rows in primary-key order: no sort, no temp files", async () => {
      const { store, explained } = await explainedStore();
      await store.history.aggregate([TAG, OTHER], {
        start: T0,
        end: T0 + 600_000,
        intervalMs: 60_000,
        aggregates: ["TimeAverage", "Total", "PercentGood"],
      });
      expect(explained).toHaveLength(1);
      expect(explained[0]!.nodeTypes).toContain("WindowAgg");
      expect(explained[0]!.nodeTypes.filter((type) => type.endsWith("Sort"))).toEqual([]);
      expect(explained[0]!.tempWrittenBlocks).toBe(0);
    });

    test("DurationGood and Interpolative (windows without areas) read in key order too: no sort", async () => {
      const { store, explained } = await explainedStore();
      await store.history.aggregate([OTHER], {
        start: T0,
        end: T0 + 600_000,
        intervalMs: 60_000,
        aggregates: ["DurationGood", "Interpolative"],
      });
      expect(explained).toHaveLength(1);
      expect(explained[0]!.nodeTypes).toContain("WindowAgg");
      expect(explained[0]!.nodeTypes.filter((type) => type.endsWith("Sort"))).toEqual([]);
    });

    test("aggregate and downsample run with JIT compilation off, in a transaction of their own", async () => {
      const { store, explained } = await explainedStore();
      const range = { start: T0, end: T0 + 600_000 };
      await store.history.aggregate([TAG], { ...range, intervalMs: 60_000, aggregates: ["Average", "Maximum"] });
      await store.history.aggregate([TAG], { ...range, intervalMs: 60_000, aggregates: ["TimeAverage"] });
      await store.history.downsample(TAG, { ...range, points: 100 });
      expect(explained.map(({ jit, inTransaction }) => ({ jit, inTransaction }))).toEqual(
        Array.from({ length: 3 }, () => ({ jit: "off", inTransaction: true })),
      );
    });

    test("time-weighted areas across a bad stretch inside an interval equal MemoryStore's (the previous good sample found by a key probe)", async () => {
      const { store } = await explainedStore();
      const memory = new MemoryStore();
      await memory.open(tags.list());
      await memory.samples.writeBatch([...data(TAG), ...data(OTHER)]);
      const query = {
        start: T0,
        end: T0 + 600_000,
        intervalMs: 60_000,
        aggregates: ["TimeAverage", "Total", "PercentGood"] as const,
      };
      const round = (intervals: Awaited<ReturnType<typeof memory.history.aggregate>>) =>
        intervals.map(({ values }) =>
          Object.values(values).map((value) => [
            typeof value.value === "number" ? Math.round(value.value * 1e9) / 1e9 : value.value,
            value.quality.severity,
          ]),
        );
      const expected = round(
        await memory.history.aggregate([TAG, OTHER], { ...query, aggregates: [...query.aggregates] }),
      );
      expect(
        round(await store.history.aggregate([TAG, OTHER], { ...query, aggregates: [...query.aggregates] })),
      ).toEqual(expected);
      await memory.close();
    });

    test("valueAt returns the bounds in a few plain columns (no JSON built per row)", async () => {
      const queries: { text: string; columns: number }[] = [];
      const inner = target.client();
      // The statement runs in a transaction of its own (for historyTimeoutMs): recorded there too.
      const recording =
        (queryable: SqlQueryable): SqlQueryable["query"] =>
        async <TRow>(text: string, parameters?: readonly unknown[]) => {
          const result = await queryable.query<TRow>(text, parameters);
          const first = result.rows[0] as Record<string, unknown> | undefined;
          if (text.includes("ORDINALITY")) queries.push({ text, columns: Object.keys(first ?? {}).length });
          return result;
        };
      const client: SqlClient = {
        query: recording(inner),
        transaction: (work) => inner.transaction((transaction) => work({ query: recording(transaction) })),
      };
      const store = await target.store(tags.list(), { client });
      await store.samples.writeBatch([...data(TAG), ...data(OTHER)]);
      const values = await store.history.valueAt([TAG, OTHER], T0 + 25_500);
      expect(values.map((sample) => sample.quality.severity)).toEqual(["uncertain", "uncertain"]);
      expect(queries).toHaveLength(1);
      expect(queries[0]!.text).not.toMatch(/jsonb?/i);
      expect(queries[0]!.columns).toBeLessThanOrEqual(10);
    });
  });
}
