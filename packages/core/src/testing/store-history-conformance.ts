import { KilnValidationError } from "../domain/errors";
import { GOOD, quality } from "../domain/quality";
import { defineTags } from "../domain/tags";
import { AGGREGATES } from "../ports/sample-history";
import { expectKilnError, group } from "./conformance-runner";
import type { StoreGroupConformanceOptions } from "./store-conformance";
import type { Quality, QualitySeverity, Sample, Store, TagValue } from "@kiln/core";
import type { AggregateInterval, AggregateName, HistoryQueries } from "@kiln/core/driver-kit";

const T0 = Date.UTC(2026, 0, 1);
const S = 1000;
const HISTORY_TAGS = defineTags({
  "history.ramp": { dataType: "float64" }, // sloped by default
  "history.valve": { dataType: "bool" }, // stepped by default
  "history.state": { dataType: "string" }, // stepped by default
  "history.trend": { dataType: "float64" },
  "history.int64": { dataType: "int64" }, // stepped by default
  "history.uint64": { dataType: "uint64" },
  "history.int64.sloped": { dataType: "int64", interpolation: "sloped" },
  "history.int64.mixed": { dataType: "int64" },
  "history.huge": { dataType: "float64" }, // sloped: values near float64's largest
  "history.huge.stepped": { dataType: "float64", interpolation: "stepped" },
  "history.retyped": { dataType: "float64", interpolation: "stepped" }, // was int64: older samples are bigints
});
const RAMP = "history.ramp";
const VALVE = "history.valve";
const STATE = "history.state";
const TREND = "history.trend";
const BAD = quality("bad", "sensor failure");
const UNCERTAIN = quality("uncertain", "last usable value");

function at(tag: string, seconds: number, value: TagValue | null, sampleQuality: Quality = GOOD): Sample {
  return { tag, value, timestamp: T0 + seconds * S, quality: sampleQuality };
}

/**
 * The golden data set. Times in seconds after T0.
 * ramp (float64, sloped): a ramp, samples on interval edges, a bad stretch 20-30 s (one bad
 * sample carries a value, 999, that must be ignored), a gap 30-60 s, no data after 60 s.
 * valve (bool, stepped): steps, an uncertain sample at 22 s (uncertain is not data), the
 * last sample at 40 s. state (string, stepped). trend: 40 samples with a spike and a dip.
 */
const DATA: readonly Sample[] = [
  at(RAMP, 0, 0),
  at(RAMP, 10, 10),
  at(RAMP, 15, 20),
  at(RAMP, 20, null, BAD),
  at(RAMP, 25, 999, BAD),
  at(RAMP, 30, 40),
  at(RAMP, 60, 10),
  at(VALVE, 0, false),
  at(VALVE, 10, true),
  at(VALVE, 14, false),
  at(VALVE, 22, true, UNCERTAIN),
  at(VALVE, 26, true),
  at(VALVE, 40, false),
  at(STATE, 0, "idle"),
  at(STATE, 10, "run"),
  ...Array.from({ length: 40 }, (_, second) => {
    if (second === 5) return at(TREND, second, null, BAD);
    if (second === 13) return at(TREND, second, 100);
    if (second === 27) return at(TREND, second, -50);
    if (second === 33) return at(TREND, second, 500, UNCERTAIN);
    return at(TREND, second, 0);
  }),
];

const INT64 = "history.int64";
const UINT64 = "history.uint64";
const SLOPED64 = "history.int64.sloped";
const MIXED64 = "history.int64.mixed";
const HUGE = "history.huge";
const HUGE_STEPPED = "history.huge.stepped";
/** 64-bit integers around 2^53, 2^63 and 2^64 - 1 (tests of the precision rule). */
const WIDE: readonly Sample[] = [
  at(INT64, 0, 2n ** 53n + 1n),
  at(INT64, 4, 2n ** 53n),
  at(INT64, 7, 2n ** 53n + 3n),
  at(INT64, 10, -(2n ** 63n)),
  at(INT64, 15, -(2n ** 63n) + 1n),
  at(INT64, 20, 5n),
  at(INT64, 25, 7n),
  at(INT64, 30, 7n),
  at(UINT64, 0, 2n ** 64n - 2n),
  at(UINT64, 2, 2n ** 64n - 1n),
  at(UINT64, 5, 2n ** 63n),
  at(UINT64, 8, 2n ** 63n - 1n),
  at(UINT64, 10, 1n),
  at(SLOPED64, 0, 2n ** 62n),
  at(SLOPED64, 10, 2n ** 62n + 10n),
  at(SLOPED64, 20, 2n ** 62n + 20n),
  at(MIXED64, 0, 5),
  at(MIXED64, 2, 5n),
  at(MIXED64, 5, 2n ** 53n + 1n),
];

type Expected = [value: number | bigint | null, severity: QualitySeverity];
type ExpectedInterval = Partial<Record<AggregateName, Expected>>;

/** Rounds to 1e-9 so results computed in a different order (SQL, TypeScript) compare equal. */
function round(value: number | bigint | null): number | bigint | null {
  if (value === null || typeof value === "bigint" || Math.abs(value) > 1e290) return value;
  return Math.round(value * 1e9) / 1e9;
}

function summarize(intervals: readonly AggregateInterval[]): ExpectedInterval[] {
  return intervals.map((interval) =>
    Object.fromEntries(
      Object.entries(interval.values).map(([name, result]) => [name, [round(result.value), result.quality.severity]]),
    ),
  );
}

function expectedOf(rows: readonly ExpectedInterval[]): ExpectedInterval[] {
  return rows.map((row) =>
    Object.fromEntries(Object.entries(row).map(([name, [value, severity]]) => [name, [round(value), severity]])),
  );
}

type HistoryTest = (history: HistoryQueries, store: Store) => Promise<void>;

function withHistory(options: StoreGroupConformanceOptions, body: HistoryTest): () => Promise<void> {
  return async () => {
    const store = await options.factory();
    await store.open(HISTORY_TAGS.list());
    try {
      await store.samples.writeBatch(DATA);
      await body(store.history!, store);
    } finally {
      await store.close();
    }
  };
}

/** Every aggregate Kiln defines: a store declaring `capabilities.aggregates` answers each. */
const ALL: AggregateName[] = [...AGGREGATES];

/**
 * `HistoryQueries` (stores declaring `capabilities.aggregates`): golden vectors derived by hand
 * from OPC UA Part 13, so every store gives the same numbers and qualities for the same data.
 */
export function storeHistoryConformance(options: StoreGroupConformanceOptions): void {
  const { expect } = options;
  group(options, "history", (test) => {
    test(
      "aggregate follows OPC UA Part 13 on a sloped tag: ramps, edges, a bad stretch, a gap, no data",
      withHistory(options, async (history) => {
        const result = await history.aggregate([RAMP], {
          start: T0 - 10 * S,
          end: T0 + 80 * S,
          intervalMs: 10 * S,
          aggregates: ALL,
        });
        expect(result.map((interval) => (interval.start - T0) / S)).toEqual([-10, 0, 10, 20, 30, 40, 50, 60, 70]);
        expect(result.map((interval) => interval.end - interval.start)).toEqual(new Array(9).fill(10 * S));
        // Bounding values V(t) (Part 13 3.1.8): V(-10) none; V(0)=0, V(10)=10, V(30)=40, V(60)=10
        // exact good samples; V(20): bad sample at 20, line 15 s (20) -> 30 s (40): 20+20*5/15 = 80/3,
        // uncertain; V(40) = 40-30*10/30 = 30 good; V(50) = 40-30*20/30 = 20 good;
        // V(70) = V(80) = 10 held past the last sample, uncertain.
        const none: ExpectedInterval = {
          Count: [0, "bad"],
          Minimum: [null, "bad"],
          Maximum: [null, "bad"],
          Start: [null, "bad"],
          End: [null, "bad"],
          Delta: [null, "bad"],
          Average: [null, "bad"],
        };
        expect(summarize(result)).toEqual(
          expectedOf([
            {
              // [-10, 0): before any sample: nothing at all; no sample before it, so 0 ms good.
              ...none,
              TimeAverage: [null, "bad"],
              Total: [null, "bad"],
              DurationGood: [0, "good"],
              PercentGood: [0, "good"],
              Interpolative: [null, "bad"],
            },
            {
              // [0, 10): one good sample (0 s, 0). Area: line 0 -> V(10)=10 over 10 s = 50; /10 s = 5.
              Count: [1, "good"],
              Minimum: [0, "good"],
              Maximum: [0, "good"],
              Start: [0, "good"],
              End: [0, "good"],
              Delta: [0, "good"],
              Average: [0, "good"],
              TimeAverage: [5, "good"],
              Total: [50, "good"], // 5 * 10 s
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [0, "good"],
            },
            {
              // [10, 20): 10 and 20. Area: (10+20)/2*5 = 75, then 20 -> V(20)=80/3 over 5 s:
              // (20+80/3)/2*5 = 350/3; total 575/3 over 10 s = 115/6. Uncertain: V(20) is.
              Count: [2, "good"],
              Minimum: [10, "good"],
              Maximum: [20, "good"],
              Start: [10, "good"],
              End: [20, "good"],
              Delta: [10, "good"],
              Average: [15, "good"],
              TimeAverage: [115 / 6, "uncertain"],
              Total: [575 / 3, "uncertain"],
              DurationGood: [10_000, "good"], // 10 -> 15 -> 20, every sample good
              PercentGood: [100, "good"],
              Interpolative: [10, "good"],
            },
            {
              // [20, 30): only bad samples (the 999 is not data). Raw aggregates: no data.
              // TimeAverage across the bad stretch: (80/3 + 40)/2 = 100/3, uncertain; 0 ms good.
              ...none,
              TimeAverage: [100 / 3, "uncertain"],
              Total: [1000 / 3, "uncertain"],
              DurationGood: [0, "good"],
              PercentGood: [0, "good"],
              Interpolative: [80 / 3, "uncertain"],
            },
            {
              // [30, 40): 40 at the edge. Line 40 -> V(40)=30: average 35.
              Count: [1, "good"],
              Minimum: [40, "good"],
              Maximum: [40, "good"],
              Start: [40, "good"],
              End: [40, "good"],
              Delta: [0, "good"],
              Average: [40, "good"],
              TimeAverage: [35, "good"],
              Total: [350, "good"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [40, "good"],
            },
            {
              // [40, 50): inside the gap, no raw data; the line 30 -> 20 averages 25, good.
              ...none,
              TimeAverage: [25, "good"],
              Total: [250, "good"],
              DurationGood: [10_000, "good"], // the last sample before (30 s) is good
              PercentGood: [100, "good"],
              Interpolative: [30, "good"],
            },
            {
              // [50, 60): line 20 -> 10 (the sample at 60 s is the end bound): 15.
              ...none,
              TimeAverage: [15, "good"],
              Total: [150, "good"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [20, "good"],
            },
            {
              // [60, 70): the last sample, 10; its value held to 70 s: 10, uncertain (extrapolated).
              Count: [1, "good"],
              Minimum: [10, "good"],
              Maximum: [10, "good"],
              Start: [10, "good"],
              End: [10, "good"],
              Delta: [0, "good"],
              Average: [10, "good"],
              TimeAverage: [10, "uncertain"],
              Total: [100, "uncertain"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [10, "good"],
            },
            {
              // [70, 80): after the last sample: held value 10, uncertain.
              ...none,
              TimeAverage: [10, "uncertain"],
              Total: [100, "uncertain"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [10, "uncertain"],
            },
          ]),
        );
      }),
    );

    test(
      "aggregate follows OPC UA Part 13 on a stepped tag: steps, an uncertain sample, held values",
      withHistory(options, async (history) => {
        const result = await history.aggregate([VALVE], {
          start: T0,
          end: T0 + 50 * S,
          intervalMs: 10 * S,
          aggregates: ["Count", "Maximum", "Delta", "TimeAverage", "DurationGood", "PercentGood", "Interpolative"],
        });
        // Stepped bounds: V(0)=0 and V(10)=1 exact; V(20)=0 (14 s, later samples exist);
        // V(30)=1 (26 s); V(40)=0 exact; V(50)=0 held past the last sample, uncertain.
        expect(summarize(result)).toEqual(
          expectedOf([
            {
              // [0, 10): false for 10 s: time average 0 (fraction of time open).
              Count: [1, "good"],
              Maximum: [0, "good"],
              Delta: [0, "good"],
              TimeAverage: [0, "good"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [0, "good"],
            },
            {
              // [10, 20): true 10-14 s, false 14-20 s: 4/10 = 0.4. Delta: End 0 - Start 1.
              Count: [2, "good"],
              Maximum: [1, "good"],
              Delta: [-1, "good"],
              TimeAverage: [0.4, "good"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [1, "good"],
            },
            {
              // [20, 30): uncertain at 22 s is not data: false held 20-26 s, true 26-30 s: 4/10.
              // Good 20-22 s and 26-30 s: 6 s = 60 %; the raw results are uncertain.
              Count: [1, "uncertain"],
              Maximum: [1, "uncertain"],
              Delta: [0, "uncertain"],
              TimeAverage: [0.4, "uncertain"],
              DurationGood: [6_000, "good"],
              PercentGood: [60, "good"],
              Interpolative: [0, "good"],
            },
            {
              // [30, 40): no samples; true held all along: 1, good.
              Count: [0, "bad"],
              Maximum: [null, "bad"],
              Delta: [null, "bad"],
              TimeAverage: [1, "good"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [1, "good"],
            },
            {
              // [40, 50): false from the last sample on; held past it, so uncertain.
              Count: [1, "good"],
              Maximum: [0, "good"],
              Delta: [0, "good"],
              TimeAverage: [0, "uncertain"],
              DurationGood: [10_000, "good"],
              PercentGood: [100, "good"],
              Interpolative: [0, "good"],
            },
          ]),
        );
      }),
    );

    test(
      "a good-quality sample without a value is not data: it makes the interval uncertain",
      withHistory(options, async (history, store) => {
        const start = T0 + 1000 * S;
        await store.samples.writeBatch([
          { tag: TREND, value: 1, timestamp: start, quality: GOOD },
          { tag: TREND, value: null, timestamp: start + 10, quality: GOOD },
          { tag: TREND, value: 3, timestamp: start + 20, quality: GOOD },
        ]);
        const result = await history.aggregate([TREND], {
          start,
          end: start + 30,
          intervalMs: 30,
          aggregates: ["Count", "Average", "PercentGood"],
        });
        const summary = summarize(result);
        expect(summary[0]?.Count).toEqual([2, "uncertain"]);
        expect(summary[0]?.Average).toEqual([2, "uncertain"]);
        expect((summary[0]?.PercentGood?.[0] ?? 100) < 100).toBe(true);
      }),
    );

    test(
      "the last interval ends at end (Part 13 5.4.2.2): a sample after end is not in it",
      withHistory(options, async (history, store) => {
        const start = T0 + 2000 * S;
        await store.samples.writeBatch([
          { tag: TREND, value: 1, timestamp: start + 5, quality: GOOD },
          { tag: TREND, value: 100, timestamp: start + 25, quality: GOOD },
        ]);
        const result = await history.aggregate([TREND], {
          start,
          end: start + 20,
          intervalMs: 15,
          aggregates: ["Count", "Maximum", "DurationGood", "PercentGood"],
        });
        expect(result.map((interval) => [interval.start - start, interval.end - start])).toEqual([
          [0, 15],
          [15, 20],
        ]);
        expect(summarize(result)[1]).toEqual({
          Count: [0, "bad"],
          Maximum: [null, "bad"],
          DurationGood: [5, "good"],
          PercentGood: [100, "good"],
        });
      }),
    );

    test(
      "aggregate returns tags in the order given, each over every interval",
      withHistory(options, async (history) => {
        const result = await history.aggregate([VALVE, RAMP], {
          start: T0,
          end: T0 + 15 * S, // the last interval is [10, 15): the ramp's sample at 15 s lies outside
          intervalMs: 10 * S,
          aggregates: ["Count"],
        });
        expect(
          result.map((interval) => [
            interval.tag,
            (interval.start - T0) / S,
            (interval.end - T0) / S,
            interval.values.Count?.value,
          ]),
        ).toEqual([
          [VALVE, 0, 10, 1],
          [VALVE, 10, 15, 2],
          [RAMP, 0, 10, 1],
          [RAMP, 10, 15, 1],
        ]);
      }),
    );

    test(
      "valueAt gives stepped values with their type, sloped values on the line, with quality",
      withHistory(options, async (history) => {
        const values = async (seconds: number): Promise<[TagValue | null, QualitySeverity][]> =>
          (await history.valueAt([RAMP, VALVE, STATE], T0 + seconds * S)).map((sample) => {
            expect(sample.timestamp).toBe(T0 + seconds * S);
            return [typeof sample.value === "number" ? round(sample.value) : sample.value, sample.quality.severity];
          });
        // 12 s: ramp on the line 10 s (10) -> 15 s (20): 14; valve true since 10 s (a sample
        // follows at 14 s); state "run" since 10 s, but nothing stored after it: uncertain.
        expect(await values(12)).toEqual([
          [14, "good"],
          [true, "good"],
          ["run", "uncertain"],
        ]);
        // 17 s: ramp 20 + 20*2/15 = 68/3, uncertain (the bad sample at 20 s lies before the next
        // good one); valve false since 14 s (a sample follows).
        expect(await values(17)).toEqual([
          [round(68 / 3), "uncertain"],
          [false, "good"],
          ["run", "uncertain"], // nothing stored after 10 s: held past the last sample
        ]);
        // 30 s: exact good samples, or the last value before with later samples.
        expect(await values(30)).toEqual([
          [40, "good"],
          [true, "good"],
          ["run", "uncertain"],
        ]);
        // 45 s: ramp 40 - 30*15/30 = 25 good; valve false held past its last sample.
        expect(await values(45)).toEqual([
          [25, "good"],
          [false, "uncertain"],
          ["run", "uncertain"],
        ]);
        // Before any sample: no data.
        expect(await values(-5)).toEqual([
          [null, "bad"],
          [null, "bad"],
          [null, "bad"],
        ]);
      }),
    );

    test(
      "interpolated gives valueAt at the start of each interval",
      withHistory(options, async (history) => {
        const result = await history.interpolated([RAMP, VALVE], { start: T0, end: T0 + 30 * S, intervalMs: 10 * S });
        expect(
          result.map((sample) => [
            sample.tag,
            (sample.timestamp - T0) / S,
            typeof sample.value === "number" ? round(sample.value) : sample.value,
            sample.quality.severity,
          ]),
        ).toEqual([
          [RAMP, 0, 0, "good"],
          [RAMP, 10, 10, "good"],
          [RAMP, 20, round(80 / 3), "uncertain"],
          [VALVE, 0, false, "good"],
          [VALVE, 10, true, "good"],
          [VALVE, 20, false, "good"],
        ]);
      }),
    );

    test(
      "downsample keeps the first, smallest, largest and last sample of each column (M4)",
      withHistory(options, async (history) => {
        // 10 points: 2 columns, [0, 20) and [20, 40). Column 0: first 0 s, smallest 0 (earliest:
        // 0 s), largest 100 at 13 s, last 19 s, and the bad sample at 5 s (no value): its quality
        // is worse than every pick's. Column 1: first 20 s, smallest -50 at 27 s, largest 500 at
        // 33 s (uncertain, kept with its quality), last 39 s.
        const trend = await history.downsample(TREND, { start: T0, end: T0 + 40 * S, points: 10 });
        expect(trend.map((sample) => [(sample.timestamp - T0) / S, sample.value, sample.quality.severity])).toEqual([
          [0, 0, "good"],
          [5, null, "bad"],
          [13, 100, "good"],
          [19, 0, "good"],
          [20, 0, "good"],
          [27, -50, "good"],
          [33, 500, "uncertain"],
          [39, 0, "good"],
        ]);
        // Enough points for every sample: every sample comes back once (the bad one as its column's marker).
        const all = await history.downsample(TREND, { start: T0, end: T0 + 40 * S, points: 5 * 40 });
        expect(all.length).toBe(40);
      }),
    );

    test(
      "downsample keeps a bad or uncertain stretch inside a column: the first sample of the column's worst quality",
      withHistory(options, async (history, store) => {
        const start = T0 + 3000 * S;
        // 3 columns of 20 s over a ramp (first = smallest, last = largest, all good):
        // [0, 20): uncertain at 4 s, bad values 8-10 s (inside the ramp, no extreme): marker 8 s (bad is worst).
        // [20, 40): uncertain 30-31 s: marker 30 s. [40, 60): only bad samples without a value: 40 s alone.
        const stretch = Array.from({ length: 60 }, (_, second): Sample => {
          const sampleQuality =
            second >= 40 || (second >= 8 && second <= 10)
              ? BAD
              : second === 4 || second === 30 || second === 31
                ? UNCERTAIN
                : GOOD;
          return {
            tag: TREND,
            value: second >= 40 ? null : second,
            timestamp: start + second * S,
            quality: sampleQuality,
          };
        });
        await store.samples.writeBatch(stretch);
        const trend = await history.downsample(TREND, { start, end: start + 60 * S, points: 15 });
        expect(trend.map((sample) => [(sample.timestamp - start) / S, sample.value, sample.quality.severity])).toEqual([
          [0, 0, "good"],
          [8, 8, "bad"],
          [19, 19, "good"],
          [20, 20, "good"],
          [30, 30, "uncertain"],
          [39, 39, "good"],
          [40, null, "bad"],
        ]);
        // Good data without a marker: a good column gives its M4 picks only.
        const good = await history.downsample(TREND, { start: start + 12 * S, end: start + 18 * S, points: 5 });
        expect(good.map((sample) => (sample.timestamp - start) / S)).toEqual([12, 17]);
      }),
    );

    test(
      "downsample and TimeAverage before 1970 with fractional-ms timestamps: every picked sample comes back, every area counts",
      withHistory(options, async (history, store) => {
        // Before the epoch a time's ms is negative: a time recomputed from its float ms (to_timestamp)
        // can land a microsecond off the stored one. The same samples after 1970 are the oracle.
        // (1931-12-01 plus whole seconds and 317 µs: PostgreSQL's to_timestamp(ms / 1000) misses each by 1 µs.)
        const offsets = [0.317, 1000.317, 1500.5, 2000.317, 3000.317, 4000.317, 5000.317, 6000.317, 7000.317];
        const values = [5, -3, null, 7, 1, 9, -8, 2, 4];
        const pattern = (base: number): Sample[] =>
          offsets.map((offset, index) => ({
            tag: TREND,
            value: values[index]!,
            timestamp: base + offset,
            quality: values[index] === null ? BAD : GOOD,
          }));
        const before = Date.UTC(1931, 11, 1);
        const after = T0 + 5000 * S;
        await store.samples.writeBatch([...pattern(before), ...pattern(after)]);
        const trend = async (base: number): Promise<unknown[]> =>
          (await history.downsample(TREND, { start: base, end: base + 8 * S, points: 40 })).map((sample) => [
            Math.round((sample.timestamp - base) * 1000),
            sample.value,
            sample.quality.severity,
          ]);
        // Each sample is its column's only pick: all nine come back, before 1970 as after.
        expect((await trend(before)).length).toBe(9);
        expect(await trend(before)).toEqual(await trend(after));
        // Sibling: a time-weighted area whose previous good sample lies behind a bad one looks that
        // sample up at its own time: the areas before 1970 are those after it.
        const areas = async (base: number): Promise<[unknown, unknown][]> =>
          (
            await history.aggregate([TREND], {
              start: base + 1000,
              end: base + 7000,
              intervalMs: 2000,
              aggregates: ["TimeAverage", "Total"],
            })
          ).flatMap((interval) =>
            (["TimeAverage", "Total"] as const).map((name): [unknown, unknown] => [
              interval.values[name]?.value ?? null,
              interval.values[name]?.quality.severity,
            ]),
          );
        // Equal up to float rounding of the durations (the times' ms differ in magnitude).
        const early = await areas(before);
        const late = await areas(after);
        expect(early.map(([, severity]) => severity)).toEqual(late.map(([, severity]) => severity));
        const close = early.map(([value], index) => {
          const expected = late[index]![0];
          if (expected === null || value === null) return value === expected;
          return Math.abs(Number(value) - Number(expected)) < 1e-6 * Math.max(1, Math.abs(Number(expected)));
        });
        expect(close).toEqual(early.map(() => true));
      }),
    );

    test(
      "interpolated across a stretch of bad samples: each time takes the nearest good sample on each side, however far (a stepped string)",
      withHistory(options, async (history, store) => {
        // state: "run" from 10 s (golden data), "heat" at 100 s, bad samples 101-199 s, "cool" at 200 s.
        await store.samples.writeBatch([
          at(STATE, 100, "heat"),
          ...Array.from({ length: 99 }, (_, index) => at(STATE, 101 + index, null, BAD)),
          at(STATE, 200, "cool"),
        ]);
        const values = await history.interpolated([STATE], {
          start: T0 + 95 * S,
          end: T0 + 215 * S,
          intervalMs: 10 * S,
        });
        expect(values.map((value) => [(value.timestamp - T0) / S, value.value, value.quality.severity])).toEqual([
          [95, "run", "good"],
          ...Array.from({ length: 10 }, (_, index) => [105 + index * 10, "heat", "uncertain"]), // rests on bad data
          [205, "cool", "uncertain"], // held past the last sample
        ]);
      }),
    );

    test(
      "interpolated equals valueAt at every time: samples at sub-ms offsets, a bad stretch, the next good sample 40 days later",
      withHistory(options, async (history, store) => {
        // One Part 13 value per time, whichever query asks: the batched one (interpolated, which
        // looks for a nearest good sample only up to the neighbouring time and carries it) and
        // the single-time one (valueAt). Times fall between samples stored at sub-ms offsets, in a
        // bad stretch, and after the last nearby sample, where the bound is 40 days away (a slope
        // of micro-units: 78.5 where valueAt says 78.49997 would be a second answer).
        const base = T0 + 20_000 * S;
        await store.samples.writeBatch([
          { tag: TREND, value: 70, timestamp: base + 0.317, quality: GOOD },
          { tag: TREND, value: 71.5, timestamp: base + 1000.731, quality: GOOD },
          { tag: TREND, value: 99, timestamp: base + 2000.5, quality: BAD },
          { tag: TREND, value: 98, timestamp: base + 2500.001, quality: UNCERTAIN },
          { tag: TREND, value: 78.5, timestamp: base + 3000.999, quality: GOOD },
          { tag: TREND, value: 0, timestamp: base + 40 * 86_400 * S + 0.123, quality: GOOD },
        ]);
        for (const start of [base - 1000, base + 1]) {
          const batched = await history.interpolated([TREND], { start, end: start + 40 * 250, intervalMs: 250 });
          const single: Sample[] = [];
          for (const value of batched) single.push(...(await history.valueAt([TREND], value.timestamp)));
          const plain = (values: readonly Sample[]): unknown[] =>
            values.map((value) => [value.timestamp - base, value.value, value.quality.severity, value.quality.code]);
          expect(plain(batched)).toEqual(plain(single));
          // After the last nearby sample the value slopes toward the far one: not held flat.
          const tail = batched.at(-1)!;
          const drop = 78.5 - (tail.value as number);
          expect(drop > 0 && drop < 1e-3).toBe(true);
        }
      }),
    );

    test(
      "valuesAt gives valueAt at each time, in the order given (uneven, repeated), raw only for a good sample stored at the time",
      withHistory(options, async (history) => {
        const seconds = [30, 12, -5, 22, 30, 45, 10, 25];
        const values = await history.valuesAt(
          [RAMP, VALVE, STATE],
          seconds.map((second) => T0 + second * S),
        );
        expect(values.map((value) => [value.tag, (value.timestamp - T0) / S])).toEqual(
          [RAMP, VALVE, STATE].flatMap((tag) => seconds.map((second) => [tag, second])),
        );
        for (const value of values) {
          const { raw: _raw, ...sample } = value;
          expect(sample).toEqual((await history.valueAt([value.tag], value.timestamp))[0]);
        }
        // Raw: ramp's good samples at 10 and 30 s (not the bad ones at 20 and 25 s); valve's at 10 s
        // (22 s is uncertain: the value is held, interpolated); state's at 10 s.
        const raw = (tag: string): number[] =>
          values.filter((value) => value.tag === tag && value.raw).map((value) => (value.timestamp - T0) / S);
        expect(raw(RAMP)).toEqual([30, 30, 10]);
        expect(raw(VALVE)).toEqual([10]);
        expect(raw(STATE)).toEqual([10]);
      }),
    );

    test(
      "valuesAt at hundreds of uneven times across a bad stretch equals interpolated's values there",
      withHistory(options, async (history, store) => {
        // The batched form carries a bound across times (as interpolated does): uneven times must
        // give the same Part 13 values as an even grid through the same times.
        const base = T0 + 30_000 * S;
        await store.samples.writeBatch([
          { tag: TREND, value: 10, timestamp: base, quality: GOOD },
          ...Array.from({ length: 500 }, (_, index): Sample => ({
            tag: TREND,
            value: null,
            timestamp: base + (index + 1) * 10,
            quality: BAD,
          })),
          { tag: TREND, value: 20, timestamp: base + 5_010, quality: GOOD },
        ]);
        const grid = await history.interpolated([TREND], { start: base - 6, end: base + 6_000, intervalMs: 3 });
        // Uneven (every 5th and 7th point, and the good samples' times), newest first, one time twice.
        const picked = grid
          .filter((value, index) => index % 7 === 2 || index % 5 === 0 || value.timestamp === base + 5_010)
          .reverse();
        picked.push(picked[10]!);
        const values = await history.valuesAt(
          [TREND],
          picked.map((value) => value.timestamp),
        );
        expect(values.map(({ raw: _raw, ...sample }) => sample)).toEqual(picked);
        expect(values.filter((value) => value.raw).map((value) => value.timestamp - base)).toEqual([5_010, 0]);
      }),
    );

    test(
      "downsample reads a long range in one pass (20,000 samples well inside the test timeout)",
      withHistory(options, async (history, store) => {
        const start = T0 + 10_000 * S;
        const count = 20_000;
        const value = (index: number): number =>
          Math.round(Math.sin(index / 300) * 1000) + (index === 12_345 ? 5000 : 0);
        const long = Array.from({ length: count }, (_, index) => at(TREND, 0, value(index)));
        long.forEach((sample, index) => Object.assign(sample, { timestamp: start + index * 10 }));
        for (let first = 0; first < count; first += 5000)
          await store.samples.writeBatch(long.slice(first, first + 5000));
        const trend = await history.downsample(TREND, { start, end: start + count * 10, points: 250 });
        expect(trend.length <= 250 && trend.length > 100).toBe(true);
        expect(trend[0]?.timestamp).toBe(start);
        expect(trend.at(-1)?.timestamp).toBe(start + (count - 1) * 10);
        expect(trend.find((sample) => sample.timestamp === start + 12_345 * 10)?.value).toBe(value(12_345));
      }),
    );

    test(
      "64-bit integers: picked values are exact bigints, float64 arithmetic on them beyond ±2^53 is uncertain",
      withHistory(options, async (history, store) => {
        await store.samples.writeBatch(WIDE);
        const interval = { start: T0, end: T0 + 30 * S, intervalMs: 10 * S };
        const int64 = await history.aggregate([INT64], {
          ...interval,
          aggregates: [
            "Count",
            "Minimum",
            "Maximum",
            "Start",
            "End",
            "Delta",
            "Average",
            "TimeAverage",
            "Interpolative",
          ],
        });
        // [0, 10): 2^53+1, 2^53, 2^53+3 (all 2^53 or 2^53+4 in float64). [10, 20): -2^63, -2^63+1.
        // [20, 30): 5, 7 (safe: arithmetic exact, good). A sample at 30 s closes the last interval.
        expect(summarize(int64)).toEqual([
          {
            Count: [3, "good"],
            Minimum: [2n ** 53n, "good"],
            Maximum: [2n ** 53n + 3n, "good"],
            Start: [2n ** 53n + 1n, "good"],
            End: [2n ** 53n + 3n, "good"],
            Delta: [2n, "good"],
            Average: [summarize(int64)[0]!.Average![0], "uncertain"],
            TimeAverage: [summarize(int64)[0]!.TimeAverage![0], "uncertain"],
            Interpolative: [2n ** 53n + 1n, "good"],
          },
          {
            Count: [2, "good"],
            Minimum: [-(2n ** 63n), "good"],
            Maximum: [-(2n ** 63n) + 1n, "good"],
            Start: [-(2n ** 63n), "good"],
            End: [-(2n ** 63n) + 1n, "good"],
            Delta: [1n, "good"],
            Average: [summarize(int64)[1]!.Average![0], "uncertain"],
            TimeAverage: [summarize(int64)[1]!.TimeAverage![0], "uncertain"],
            Interpolative: [-(2n ** 63n), "good"],
          },
          {
            Count: [2, "good"],
            Minimum: [5n, "good"],
            Maximum: [7n, "good"],
            Start: [5n, "good"],
            End: [7n, "good"],
            Delta: [2n, "good"],
            Average: [6, "good"],
            TimeAverage: [6, "good"],
            Interpolative: [5n, "good"],
          },
        ]);
        const average = int64[0]!.values.Average!;
        expect(typeof average.value === "number" && Math.abs(average.value - 2 ** 53) < 8).toBe(true);
        expect(average.quality.reason?.startsWith("precision lost") ?? false).toBe(true);

        // uint64 across both columns: 2^64-2, 2^64-1, 2^63, 2^63-1 (float64: 2^64, 2^64, 2^63, 2^63).
        const uint64 = await history.aggregate([UINT64], {
          start: T0,
          end: T0 + 10 * S,
          intervalMs: 10 * S,
          aggregates: ["Minimum", "Maximum", "Start", "End", "Delta"],
        });
        expect(summarize(uint64)).toEqual([
          {
            Minimum: [2n ** 63n - 1n, "good"],
            Maximum: [2n ** 64n - 1n, "good"],
            Start: [2n ** 64n - 2n, "good"],
            End: [2n ** 63n - 1n, "good"],
            Delta: [2n ** 63n - 1n - (2n ** 64n - 2n), "good"],
          },
        ]);

        // valueAt and interpolated of a stepped tag: the held sample's value, exactly.
        const at = await history.valueAt([INT64, UINT64], T0 + 6 * S);
        expect(at.map((sample) => [sample.value, sample.quality.severity])).toEqual([
          [2n ** 53n, "good"],
          [2n ** 63n, "good"],
        ]);
        const stepped = await history.interpolated([INT64], interval);
        expect(stepped.map((sample) => sample.value)).toEqual([2n ** 53n + 1n, -(2n ** 63n), 5n]);

        // M4 compares exactly: smallest 2^63-1 at 8 s, largest 2^64-1 at 2 s.
        const trend = await history.downsample(UINT64, { start: T0, end: T0 + 10 * S, points: 5 });
        expect(trend.map((sample) => [(sample.timestamp - T0) / S, sample.value])).toEqual([
          [0, 2n ** 64n - 2n],
          [2, 2n ** 64n - 1n],
          [8, 2n ** 63n - 1n],
        ]);
      }),
    );

    test(
      "64-bit integers: a sloped value between integers beyond ±2^53 is uncertain; safe ones arriving as numbers mix exactly",
      withHistory(options, async (history, store) => {
        await store.samples.writeBatch(WIDE);
        // Sloped 2^62 at 0 s, 2^62 + 10 at 10 s: halfway is computed in float64, so never good.
        const [between, onSample] = [
          ...(await history.valueAt([SLOPED64], T0 + 5 * S)),
          ...(await history.valueAt([SLOPED64], T0 + 10 * S)),
        ];
        expect(typeof between?.value).toBe("number");
        expect(between?.quality.severity).toBe("uncertain");
        expect(between?.quality.reason?.startsWith("precision lost") ?? false).toBe(true);
        expect([onSample?.value, onSample?.quality.severity]).toEqual([2n ** 62n + 10n, "good"]);
        const sloped = await history.aggregate([SLOPED64], {
          start: T0 + 5 * S,
          end: T0 + 10 * S,
          intervalMs: 5 * S,
          aggregates: ["Interpolative", "TimeAverage", "Count"],
        });
        expect(summarize(sloped).map((row) => [row.Interpolative?.[1], row.TimeAverage?.[1], row.Count])).toEqual([
          ["uncertain", "uncertain", [0, "bad"]],
        ]);

        // A 64-bit tag delivers safe integers as numbers: 5 (number) at 0 s, 5n at 2 s, 2^53+1 at 5 s.
        // Ties go to the bigint; Delta of an integer number and a bigint is an exact bigint.
        const mixed = await history.aggregate([MIXED64], {
          start: T0,
          end: T0 + 10 * S,
          intervalMs: 10 * S,
          aggregates: ["Minimum", "Maximum", "Start", "Delta"],
        });
        expect(summarize(mixed)).toEqual([
          {
            Minimum: [5n, "good"],
            Maximum: [2n ** 53n + 1n, "good"],
            Start: [5, "good"],
            Delta: [2n ** 53n + 1n - 5n, "good"],
          },
        ]);
      }),
    );

    test(
      "a result uncertain for two reasons names both, in a fixed order (bad data; missing data; precision lost)",
      withHistory(options, async (history, store) => {
        const reason = (
          result: { quality: Quality } | undefined,
        ): [QualitySeverity | undefined, string | undefined] => [result?.quality.severity, result?.quality.reason];
        // The ramp's first sample is at 0 s, its bad stretch 20-30 s: [-5, 25) misses data before
        // 0 s and holds bad samples.
        const [both] = await history.aggregate([RAMP], {
          start: T0 - 5 * S,
          end: T0 + 25 * S,
          intervalMs: 30 * S,
          aggregates: ["TimeAverage", "Count"],
        });
        expect(reason(both?.values.TimeAverage)).toEqual(["uncertain", "rests on bad data; rests on missing data"]);
        expect(reason(both?.values.Count)).toEqual(["uncertain", "rests on bad data"]);
        // One reason alone: [-5, 5) only misses data; [15, 25) only holds bad data.
        const [missing] = await history.aggregate([RAMP], {
          start: T0 - 5 * S,
          end: T0 + 5 * S,
          intervalMs: 10 * S,
          aggregates: ["TimeAverage"],
        });
        expect(reason(missing?.values.TimeAverage)).toEqual(["uncertain", "rests on missing data"]);
        // A stepped value after a bad sample, with nothing stored after it: both reasons.
        await store.samples.writeBatch([at(STATE, 20, null, BAD)]);
        const [state] = await history.valueAt([STATE], T0 + 25 * S);
        expect([state?.value, ...reason(state)]).toEqual([
          "run",
          "uncertain",
          "rests on bad data; rests on missing data",
        ]);
        // An average of integers beyond 2^53 over an interval holding a bad sample: bad data and precision.
        await store.samples.writeBatch([...WIDE, at(INT64, 3, null, BAD)]);
        const [wide] = await history.aggregate([INT64], {
          start: T0,
          end: T0 + 10 * S,
          intervalMs: 10 * S,
          aggregates: ["Average", "Maximum"],
        });
        expect(reason(wide?.values.Average)).toEqual([
          "uncertain",
          "rests on bad data; precision lost: computed in float64 from or to an integer beyond ±2^53",
        ]);
        expect(reason(wide?.values.Maximum)).toEqual(["uncertain", "rests on bad data"]);
      }),
    );

    test(
      "Delta is computed in the tag's current type: a float tag whose older samples are bigints (its type changed) gets a float Delta",
      withHistory(options, async (history, store) => {
        const RETYPED = "history.retyped";
        // The tag was int64 until 10 s (bigints stored), float64 since.
        await store.samples.writeBatch([
          at(RETYPED, 0, 2n ** 60n),
          at(RETYPED, 5, 5n),
          at(RETYPED, 10, 3),
          at(RETYPED, 15, 7.5),
        ]);
        const delta = async (from: number, to: number): Promise<[unknown, QualitySeverity, string | undefined]> => {
          const [interval] = await history.aggregate([RETYPED], {
            start: T0 + from * S,
            end: T0 + to * S,
            intervalMs: (to - from) * S,
            aggregates: ["Delta"],
          });
          const result = interval!.values.Delta!;
          return [result.value, result.quality.severity, result.quality.reason];
        };
        // 2^60 (bigint) to 3 (number): float64 3 - 2^60, never the bigint -1152921504606846973n; the
        // integer beyond 2^53 makes it uncertain.
        expect(await delta(0, 11)).toEqual([
          3 - 2 ** 60,
          "uncertain",
          "precision lost: computed in float64 from or to an integer beyond ±2^53",
        ]);
        // 5 (bigint, safe) to 3 (number): -2 as a number, good; 5n to 7.5: 2.5.
        expect(await delta(5, 11)).toEqual([-2, "good", undefined]);
        expect(await delta(5, 16)).toEqual([2.5, "good", undefined]);
      }),
    );

    test(
      "ties go to the earliest sample: -0 and 0 are equal, and the earliest is returned with its own sign",
      withHistory(options, async (history, store) => {
        const start = T0 + 4000 * S;
        // [0, 4): -0, 0, 0, -0. [4, 8): 0, -0. [8, 9): -0 alone.
        const values = [-0, 0, 0, -0, 0, -0, Number.NaN, Number.NaN, -0];
        await store.samples.writeBatch(
          values.flatMap((value, second) =>
            Number.isNaN(value) ? [] : [{ tag: TREND, value, timestamp: start + second * S, quality: GOOD }],
          ),
        );
        const result = await history.aggregate([TREND], {
          start,
          end: start + 9 * S,
          intervalMs: 4 * S,
          aggregates: ["Minimum", "Maximum", "Start", "End", "Delta", "Average"],
        });
        // Object.is tells -0 from 0; each pair is [value is -0, quality].
        const signs = result.map((interval) =>
          Object.fromEntries(
            Object.entries(interval.values).map(([name, value]) => [
              name,
              [Object.is(value.value, -0) ? "-0" : value.value, value.quality.severity],
            ]),
          ),
        );
        expect(signs).toEqual([
          {
            Minimum: ["-0", "good"],
            Maximum: ["-0", "good"],
            Start: ["-0", "good"],
            End: ["-0", "good"],
            Delta: [0, "good"], // -0 - -0
            Average: [0, "good"], // -0 + 0 + 0 + -0
          },
          {
            Minimum: [0, "good"],
            Maximum: [0, "good"],
            Start: [0, "good"],
            End: ["-0", "good"],
            Delta: ["-0", "good"], // -0 - 0
            Average: [0, "good"],
          },
          {
            Minimum: ["-0", "good"],
            Maximum: ["-0", "good"],
            Start: ["-0", "good"],
            End: ["-0", "good"],
            Delta: [0, "good"],
            Average: ["-0", "good"], // the sum starts at the first value, as SQL's sum does
          },
        ]);
        // M4 picks among equal values the earliest: the first column's smallest and largest is 0 s (-0).
        const trend = await history.downsample(TREND, { start, end: start + 4 * S, points: 5 });
        expect(trend.map((sample) => [(sample.timestamp - start) / S, Object.is(sample.value, -0)])).toEqual([
          [0, true],
          [3, true],
        ]);
      }),
    );

    test(
      "bad queries reject with KILN_VALIDATION naming the field, before any query",
      withHistory(options, async (history) => {
        const paths = async (operation: Promise<unknown>): Promise<string[]> => {
          const error = await expectKilnError(expect, operation, "KILN_VALIDATION");
          return error instanceof KilnValidationError ? error.issues.map((issue) => issue.path) : [];
        };
        const interval = { start: T0, end: T0 + 10 * S, intervalMs: S };
        expect(await paths(history.aggregate([RAMP], { ...interval, end: T0 - 1, aggregates: ["Count"] }))).toEqual([
          "end",
        ]);
        expect(await paths(history.aggregate([RAMP], { ...interval, intervalMs: 0, aggregates: ["Count"] }))).toEqual([
          "intervalMs",
        ]);
        expect(
          await paths(history.aggregate([RAMP], { ...interval, end: T0 + 10_001 * S, aggregates: ["Count"] })),
        ).toEqual(["intervalMs"]);
        expect(await paths(history.aggregate([RAMP, "no.such.tag"], { ...interval, aggregates: ["Count"] }))).toEqual([
          "tags[1]",
        ]);
        expect(
          await paths(history.aggregate([RAMP], { ...interval, aggregates: ["Median" as AggregateName] })),
        ).toEqual(["aggregates[0]"]);
        expect(await paths(history.valueAt(["no.such.tag"], T0))).toEqual(["tags[0]"]);
        expect(await paths(history.valuesAt([RAMP], []))).toEqual(["times"]);
        expect(await paths(history.valuesAt([RAMP], [T0, T0 + 0.5, Date.UTC(1700, 0, 1)]))).toEqual([
          "times[1]",
          "times[2]",
        ]);
        expect(await paths(history.valuesAt([RAMP], new Array<number>(10_001).fill(T0)))).toEqual(["times"]);
        expect(await paths(history.valuesAt(["no.such.tag", RAMP, RAMP], [T0]))).toEqual(["tags[0]", "tags[2]"]);
        // Times outside 1900..2100 (exact on every store): a validation error, never a shifted result.
        const y1700 = Date.UTC(1700, 0, 1);
        expect(
          await paths(
            history.aggregate([RAMP], {
              start: y1700,
              end: y1700 + 30 * S,
              intervalMs: S,
              aggregates: ["PercentGood"],
            }),
          ),
        ).toEqual(["start", "end"]);
        expect(await paths(history.valueAt([RAMP], Date.UTC(300_000, 0, 1)))).toEqual(["time"]);
        expect(await paths(history.downsample(RAMP, { start: Date.UTC(1800, 0, 1), end: T0, points: 5 }))).toEqual([
          "start",
        ]);
        expect(await paths(history.interpolated([RAMP], { ...interval, start: Number.NaN }))).toEqual(["start"]);
        expect(await paths(history.downsample(RAMP, { start: T0, end: T0 + S, points: 4 }))).toEqual(["points"]);
        // A tag listed twice (its results would count twice), too many tags, too large a result.
        expect(await paths(history.aggregate([RAMP, VALVE, RAMP], { ...interval, aggregates: ["Count"] }))).toEqual([
          "tags[2]",
        ]);
        expect(await paths(history.valueAt([RAMP, RAMP], T0))).toEqual(["tags[1]"]);
        expect(await paths(history.valueAt(new Array<string>(1_001).fill(RAMP), T0))).toEqual(["tags"]);
        // 11 tags x 10,000 intervals x 12 aggregates = 1,320,000 results > MAX_HISTORY_CELLS (1,000,000):
        // refused before running, though each tag alone stays within MAX_HISTORY_INTERVALS.
        const allTags = HISTORY_TAGS.list().map((tag) => tag.name);
        expect(allTags.length).toBe(11);
        expect(
          await paths(history.aggregate(allTags, { start: T0, end: T0 + 10_000, intervalMs: 1, aggregates: ALL })),
        ).toEqual(["intervalMs"]);
      }),
    );

    test(
      "values near float64's largest: interpolation stays finite, arithmetic that would overflow is bad (overflow), never Infinity",
      withHistory(options, async (history, store) => {
        const MAX = Number.MAX_VALUE;
        await store.samples.writeBatch([
          at(HUGE, 0, -MAX),
          at(HUGE, 10, MAX),
          at(HUGE, 20, 1e308),
          at(HUGE_STEPPED, 0, 1.7e308),
          at(HUGE_STEPPED, 10, 1.7e308),
          at(HUGE_STEPPED, 20, 1.7e308),
          // Safe integers whose float64 sum (3 * 2^52 + 3) is beyond 2^53: the Average is not exact.
          at(HUGE_STEPPED, 100, 2 ** 52 + 1),
          at(HUGE_STEPPED, 101, 2 ** 52 + 1),
          at(HUGE_STEPPED, 102, 2 ** 52 + 1),
        ]);
        // Halfway between -MAX and MAX is 0, not Infinity - Infinity.
        const values = await history.valueAt([HUGE], T0 + 5 * S);
        expect(values.map((sample) => [sample.value, sample.quality.severity])).toEqual([[0, "good"]]);
        const interpolated = await history.interpolated([HUGE], { start: T0, end: T0 + 20 * S, intervalMs: 5 * S });
        expect(interpolated.every((sample) => typeof sample.value === "number" && Number.isFinite(sample.value))).toBe(
          true,
        );
        const overflow = ["overflow", "bad"];
        const reasonOf = (result: AggregateInterval[], name: AggregateName): string | undefined =>
          result[0]?.values[name]?.quality.reason;
        const query = { start: T0, end: T0 + 30 * S, intervalMs: 30 * S };
        const sloped = await history.aggregate([HUGE], {
          ...query,
          aggregates: ["Count", "Minimum", "Maximum", "Average", "TimeAverage", "Total", "Delta"],
        });
        expect(summarize(sloped)).toEqual([
          {
            Count: [3, "good"],
            Minimum: [-MAX, "good"],
            Maximum: [MAX, "good"],
            Average: [null, "bad"],
            TimeAverage: [null, "bad"],
            Total: [null, "bad"],
            Delta: [null, "bad"], // 1e308 - (-MAX) is beyond float64
          },
        ]);
        expect(
          ["Average", "TimeAverage", "Total", "Delta"].map((name) => [
            reasonOf(sloped, name as AggregateName)?.split(":")[0],
            "bad",
          ]),
        ).toEqual(new Array(4).fill(overflow));
        const stepped = await history.aggregate([HUGE_STEPPED], {
          ...query,
          aggregates: ["Count", "Average", "TimeAverage", "Delta"],
        });
        expect(summarize(stepped)).toEqual([
          { Count: [3, "good"], Average: [null, "bad"], TimeAverage: [null, "bad"], Delta: [0, "good"] },
        ]);
        const [safe] = await history.aggregate([HUGE_STEPPED], {
          start: T0 + 100 * S,
          end: T0 + 103 * S,
          intervalMs: 3 * S,
          aggregates: ["Average"],
        });
        expect(safe?.values.Average?.quality.severity).toBe("uncertain");
        expect(safe?.values.Average?.quality.reason?.startsWith("precision lost") ?? false).toBe(true);
      }),
    );

    test(
      "a sample's severity is its code's: a mismatching pair is refused, quality() keeps the stated severity",
      withHistory(options, async (history, store) => {
        const written = (sampleQuality: Quality): Promise<unknown> =>
          store.samples.writeBatch([at(TREND, 45, 7, sampleQuality)]);
        for (const mismatch of [
          { severity: "bad", code: 0 },
          { severity: "good", code: 0x80000000 },
          { severity: "uncertain", code: 0x80340000 },
        ] as const) {
          const error = await expectKilnError(expect, written(mismatch), "KILN_VALIDATION");
          expect(error instanceof KilnValidationError ? error.issues.map((issue) => issue.path) : []).toEqual([
            "[0].quality.code",
          ]);
        }
        // quality("bad", reason, 0): bad, with the generic Bad code; every store counts it as bad.
        const probeBroken = quality("bad", "probe broken", 0);
        expect([probeBroken.severity, probeBroken.code]).toEqual(["bad", 0x80000000]);
        await written(probeBroken);
        const [interval] = await history.aggregate([TREND], {
          start: T0 + 45 * S,
          end: T0 + 50 * S,
          intervalMs: 5 * S,
          aggregates: ["Count", "Maximum"],
        });
        expect(summarize([interval!])).toEqual([{ Count: [0, "bad"], Maximum: [null, "bad"] }]);
        const [value] = await history.valueAt([TREND], T0 + 45 * S);
        expect([value?.value, value?.quality.severity]).toEqual([0, "uncertain"]);
      }),
    );

    test(
      "a query uses the tags and aggregates as given at the call: later changes and shifting arrays change nothing",
      withHistory(options, async (history) => {
        const tags = [RAMP];
        const aggregates: AggregateName[] = ["Count"];
        const pending = history.aggregate(tags, { start: T0, end: T0 + 10 * S, intervalMs: 10 * S, aggregates });
        tags[0] = TREND;
        tags.push(VALVE);
        aggregates[0] = "Maximum";
        const result = await pending;
        expect(result.map((interval) => [interval.tag, Object.keys(interval.values)])).toEqual([[RAMP, ["Count"]]]);
        expect(result[0]?.values.Count?.value).toBe(1); // [0 s, 10 s) holds the sample at 0 s
        // An array answering each read differently (a Proxy) is read once; what was checked is what runs.
        let reads = 0;
        const shifty = new Proxy([RAMP], {
          get: (target, key) => (key === "0" && reads++ > 0 ? "no.such.tag" : Reflect.get(target, key)),
        });
        const values = await history.valueAt(shifty, T0 + 10 * S);
        expect(values.map((sample) => [sample.tag, sample.value])).toEqual([[RAMP, 10]]);
      }),
    );

    test("subnormal values and fractional-ms times: areas whose products round to 0 answer, as in float64", async () => {
      // PostgreSQL float8 raises "underflow" where IEEE 754 rounds a nonzero product to 0:
      // (5e-324 + 0) / 2 is 0, and so is 5e-324 × 0.25 ms. Every store answers float64's numbers.
      const tags = defineTags({
        "tiny.sloped": { dataType: "float64" },
        "tiny.stepped": { dataType: "float64", interpolation: "stepped" },
        "tiny.other": { dataType: "float64" },
      });
      const store = await options.factory();
      await store.open(tags.list());
      try {
        const point = (tag: string, ms: number, value: number): Sample => ({
          tag,
          value,
          timestamp: T0 + ms,
          quality: GOOD,
        });
        await store.samples.writeBatch([
          ...[0, 700, 900, 1000.5, 1200.25, 3000].map((ms, index) =>
            point("tiny.sloped", ms, [1, 5e-324, 0, 0, 2.2e-308, 2.2e-308][index]!),
          ),
          ...[0, 700, 900, 1000.5, 1200, 1200.25, 3000].map((ms, index) =>
            point("tiny.stepped", ms, [1, 5e-324, 0, 2.2e-308, 5e-324, 0, 0][index]!),
          ),
          point("tiny.other", 0, 3),
          point("tiny.other", 3000, 3),
        ]);
        const result = await store.history!.aggregate(["tiny.sloped", "tiny.stepped", "tiny.other"], {
          start: T0,
          end: T0 + 2 * S,
          intervalMs: S,
          aggregates: ["TimeAverage"],
        });
        const values = result.map((interval) => interval.values.TimeAverage!.value as number);
        const expected = [
          // [0, 1 s): 1 → 5e-324 over 700 ms, then (5e-324 + 0) / 2 × 200 ms = 0, then 0.
          0.35,
          // [1 s, 2 s): 0 to 1000.5 ms, a ramp 0 → 2.2e-308 over 199.75 ms, then 2.2e-308 flat.
          ((2.2e-308 / 2) * 199.75 + 2.2e-308 * 799.75) / 1000,
          0.7, // stepped: 1 × 700 ms, 5e-324 × 200 ms (1e-321, lost in 700), 0
          // 0 × 0.5 ms, 2.2e-308 × 199.5 ms, 5e-324 × 0.25 ms = 0, 0 × 799.75 ms
          (2.2e-308 * 199.5) / 1000,
          3,
          3,
        ];
        expect(result.map((interval) => interval.values.TimeAverage!.quality.severity)).toEqual(
          expected.map(() => "good"),
        );
        // Within 1e-12 relative: the stores sum the same products in different orders.
        expect(values.map((value, index) => Math.abs(value - expected[index]!) <= 1e-12 * expected[index]!)).toEqual(
          expected.map(() => true),
        );
        // Subnormal, not flushed to 0.
        expect(values[3]! > 0 && values[3]! < 2.2250738585072014e-308).toBe(true);
      } finally {
        await store.close();
      }
    });

    test(
      "an interval longer than the range is one interval, however long (1e16 ms, 2^63 ms, 1e300 ms)",
      withHistory(options, async (history) => {
        for (const intervalMs of [1e16, 2 ** 63, 1e300]) {
          const query = { start: T0, end: T0 + 10 * S, intervalMs };
          const intervals = await history.aggregate([RAMP], { ...query, aggregates: ["Count", "TimeAverage"] });
          expect(intervals.map((interval) => [interval.start, interval.end, interval.values.Count?.value])).toEqual([
            [T0, T0 + 10 * S, 1],
          ]);
          expect(intervals[0]?.values.TimeAverage?.value).toBe(5); // the ramp 0 → 10
          expect(intervals[0]?.values.TimeAverage?.quality.severity).toBe("good");
          const values = await history.interpolated([RAMP], query);
          expect(values.map((sample) => [sample.timestamp, sample.value])).toEqual([[T0, 0]]);
        }
      }),
    );

    test(
      "history calls on a closed store reject with KILN_LIFECYCLE",
      withHistory(options, async (history, store) => {
        // A query in flight when close() runs settles: with its result, or KILN_LIFECYCLE.
        const inFlight = history
          .aggregate([RAMP, TREND], { start: T0, end: T0 + 10_000 * S, intervalMs: S, aggregates: ["TimeAverage"] })
          .then(
            (result) => result.length,
            (error: unknown) => (error as { code?: string }).code,
          );
        await store.close();
        const settled = await inFlight;
        expect(settled === 20_000 || settled === "KILN_LIFECYCLE").toBe(true);
        await expectKilnError(expect, history.valueAt([RAMP], T0), "KILN_LIFECYCLE");
        await expectKilnError(
          expect,
          history.aggregate([RAMP], { start: T0, end: T0 + S, intervalMs: S, aggregates: ["Count"] }),
          "KILN_LIFECYCLE",
        );
      }),
    );
  });
}
