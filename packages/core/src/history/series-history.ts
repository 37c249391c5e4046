import type { Sample } from "../domain/sample";
import type { Interpolation, TagDataType, TagValue } from "../domain/tags";
import type { AggregateInterval, AggregateName, ValueAtTime } from "../ports/sample-history";
import type { CheckedIntervals } from "./history-input";
import {
  HISTORY_NO_DATA,
  boundingValue,
  HISTORY_OVERFLOW,
  isHuge,
  isImprecise,
  larger,
  smaller,
  type HistoryNumber,
  finishAggregates,
  segmentArea,
  type BoundingSamples,
  type HistoryPoint,
  type IntervalPartials,
  type OuterBounds,
} from "./part13-aggregates";

/** One tag's stored samples in time order, as parallel arrays. */
export interface SampleSeries {
  /** Each sample's timestamp (ms since epoch), ascending; `timestamps[i]` is `samples[i].timestamp`. */
  readonly timestamps: readonly number[];
  /** The samples, in the same order. */
  readonly samples: readonly Sample[];
}

/**
 * True for data: good quality and a usable value (not null, not NaN or infinite).
 * Uncertain samples are not data (OPC UA Part 13 `TreatUncertainAsBad`).
 */
export function isGoodData(sample: Pick<Sample, "value" | "quality">): boolean {
  const { value } = sample;
  return sample.quality.severity === "good" && value !== null && (typeof value !== "number" || Number.isFinite(value));
}

/** The numeric value of a tag value: numbers (finite), bigints, booleans as 0/1; otherwise null. */
export function numericValue(value: TagValue | null): number | null {
  switch (typeof value) {
    case "number":
      return Number.isFinite(value) ? value : null;
    case "bigint":
      return Number(value);
    case "boolean":
      return value ? 1 : 0;
    default:
      return null;
  }
}

/** The numeric value, exact: as {@link numericValue}, but a bigint stays a bigint. */
function exactValue(value: TagValue | null): HistoryNumber | null {
  return typeof value === "bigint" ? value : numericValue(value);
}

function pointOf(sample: Sample): HistoryPoint {
  return { time: sample.timestamp, value: exactValue(sample.value), good: isGoodData(sample) };
}

/** First index whose timestamp is >= `value`. */
function lowerBound(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The aggregates of one tag (current type `dataType`) from its in-memory series: the TypeScript form of the stores' SQL. */
export function aggregateSeries(
  tag: string,
  series: SampleSeries,
  interpolation: Interpolation,
  intervals: CheckedIntervals,
  aggregates: readonly AggregateName[],
  dataType: TagDataType,
): AggregateInterval[] {
  const { start, intervalMs, end } = intervals;
  const from = lowerBound(series.timestamps, start);
  const to = lowerBound(series.timestamps, end);
  const partials: IntervalPartials[] = [];
  let current: Mutable<IntervalPartials> | undefined;
  let lastGood: HistoryPoint | undefined;
  let lastAny: HistoryPoint | undefined;
  for (let position = from; position < to; position++) {
    const point = pointOf(series.samples[position]!);
    const index = Math.floor((point.time - start) / intervalMs);
    if (current?.index !== index) {
      current = {
        index,
        count: 0,
        numericCount: 0,
        sum: null,
        minimum: null,
        maximum: null,
        badCount: 0,
        innerArea: null,
        innerGoodMs: 0,
        imprecise: false,
        overflow: false,
      };
      partials.push(current);
    } else if (lastAny?.good) current.innerGoodMs += point.time - lastAny.time;
    current.firstAny ??= point;
    current.lastAny = point;
    lastAny = point;
    if (!point.good) {
      current.badCount++;
      continue;
    }
    current.count++;
    if (point.value !== null) {
      current.numericCount++;
      if (isHuge(point.value)) current.overflow = true;
      // The sum starts at the first value, as SQL's sum does (so a lone -0 sums to -0 on every store).
      else current.sum = current.sum === null ? Number(point.value) : current.sum + Number(point.value);
      current.minimum = smaller(current.minimum, point.value);
      current.maximum = larger(current.maximum, point.value);
      current.imprecise ||= isImprecise(point.value);
    }
    if (current.firstGood === undefined) current.firstGood = point;
    else if (lastGood !== undefined && !isHuge(lastGood.value) && !isHuge(point.value)) {
      const area = segmentArea(interpolation, lastGood.value, point.value, point.time - lastGood.time);
      if (area !== null) current.innerArea = current.innerArea === null ? area : current.innerArea + area;
    }
    current.lastGood = point;
    lastGood = point;
  }
  const outer: OuterBounds = {
    goodBefore: findGood(series, from - 1, -1),
    anyBefore: from > 0 ? pointOf(series.samples[from - 1]!) : undefined,
    goodAfter: findGood(series, to, 1),
    anyAfter: to < series.samples.length ? pointOf(series.samples[to]!) : undefined,
  };
  return finishAggregates(tag, interpolation, intervals, partials, outer, aggregates, dataType);
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function findGood(series: SampleSeries, from: number, step: 1 | -1): HistoryPoint | undefined {
  for (let position = from; position >= 0 && position < series.samples.length; position += step) {
    const sample = series.samples[position]!;
    if (isGoodData(sample)) return pointOf(sample);
  }
  return undefined;
}

/** A history point that keeps its sample, so a stepped value comes back with its own type. */
export interface SamplePoint extends HistoryPoint {
  /** The stored sample this point was made from. */
  readonly sample: Sample;
}

/**
 * The {@link SamplePoint} of a sample, or undefined. Built as one object literal (no spread of
 * the point of the sample): `valueAt` builds up to four per tag and time, and the spread cost
 * more than the rest of turning a PostgreSQL row into a sample.
 */
export function samplePoint(sample: Sample | undefined): SamplePoint | undefined {
  return sample === undefined
    ? undefined
    : { time: sample.timestamp, value: exactValue(sample.value), good: isGoodData(sample), sample };
}

/**
 * The bounding samples of each of `times` (ascending) in a series (OPC UA Part 13, 3.1.8). The
 * nearest good sample before a time is looked for only back to the previous time (after: up to
 * the next time); a time with none there takes its neighbour's. Each sample is read at most once
 * per direction, however many times share a stretch of bad samples (a search from every time
 * read a 100k-sample stretch once per time: seconds of a blocked event loop).
 */
function boundingSamplesAt(series: SampleSeries, times: readonly number[]): BoundingSamples<SamplePoint>[] {
  const { samples, timestamps } = series;
  const afters = times.map((time) => lowerBound(timestamps, time));
  const ats = afters.map((after, index) => (timestamps[after] === times[index] ? after : after - 1));
  const goodBefore = new Array<SamplePoint | undefined>(times.length);
  let carried: SamplePoint | undefined;
  for (let index = 0; index < times.length; index++) {
    const stop = index === 0 ? -1 : ats[index - 1]!;
    for (let position = ats[index]!; position > stop; position--) {
      if (isGoodData(samples[position]!)) {
        carried = samplePoint(samples[position]);
        break;
      }
    }
    goodBefore[index] = carried;
  }
  const bounds = new Array<BoundingSamples<SamplePoint>>(times.length);
  carried = undefined;
  for (let index = times.length - 1; index >= 0; index--) {
    const stop = index === times.length - 1 ? samples.length : afters[index + 1]!;
    for (let position = afters[index]!; position < stop; position++) {
      if (isGoodData(samples[position]!)) {
        carried = samplePoint(samples[position]);
        break;
      }
    }
    bounds[index] = {
      goodBefore: goodBefore[index],
      goodAfter: carried,
      anyBefore: samplePoint(samples[ats[index]!]),
      anyAfter: samplePoint(samples[afters[index]!]),
    };
  }
  return bounds;
}

/**
 * The value of a tag at `time` from its bounding samples, as a sample stamped `time`: what
 * every store returns from `valueAt` and `interpolated`, built in this one place.
 */
export function valueFromBounds(
  tag: string,
  time: number,
  bounds: BoundingSamples<SamplePoint>,
  interpolation: Interpolation,
): Sample {
  const bound = boundingValue(time, bounds, interpolation);
  if (bound === undefined) return { tag, value: null, timestamp: time, quality: HISTORY_NO_DATA };
  const value = bound.source !== undefined ? bound.source.sample.value : bound.value;
  if (value === null) {
    const why = bound.quality === HISTORY_OVERFLOW ? HISTORY_OVERFLOW : HISTORY_NO_DATA;
    return { tag, value: null, timestamp: time, quality: why };
  }
  return { tag, value, timestamp: time, quality: bound.quality };
}

/** {@link valueFromBounds} over an in-memory series. */
export function valueAtInSeries(tag: string, series: SampleSeries, time: number, interpolation: Interpolation): Sample {
  return valuesInSeries(tag, series, [time], interpolation)[0]!;
}

/**
 * {@link valueFromBounds} over an in-memory series at each of `times` (ascending, ms since the
 * epoch): one sample per time, in order. A stretch of bad samples is read once, not once per time.
 */
export function valuesInSeries(
  tag: string,
  series: SampleSeries,
  times: readonly number[],
  interpolation: Interpolation,
): Sample[] {
  const bounds = boundingSamplesAt(series, times);
  return times.map((time, index) => valueFromBounds(tag, time, bounds[index]!, interpolation));
}

/**
 * {@link valuesInSeries} for `valuesAt`: each value with whether it is a good sample stored at
 * exactly its time (`raw`), as every store answers it.
 */
export function valuesAtInSeries(
  tag: string,
  series: SampleSeries,
  times: readonly number[],
  interpolation: Interpolation,
): ValueAtTime[] {
  const bounds = boundingSamplesAt(series, times);
  return times.map((time, index) => valueAtTime(tag, time, bounds[index]!, interpolation));
}

/** {@link valueFromBounds} with `raw`: the good sample before or at `time` is at `time` itself. */
export function valueAtTime(
  tag: string,
  time: number,
  bounds: BoundingSamples<SamplePoint>,
  interpolation: Interpolation,
): ValueAtTime {
  // The fresh sample of valueFromBounds takes `raw` itself: no second object per value (a
  // million-value query made a second copy of each, and V8 spent a second collecting them).
  const value = valueFromBounds(tag, time, bounds, interpolation) as Mutable<ValueAtTime>;
  value.raw = bounds.goodBefore?.time === time;
  return value;
}

/** Rank of a quality severity for {@link downsampleSeries}: the worse, the higher. */
const SEVERITY_RANK = { good: 0, uncertain: 1, bad: 2 } as const;

/**
 * M4 downsampling (Jugel et al., "M4: A Visualization-Oriented Time Series Data Aggregation",
 * VLDB 2014) with a quality marker: per column, the first, smallest, largest and last sample with
 * a numeric value, and, when the column holds an uncertain or bad sample of worse quality than
 * all of those, the first sample of the column's worst quality (whatever its value, null too), so a bad or
 * uncertain stretch inside a column is never hidden. At most 5 samples per column. Values compared
 * exactly (a bigint too, never rounded to float64); ties go to the earliest sample (−0 and 0 are
 * equal, and the earlier keeps its sign). Column of a sample: `floor((t - start) * columns / (end - start))`.
 */
export function downsampleSeries(series: SampleSeries, start: number, end: number, columns: number): Sample[] {
  const from = lowerBound(series.timestamps, start);
  const to = lowerBound(series.timestamps, end);
  const chosen: number[] = [];
  let column = -1;
  let first = -1;
  let minimum = -1;
  let maximum = -1;
  let last = -1;
  let low: HistoryNumber = 0;
  let high: HistoryNumber = 0;
  let worst = -1;
  const rank = (position: number): number => SEVERITY_RANK[series.samples[position]!.quality.severity];
  const flush = (): void => {
    const picks = first < 0 ? [] : [first, minimum, maximum, last];
    if (worst >= 0 && rank(worst) > 0 && picks.every((position) => rank(position) < rank(worst))) picks.push(worst);
    chosen.push(...new Set(picks.sort((a, b) => a - b)));
  };
  for (let position = from; position < to; position++) {
    const sample = series.samples[position]!;
    const at = Math.floor(((sample.timestamp - start) * columns) / (end - start));
    if (at !== column) {
      flush();
      column = at;
      first = minimum = maximum = last = worst = -1;
    }
    if (worst < 0 || rank(position) > rank(worst)) worst = position;
    const value = exactValue(sample.value);
    if (value === null) continue;
    if (first < 0) {
      first = minimum = maximum = position;
      low = high = value;
    } else {
      if (value < low) {
        low = value;
        minimum = position;
      }
      if (value > high) {
        high = value;
        maximum = position;
      }
    }
    last = position;
  }
  flush();
  return chosen.map((position) => series.samples[position]!);
}
