import { KilnError } from "../domain/errors";
import { quality, type Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import type { AggregateInterval, AggregateValue, SampleBucket, ValueAtTime } from "../ports/sample-history";

/**
 * The one rule every history read of a bounded store obeys (ADR 0045, fix16b): a result that rests
 * on time whose samples were evicted is never good. A result with a value becomes `uncertain`
 * (OPC UA Part 13 `Uncertain_DataSubNormal`, a partial interval), one without stays `bad`; both
 * keep their own reasons and add "rests on history evicted by retention (complete from <ISO>)".
 * A store computes its results from what it kept, then passes them through these functions with
 * the time from which the tag's history is complete; `undefined` means complete, nothing changes.
 */

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

/**
 * Buckets of one tag; a bucket starting at or before `evictedThrough` (the tag's newest evicted
 * sample) holds only part of its samples and gets `quality` uncertain.
 */
export function markEvictedBuckets(
  buckets: readonly SampleBucket[],
  evictedThrough: number | undefined,
  completeFrom: number | undefined,
): SampleBucket[] {
  if (evictedThrough === undefined) return buckets as SampleBucket[];
  const marker = new EvictedHistoryMarker(completeFrom ?? evictedThrough);
  const partial = marker.quality(Object.freeze(quality("good")));
  return buckets.map((bucket) => (bucket.start <= evictedThrough ? { ...bucket, quality: partial } : bucket));
}

/**
 * Refuses a `readSamples` continuation (`after`) across evicted samples of the tag: a pager must
 * learn of the gap, not skip it. Throws `KILN_HISTORY_EVICTED` when `after < evictedThrough`.
 */
export function checkContinuation(
  tag: string,
  after: number | undefined,
  evictedThrough: number | undefined,
  retainedFrom: number | undefined,
): void {
  if (after === undefined || evictedThrough === undefined || after >= evictedThrough) return;
  throw new KilnError(
    "KILN_HISTORY_EVICTED",
    `Samples of "${tag}" after the page cursor (${isoTime(after)}) up to ${isoTime(evictedThrough)} were evicted by the store's retention since the previous page: continue with after = details.evictedThrough to accept the gap, or raise the retention.`,
    { details: { tag, after, evictedThrough, retainedFrom } },
  );
}
