import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import {
  AGGREGATES,
  HISTORY_TIME_MAX,
  HISTORY_TIME_MIN,
  MAX_HISTORY_INTERVALS,
  type AggregateQuery,
  type DownsampleQuery,
  type IntervalQuery,
} from "../ports/sample-history";

const AGGREGATE_NAMES: ReadonlySet<string> = new Set(AGGREGATES);

/** Intervals of a checked {@link IntervalQuery}. */
export interface CheckedIntervals {
  /** Start of the first interval, ms since epoch. */
  readonly start: number;
  /** Interval length, ms. */
  readonly intervalMs: number;
  /** Number of intervals: `ceil((end - start) / intervalMs)`, 1 to {@link MAX_HISTORY_INTERVALS}. */
  readonly count: number;
  /**
   * End of the range, exclusive, ms since epoch: the last interval ends here, clipped when
   * `end - start` is not a multiple of `intervalMs` (OPC UA Part 13, 5.4.2.2).
   */
  readonly end: number;
}

/**
 * Checks the tags and intervals of a history query, for store implementations: every problem is
 * collected and thrown together, before the store runs anything.
 *
 * @param isKnownTag true for the tags of the catalog the store was opened with.
 * @throws KilnValidationError (`KILN_VALIDATION`) naming each bad field (`tags[1]`, `end`,
 * `intervalMs`, `aggregates[0]`); times must lie in `[HISTORY_TIME_MIN, HISTORY_TIME_MAX]`.
 */
export function checkAggregateQuery(
  tags: readonly string[],
  query: AggregateQuery,
  isKnownTag: (tag: string) => boolean,
): CheckedIntervals {
  const issues: ValidationIssue[] = [];
  checkTags(tags, isKnownTag, issues);
  const intervals = checkIntervals(query, issues);
  const aggregates = (query as Partial<AggregateQuery> | null)?.aggregates;
  if (!Array.isArray(aggregates) || aggregates.length === 0) {
    issues.push({ path: "aggregates", message: `must be a non-empty array of ${AGGREGATES.join(", ")}` });
  } else {
    const seen = new Set<string>();
    aggregates.forEach((name: unknown, index) => {
      if (typeof name !== "string" || !AGGREGATE_NAMES.has(name)) {
        issues.push({
          path: `aggregates[${index}]`,
          message: `unknown aggregate: use one of ${AGGREGATES.join(", ")}`,
        });
      } else if (seen.has(name)) issues.push({ path: `aggregates[${index}]`, message: `${name} is listed twice` });
      else seen.add(name);
    });
  }
  throwIfAny("aggregate query", issues);
  return intervals!;
}

/** {@link checkAggregateQuery} for `interpolated`: tags and intervals. @throws KilnValidationError */
export function checkIntervalQuery(
  tags: readonly string[],
  query: IntervalQuery,
  isKnownTag: (tag: string) => boolean,
): CheckedIntervals {
  const issues: ValidationIssue[] = [];
  checkTags(tags, isKnownTag, issues);
  const intervals = checkIntervals(query, issues);
  throwIfAny("interpolated query", issues);
  return intervals!;
}

/** Checks the tags and time of `valueAt`. @throws KilnValidationError naming `tags[i]` or `time`. */
export function checkValueAtQuery(tags: readonly string[], time: number, isKnownTag: (tag: string) => boolean): void {
  const issues: ValidationIssue[] = [];
  checkTags(tags, isKnownTag, issues);
  checkTime("time", time, issues);
  throwIfAny("valueAt query", issues);
}

/**
 * Checks a downsample query and returns its number of columns (`floor(points / 4)`).
 * @throws KilnValidationError naming `tag`, `start`, `end` or `points`.
 */
export function checkDownsampleQuery(
  tag: string,
  query: DownsampleQuery,
  isKnownTag: (tag: string) => boolean,
): number {
  const issues: ValidationIssue[] = [];
  if (typeof tag !== "string" || !isKnownTag(tag)) {
    issues.push({ path: "tag", message: "must name a tag of the catalog the store was opened with" });
  }
  if (typeof query !== "object" || query === null) issues.push({ path: "", message: "must be a downsample query" });
  else {
    checkRange(query, issues);
    const { points } = query;
    if (!Number.isInteger(points) || points < 4 || points > 4 * MAX_HISTORY_INTERVALS) {
      issues.push({ path: "points", message: `must be a whole number from 4 to ${4 * MAX_HISTORY_INTERVALS}` });
    }
  }
  throwIfAny("downsample query", issues);
  return Math.floor(query.points / 4);
}

function checkTags(tags: readonly string[], isKnownTag: (tag: string) => boolean, issues: ValidationIssue[]): void {
  if (!Array.isArray(tags) || tags.length === 0) {
    issues.push({ path: "tags", message: "must be a non-empty array of tag names" });
    return;
  }
  tags.forEach((tag: unknown, index) => {
    if (typeof tag !== "string" || !isKnownTag(tag)) {
      issues.push({ path: `tags[${index}]`, message: "must name a tag of the catalog the store was opened with" });
    }
  });
}

function checkIntervals(query: IntervalQuery, issues: ValidationIssue[]): CheckedIntervals | undefined {
  if (typeof query !== "object" || query === null) {
    issues.push({ path: "", message: "must be a query object with start, end and intervalMs" });
    return undefined;
  }
  const rangeOk = checkRange(query, issues);
  const { intervalMs } = query;
  if (!Number.isInteger(intervalMs) || intervalMs < 1) {
    issues.push({ path: "intervalMs", message: "must be a whole number of ms, at least 1" });
    return undefined;
  }
  if (!rangeOk) return undefined;
  const count = Math.ceil((query.end - query.start) / intervalMs);
  if (count > MAX_HISTORY_INTERVALS) {
    issues.push({
      path: "intervalMs",
      message: `gives ${count} intervals; at most ${MAX_HISTORY_INTERVALS}: use a longer interval or a shorter range`,
    });
    return undefined;
  }
  return { start: query.start, intervalMs, count, end: query.end };
}

function checkRange(range: { readonly start: number; readonly end: number }, issues: ValidationIssue[]): boolean {
  const before = issues.length;
  checkTime("start", range.start, issues);
  checkTime("end", range.end, issues);
  if (issues.length === before && range.end <= range.start) {
    issues.push({ path: "end", message: "must be after start" });
  }
  return issues.length === before;
}

/** A whole number of ms in `[HISTORY_TIME_MIN, HISTORY_TIME_MAX]`, the range every store computes exactly. */
function checkTime(path: string, value: unknown, issues: ValidationIssue[]): void {
  if (!Number.isSafeInteger(value)) issues.push({ path, message: "must be a whole number of ms since epoch" });
  else if ((value as number) < HISTORY_TIME_MIN || (value as number) > HISTORY_TIME_MAX) {
    issues.push({
      path,
      message: `must be from ${new Date(HISTORY_TIME_MIN).toISOString()} to ${new Date(HISTORY_TIME_MAX).toISOString()} (the range every store computes exactly)`,
    });
  }
}

function throwIfAny(subject: string, issues: readonly ValidationIssue[]): void {
  if (issues.length > 0) throw new KilnValidationError(subject, issues);
}
