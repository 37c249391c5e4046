import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags, interpolationOf } from "../domain/tags";
import { checkAggregateQuery } from "../history/history-input";
import { aggregateSeries, valuesInSeries, type SampleSeries } from "../history/series-history";
import { AGGREGATES } from "../ports/sample-history";
import { MemoryStore } from "./memory-store";

// MemoryStore history at its limits yields to the event loop between slices (issue 18 review:
// 8-15 s of a blocked event loop at MAX_HISTORY_CELLS). Counted, not timed: a setImmediate ticker
// runs between slices only if the query yields; a query computed in one go lets it run 0 times.

const T0 = Date.UTC(2026, 0, 1);
const BAD = quality("bad", "sensor failure");
const TAGS = defineTags({
  "line.a": { dataType: "float64" },
  "line.b": { dataType: "int32" },
  "line.c": { dataType: "bool" },
});
const NAMES = TAGS.list().map((tag) => tag.name);
const COUNT = 30_000;

/** 30,000 samples a tag, 1 s apart: a ramp with a bad stretch and a gap, so slices start on varied data. */
function data(): Sample[] {
  return NAMES.flatMap((tag, tagIndex) =>
    Array.from({ length: COUNT }, (_, index): Sample => {
      const bad = index >= 11_000 && index < 14_000;
      const raw = Math.round(Math.sin(index / 500 + tagIndex) * 1000);
      return {
        tag,
        value: bad ? null : tag === "line.c" ? raw > 0 : raw,
        timestamp: T0 + index * 1000 + (index >= 20_000 ? 3_600_000 : 0),
        quality: bad ? BAD : GOOD,
      };
    }),
  );
}

async function openStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open(TAGS.list());
  const samples = data();
  for (let index = 0; index < samples.length; index += 10_000) {
    await store.samples.writeBatch(samples.slice(index, index + 10_000));
  }
  return store;
}

/** All of a tag's samples, as the reference functions take them. */
async function seriesOf(store: MemoryStore, tag: string): Promise<SampleSeries> {
  const samples = await store.samples.readSamples({ tag, from: 0, to: T0 * 2, limit: 1_000_000 });
  expect(samples).toHaveLength(COUNT);
  return { timestamps: samples.map((sample) => sample.timestamp), samples };
}

/** How often the event loop turned (setImmediate) while `work` ran. */
async function turnsDuring(work: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  try {
    await work();
  } finally {
    running = false;
  }
  return turns;
}

describe("MemoryStore history yields to the event loop and computes the same results", () => {
  const query = { start: T0 - 4_000, end: T0 + 39_996_000, intervalMs: 4_000 }; // 10,000 intervals

  test("aggregate of 3 tags × 10,000 intervals × 12 aggregates runs in slices, equal to the reference computed in one go", async () => {
    const store = await openStore();
    let result: unknown;
    const turns = await turnsDuring(async () => {
      result = await store.history.aggregate(NAMES, { ...query, aggregates: AGGREGATES });
    });
    // 360,000 cells: at most 20,000 between yields, so at least 18 slices.
    expect(turns).toBeGreaterThanOrEqual(18);
    const checked = checkAggregateQuery(NAMES, { ...query, aggregates: AGGREGATES }, () => true);
    const reference = [];
    for (const definition of TAGS.list()) {
      reference.push(
        ...aggregateSeries(
          definition.name,
          await seriesOf(store, definition.name),
          interpolationOf(definition),
          checked.intervals,
          AGGREGATES,
          definition.dataType,
        ),
      );
    }
    expect(result).toEqual(reference);
    await store.close();
  });

  test("sibling: one interval over 30,000 samples stays one slice, with the reference's values", async () => {
    const store = await openStore();
    const whole = { start: T0, end: T0 + 40_000_000, intervalMs: 40_000_000, aggregates: AGGREGATES };
    const [interval] = await store.history.aggregate(["line.a"], whole);
    const checked = checkAggregateQuery(["line.a"], whole, () => true);
    const [reference] = aggregateSeries(
      "line.a",
      await seriesOf(store, "line.a"),
      "sloped",
      checked.intervals,
      AGGREGATES,
      "float64",
    );
    expect(interval).toEqual(reference);
    await store.close();
  });

  test("interpolated, valueAt and valuesAt yield between tags; readBuckets every 20,000 samples", async () => {
    const store = await openStore();
    const times = Array.from({ length: 10_000 }, (_, index) => T0 + index * 3_999);
    expect(await turnsDuring(() => store.history.interpolated(NAMES, query))).toBeGreaterThanOrEqual(3);
    expect(await turnsDuring(() => store.history.valuesAt(NAMES, times))).toBeGreaterThanOrEqual(3);
    expect(await turnsDuring(() => store.history.valueAt(NAMES, T0 + 5_000))).toBeGreaterThanOrEqual(3);
    let buckets: unknown[] = [];
    expect(
      await turnsDuring(async () => {
        buckets = await store.samples.readBuckets({ tag: "line.a", from: 0, to: T0 * 2, bucketMs: 1000 });
      }),
    ).toBeGreaterThanOrEqual(2);
    expect(buckets).toHaveLength(COUNT - 3_000); // the bad stretch has no numeric value
    expect(await store.history.interpolated(["line.b"], query)).toEqual(
      valuesInSeries(
        "line.b",
        await seriesOf(store, "line.b"),
        Array.from({ length: 10_000 }, (_, index) => query.start + index * query.intervalMs),
        "stepped",
      ),
    );
    await store.close();
  });

  test("a write landing between slices changes nothing the query returns (each tag is read at one moment)", async () => {
    const store = await openStore();
    const aggregateQuery = { ...query, aggregates: AGGREGATES };
    const bucketQuery = { tag: "line.a", from: 0, to: T0 * 2, bucketMs: 1000 };
    const before = await store.history.aggregate(["line.a"], aggregateQuery);
    // On the query's second event-loop turn, after its first slice: a spike late in the range (in a later slice).
    const spike = (offset: number): Sample => ({
      tag: "line.a",
      value: 1e6,
      timestamp: T0 + 30_000_500 + offset,
      quality: GOOD,
    });
    const writeOnSecondTurn = (offset: number): Promise<unknown> =>
      new Promise((resolve) =>
        setImmediate(() => setImmediate(() => resolve(store.samples.writeBatch([spike(offset)])))),
      );
    const [during] = await Promise.all([store.history.aggregate(["line.a"], aggregateQuery), writeOnSecondTurn(0)]);
    expect(during).toEqual(before);
    const bucketsBefore = await store.samples.readBuckets(bucketQuery);
    const [bucketsDuring] = await Promise.all([store.samples.readBuckets(bucketQuery), writeOnSecondTurn(1)]);
    expect(bucketsDuring).toEqual(bucketsBefore);
    // The spikes were stored, and a query after them sees them.
    expect(await store.history.aggregate(["line.a"], aggregateQuery)).not.toEqual(before);
    await store.close();
  });

  test("a store closed between slices rejects the query with KILN_LIFECYCLE", async () => {
    const store = await openStore();
    const pending = store.history.aggregate(NAMES, { ...query, aggregates: AGGREGATES }).then(
      () => "resolved",
      (error: unknown) => (error as { code?: string }).code,
    );
    await store.close();
    expect(await pending).toBe("KILN_LIFECYCLE");
  });
});
