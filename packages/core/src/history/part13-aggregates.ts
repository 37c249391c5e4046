import { quality, type Quality } from "../domain/quality";
import type { Interpolation, TagDataType } from "../domain/tags";
import type { AggregateInterval, AggregateName, AggregateValue } from "../ports/sample-history";
import type { CheckedIntervals } from "./history-input";

/** OPC UA StatusCode `Bad_NoData`: nothing to compute a result from. */
const BAD_NO_DATA = 0x809b0000;
/** OPC UA StatusCode `Uncertain_DataSubNormal`: the result rests on bad or missing data. */
const UNCERTAIN_DATA_SUB_NORMAL = 0x40a40000;

/** Quality of a history result that rests on good data throughout. */
export const HISTORY_GOOD: Quality = Object.freeze(quality("good"));

/** Why a history result is uncertain, as bits; reported in this order, joined by "; ". */
const BAD_DATA = 1;
const MISSING_DATA = 2;
const IMPRECISE = 4;
const REASONS: readonly (readonly [bit: number, reason: string])[] = [
  [BAD_DATA, "rests on bad data"],
  [MISSING_DATA, "rests on missing data"],
  [IMPRECISE, "precision lost: computed in float64 from or to an integer beyond ±2^53"],
];
const uncertainByReasons = new Map<number, Quality>();
const reasonsByQuality = new Map<Quality, number>([[HISTORY_GOOD, 0]]);

/**
 * The quality of a result resting on the data described by `reasons` (bits): good for none,
 * else uncertain with every reason that applies, in the fixed order of `REASONS`, so a result
 * uncertain for two reasons names both, the same on every store. One frozen object per set.
 */
function uncertainOf(reasons: number): Quality {
  if (reasons === 0) return HISTORY_GOOD;
  let found = uncertainByReasons.get(reasons);
  if (found === undefined) {
    const text = REASONS.filter(([bit]) => (reasons & bit) !== 0)
      .map(([, reason]) => reason)
      .join("; ");
    found = Object.freeze(quality("uncertain", text, UNCERTAIN_DATA_SUB_NORMAL));
    uncertainByReasons.set(reasons, found);
    reasonsByQuality.set(found, reasons);
  }
  return found;
}

/** The reason bits of a quality made by {@link uncertainOf} (0 for good or any other). */
function reasonsOf(result: Quality | undefined): number {
  return result === undefined ? 0 : (reasonsByQuality.get(result) ?? 0);
}

/**
 * Quality of a history result that rests on both bad and missing data (reason "rests on bad data;
 * rests on missing data"). A result names only the reasons that apply to it: "rests on bad data"
 * (a bad or uncertain sample in the interval or between a value's sources and its time), "rests on
 * missing data" (no sample before the interval, or a value held past the last sample), and the
 * reason of {@link HISTORY_IMPRECISE}, joined by "; " in that order.
 */
export const HISTORY_UNCERTAIN: Quality = uncertainOf(BAD_DATA | MISSING_DATA);
/** Quality of a history result with no data to compute it from. */
export const HISTORY_NO_DATA: Quality = Object.freeze(quality("bad", "no data", BAD_NO_DATA));
/**
 * Quality of a result computed in float64 arithmetic from an integer beyond ±(2^53 - 1), which
 * float64 cannot hold exactly (`Number.MAX_SAFE_INTEGER`): the result may be off, so it is never
 * good. With another reason too, the result's reason names both (see {@link HISTORY_UNCERTAIN}).
 */
export const HISTORY_IMPRECISE: Quality = uncertainOf(IMPRECISE);

/** OPC UA StatusCode `Bad_OutOfRange`. */
const BAD_OUT_OF_RANGE = 0x803c0000;

/**
 * Magnitude beyond which a value takes no part in history arithmetic (sums, areas): every sum
 * and area of values within it stays finite in float64 (and in PostgreSQL float8, which raises
 * an error on overflow), whatever the number of samples or the interval length.
 */
export const HISTORY_ARITHMETIC_LIMIT = 1e290;

/**
 * Quality of a result whose float64 arithmetic would overflow: `Average`, `TimeAverage` or
 * `Total` resting on a value beyond ±{@link HISTORY_ARITHMETIC_LIMIT}, or any computed result
 * (an interpolated value, a `Delta`) that is not finite. The value is null; never good.
 */
export const HISTORY_OVERFLOW: Quality = Object.freeze(
  quality("bad", "overflow: beyond the range of float64 arithmetic", BAD_OUT_OF_RANGE),
);

/** True when `value` is a number beyond ±{@link HISTORY_ARITHMETIC_LIMIT} (bigints never are). */
export function isHuge(value: HistoryNumber | null | undefined): boolean {
  return typeof value === "number" && Math.abs(value) > HISTORY_ARITHMETIC_LIMIT;
}

/** A numeric value as stored: a number, or a bigint for 64-bit integer tags (exact). */
export type HistoryNumber = number | bigint;

const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** True when `value` is an integer that float64 cannot hold exactly (beyond ±(2^53 - 1)). */
export function isImprecise(value: HistoryNumber | null | undefined): boolean {
  return typeof value === "bigint" && (value > SAFE_MAX || value < -SAFE_MAX);
}

/**
 * The smaller of two values, compared exactly (a bigint against a number too); on a tie the
 * bigint, else `a` (pass the earlier sample as `a`: -0 and 0 tie, and the earlier keeps its sign).
 * The one rule every store uses to pick a `Minimum`.
 */
export function smaller(a: HistoryNumber | null, b: HistoryNumber | null): HistoryNumber | null {
  if (a === null) return b;
  if (b === null) return a;
  return b < a || (b == a && typeof b === "bigint") ? b : a;
}

/** The larger of two values, compared exactly; on a tie the bigint (see {@link smaller}). */
export function larger(a: HistoryNumber | null, b: HistoryNumber | null): HistoryNumber | null {
  if (a === null) return b;
  if (b === null) return a;
  return b > a || (b == a && typeof b === "bigint") ? b : a;
}

/** Quality `result` with the precision rule applied: uncertain when `imprecise`, unless bad; reasons kept. */
function precise(result: Quality, imprecise: boolean): Quality {
  return imprecise && result.severity !== "bad" ? uncertainOf(reasonsOf(result) | IMPRECISE) : result;
}

/** A sample reduced to what aggregation needs: time, numeric value, whether it is good data. */
export interface HistoryPoint {
  /** Timestamp, ms since epoch. */
  readonly time: number;
  /**
   * Numeric value, exact: a bigint for a bigint sample, booleans as 0/1; null for strings and
   * values that are not data.
   */
  readonly value: HistoryNumber | null;
  /** Good quality and a usable value. */
  readonly good: boolean;
}

/**
 * What the store computes from the raw samples of one interval, by one scan in time order (SQL
 * `GROUP BY` with `lead()` windows, or a loop). Only good samples are data.
 */
export interface IntervalPartials {
  /** Index of the interval, from 0. */
  readonly index: number;
  /** Good samples. */
  readonly count: number;
  /** Good samples with a numeric value. */
  readonly numericCount: number;
  /**
   * Sum (float64) of the numeric good values within ±{@link HISTORY_ARITHMETIC_LIMIT} (null when
   * there is none).
   */
  readonly sum: number | null;
  /** A numeric good value lies beyond ±{@link HISTORY_ARITHMETIC_LIMIT} ({@link isHuge}). */
  readonly overflow: boolean;
  /** Smallest numeric good value, exact ({@link smaller}; null when `numericCount` is 0). */
  readonly minimum: HistoryNumber | null;
  /** Largest numeric good value, exact ({@link larger}; null when `numericCount` is 0). */
  readonly maximum: HistoryNumber | null;
  /** A numeric good value is an integer beyond ±(2^53 - 1) ({@link isImprecise}). */
  readonly imprecise: boolean;
  /** First good sample. */
  readonly firstGood?: HistoryPoint;
  /** Last good sample. */
  readonly lastGood?: HistoryPoint;
  /** First sample of any quality. */
  readonly firstAny?: HistoryPoint;
  /** Last sample of any quality. */
  readonly lastAny?: HistoryPoint;
  /** Samples that are not good data. */
  readonly badCount: number;
  /**
   * Area (value·ms) between each good sample and the next good sample when both lie in this
   * interval, per the tag's interpolation; pairs with a non-numeric value or one beyond
   * ±{@link HISTORY_ARITHMETIC_LIMIT} are left out (a SQL `sum` skips nulls). Null when there is no such pair.
   */
  readonly innerArea: number | null;
  /** ms from each good sample to the next sample of any quality, when both lie in this interval. */
  readonly innerGoodMs: number;
}

/**
 * The samples around the query's intervals that bounding values need: the last good and last
 * sample before the first interval, the first good and first sample at or after the last one's end.
 */
export interface OuterBounds {
  /** The last good sample before the first interval's start. */
  readonly goodBefore?: HistoryPoint;
  /** The last sample of any quality before the first interval's start. */
  readonly anyBefore?: HistoryPoint;
  /** The first good sample at or after the last interval's end. */
  readonly goodAfter?: HistoryPoint;
  /** The first sample of any quality at or after the last interval's end. */
  readonly anyAfter?: HistoryPoint;
}

/**
 * The four samples around a time `t` that decide its value (OPC UA Part 13, 3.1.8 interpolated
 * bounding values): the last good sample at or before `t`, the first good one at or after it,
 * and the last and first samples of any quality on either side.
 */
export interface BoundingSamples<TPoint extends HistoryPoint = HistoryPoint> {
  /** The last good sample at or before `t`. */
  readonly goodBefore?: TPoint;
  /** The first good sample at or after `t`. */
  readonly goodAfter?: TPoint;
  /** When the last sample of any quality at or before `t` was taken. */
  readonly anyBefore?: Pick<HistoryPoint, "time">;
  /** When the first sample of any quality at or after `t` was taken. */
  readonly anyAfter?: Pick<HistoryPoint, "time">;
}

/** A value found by {@link boundingValue}: which sample(s) it comes from and its quality. */
export interface Bound<TPoint extends HistoryPoint = HistoryPoint> {
  /**
   * The numeric value at `t` (null when the source has no numeric value): the source's value,
   * exact, or a float64 interpolated between two samples.
   */
  readonly value: HistoryNumber | null;
  /** A value it rests on is an integer beyond ±(2^53 - 1): arithmetic on it is not exact. */
  readonly imprecise: boolean;
  /** The sample the value comes from, when it is not interpolated between two samples. */
  readonly source?: TPoint;
  /** Good, or uncertain with the reason (extrapolated, a bad or missing sample between, imprecise). */
  readonly quality: Quality;
}

/**
 * The value at `t` from its bounding samples (OPC UA Part 13, 3.1.8 interpolated bounding
 * values, with `TreatUncertainAsBad` and stepped extrapolation):
 * - a good sample at `t`: its value, good;
 * - stepped: the last good value before `t`;
 * - sloped: the straight line between the good samples before and after `t`, or, with none
 *   after, the last one held (extrapolation, uncertain);
 * - good when no other sample lies between the sources and `t` and something was stored at or
 *   after `t`; otherwise uncertain; no good sample at or before `t`: undefined (no data);
 * - a value interpolated from an integer beyond ±(2^53 - 1) is uncertain ({@link HISTORY_IMPRECISE}).
 */
export function boundingValue<TPoint extends HistoryPoint>(
  t: number,
  samples: BoundingSamples<TPoint>,
  interpolation: Interpolation,
): Bound<TPoint> | undefined {
  const { goodBefore, goodAfter, anyBefore, anyAfter } = samples;
  if (goodBefore === undefined) return undefined;
  if (goodBefore.time === t)
    return {
      value: goodBefore.value,
      source: goodBefore,
      quality: HISTORY_GOOD,
      imprecise: isImprecise(goodBefore.value),
    };
  const badBefore = anyBefore === undefined || anyBefore.time !== goodBefore.time ? BAD_DATA : 0;
  if (interpolation === "stepped" || goodAfter === undefined) {
    // Held: stepped, it holds until the next sample (none: missing); sloped, no good sample after
    // stops the line (a bad one after: bad data; none at all: missing).
    const after =
      interpolation === "stepped"
        ? anyAfter !== undefined
          ? 0
          : MISSING_DATA
        : anyAfter !== undefined
          ? BAD_DATA
          : MISSING_DATA;
    return {
      value: goodBefore.value,
      source: goodBefore,
      quality: uncertainOf(badBefore | after),
      imprecise: isImprecise(goodBefore.value),
    };
  }
  const badAfter = anyAfter === undefined || anyAfter.time !== goodAfter.time ? BAD_DATA : 0;
  const imprecise = isImprecise(goodBefore.value) || isImprecise(goodAfter.value);
  const found = precise(uncertainOf(badBefore | badAfter), imprecise);
  if (goodBefore.value === null || goodAfter.value === null) return { value: null, quality: found, imprecise };
  const value = interpolate(
    Number(goodBefore.value),
    Number(goodAfter.value),
    (t - goodBefore.time) / (goodAfter.time - goodBefore.time),
  );
  return Number.isFinite(value)
    ? { value, quality: found, imprecise }
    : { value: null, quality: HISTORY_OVERFLOW, imprecise };
}

/**
 * `a + (b - a) * fraction`; when `b - a` overflows (values of opposite sign near float64's
 * largest), `a * (1 - fraction) + b * fraction`, which stays within [a, b].
 */
function interpolate(a: number, b: number, fraction: number): number {
  const value = a + (b - a) * fraction;
  return Number.isFinite(value) ? value : a * (1 - fraction) + b * fraction;
}

/**
 * Area (value·ms) of one segment from `from` to `to`: stepped holds `from`'s value, sloped is a
 * trapezoid. The one formula every store uses, so results agree to the bit.
 */
export function segmentArea(
  interpolation: Interpolation,
  fromValue: HistoryNumber | null,
  toValue: HistoryNumber | null,
  durationMs: number,
): number | null {
  if (fromValue === null) return null;
  if (interpolation === "stepped") return Number(fromValue) * durationMs;
  if (toValue === null) return null;
  return ((Number(fromValue) + Number(toValue)) / 2) * durationMs;
}

/**
 * Turns per-interval partials into the requested aggregates, applying OPC UA Part 13's rules
 * for bounding values, intervals without data and quality (see {@link AGGREGATES} for each
 * definition). Intervals missing from `partials` hold no samples. `dataType` is the tag's
 * current type in the catalog: `Delta` is computed in it (an exact bigint for `int64`/`uint64` only).
 */
export function finishAggregates(
  tag: string,
  interpolation: Interpolation,
  intervals: CheckedIntervals,
  partials: readonly IntervalPartials[],
  outer: OuterBounds,
  aggregates: readonly AggregateName[],
  dataType: TagDataType,
): AggregateInterval[] {
  const { start, intervalMs, count, end } = intervals;
  const byIndex: (IntervalPartials | undefined)[] = new Array<IntervalPartials | undefined>(count);
  for (const partial of partials) byIndex[partial.index] = partial;
  // Latest good / any sample before each edge, and earliest at or after it, by two sweeps.
  const goodBefore: (HistoryPoint | undefined)[] = new Array<HistoryPoint | undefined>(count + 1);
  const anyBefore: (HistoryPoint | undefined)[] = new Array<HistoryPoint | undefined>(count + 1);
  const goodAfter: (HistoryPoint | undefined)[] = new Array<HistoryPoint | undefined>(count + 1);
  const anyAfter: (HistoryPoint | undefined)[] = new Array<HistoryPoint | undefined>(count + 1);
  let good = outer.goodBefore;
  let any = outer.anyBefore;
  for (let edge = 0; edge <= count; edge++) {
    goodBefore[edge] = good;
    anyBefore[edge] = any;
    const partial = byIndex[edge];
    if (partial) {
      good = partial.lastGood ?? good;
      any = partial.lastAny ?? any;
    }
  }
  good = outer.goodAfter;
  any = outer.anyAfter;
  for (let edge = count; edge >= 0; edge--) {
    const partial = byIndex[edge];
    if (partial) {
      good = partial.firstGood ?? good;
      any = partial.firstAny ?? any;
    }
    goodAfter[edge] = good;
    anyAfter[edge] = any;
  }
  // A sample exactly on an edge is the last sample at or before it, too.
  const boundAt = (edge: number): Bound | undefined => {
    const t = Math.min(start + edge * intervalMs, end);
    const after = goodAfter[edge];
    const anyOn = anyAfter[edge];
    return boundingValue(
      t,
      {
        goodBefore: after?.time === t ? after : goodBefore[edge],
        goodAfter: after,
        anyBefore: anyOn?.time === t ? anyOn : anyBefore[edge],
        anyAfter: anyOn,
      },
      interpolation,
    );
  };

  const results: AggregateInterval[] = [];
  let startBound = boundAt(0);
  for (let index = 0; index < count; index++) {
    const s = start + index * intervalMs;
    const e = Math.min(s + intervalMs, end); // the last interval ends at `end` (Part 13, 5.4.2.2)
    const partial = byIndex[index];
    const endBound = boundAt(index + 1);
    const values: Partial<Record<AggregateName, AggregateValue>> = {};
    const rawQuality = (present: boolean): Quality =>
      !present ? HISTORY_NO_DATA : uncertainOf((partial?.badCount ?? 0) > 0 ? BAD_DATA : 0);
    const raw = (value: HistoryNumber | null | undefined, imprecise = false): AggregateValue =>
      value === null || value === undefined
        ? { value: null, quality: HISTORY_NO_DATA }
        : typeof value === "number" && !Number.isFinite(value)
          ? { value: null, quality: HISTORY_OVERFLOW }
          : { value, quality: precise(rawQuality(true), imprecise) };

    // DurationGood: the state before the first sample of the interval is the last sample's before it.
    const stateBefore = anyBefore[index];
    let goodMs = partial?.innerGoodMs ?? 0;
    if (stateBefore?.good) goodMs += (partial?.firstAny?.time ?? e) - s;
    if (partial?.lastAny?.good) goodMs += e - partial.lastAny.time;
    // Time not good is missing (before the first sample ever) or bad (after a bad sample).
    const missingMs = stateBefore === undefined ? (partial?.firstAny?.time ?? e) - s : 0;
    const notGood = (missingMs > 0 ? MISSING_DATA : 0) | (goodMs + missingMs < e - s ? BAD_DATA : 0);

    // TimeAverage: head (start bound to first good sample), inner pairs, tail (last good to end bound).
    let average: number | null = null;
    const first = partial?.firstGood;
    const last = partial?.lastGood;
    if (startBound !== undefined || first !== undefined) {
      let area: number | null;
      if (first === undefined || last === undefined) {
        area = segmentArea(interpolation, startBound!.value, endBound?.value ?? null, e - s);
      } else {
        const head =
          startBound === undefined ? 0 : segmentArea(interpolation, startBound.value, first.value, first.time - s);
        const tail = segmentArea(interpolation, last.value, endBound?.value ?? null, e - last.time);
        area = head === null || tail === null ? null : head + (partial?.innerArea ?? 0) + tail;
      }
      const covered = e - (startBound === undefined ? first!.time : s);
      average = area === null || covered <= 0 ? null : area / covered;
    }
    // Arithmetic on a value beyond the limit (in the interval or a bound) could overflow: not done.
    const timeOverflow =
      average !== null &&
      ((partial?.overflow ?? false) ||
        isHuge(startBound?.value) ||
        isHuge(endBound?.value) ||
        !Number.isFinite(average));
    const timeQuality = timeOverflow
      ? HISTORY_OVERFLOW
      : average === null
        ? HISTORY_NO_DATA
        : precise(
            uncertainOf(
              notGood |
                (startBound === undefined || endBound === undefined ? MISSING_DATA : 0) |
                (reasonsOf(startBound?.quality) & ~IMPRECISE) |
                (reasonsOf(endBound?.quality) & ~IMPRECISE),
            ),
            (partial?.imprecise ?? false) || (startBound?.imprecise ?? false) || (endBound?.imprecise ?? false),
          );

    for (const name of aggregates) {
      switch (name) {
        case "Count":
          values.Count = { value: partial?.count ?? 0, quality: rawQuality((partial?.count ?? 0) > 0) };
          break;
        case "Minimum":
          values.Minimum = raw(partial?.minimum);
          break;
        case "Maximum":
          values.Maximum = raw(partial?.maximum);
          break;
        case "Start":
          values.Start = raw(first?.value);
          break;
        case "End":
          values.End = raw(last?.value);
          break;
        case "Delta":
          {
            const difference = delta(first?.value, last?.value, dataType);
            const imprecise = typeof difference === "number" && (isImprecise(first?.value) || isImprecise(last?.value));
            values.Delta = raw(difference, imprecise);
          }
          break;
        case "Average":
          values.Average =
            partial?.overflow === true
              ? { value: null, quality: HISTORY_OVERFLOW }
              : raw(
                  partial && partial.numericCount > 0 ? partial.sum! / partial.numericCount : null,
                  // A float64 sum beyond ±2^53 is not exact either (integers lose their last digits).
                  (partial?.imprecise ?? false) || Math.abs(partial?.sum ?? 0) > Number.MAX_SAFE_INTEGER,
                );
          break;
        case "TimeAverage":
          values.TimeAverage = { value: timeOverflow ? null : average, quality: timeQuality };
          break;
        case "Total":
          values.Total = {
            value: average === null || timeOverflow ? null : (average * (e - s)) / 1000,
            quality: timeQuality,
          };
          break;
        case "DurationGood":
          values.DurationGood = { value: goodMs, quality: HISTORY_GOOD };
          break;
        case "PercentGood":
          values.PercentGood = { value: (goodMs / (e - s)) * 100, quality: HISTORY_GOOD };
          break;
        case "Interpolative":
          values.Interpolative =
            startBound === undefined || startBound.value === null
              ? { value: null, quality: HISTORY_NO_DATA }
              : { value: startBound.value, quality: startBound.quality };
          break;
      }
    }
    results.push({ tag, start: s, end: e, values });
    startBound = endBound;
  }
  return results;
}

/**
 * `last - first`, in the tag's current type: for an `int64`/`uint64` tag exact, a bigint, when one
 * is a bigint and the other an integer (a 64-bit tag delivers safe integers as numbers); else
 * float64, a number (imprecise per {@link isImprecise}). So a float tag whose older samples were
 * stored as 64-bit integers (its type changed) gets a float Delta, never a bigint.
 */
function delta(
  first: HistoryNumber | null | undefined,
  last: HistoryNumber | null | undefined,
  dataType: TagDataType,
): HistoryNumber | null {
  if (first === null || first === undefined || last === null || last === undefined) return null;
  const integral = (value: HistoryNumber): boolean => typeof value === "bigint" || Number.isInteger(value);
  const exact = dataType === "int64" || dataType === "uint64";
  if (exact && (typeof first === "bigint" || typeof last === "bigint") && integral(first) && integral(last))
    return BigInt(last) - BigInt(first);
  return Number(last) - Number(first);
}
