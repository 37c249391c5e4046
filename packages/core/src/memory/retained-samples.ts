import type { Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { isGoodData, type SampleSeries } from "../history/series-history";

/**
 * @internal One tag's samples, sorted by timestamp; `timestamps[i]` is `samples[i].timestamp`.
 * Entries before `start` are evicted (their samples replaced by a placeholder) and are cut off
 * once they outnumber the kept ones or when a history query needs the series from index 0:
 * cutting a long array's head on every eviction would move the whole array each time.
 */
export interface Series extends SampleSeries {
  readonly timestamps: number[];
  readonly samples: Sample[];
  start: number;
  /** The newest timestamp of an evicted sample of this tag; undefined while none was evicted. */
  evictedThrough: number | undefined;
  /** The oldest timestamp of an evicted sample of this tag; undefined while none was evicted. */
  evictedFrom: number | undefined;
  /** Whether a good sample (data, Part 13) of this tag was evicted: look-backs may need it. */
  evictedGood: boolean;
  /**
   * Each entry's age key (see {@link RetainedSamples.insert}), beside `timestamps`; undefined while
   * every sample of the tag was received with no wall-clock step to allow for (key = timestamp).
   */
  keys: number[] | undefined;
  /**
   * The index of the first kept sample, after the first, received before the sample stamped just
   * before it (its key is smaller): after a step back of the wall clock, where the samples written
   * since end and the older ones stamped after them begin. Undefined when there is none (tracked
   * only for the first such place).
   */
  boundary: number | undefined;
}

const EVICTED: Sample = Object.freeze({
  tag: "",
  value: null,
  timestamp: 0,
  quality: Object.freeze({ severity: "bad", code: 0 }),
}) as Sample;

/**
 * @internal What {@link RetainedSamples} keeps: at most `maxSamples` (or one per tag, if more), none
 * out of force for longer than `maxAgeMs`.
 */
export interface SampleRetentionLimits {
  readonly maxSamples: number;
  readonly maxAgeMs: number | undefined;
}

interface HeapEntry {
  /** The timestamp of the series' second kept sample: from then on its first is no longer in force. */
  readonly at: number;
  /**
   * Since when the series' first kept sample is out of force on the store's age clock: the later of
   * its own and its successor's age keys (a sample received just now was not out of force before).
   */
  readonly key: number;
  readonly series: Series;
  /** Whether the entry is the series' {@link Series.boundary} sample rather than its first. */
  readonly boundary: boolean;
}

/**
 * @internal The samples of a {@link MemoryStore}, per tag, under a retention (ADR 0045). The
 * retention moves a horizon forward ({@link retainedFrom}): a tag's sample is evicted once the
 * next sample of the same tag is at or before the horizon, so it is no longer the value in force
 * at any time from the horizon on. History from the horizon on is therefore exactly what an
 * unbounded store would answer, and each tag keeps its value in force at the horizon, however
 * old, however chatty the other tags are.
 *
 * {@link retain} evicts first kept samples over every tag, in the order they went out of force on
 * the store's age clock, until at most `maxSamples` are kept (or every tag is down to one sample)
 * and no sample is out of force since before `now - maxAgeMs`. A min-heap of each series' first
 * two kept samples (keyed by the later of their age keys, the second's timestamp until the wall
 * clock steps) finds the next sample to evict in O(log tags); an entry is stale when its series'
 * second timestamp has changed and is then dropped when it reaches the top. A sample stamped
 * before the horizon (a late one, or one written after a step back of the wall clock) is kept
 * until the limits need it gone, like any other (ADR 0045 fix16d). Cutting a series' head is amortised (see {@link Series}), so
 * eviction costs O(log tags) amortised per sample.
 */
export class RetainedSamples {
  readonly #limits: SampleRetentionLimits;
  readonly #series = new Map<string, Series>();
  readonly #heap: HeapEntry[] = [];
  #count = 0;
  #evicted = 0;
  #horizon: number | undefined;
  #newest = -Infinity;

  constructor(limits: SampleRetentionLimits) {
    this.#limits = limits;
  }

  /**
   * The retention's horizon: the latest time at which an evicted sample was still in force, but never
   * past the store's clock at the write that moved it (undefined until something is evicted). From it
   * on, the history of every tag stamped on or behind the store's clock is complete; a tag stamped
   * ahead of it keeps its gap marked per tag (ADR 0045 fix16o).
   */
  get retainedFrom(): number | undefined {
    return this.#horizon;
  }

  /** The newest timestamp ever stored (a tag's newest sample is never evicted, so it is kept). */
  get newestTimestamp(): number | undefined {
    return this.#newest === -Infinity ? undefined : this.#newest;
  }

  /** Samples kept, over every tag. */
  get count(): number {
    return this.#count;
  }

  /** Samples evicted by the retention so far. */
  get evicted(): number {
    return this.#evicted;
  }

  /** The kept samples of `tag`, if it has a series. */
  get(tag: string): SampleSeries | undefined {
    const series = this.#series.get(tag);
    if (series) compact(series);
    return series;
  }

  /**
   * The samples of `tag` as stored, without cutting evicted entries off (reads of a range need no
   * cut: a cut on every read between evictions would move the whole series each time). Entries
   * before `start` are evicted; their timestamps stay sorted, so binary searches still work.
   */
  peek(tag: string): Readonly<Series> | undefined {
    return this.#series.get(tag);
  }

  /** The newest timestamp of an evicted sample of `tag` (undefined: none evicted). */
  evictedThrough(tag: string): number | undefined {
    return this.#series.get(tag)?.evictedThrough;
  }

  /** The oldest and newest timestamps of `tag`'s evicted samples (undefined: none evicted). */
  evictedSpan(tag: string): { readonly from: number; readonly through: number } | undefined {
    const series = this.#series.get(tag);
    if (series?.evictedThrough === undefined || series.evictedFrom === undefined) return undefined;
    return { from: series.evictedFrom, through: series.evictedThrough };
  }

  /**
   * From when `tag`'s history answers exactly what a store keeping everything would: undefined
   * when none of its samples was evicted; else its first kept sample's time (its value in force
   * before that was evicted), or, when a good sample was evicted, its first kept good sample's
   * time, since a Part 13 look-back to the last good value from an earlier time crosses evicted
   * samples (a bad value in force at the horizon); `Infinity` when it keeps no good sample then.
   */
  completeFrom(tag: string): number | undefined {
    const series = this.#series.get(tag);
    if (series?.evictedThrough === undefined) return undefined;
    const { timestamps, samples, start, evictedThrough } = series;
    // Kept samples stamped before an evicted one (written after a step back of the wall clock)
    // share their time with it: complete only from the first kept sample after the newest evicted.
    const first =
      start + partitionPoint(timestamps.length - start, (offset) => timestamps[start + offset]! <= evictedThrough);
    if (!series.evictedGood) return first < timestamps.length ? timestamps[first] : Infinity;
    for (let index = first; index < samples.length; index++) {
      if (isGoodData(samples[index]!)) return timestamps[index];
    }
    return Infinity;
  }

  /** Registers `tag` with an empty series unless it has one. */
  register(tag: string): void {
    this.#seriesOf(tag);
  }

  #seriesOf(tag: string): Series {
    let series = this.#series.get(tag);
    if (!series) {
      series = {
        timestamps: [],
        samples: [],
        start: 0,
        evictedThrough: undefined,
        evictedFrom: undefined,
        evictedGood: false,
        keys: undefined,
        boundary: undefined,
      };
      this.#series.set(tag, series);
    }
    return series;
  }

  /**
   * Stores `sample` unless its (tag, timestamp) is kept already (the first value wins); returns
   * the kept sample then, else undefined. `skew` is how far the wall clock stood ahead of the
   * store's age clock when the sample was received (0 until the wall clock stepped), and
   * `latestKey` the latest age key a sample received now may have (the age clock plus the
   * tolerance of a device clock ahead): the sample's age key, its time on the age clock, is
   * `timestamp - skew`, but never after `latestKey`, so retention counts from what the store
   * received when, not from a stamp taken on a clock that stepped since, nor from a stamp far
   * ahead of the store's clock (a device clock ahead: its samples would otherwise never age out,
   * and under `maxSamples` would go last, squeezing every other tag; ADR 0045 fix16m).
   */
  insert(sample: Sample, skew = 0, latestKey = Infinity): Sample | undefined {
    const series = this.#seriesOf(sample.tag);
    const timestamp = sample.timestamp;
    const key = Math.min(timestamp - skew, latestKey);
    // Before an evicted entry (a step back of the wall clock, or a late sample): cut the evicted
    // head first, so every entry, evicted ones included, stays sorted by timestamp.
    if (series.start > 0 && timestamp < series.timestamps[series.start - 1]!) compact(series);
    if (key !== timestamp && series.keys === undefined) series.keys = series.timestamps.slice();
    const { timestamps, samples, start, keys } = series;
    const length = timestamps.length;
    let index = length;
    if (length > start && timestamps[length - 1]! >= timestamp) {
      index = start + partitionPoint(length - start, (offset) => timestamps[start + offset]! < timestamp);
      if (timestamps[index] === timestamp) return samples[index];
    }
    const stored = Object.freeze({
      tag: sample.tag,
      value: sample.value,
      timestamp,
      quality: freezeQuality(sample.quality),
    });
    if (index === length) {
      timestamps.push(timestamp);
      samples.push(stored);
      keys?.push(key);
    } else {
      timestamps.splice(index, 0, timestamp);
      samples.splice(index, 0, stored);
      keys?.splice(index, 0, key);
    }
    // The first two kept samples changed: inserted first (the old first is second now) or second.
    if ((index === start && length - start >= 1) || index === start + 1) this.#pushHead(series);
    if (keys !== undefined) this.#trackBoundary(series, index);
    this.#count++;
    if (timestamp > this.#newest) this.#newest = timestamp;
    return undefined;
  }

  /**
   * Evicts, over every tag, first kept samples in the order they went out of force on the age clock
   * (their {@link HeapEntry.key}), and moves the horizon to the latest time an evicted sample was
   * in force: while more than `maxSamples` are kept (and some tag keeps two or more), and while a
   * sample has been out of force since before `now - maxAgeMs`, `now` read on the age clock.
   * Returns how many it evicted. A move of the horizon never passes `latest` (the store's clock at
   * this write): a sample stamped ahead of it (a device clock ahead) moves the horizon to `latest`
   * at most, never into the future (ADR 0045 fix16o; that tag's own reads stay marked per tag).
   */
  retain(now: number, latest = Infinity): number {
    const { maxSamples, maxAgeMs } = this.#limits;
    const aged = maxAgeMs === undefined ? -Infinity : now - maxAgeMs;
    const touched = new Set<Series>();
    let evicted = 0;
    while (this.#heap.length > 0) {
      const { at, key, series, boundary } = this.#heap[0]!;
      const index = boundary ? series.boundary : series.start;
      if (index === undefined || index + 1 >= series.timestamps.length || series.timestamps[index + 1] !== at) {
        this.#pop();
        continue;
      }
      if (this.#count <= maxSamples && key > aged) break;
      this.#pop();
      const evictedAt = series.timestamps[index]!;
      if (series.evictedThrough === undefined || evictedAt > series.evictedThrough) series.evictedThrough = evictedAt;
      if (series.evictedFrom === undefined || evictedAt < series.evictedFrom) series.evictedFrom = evictedAt;
      if (!series.evictedGood && isGoodData(series.samples[index]!)) series.evictedGood = true;
      if (boundary) evictBoundary(series);
      else {
        series.samples[series.start++] = EVICTED;
        if (series.boundary !== undefined && series.boundary <= series.start) series.boundary = undefined;
      }
      touched.add(series);
      this.#pushHead(series);
      if (boundary) this.#pushBoundary(series);
      const moved = Math.min(at, latest);
      if (this.#horizon === undefined || moved > this.#horizon) this.#horizon = moved;
      this.#count--;
      evicted++;
    }
    for (const series of touched) {
      if (2 * series.start >= series.timestamps.length) compact(series);
    }
    this.#evicted += evicted;
    // Stale entries pile up only with late samples; rebuild before they outnumber the series.
    if (this.#heap.length > 2 * this.#series.size + 1024) this.#rebuild();
    return evicted;
  }

  #rebuild(): void {
    this.#heap.length = 0;
    for (const series of this.#series.values()) {
      this.#pushHead(series);
      this.#pushBoundary(series);
    }
  }

  /** Keeps {@link Series.boundary} after an insert at `index`, and pushes its entry when it moved. */
  #trackBoundary(series: Series, index: number): void {
    const keys = series.keys!;
    let boundary = series.boundary;
    if (boundary !== undefined && index <= boundary) boundary++;
    if (index > series.start && keys[index]! < keys[index - 1]! && (boundary === undefined || index < boundary)) {
      boundary = index;
    }
    const next = index + 1;
    if (next < keys.length && keys[next]! < keys[index]! && (boundary === undefined || next < boundary)) {
      boundary = next;
    }
    series.boundary = boundary;
    if (boundary !== undefined && index <= boundary + 1) this.#pushBoundary(series);
  }

  /** Pushes the entry of `series`' boundary sample, if it has one with a successor. */
  #pushBoundary(series: Series): void {
    const { timestamps, keys, boundary } = series;
    if (boundary === undefined || keys === undefined || boundary + 1 >= timestamps.length) return;
    const at = timestamps[boundary + 1]!;
    this.#push({ at, key: Math.max(keys[boundary]!, keys[boundary + 1]!), series, boundary: true });
  }

  /** Pushes the entry of `series`' first kept sample, if it has a second. */
  #pushHead(series: Series): void {
    const { timestamps, keys, start } = series;
    if (start + 1 >= timestamps.length) return;
    const at = timestamps[start + 1]!;
    this.#push({
      at,
      key: keys === undefined ? at : Math.max(keys[start]!, keys[start + 1]!),
      series,
      boundary: false,
    });
  }

  #push(entry: HeapEntry): void {
    const heap = this.#heap;
    let index = heap.push(entry) - 1;
    while (index > 0) {
      const parent = (index - 1) >>> 1;
      if (!before(entry, heap[parent]!)) break;
      heap[index] = heap[parent]!;
      index = parent;
    }
    heap[index] = entry;
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, last)) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = last;
  }
}

/**
 * Heap order: by age key, then by `at` (samples received at one moment go oldest stamp first: a
 * batch stamped ahead of the clock has one key, capped at the receipt, for all its samples).
 */
function before(a: HeapEntry, b: HeapEntry): boolean {
  return a.key < b.key || (a.key === b.key && a.at < b.at);
}

/**
 * Evicts the sample at `series.boundary`: the samples before it move one place on (over it), the
 * first becomes an evicted entry; the boundary follows while the next sample is older still.
 */
function evictBoundary(series: Series): void {
  const { timestamps, samples, start } = series;
  const keys = series.keys!;
  const boundary = series.boundary!;
  // A plain loop: Array.prototype.copyWithin is far slower on these arrays (measured ~100×).
  for (let index = boundary; index > start; index--) {
    timestamps[index] = timestamps[index - 1]!;
    samples[index] = samples[index - 1]!;
    keys[index] = keys[index - 1]!;
  }
  samples[start] = EVICTED;
  series.start = start + 1;
  const next = boundary + 1;
  series.boundary = next < keys.length && keys[next]! < keys[next - 1]! ? next : undefined;
}

function compact(series: Series): void {
  if (series.start === 0) return;
  if (series.boundary !== undefined) series.boundary -= series.start;
  series.timestamps.splice(0, series.start);
  series.samples.splice(0, series.start);
  series.keys?.splice(0, series.start);
  series.start = 0;
}

function freezeQuality(quality: Quality): Quality {
  if (Object.isFrozen(quality)) return quality;
  return Object.freeze(
    quality.reason === undefined
      ? { severity: quality.severity, code: quality.code }
      : { severity: quality.severity, code: quality.code, reason: quality.reason },
  );
}

/** The first index in `[0, length)` for which `isBefore` is false; `isBefore` must be monotonic. */
export function partitionPoint(length: number, isBefore: (index: number) => boolean): number {
  let low = 0;
  let high = length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (isBefore(middle)) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** First index whose timestamp is >= `value`. */
export function lowerBound(sorted: readonly number[], value: number): number {
  return partitionPoint(sorted.length, (index) => sorted[index]! < value);
}

/** First index whose timestamp is > `value`. */
export function upperBound(sorted: readonly number[], value: number): number {
  return partitionPoint(sorted.length, (index) => sorted[index]! <= value);
}

/**
 * @internal Entries sorted by `at` (alarm history, audit entries of a {@link MemoryStore}) whose
 * oldest are evicted in O(1) amortised: the evicted head is cut off once it outnumbers the kept
 * entries, never one array shift per eviction.
 */
export class TimedEntries<TEntry extends { readonly at: number }> {
  readonly #entries: (TEntry | undefined)[] = [];
  #start = 0;

  /** Entries kept. */
  get size(): number {
    return this.#entries.length - this.#start;
  }

  /** Inserts `entry` after every kept entry at or before its `at` (appending in order is O(1)). */
  insert(entry: TEntry): void {
    const entries = this.#entries;
    const start = this.#start;
    const last = entries.at(-1);
    if (entries.length === start || last!.at <= entry.at) {
      entries.push(entry);
      return;
    }
    const index = start + partitionPoint(entries.length - start, (offset) => entries[start + offset]!.at <= entry.at);
    entries.splice(index, 0, entry);
  }

  /** Evicts the `count` oldest entries and returns them, oldest first. */
  evictOldest(count: number): TEntry[] {
    const entries = this.#entries;
    const end = Math.min(entries.length, this.#start + count);
    const evicted = entries.slice(this.#start, end) as TEntry[];
    for (let index = this.#start; index < end; index++) entries[index] = undefined;
    this.#start = end;
    if (2 * this.#start >= entries.length) {
      entries.splice(0, this.#start);
      this.#start = 0;
    }
    return evicted;
  }

  /** The kept entries with `from <= at < to`, oldest first. */
  range(from: number, to: number): TEntry[] {
    const entries = this.#entries;
    const start = this.#start;
    const startOf = (at: number): number =>
      start + partitionPoint(entries.length - start, (offset) => entries[start + offset]!.at < at);
    return entries.slice(startOf(from), startOf(to)) as TEntry[];
  }
}
