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
 * Refuses a `readSamples` continuation (`after`) across evicted samples of the tag: a pager must
 * learn of the gap, not skip it. Throws `KILN_HISTORY_EVICTED` when evicted samples may lie in the
 * range still to be read, `(after, to)` from `from` on: the tag's evicted span reaches past `after`
 * and into `[from, to)`. A cursor whose remaining range lost nothing pages on (ADR 0045 fix16d).
 */
export function checkContinuation(
  query: { readonly tag: string; readonly from: number; readonly to: number; readonly after?: number | undefined },
  evicted: EvictedSpan | undefined,
  retainedFrom: number | undefined,
): void {
  const { tag, after, from, to } = query;
  if (after === undefined || evicted === undefined) return;
  const evictedThrough = evicted.through;
  if (after >= evictedThrough || evictedThrough < from || evicted.from >= to) return;
  throw new KilnError(
    "KILN_HISTORY_EVICTED",
    `Samples of "${tag}" after the page cursor (${isoTime(after)}) up to ${isoTime(evictedThrough)} were evicted by the store's retention since the previous page: continue with after = details.evictedThrough to accept the gap, or raise the retention.`,
    { details: { tag, after, evictedThrough, retainedFrom } },
  );
}
