import type { Quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import type { SampleSeries } from "../history/series-history";

/**
 * One tag's samples, sorted by timestamp; `timestamps[i]` is `samples[i].timestamp`. Entries
 * before `start` are evicted (their samples replaced by a placeholder) and are cut off once they
 * outnumber the kept ones or when the series is read: cutting a long array's head on every
 * eviction would move the whole array each time.
 */
interface Series extends SampleSeries {
  readonly timestamps: number[];
  readonly samples: Sample[];
  start: number;
}

const EVICTED: Sample = Object.freeze({
  tag: "",
  value: null,
  timestamp: 0,
  quality: Object.freeze({ severity: "bad", code: 0 }),
}) as Sample;

/** @internal What {@link RetainedSamples} keeps: at most `maxSamples`, none older than `maxAgeMs`. */
export interface SampleRetentionLimits {
  readonly maxSamples: number;
  readonly maxAgeMs: number | undefined;
}

interface HeapEntry {
  readonly at: number;
  readonly series: Series;
}

/**
 * @internal The samples of a {@link MemoryStore}, per tag, under a retention: {@link retain}
 * evicts the oldest samples over every tag (by timestamp) until at most `maxSamples` are kept and
 * none is older than `now - maxAgeMs`. A min-heap of each series' first timestamp finds the
 * oldest sample in O(log tags); an entry is stale when its series' first timestamp has changed
 * and is then dropped when it reaches the top.
 */
export class RetainedSamples {
  readonly #limits: SampleRetentionLimits;
  readonly #series = new Map<string, Series>();
  readonly #heap: HeapEntry[] = [];
  #count = 0;
  #evicted = 0;

  constructor(limits: SampleRetentionLimits) {
    this.#limits = limits;
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

  /** Registers `tag` with an empty series unless it has one. */
  register(tag: string): void {
    this.#seriesOf(tag);
  }

  #seriesOf(tag: string): Series {
    let series = this.#series.get(tag);
    if (!series) {
      series = { timestamps: [], samples: [], start: 0 };
      this.#series.set(tag, series);
    }
    return series;
  }

  /**
   * Stores `sample` unless its (tag, timestamp) is kept already (the first value wins); returns
   * the kept sample then, else undefined.
   */
  insert(sample: Sample): Sample | undefined {
    const series = this.#seriesOf(sample.tag);
    const { timestamps, samples, start } = series;
    const timestamp = sample.timestamp;
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
    } else {
      timestamps.splice(index, 0, timestamp);
      samples.splice(index, 0, stored);
    }
    if (index === start) this.#push({ at: timestamp, series });
    this.#count++;
    return undefined;
  }

  /**
   * Evicts the oldest samples, over every tag, while more than `maxSamples` are kept or the
   * oldest is older than `now - maxAgeMs`. Returns how many it evicted.
   */
  retain(now: number): number {
    const { maxSamples, maxAgeMs } = this.#limits;
    const horizon = maxAgeMs === undefined ? -Infinity : now - maxAgeMs;
    const touched = new Set<Series>();
    let evicted = 0;
    while (this.#heap.length > 0) {
      const { at, series } = this.#heap[0]!;
      if (series.start >= series.timestamps.length || series.timestamps[series.start] !== at) {
        this.#pop();
        continue;
      }
      if (this.#count <= maxSamples && !(at < horizon)) break;
      this.#pop();
      series.samples[series.start++] = EVICTED;
      touched.add(series);
      if (series.start < series.timestamps.length) this.#push({ at: series.timestamps[series.start]!, series });
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
      if (series.start < series.timestamps.length) this.#push({ at: series.timestamps[series.start]!, series });
    }
  }

  #push(entry: HeapEntry): void {
    const heap = this.#heap;
    let index = heap.push(entry) - 1;
    while (index > 0) {
      const parent = (index - 1) >>> 1;
      if (heap[parent]!.at <= entry.at) break;
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
      const child = right < heap.length && heap[right]!.at < heap[left]!.at ? right : left;
      if (heap[child]!.at >= last.at) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = last;
  }
}

function compact(series: Series): void {
  if (series.start === 0) return;
  series.timestamps.splice(0, series.start);
  series.samples.splice(0, series.start);
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
