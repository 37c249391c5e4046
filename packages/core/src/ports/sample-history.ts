import type { Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";

/** A raw history query for one tag over a half-open time range `[from, to)`. */
export interface SampleQuery {
  /** The tag name. */
  readonly tag: string;
  /** Start, inclusive, ms since epoch. */
  readonly from: number;
  /** End, exclusive, ms since epoch. */
  readonly to: number;
  /** At most this many samples. @default 10000 */
  readonly limit?: number;
  /**
   * Page after this timestamp (exclusive): pass the last timestamp of the previous page. When a
   * bounded store (see {@link SampleHistory.retainedFrom}) evicted samples of the tag stamped after
   * it (any, on a first page without `after`) and within `[from, to)`, the read rejects with
   * `KILN_HISTORY_EVICTED` instead of answering the kept samples as if they were all:
   * `details.evictedThrough` is the newest evicted timestamp of the tag, so a reader that accepts
   * the gap continues with `after: details.evictedThrough`, or reads again with `acceptEvicted`.
   */
  readonly after?: number;
  /**
   * The caller knows the range may have lost samples to a bounded store's retention (it met
   * `KILN_HISTORY_EVICTED`, or reads before `retainedFrom()`) and wants the kept samples: no
   * rejection. Samples written after a wall-clock step back may share their time with evicted
   * ones; this is how to read them (ADR 0045, fix16m). A store that keeps everything ignores it.
   * @default false
   */
  readonly acceptEvicted?: boolean;
}

/** A downsampled history query: one bucket per `bucketMs` over `[from, to)`. */
export interface BucketQuery {
  /** The tag name. */
  readonly tag: string;
  /** Start, inclusive, ms since epoch. Buckets are aligned to it. */
  readonly from: number;
  /** End, exclusive. */
  readonly to: number;
  /** Bucket width in ms. */
  readonly bucketMs: number;
}

/**
 * Aggregates of the numeric samples in one bucket. Empty buckets are omitted, except a bucket whose
 * samples a bounded store evicted: it is there, `count` 0, marked `bad` (see {@link SampleBucket.quality}).
 */
export interface SampleBucket {
  /** Bucket start, ms since epoch. */
  readonly start: number;
  /** Smallest value in the bucket. */
  readonly min: number;
  /** Largest value in the bucket. */
  readonly max: number;
  /** Mean of the values in the bucket. */
  readonly avg: number;
  /** Value of the earliest sample in the bucket. */
  readonly first: number;
  /** Value of the latest sample in the bucket. */
  readonly last: number;
  /**
   * Number of numeric samples in the bucket: at least 1, except in a bucket marked `bad` whose
   * samples a bounded store evicted all of (count 0, the other figures `NaN`; ADR 0045 fix16d).
   */
  readonly count: number;
  /**
   * Absent when the bucket holds every sample stored in it. `uncertain`, with a reason naming the
   * retention horizon, when the store evicted samples of the bucket's time (the bucket starts at or
   * before the tag's newest evicted sample): its figures are of the kept samples only (OPC UA
   * Part 13 partial interval: never good). `bad` (`Bad_NoData`, same reason) for a bucket that
   * touches the evicted time and kept no sample: `count` 0.
   */
  readonly quality?: Quality;
}

/**
 * Reads logged samples back, raw or downsampled for trend charts. A `limit` or `bucketMs` of
 * zero or less rejects with `KILN_VALIDATION`; an empty or reversed range gives `[]`.
 */
export interface SampleHistory {
  /**
   * Samples of one tag in time order.
   * @throws KilnError `KILN_HISTORY_EVICTED` when samples of the tag in the range still to be read
   * (`[from, to)`, after `after` when given) were evicted by a bounded store, unless
   * `acceptEvicted` (see {@link SampleQuery.after}).
   */
  readSamples(query: SampleQuery): Promise<Sample[]>;
  /**
   * Min/max/avg/first/last/count of numeric samples per bucket, in time order; buckets with no
   * sample are left out, except those whose samples a bounded store evicted (see
   * {@link SampleBucket.quality}): they are there, marked, never silently missing.
   * @throws KilnError `KILN_HISTORY_EVICTED` from a bounded store rather than make more than
   * {@link MAX_HISTORY_INTERVALS} buckets whose samples were all evicted (query from
   * `retainedFrom()` on, or with wider buckets).
   */
  readBuckets(query: BucketQuery): Promise<SampleBucket[]>;
  /**
   * From when this store's history is complete, ms since the epoch: `undefined` (or the method
   * absent) for a store that keeps every sample it stored, such as the PostgreSQL store. A bounded
   * store (MemoryStore's retention, ADR 0045) returns its horizon once it evicted something: from
   * it on every tag's samples are all kept; before it samples are missing. The store itself marks
   * every history result that rests on evicted time: aggregates, interpolated values and values at
   * a time before the horizon are `uncertain` (or `bad`, no data), with a reason naming the
   * horizon, buckets carry `quality`, and a page continuing across evicted samples rejects with
   * `KILN_HISTORY_EVICTED`. Only moves forward. Synchronous and cheap: not a store round trip.
   */
  retainedFrom?(): number | undefined;
}

/**
 * The aggregates of {@link HistoryQueries.aggregate}, named as in OPC UA Part 13 (5.4.3).
 * Kiln aggregates with `TreatUncertainAsBad`: only samples of `good` quality with a usable value
 * (not null, not NaN or infinite) are data; every other sample is bad data. Booleans count as
 * 0 and 1; strings have no numeric value.
 *
 * - `Count` (5.4.3.21): the number of good samples in the interval.
 * - `Minimum`, `Maximum` (5.4.3.10, 5.4.3.11): the smallest and largest good value; among equal
 *   values (-0 and 0 are equal) the earliest sample's, with its own sign (a bigint beats an equal number).
 * - `Start`, `End` (5.4.3.25, 5.4.3.26): the first and last good value in the interval.
 * - `Delta` (5.4.3.27): `End - Start`, in the tag's current data type: an exact bigint for an
 *   `int64`/`uint64` tag when both are integers and one is a bigint, else a float64 number (a float
 *   tag whose older samples were stored as bigints still gets a number).
 * - `Average` (5.4.3.5): the arithmetic mean of the good values.
 * - `TimeAverage` (5.4.3.6): the area under the tag's curve (stepped or sloped) from the bounding
 *   value at the interval's start, through each good sample, to the bounding value at its end,
 *   divided by the duration it covers (the whole interval unless there is no data before it).
 * - `Total` (5.4.3.8): `TimeAverage` times the interval length in seconds (value·s).
 * - `DurationGood`, `PercentGood` (5.4.3.31, 5.4.3.33): how long, in ms and in % of the interval,
 *   the data was good; each sample's quality lasts until the next sample, the last one onwards.
 * - `Interpolative` (5.4.3.4): the bounding value at the interval's start, as {@link HistoryQueries.valueAt}.
 */
export const AGGREGATES = [
  "Count",
  "Minimum",
  "Maximum",
  "Start",
  "End",
  "Delta",
  "Average",
  "TimeAverage",
  "Total",
  "DurationGood",
  "PercentGood",
  "Interpolative",
] as const;
/** One aggregate name of {@link AGGREGATES}. */
export type AggregateName = (typeof AGGREGATES)[number];

/** At most this many intervals (aggregates, interpolated values, downsampled columns) or times (`valuesAt`) per query and tag. */
export const MAX_HISTORY_INTERVALS = 10_000;

/** At most this many tags per history query (`aggregate`, `valueAt`, `valuesAt`, `interpolated`). */
export const MAX_HISTORY_TAGS = 1_000;

/**
 * At most this many results per history query: tags × intervals × aggregates for `aggregate`,
 * tags × intervals for `interpolated`, tags × times for `valuesAt`. Bounds the memory a query
 * can take (a result holds about 100 bytes per cell); a larger query rejects with
 * `KILN_VALIDATION` on `intervalMs` (`times` for `valuesAt`) before running.
 *
 * Event-loop blocking at this limit: `MemoryStore` computes history in the host's thread, in
 * slices (one tag at a time; `aggregate` in runs of intervals of at most 20,000 cells or samples;
 * `readBuckets` every 20,000 samples) and yields to the event loop between them. Measured with a
 * probe (1,000,000 samples retained, Node 20, one shared EPYC core, under other load): a
 * 1,000,000-cell query of 100 tags took 1.6–5.6 s in all (before the slices: 7.6 s for
 * `aggregate`, 7.4 s for `valuesAt`, all of it blocking); its longest single pause was
 * 0.08–0.6 s, most of it V8 collecting garbage on a heap of 0.5–1 GB (the retained samples and
 * the million results), not one slice's work (20–70 ms). Work that is not sliced: one interval
 * over 1,000,000 samples (about 0.2 s), a `downsample` of 1,000,000 samples (0.1–0.25 s), one
 * tag's 10,000 times across a 1,000,000-sample bad stretch (about 0.2 s). A host that needs
 * pauses under 100 ms keeps queries near 100,000 cells and 100,000 samples per interval, or
 * uses the PostgreSQL store, which computes in the database.
 */
export const MAX_HISTORY_CELLS = 1_000_000;

/**
 * History query times (`start`, `end`, `time`) lie in
 * `[HISTORY_TIME_MIN, HISTORY_TIME_MAX]`: 1900-01-01 to 2100-01-01 UTC, a range every store
 * computes exactly (the PostgreSQL store's float8 time arithmetic is exact from 1834 to 2106).
 * Times outside it reject with `KILN_VALIDATION`.
 */
export const HISTORY_TIME_MIN = Date.UTC(1900, 0, 1);
/** See {@link HISTORY_TIME_MIN}. */
export const HISTORY_TIME_MAX = Date.UTC(2100, 0, 1);

/**
 * Consecutive intervals `[start + k * intervalMs, start + (k + 1) * intervalMs)` covering
 * `[start, end)`; each includes its start and excludes its end (OPC UA Part 13, 5.4.2.2). The
 * last one is clipped at `end` when `end - start` is not a multiple of `intervalMs`: it is
 * shorter, and time-based aggregates (`Total`, `DurationGood`, `PercentGood`) use its length.
 */
export interface IntervalQuery {
  /** Start of the first interval, inclusive, ms since epoch (whole ms). */
  readonly start: number;
  /** End of the range, exclusive, ms since epoch (whole ms), after `start`. */
  readonly end: number;
  /** Interval length in ms: a whole number, at least 1, at most {@link MAX_HISTORY_INTERVALS} intervals. */
  readonly intervalMs: number;
}

/** An aggregate query: the aggregates to compute per interval. */
export interface AggregateQuery extends IntervalQuery {
  /** One or more of {@link AGGREGATES}, each once. */
  readonly aggregates: readonly AggregateName[];
}

/** One aggregate of one interval. */
export interface AggregateValue {
  /**
   * The result; `null` when there was no data to compute it from (quality is then bad). A value
   * picked from the samples (`Minimum`, `Maximum`, `Start`, `End`, a stepped `Interpolative`) is
   * the stored value itself, a bigint for 64-bit integer tags, and `Delta` of two bigints is their
   * exact bigint difference. Results computed in float64 arithmetic (`Average`, `TimeAverage`,
   * `Total`, a sloped `Interpolative`, a mixed `Delta`) are numbers; when one of the values they rest on
   * is an integer beyond ±(2^53 - 1), which float64 cannot hold exactly, the result is
   * `uncertain` with the reason "precision lost: ..." (never good).
   */
  readonly value: number | bigint | null;
  /**
   * `good` when the interval's data was good throughout; `uncertain` when it rests on bad or
   * missing data (bad samples, an interval starting before the first sample, a value held past
   * the last sample), its reason naming every cause that applies in a fixed order ("rests on bad
   * data; rests on missing data; precision lost: ..."); `bad` when there was no data to compute it.
   * An interval that rests on history a bounded store evicted (it starts before the tag's history
   * is complete, see {@link SampleHistory.retainedFrom}) is never good: `uncertain`, or `bad`
   * without a value, the reason ending "rests on history evicted by retention (complete from
   * <ISO time>)".
   */
  readonly quality: Quality;
}

/** The aggregates of one tag over one interval. */
export interface AggregateInterval {
  /** The tag name. */
  readonly tag: string;
  /** Interval start, inclusive, ms since epoch. */
  readonly start: number;
  /** Interval end, exclusive, ms since epoch: the query's `end` for a clipped last interval. */
  readonly end: number;
  /** One entry per requested aggregate. */
  readonly values: Readonly<Partial<Record<AggregateName, AggregateValue>>>;
}

/**
 * A downsampled trend query: `[start, end)` cut into `floor(points / 5)` equal columns, each
 * giving its first, minimum, maximum and last sample (M4) and a quality marker (see
 * {@link HistoryQueries.downsample}).
 */
export interface DownsampleQuery {
  /** Start, inclusive, ms since epoch (whole ms). */
  readonly start: number;
  /** End, exclusive, ms since epoch (whole ms), after `start`. */
  readonly end: number;
  /** The most points to return: at least 5, at most 5 × {@link MAX_HISTORY_INTERVALS} (5 per column). */
  readonly points: number;
}

/** One value of {@link HistoryQueries.valuesAt}: the value of `tag` at `timestamp`, as {@link HistoryQueries.valueAt} gives it. */
export interface ValueAtTime extends Sample {
  /**
   * True when the value is a good sample stored at exactly `timestamp` (whole ms; OPC UA Part 11
   * HistorianBits Raw); false when it is computed from bounding values (Interpolated) or there is none.
   */
  readonly raw: boolean;
}

/**
 * Process history people can use: per-interval aggregates, values at given times and trends
 * downsampled for drawing, with OPC UA Part 13 (Aggregates) and Part 11 (Historical Access)
 * semantics. Every store that declares `capabilities.aggregates` gives the same results for
 * the same data (the store conformance suite's `history` group holds golden vectors).
 *
 * Values between samples follow the tag's interpolation (`stepped` or `sloped`, declared in the catalog given to
 * `open`, see `interpolationOf`). Bad input rejects with `KILN_VALIDATION` naming the field before any query: `end` not
 * after `start`, non-integer times, an interval under 1 ms, more than
 * {@link MAX_HISTORY_INTERVALS} intervals or {@link MAX_HISTORY_CELLS} results, more than
 * {@link MAX_HISTORY_TAGS} tags, a tag listed twice, an unknown aggregate, or a tag not in the catalog.
 * Stores read the caller's arrays once, at the call: changing them afterwards changes nothing.
 */
export interface HistoryQueries {
  /**
   * The requested aggregates per tag and interval, tag by tag in the order given, intervals in
   * time order; intervals without data are included (with bad quality).
   * @example
   * await store.history.aggregate(["chamber.pressure"], {
   *   start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 0, 2), intervalMs: 60_000,
   *   aggregates: ["Average", "Minimum", "Maximum"],
   * });
   * @throws KilnValidationError (`KILN_VALIDATION`) for bad input; `KILN_STORE_ERROR` from the store.
   */
  aggregate(tags: readonly string[], query: AggregateQuery): Promise<AggregateInterval[]>;
  /**
   * The value of each tag at `time` (OPC UA Part 11, 6.5.5.2 read at time, with Part 13 3.1.8
   * interpolated bounding values): a good sample at `time` itself; else for a stepped tag the last
   * good value before it; for a sloped tag the straight line between the good samples on either
   * side (or the last one held, when there is none after: uncertain). Quality is uncertain when a
   * bad sample lies between the value's sources and `time`, or nothing was stored after `time`;
   * bad, with value `null`, when there is no good sample at or before it. A time before the tag's
   * history is complete in a bounded store (see {@link SampleHistory.retainedFrom}; a look-back to
   * the last good sample that crossed evicted time counts too) is never good: uncertain or bad,
   * with the reason "rests on history evicted by retention (complete from <ISO time>)". One sample per tag,
   * stamped `time`, in the order given.
   * @throws KilnValidationError (`KILN_VALIDATION`) for bad input.
   */
  valueAt(tags: readonly string[], time: number): Promise<Sample[]>;
  /**
   * {@link HistoryQueries.valueAt} at many times in one query: the value of each tag at each of `times`, with
   * the same Part 13 bounding values, tag by tag in the order given, and per tag one value per
   * entry of `times`, in the order given (any order, repeats allowed; each stamped its time).
   * Each value also says whether it is a stored sample ({@link ValueAtTime.raw}). A store
   * answers it in one query (PostgreSQL: one statement; MemoryStore: one pass per tag), so an
   * OPC UA HistoryRead ReadAtTime of uneven times costs one read within one time budget, not one
   * read per time. `valueAt(tags, t)` gives the same samples as `valuesAt(tags, [t])` without `raw`.
   *
   * `times`: 1 to {@link MAX_HISTORY_INTERVALS} whole ms in `[HISTORY_TIME_MIN, HISTORY_TIME_MAX]`,
   * and at most {@link MAX_HISTORY_CELLS} tags × times.
   * @example
   * await store.history.valuesAt(["chamber.pressure"], [Date.UTC(2026, 0, 1, 8), Date.UTC(2026, 0, 1, 8, 0, 7)]);
   * @throws KilnValidationError (`KILN_VALIDATION`) for bad input, naming `tags`, `tags[i]`, `times` or `times[i]`.
   */
  valuesAt(tags: readonly string[], times: readonly number[]): Promise<ValueAtTime[]>;
  /** {@link valueAt} at the start of every interval, tag by tag, in time order. */
  interpolated(tags: readonly string[], query: IntervalQuery): Promise<Sample[]>;
  /**
   * A trend of one tag for drawing: `[start, end)` cut into `floor(points / 5)` columns and, per
   * column, its first, smallest, largest and last sample with a numeric value (whatever its
   * quality, which each returned sample keeps), in time order, each sample once. A line drawn
   * through them at that many pixel columns looks the same as one drawn through every sample:
   * every spike survives (M4, Jugel et al., VLDB 2014). Quality changes survive too: when a
   * column holds an uncertain or bad sample and none of its picks is that bad, the first sample
   * of the column's worst quality is returned as well (value and all, `null` included, so a bad
   * stretch without values draws as a gap). Ties go to the earliest sample. At most `points` samples.
   */
  downsample(tag: string, query: DownsampleQuery): Promise<Sample[]>;
}
