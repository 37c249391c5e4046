import { KilnError } from "../domain/errors";
import { quality, type Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { MAX_HISTORY_INTERVALS } from "../ports/sample-history";
import type { AggregateInterval, AggregateValue, SampleBucket, ValueAtTime } from "../ports/sample-history";

/**
 * The one rule every history read of a bounded store obeys (ADR 0045, fix16b): a result that rests
 * on time whose samples were evicted is never good. A result with a value becomes `uncertain`
 * (OPC UA Part 13 `Uncertain_DataSubNormal`, a partial interval), one without stays `bad`; both
 * keep their own reasons and add "rests on history evicted by retention (complete from <ISO>)".
 * A store computes its results from what it kept, then passes them through these functions with
 * the time from which the tag's history is complete; `undefined` means complete, nothing changes.
 */

/** OPC UA StatusCode `Bad_NoData`. */
const BAD_NO_DATA = 0x809b0000;

/** OPC UA StatusCode `Uncertain_DataSubNormal`. */
const UNCERTAIN_DATA_SUB_NORMAL = 0x40a40000;

/** The reason added to a result that rests on evicted history. */
export function evictedReason(completeFrom: number): string {
  return `rests on history evicted by retention (complete from ${isoTime(completeFrom)})`;
}

function isoTime(time: number): string {
  return Number.isFinite(time) ? new Date(time).toISOString() : "no kept good sample";
}

/**
 * Marks qualities for one `completeFrom`, caching one frozen quality per input quality (a
 * million-cell query makes a handful of objects, not a million).
 */
export class EvictedHistoryMarker {
  readonly #completeFrom: number;
  readonly #reason: string;
  readonly #marked = new Map<Quality, Quality>();

  constructor(completeFrom: number) {
    this.#completeFrom = completeFrom;
    this.#reason = evictedReason(completeFrom);
  }

  /** True when a result at (or an interval starting at) `time` rests on evicted history. */
  before(time: number): boolean {
    return time < this.#completeFrom;
  }

  /** `given` marked: never good; bad stays bad; the reason names the horizon. */
  quality(given: Quality): Quality {
    let marked = this.#marked.get(given);
    if (marked === undefined) {
      const reason = given.reason === undefined ? this.#reason : `${given.reason}; ${this.#reason}`;
      marked =
        given.severity === "bad"
          ? Object.freeze(quality("bad", reason, given.code))
          : Object.freeze(
              quality("uncertain", reason, given.severity === "uncertain" ? given.code : UNCERTAIN_DATA_SUB_NORMAL),
            );
      this.#marked.set(given, marked);
    }
    return marked;
  }
}

/** Aggregate intervals of one tag, those starting before `completeFrom` marked. */
export function markEvictedIntervals(
  intervals: readonly AggregateInterval[],
  completeFrom: number | undefined,
): AggregateInterval[] {
  if (completeFrom === undefined) return intervals as AggregateInterval[];
  const marker = new EvictedHistoryMarker(completeFrom);
  return intervals.map((interval) => {
    if (!marker.before(interval.start)) return interval;
    const values: Partial<Record<string, AggregateValue>> = {};
    for (const [name, value] of Object.entries(interval.values)) {
      values[name] = value && { value: value.value, quality: marker.quality(value.quality) };
    }
    return { ...interval, values };
  });
}

/** Values of one tag at times (valueAt, valuesAt, interpolated), those before `completeFrom` marked. */
export function markEvictedValues<TSample extends Sample | ValueAtTime>(
  values: readonly TSample[],
  completeFrom: number | undefined,
): TSample[] {
  if (completeFrom === undefined) return values as TSample[];
  const marker = new EvictedHistoryMarker(completeFrom);
  return values.map((value) =>
    marker.before(value.timestamp) ? { ...value, quality: marker.quality(value.quality) } : value,
  );
}

/** The bucket grid of a `readBuckets` query: buckets start at `from + k * bucketMs`, before `to`. */
export interface BucketGrid {
  readonly from: number;
  readonly to: number;
  readonly bucketMs: number;
}

/** Evicted samples of one tag: the oldest and the newest evicted timestamp. */
export interface EvictedSpan {
  readonly from: number;
  readonly through: number;
}

/**
 * Buckets of one tag (sorted by start, those with kept samples only), marked: a bucket starting at
 * or before `evicted.through` (the tag's newest evicted sample) holds only part of its samples and
 * gets `quality` uncertain; and every bucket of the grid that touches the evicted span but kept no
 * sample is added, `count` 0, its figures `NaN`, `quality` bad, so no bucket whose samples were
 * evicted is silently missing (ADR 0045 fix16d). Throws `KILN_HISTORY_EVICTED` rather than make
 * more than {@link MAX_HISTORY_INTERVALS} such empty buckets (query from `retainedFrom()` on, or
 * with wider buckets).
 */
export function markEvictedBuckets(
  tag: string,
  buckets: readonly SampleBucket[],
  grid: BucketGrid,
  evicted: EvictedSpan | undefined,
  completeFrom: number | undefined,
): SampleBucket[] {
  if (evicted === undefined) return buckets as SampleBucket[];
  const marker = new EvictedHistoryMarker(completeFrom ?? evicted.through);
  const partial = marker.quality(Object.freeze(quality("good")));
  const gone = marker.quality(NO_SAMPLE);
  const { from, to, bucketMs } = grid;
  // Buckets k in [first, last] touch [evicted.from, evicted.through]: start <= through, end > from.
  const first = Math.max(0, Math.floor((evicted.from - from) / bucketMs));
  const last = Math.min(Math.floor((evicted.through - from) / bucketMs), Math.ceil((to - from) / bucketMs) - 1);
  if (last - first + 1 > MAX_HISTORY_INTERVALS + buckets.length) {
    throw new KilnError(
      "KILN_HISTORY_EVICTED",
      `Samples of "${tag}" in more than ${MAX_HISTORY_INTERVALS} of the requested buckets were evicted by the store's retention: query from samples.retainedFrom() on, or use wider buckets.`,
      { details: { tag, evictedFrom: evicted.from, evictedThrough: evicted.through, bucketMs } },
    );
  }
  const marked: SampleBucket[] = [];
  let index = 0;
  const keep = (bucket: SampleBucket): void => {
    marked.push(bucket.start <= evicted.through ? { ...bucket, quality: partial } : bucket);
  };
  for (let k = first; k <= last; k++) {
    const start = from + k * bucketMs;
    while (index < buckets.length && buckets[index]!.start < start) keep(buckets[index++]!);
    if (index < buckets.length && buckets[index]!.start === start) keep(buckets[index++]!);
    else marked.push({ start, min: NaN, max: NaN, avg: NaN, first: NaN, last: NaN, count: 0, quality: gone });
  }
  while (index < buckets.length) keep(buckets[index++]!);
  return marked;
}

/** The quality of a bucket without a kept sample, before marking. */
const NO_SAMPLE: Quality = Object.freeze(quality("bad", "no kept sample", BAD_NO_DATA));

/**
 * Refuses a `readSamples` read, first page or continuation (`after`), whose range still to be read
 * holds evicted samples of the tag: a reader must learn of the gap, not be handed the kept samples
 * as if they were all (ADR 0045 fix16b, fix16m). Throws `KILN_HISTORY_EVICTED` when the tag's
 * evicted span reaches past `after` (any time, without `after`) and into `[from, to)`; a reader that
 * accepts the gap reads on with `after: details.evictedThrough`. A range that lost nothing reads
 * on; so does one with `acceptEvicted` (the caller knows). Exact when a tag's evicted samples are contiguous (the usual case); after a wall-clock step
 * back kept samples may lie inside the span, and the check stays on the safe side (it may refuse,
 * never skips; fix16d).
 */
export function checkContinuation(
  query: {
    readonly tag: string;
    readonly from: number;
    readonly to: number;
    readonly after?: number | undefined;
    readonly acceptEvicted?: boolean | undefined;
  },
  evicted: EvictedSpan | undefined,
  retainedFrom: number | undefined,
): void {
  const { tag, after, from, to } = query;
  if (evicted === undefined || query.acceptEvicted === true) return;
  const evictedThrough = evicted.through;
  if ((after !== undefined && after >= evictedThrough) || evictedThrough < from || evicted.from >= to) return;
  const since = after === undefined ? `from ${isoTime(from)}` : `after the page cursor (${isoTime(after)})`;
  throw new KilnError(
    "KILN_HISTORY_EVICTED",
    `Samples of "${tag}" ${since} up to ${isoTime(evictedThrough)} were evicted by the store's retention: read on with after = details.evictedThrough or acceptEvicted to accept the gap, query from samples.retainedFrom() on, or raise the retention.`,
    { details: { tag, ...(after === undefined ? {} : { after }), evictedThrough, retainedFrom } },
  );
}

/** The column grid of a `downsample`: `[start, end)` cut into `columns` equal columns. */
export interface TrendGrid {
  readonly start: number;
  readonly end: number;
  readonly columns: number;
}

/**
 * A downsampled trend of one tag (picks in time order), marked: a pick stamped before
 * `completeFrom` or in a column that touches the evicted span (`evicted.from` to `evicted.through`:
 * the column lost samples, one of which may have been its pick) is marked (uncertain, or bad
 * without a value), and every such column that kept no sample of the tag (`keptIn(from, to)` false) gets one sample at its
 * first ms, value `null`, `bad` (`Bad_NoData`) with the evicted-history reason, so the evicted
 * stretch draws as a marked gap, never as a line over time whose samples are gone (ADR 0045 fix16m).
 * At most one per column, in place of the up to five picks a column has: still at most `points`.
 */
export function markEvictedTrend(
  tag: string,
  picks: readonly Sample[],
  grid: TrendGrid,
  evicted: EvictedSpan | undefined,
  completeFrom: number | undefined,
  keptIn: (from: number, to: number) => boolean,
): Sample[] {
  if (evicted === undefined) return picks as Sample[];
  const marker = new EvictedHistoryMarker(completeFrom ?? evicted.through);
  const gone = marker.quality(NO_SAMPLE);
  const { start, end, columns } = grid;
  const span = end - start;
  const columnStart = (k: number): number => start + Math.ceil((k * span) / columns);
  const first = Math.max(0, Math.floor(((evicted.from - start) * columns) / span));
  const last = Math.min(columns - 1, Math.floor(((evicted.through - start) * columns) / span));
  const marked: Sample[] = [];
  let index = 0;
  const keep = (sample: Sample): void => {
    marked.push(marker.before(sample.timestamp) ? { ...sample, quality: marker.quality(sample.quality) } : sample);
  };
  for (let k = first; k <= last; k++) {
    const from = columnStart(k);
    const to = Math.min(end, columnStart(k + 1));
    while (index < picks.length && picks[index]!.timestamp < from) keep(picks[index++]!);
    // The column touches the evicted span: its picks are of the kept samples only (an evicted one
    // may have been its first, smallest, largest or last), so every pick of it is marked.
    let picked = false;
    for (; index < picks.length && picks[index]!.timestamp < to; index++, picked = true) {
      marked.push({ ...picks[index]!, quality: marker.quality(picks[index]!.quality) });
    }
    if (picked || from >= to || keptIn(from, to)) continue;
    marked.push({ tag, value: null, timestamp: from, quality: gone });
  }
  while (index < picks.length) keep(picks[index++]!);
  return marked;
}
