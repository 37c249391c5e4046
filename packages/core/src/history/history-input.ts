import { KilnError, KilnValidationError, type ValidationIssue } from "../domain/errors";
import {
  AGGREGATES,
  HISTORY_TIME_MAX,
  HISTORY_TIME_MIN,
  MAX_HISTORY_CELLS,
  MAX_HISTORY_INTERVALS,
  MAX_HISTORY_TAGS,
  type AggregateName,
  type AggregateQuery,
  type DownsampleQuery,
  type IntervalQuery,
} from "../ports/sample-history";

const AGGREGATE_NAMES: ReadonlySet<string> = new Set(AGGREGATES);

/**
 * Refuses an aggregate or a downsample over array tags (docs/adr/0038-array-tags.md): OPC UA
 * Part 13 aggregates are defined over scalars, so a store runs one only when no tag of `tags`
 * is an array tag. Call it after the query's own check (a bad query is `KILN_VALIDATION` first).
 * Raw history and value-at-time return arrays as stored.
 *
 * @param isArrayTag true for a tag whose definition has `arrayLength`.
 * @throws KilnError `KILN_NOT_SUPPORTED` (OPC UA `BadAggregateNotSupported`) naming the array
 *   tags in `details.tags`.
 */
export function refuseArrayTags(tags: readonly string[], isArrayTag: (tag: string) => boolean, what: string): void {
  const arrays = tags.filter(isArrayTag);
  if (arrays.length === 0) return;
  throw new KilnError(
    "KILN_NOT_SUPPORTED",
    `${what} is not defined over array tags: ${arrays.map((tag) => JSON.stringify(tag)).join(", ")}; query an element through a scalar tag.`,
    { details: { tags: arrays } },
  );
}

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
 * A checked `interpolated` query: a frozen copy of the caller's input, read once. Stores use
 * only this copy, so a caller changing its arrays after the call (or an array whose reads change,
 * such as a Proxy) cannot change what the store computes or bypass the checks.
 */
export interface CheckedIntervalQuery {
  /** The tags, each known and listed once, at most {@link MAX_HISTORY_TAGS}. */
  readonly tags: readonly string[];
  /** The intervals from `start` to `end` (each including its start, excluding its end: OPC UA Part 13, 5.2). */
  readonly intervals: CheckedIntervals;
}

/** A checked `aggregate` query: see {@link CheckedIntervalQuery}. */
export interface CheckedAggregateQuery extends CheckedIntervalQuery {
  /** The aggregates, each known and listed once. */
  readonly aggregates: readonly AggregateName[];
}

/** A checked `valueAt` query: see {@link CheckedIntervalQuery}. */
export interface CheckedValueAtQuery {
  /** The tags, each known and listed once, at most {@link MAX_HISTORY_TAGS}. */
  readonly tags: readonly string[];
  /** The time, ms since epoch. */
  readonly time: number;
}

/** A checked `valuesAt` query: see {@link CheckedIntervalQuery}. */
export interface CheckedValuesAtQuery {
  /** The tags, each known and listed once, at most {@link MAX_HISTORY_TAGS}. */
  readonly tags: readonly string[];
  /** The distinct requested times, ascending, ms since epoch: what a store computes. */
  readonly times: readonly number[];
  /** Per requested time, in the caller's order, its index in {@link CheckedValuesAtQuery.times}. */
  readonly order: readonly number[];
}

/** A checked `downsample` query: see {@link CheckedIntervalQuery}. */
export interface CheckedDownsampleQuery {
  /** The tag, known in the catalog. */
  readonly tag: string;
  /** Start of the range, ms since epoch (included). */
  readonly start: number;
  /** End of the range, ms since epoch (excluded), after `start`. */
  readonly end: number;
  /** Number of columns: `floor(points / 5)`. */
  readonly columns: number;
}

/**
 * Checks the tags and intervals of a history query, for store implementations: the input is
 * copied once and every problem is collected and thrown together, before the store runs anything.
 * The result size is bounded: tags × intervals × aggregates ≤ {@link MAX_HISTORY_CELLS}.
 *
 * @param isKnownTag true for the tags of the catalog the store was opened with.
 * @returns a frozen copy of the query; stores use only it.
 * @throws KilnValidationError (`KILN_VALIDATION`) naming each bad field (`tags[1]` unknown or
 * listed twice, `tags` over {@link MAX_HISTORY_TAGS}, `end`, `intervalMs` (also for too many
 * cells), `aggregates[0]`); times must lie in `[HISTORY_TIME_MIN, HISTORY_TIME_MAX]`.
 */
export function checkAggregateQuery(
  tags: readonly string[],
  query: AggregateQuery,
  isKnownTag: (tag: string) => boolean,
): CheckedAggregateQuery {
  const issues: ValidationIssue[] = [];
  const checkedTags = checkTags(tags, isKnownTag, issues);
  const read = readQuery(query, issues);
  const aggregates = copyArray(read?.aggregates);
  const intervals = read && checkIntervals(read, issues, checkedTags.length * Math.max(aggregates?.length ?? 1, 1));
  if (read !== undefined && (aggregates === undefined || aggregates.length === 0)) {
    issues.push({ path: "aggregates", message: `must be a non-empty array of ${AGGREGATES.join(", ")}` });
  } else if (aggregates !== undefined) {
    const seen = new Set<unknown>();
    aggregates.forEach((name, index) => {
      if (typeof name !== "string" || !AGGREGATE_NAMES.has(name)) {
        issues.push({
          path: `aggregates[${index}]`,
          message: `unknown aggregate: use one of ${AGGREGATES.join(", ")}`,
        });
      } else if (seen.has(name)) issues.push({ path: `aggregates[${index}]`, message: `${name} is listed twice` });
      seen.add(name);
    });
  }
  throwIfAny("aggregate query", issues);
  return Object.freeze({
    tags: checkedTags,
    intervals: intervals!,
    aggregates: Object.freeze(aggregates as AggregateName[]),
  });
}

/** {@link checkAggregateQuery} for `interpolated`: tags and intervals. @throws KilnValidationError */
export function checkIntervalQuery(
  tags: readonly string[],
  query: IntervalQuery,
  isKnownTag: (tag: string) => boolean,
): CheckedIntervalQuery {
  const issues: ValidationIssue[] = [];
  const checkedTags = checkTags(tags, isKnownTag, issues);
  const read = readQuery(query, issues);
  const intervals = read && checkIntervals(read, issues, checkedTags.length);
  throwIfAny("interpolated query", issues);
  return Object.freeze({ tags: checkedTags, intervals: intervals! });
}

/**
 * Checks the tags and time of `valueAt`.
 * @returns a frozen copy (see {@link checkAggregateQuery}).
 * @throws KilnValidationError naming `tags`, `tags[i]` or `time`.
 */
export function checkValueAtQuery(
  tags: readonly string[],
  time: number,
  isKnownTag: (tag: string) => boolean,
): CheckedValueAtQuery {
  const issues: ValidationIssue[] = [];
  const checkedTags = checkTags(tags, isKnownTag, issues);
  checkTime("time", time, issues);
  throwIfAny("valueAt query", issues);
  return Object.freeze({ tags: checkedTags, time });
}

/**
 * Checks the tags and times of `valuesAt`: 1 to {@link MAX_HISTORY_INTERVALS} times, each a
 * whole ms in `[HISTORY_TIME_MIN, HISTORY_TIME_MAX]`, at most {@link MAX_HISTORY_CELLS} tags × times.
 * @returns a frozen copy with the distinct times ascending (a store computes those, in one pass
 *   or statement) and where each requested time is among them (see {@link inRequestedOrder}).
 * @throws KilnValidationError naming `tags`, `tags[i]`, `times` or `times[i]`.
 */
export function checkValuesAtQuery(
  tags: readonly string[],
  times: readonly number[],
  isKnownTag: (tag: string) => boolean,
): CheckedValuesAtQuery {
  const issues: ValidationIssue[] = [];
  const checkedTags = checkTags(tags, isKnownTag, issues);
  const copy = copyArray(times);
  if (copy === undefined || copy.length === 0) {
    issues.push({ path: "times", message: "must be a non-empty array of times (ms since epoch)" });
  } else if (copy.length > MAX_HISTORY_INTERVALS) {
    issues.push({ path: "times", message: `lists ${copy.length} times; at most ${MAX_HISTORY_INTERVALS} per query` });
  } else if (copy.length * Math.max(checkedTags.length, 1) > MAX_HISTORY_CELLS) {
    issues.push({
      path: "times",
      message: `gives ${copy.length * checkedTags.length} results (tags × times); at most ${MAX_HISTORY_CELLS} per query: ask for fewer tags or times`,
    });
  } else copy.forEach((time, index) => checkTime(`times[${index}]`, time, issues));
  throwIfAny("valuesAt query", issues);
  const requested = copy as number[];
  const ascending = [...new Set(requested)].sort((a, b) => a - b);
  const indexOf = new Map(ascending.map((time, index) => [time, index]));
  return Object.freeze({
    tags: checkedTags,
    times: Object.freeze(ascending),
    order: Object.freeze(requested.map((time) => indexOf.get(time)!)),
  });
}

/**
 * The values a store computed for a checked `valuesAt` query, put in the caller's order:
 * `computed` holds, tag by tag in the query's order, one value per time of
 * {@link CheckedValuesAtQuery.times} (ascending); the result has one per requested time.
 */
export function inRequestedOrder<TValue>(query: CheckedValuesAtQuery, computed: readonly TValue[]): TValue[] {
  const count = query.times.length;
  const values: TValue[] = [];
  for (let tag = 0; tag < query.tags.length; tag++) {
    for (const index of query.order) values.push(computed[tag * count + index]!);
  }
  return values;
}

/**
 * Checks a downsample query.
 * @returns a frozen copy with its number of columns (`floor(points / 5)`).
 * @throws KilnValidationError naming `tag`, `start`, `end` or `points`.
 */
export function checkDownsampleQuery(
  tag: string,
  query: DownsampleQuery,
  isKnownTag: (tag: string) => boolean,
): CheckedDownsampleQuery {
  const issues: ValidationIssue[] = [];
  if (typeof tag !== "string" || !isKnownTag(tag)) {
    issues.push({ path: "tag", message: "must name a tag of the catalog the store was opened with" });
  }
  let read: { start: unknown; end: unknown; points: unknown } | undefined;
  if (typeof query !== "object" || query === null) issues.push({ path: "", message: "must be a downsample query" });
  else {
    const { start, end, points } = query;
    read = { start, end, points };
    checkRange(read, issues);
    if (!Number.isInteger(points) || (points as number) < 5 || (points as number) > 5 * MAX_HISTORY_INTERVALS) {
      issues.push({ path: "points", message: `must be a whole number from 5 to ${5 * MAX_HISTORY_INTERVALS}` });
    }
  }
  throwIfAny("downsample query", issues);
  return Object.freeze({
    tag,
    start: read!.start as number,
    end: read!.end as number,
    columns: Math.floor((read!.points as number) / 5),
  });
}

/**
 * A dense copy of an array, read once (a Proxy's traps run here and never again); undefined if
 * not an array. A hole becomes `undefined`, so the checks that follow (which iterate with
 * `forEach`) see and refuse it with its path: a sparse `[t0, , t1]` reached the stores as a hole
 * (adversarial review 18s). An array longer than any limit is copied sparse (its length alone is refused).
 */
function copyArray(value: unknown): unknown[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const length = value.length;
  if (length > MAX_HISTORY_CELLS) return Array.prototype.slice.call(value);
  const copy = new Array<unknown>(length);
  for (let index = 0; index < length; index++) copy[index] = (value as unknown[])[index];
  return copy;
}

function checkTags(tags: unknown, isKnownTag: (tag: string) => boolean, issues: ValidationIssue[]): readonly string[] {
  const copy = copyArray(tags);
  if (copy === undefined || copy.length === 0) {
    issues.push({ path: "tags", message: "must be a non-empty array of tag names" });
    return Object.freeze([]);
  }
  if (copy.length > MAX_HISTORY_TAGS) {
    issues.push({ path: "tags", message: `lists ${copy.length} tags; at most ${MAX_HISTORY_TAGS} per query` });
    return Object.freeze([]);
  }
  const seen = new Set<unknown>();
  copy.forEach((tag, index) => {
    if (typeof tag !== "string" || !isKnownTag(tag)) {
      issues.push({ path: `tags[${index}]`, message: "must name a tag of the catalog the store was opened with" });
    } else if (seen.has(tag)) issues.push({ path: `tags[${index}]`, message: `${tag} is listed twice` });
    seen.add(tag);
  });
  return Object.freeze(copy as string[]);
}

interface ReadQuery {
  readonly start: unknown;
  readonly end: unknown;
  readonly intervalMs: unknown;
  readonly aggregates?: unknown;
}

/** The query's fields, each read once (a getter cannot answer differently later). */
function readQuery(query: unknown, issues: ValidationIssue[]): ReadQuery | undefined {
  if (typeof query !== "object" || query === null) {
    issues.push({ path: "", message: "must be a query object with start, end and intervalMs" });
    return undefined;
  }
  const { start, end, intervalMs, aggregates } = query as Partial<AggregateQuery>;
  return { start, end, intervalMs, aggregates };
}

/** Checks the intervals; `cellsPerInterval` results per interval (tags × aggregates) bound the result size. */
function checkIntervals(
  query: ReadQuery,
  issues: ValidationIssue[],
  cellsPerInterval: number,
): CheckedIntervals | undefined {
  const rangeOk = checkRange(query, issues);
  const { intervalMs } = query;
  if (!Number.isInteger(intervalMs) || (intervalMs as number) < 1) {
    issues.push({ path: "intervalMs", message: "must be a whole number of ms, at least 1" });
    return undefined;
  }
  if (!rangeOk) return undefined;
  const start = query.start as number;
  const end = query.end as number;
  const count = Math.ceil((end - start) / (intervalMs as number));
  if (count > MAX_HISTORY_INTERVALS) {
    issues.push({
      path: "intervalMs",
      message: `gives ${count} intervals; at most ${MAX_HISTORY_INTERVALS}: use a longer interval or a shorter range`,
    });
    return undefined;
  }
  if (count * cellsPerInterval > MAX_HISTORY_CELLS) {
    issues.push({
      path: "intervalMs",
      message: `gives ${count * cellsPerInterval} results (tags × intervals × aggregates); at most ${MAX_HISTORY_CELLS} per query: use a longer interval, fewer tags or fewer aggregates`,
    });
    return undefined;
  }
  return Object.freeze({ start, intervalMs: intervalMs as number, count, end });
}

function checkRange(range: { readonly start: unknown; readonly end: unknown }, issues: ValidationIssue[]): boolean {
  const before = issues.length;
  checkTime("start", range.start, issues);
  checkTime("end", range.end, issues);
  if (issues.length === before && (range.end as number) <= (range.start as number)) {
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
