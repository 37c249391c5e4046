import { GOOD as GOOD_QUALITY, type Interpolation, type Sample, type TagDataType } from "@kiln/core";
import { type AggregateInterval, type AggregateName, type HistoryQueries } from "@kiln/core/driver-kit";
import {
  type AggregateQuery,
  checkAggregateQuery,
  checkDownsampleQuery,
  refuseArrayTags,
  type CheckedIntervals,
  checkIntervalQuery,
  checkValueAtQuery,
  checkValuesAtQuery,
  type BoundingSamples,
  type DownsampleQuery,
  downsampleSeries,
  finishAggregates,
  HISTORY_ARITHMETIC_LIMIT,
  type HistoryPoint,
  inRequestedOrder,
  type IntervalPartials,
  type IntervalQuery,
  larger,
  type OuterBounds,
  smaller,
  samplePoint,
  type SamplePoint,
  valueAtTime,
  valueFromBounds,
  type ValueAtTime,
} from "@kiln/core/driver-kit";
import { OTHER_VALUE, otherValue, SAMPLE_ROW_COLUMNS, toSample, type SampleRow } from "./sample-row";
import { arrayLiteral } from "./sql-array";
import { fastMillisecondsOf, millisecondsOf, timestampOf } from "./sql-expressions";
import type { SqlClient, SqlResult } from "./sql-client";
import type { StoreContext } from "./store-context";
import type { TagRegistry } from "./tag-registry";

/**
 * SQL: `value_float` is finite (neither NaN nor ±Infinity; NULL for NULL). One call and one
 * comparison per row where `NOT IN (NaN, Infinity, -Infinity)` made three: PostgreSQL orders NaN
 * above Infinity, so `abs(NaN) < 'Infinity'` is false.
 */
const FINITE = `abs(value_float) < 'Infinity'::float8`;
/**
 * SQL: the row is data (good quality, a usable value), as `isGoodData` in `@kiln/core`. Never
 * NULL: a null value is not data (a comparison alone would be NULL for it, which
 * `FILTER (WHERE NOT good)`, `lag(good)` and `good::int4` would all miss).
 */
const GOOD = `(quality BETWEEN 0 AND 1073741823
  AND ((${FINITE}) OR num_nonnulls(value_int, value_uint, value_bool, value_text, value_array) > 0) IS TRUE)`;
/** SQL: the numeric value (booleans 0/1), as `numericValue` in `@kiln/core`; NULL for text. */
const NUMERIC = `CASE WHEN ${FINITE} THEN value_float
  WHEN value_int IS NOT NULL THEN value_int::float8 WHEN value_uint IS NOT NULL THEN value_uint::float8
  WHEN value_bool IS NOT NULL THEN value_bool::int4::float8 END`;

/**
 * SQL: the sample's severity as a rank, the worse the higher (good 0, uncertain 1, bad 2), from
 * its OPC UA status code's top two bits (the code is stored as a signed int4).
 */
const SEVERITY_RANK = `(CASE WHEN quality < 0 THEN 2 WHEN quality >= 1073741824 THEN 1 ELSE 0 END)::float8`;
/** SQL: the exact value of a 64-bit integer sample as `numeric` (NULL for every other value). */
const EXACT = `CASE WHEN value_int IS NOT NULL THEN value_int::numeric ELSE value_uint END`;
/** SQL: microseconds since the epoch as int8, exact (see `fastMillisecondsOf`). */
const MICROS = `round(date_part('epoch', time) * 1000000)::int8`;
/** SQL: the integer `exact` is beyond ±(2^53 - 1), as `isImprecise` in `@kiln/core`. */
const IMPRECISE = `(exact NOT BETWEEN -9007199254740991 AND 9007199254740991)`;

/** SQL: `HISTORY_ARITHMETIC_LIMIT` of `@kiln/core` as float8. */
const LIMIT = `'${HISTORY_ARITHMETIC_LIMIT}'::float8`;
/** SQL: the numeric value takes part in sums and areas (NULL for no numeric value), as `!isHuge`. */
const WITHIN = `(abs(num) <= ${LIMIT})`;

/**
 * SQL: `sum / 2` in float8 as IEEE 754 (and JavaScript) computes it, without raising. PostgreSQL
 * raises "value out of range: underflow" when `*` or `/` rounds a nonzero result to 0, which
 * IEEE 754 does only for `±2^-1074 / 2` here (a tie, rounded to the even 0): that case is `0 * sum`,
 * the signed zero IEEE 754 gives.
 */
const half = (sum: string): string =>
  `(CASE WHEN abs(${sum}) <= '5e-324'::float8 THEN 0 * (${sum}) ELSE (${sum}) / 2 END)`;
/**
 * SQL: `value * durationMs` in float8 as IEEE 754 (and JavaScript) computes it, without raising
 * (see `half`). `durationMs` is 0 or at least about 0.001 (a difference of whole microseconds)
 * and at most about 2^55, `value` at most {@link HISTORY_ARITHMETIC_LIMIT}: a product can round to
 * 0 only when `|value|` is below 2^-1000, where the product scaled by 2^100 (exact, and far from
 * both ends of float8's range) tells whether it would; if so the product is the signed zero.
 */
const product = (value: string, durationMs: string): string => `(CASE WHEN abs(${value}) >= '${2 ** -1000}'::float8
    THEN ${value} * ${durationMs}
  -- A CASE of its own: OR does not fix the order of evaluation, and the scaled product of a large value overflows.
  ELSE CASE WHEN abs((${value} * '${2 ** 100}'::float8) * ${durationMs}) > '${2 ** -975}'::float8
    THEN ${value} * ${durationMs} ELSE 0 * ${value} * ${durationMs} END END)`;

/**
 * SQL: the width of `date_bin`'s bins in ms for interval length `$4` over `[$3, $5)`. An interval
 * longer than the range is one interval (core's `checkIntervalQuery` counts one), binned as the
 * range: an interval of 2^63 µs or more is out of PostgreSQL's `interval` range. At least 1 ms,
 * which already puts every time in `[$3, $5)` in one bin when the range is shorter.
 */
const BIN_MS = `least($4::float8, greatest($5::float8 - $3::float8, 1))`;

/** What each aggregate needs computed beyond count, sum, minimum, maximum and bad samples. */
const NEEDS: Readonly<
  Record<AggregateName, { readonly ends: boolean; readonly time: boolean; readonly area: boolean }>
> = {
  Count: { ends: false, time: false, area: false },
  Minimum: { ends: false, time: false, area: false },
  Maximum: { ends: false, time: false, area: false },
  Average: { ends: false, time: false, area: false },
  Start: { ends: true, time: false, area: false },
  End: { ends: true, time: false, area: false },
  Delta: { ends: true, time: false, area: false },
  DurationGood: { ends: true, time: true, area: false },
  PercentGood: { ends: true, time: true, area: false },
  Interpolative: { ends: true, time: true, area: false },
  TimeAverage: { ends: true, time: true, area: true },
  Total: { ends: true, time: true, area: true },
};

interface PartialsRow {
  readonly tag_id: number;
  readonly k: number | null;
  readonly count: number | null;
  readonly numeric_count: number | null;
  readonly sum: number | null;
  readonly minimum: number | null;
  readonly maximum: number | null;
  readonly minimum_exact: string | null;
  readonly maximum_exact: string | null;
  readonly first_zero_negative: boolean | null;
  readonly imprecise: boolean | null;
  readonly overflow: boolean | null;
  readonly bad_count: number | null;
  readonly first_good_ms: number | null;
  readonly first_good_num: number | null;
  readonly first_exact_us: string | null;
  readonly first_exact: string | null;
  readonly last_good_ms: number | null;
  readonly last_good_num: number | null;
  readonly last_exact_us: string | null;
  readonly last_exact: string | null;
  readonly first_any_ms: number | null;
  readonly first_any_good: boolean | null;
  readonly last_any_ms: number | null;
  readonly last_any_good: boolean | null;
  readonly inner_area: number | null;
  readonly inner_good_ms: number | null;
  readonly good_before_ms: number | null;
  readonly good_before_num: number | null;
  readonly good_before_exact: string | null;
  readonly any_before_ms: number | null;
  readonly any_before_good: boolean | null;
  readonly good_after_ms: number | null;
  readonly good_after_num: number | null;
  readonly good_after_exact: string | null;
  readonly any_after_ms: number | null;
  readonly any_after_good: boolean | null;
}

/** A row of `valueAt` / `interpolated`: the two good bounds (value in `value_float` or `other`) and two times. */
interface BoundsRow {
  readonly tag_index: number | string;
  readonly k: number;
  readonly any_before_ms: number | null;
  readonly any_after_ms: number | null;
  readonly before_ms: number | null;
  readonly before_value_float: number | null;
  readonly before_other: string | null;
  readonly after_ms: number | null;
  readonly after_value_float: number | null;
  readonly after_other: string | null;
}

/**
 * History queries on the `samples` table, computed in the database: one statement per call
 * (`aggregate` and `downsample` in a transaction of their own, for their planner settings: see
 * `scanQuery`).
 *
 * - `aggregate`: per tag, one scan of `[start, end)` in the `(tag_id, time)` primary key's order
 *   reduces the raw samples to per-interval partials (`GROUP BY`, `lag()` windows for areas and
 *   good durations), and four index probes per tag find the samples bounding the range; the shared
 *   Part 13 finisher of `@kiln/core` turns the (at most 10,000) partial rows into results,
 *   exactly as `MemoryStore` does. Partials an aggregate does not need are not computed.
 * - `valueAt` / `valuesAt` / `interpolated`: one statement whatever the times (one array
 *   parameter); per tag and time, index probes for the last sample at or before it and the first
 *   at or after it (and the nearest good ones, only when those are not good).
 * - `downsample`: one `GROUP BY` column picks the first, last, smallest and largest sample (M4;
 *   floats and 64-bit integers apart, each compared exactly) and the first of the column's worst
 *   quality, and the shared `downsampleSeries` picks among the candidates; the picked rows are
 *   then read by primary key, at most seven per column (one pass: a
 *   `time IN (subquery)` filter over the range was quadratic on PostgreSQL and PGlite).
 */
export class PostgresHistory implements HistoryQueries {
  readonly #context: StoreContext;
  readonly #tags: TagRegistry;
  readonly #dataTypes: ReadonlyMap<string, TagDataType>;

  /** `dataTypes`: each catalog tag's current data type (`Delta` is computed in it), kept by the store. */
  constructor(context: StoreContext, tags: TagRegistry, dataTypes: ReadonlyMap<string, TagDataType>) {
    this.#context = context;
    this.#tags = tags;
    this.#dataTypes = dataTypes;
  }

  readonly #known = (tag: string): boolean => this.#tags.interpolations.has(tag);

  /** Per-interval aggregates with OPC UA Part 13 semantics; see `HistoryQueries.aggregate`. */
  async aggregate(tags: readonly string[], query: AggregateQuery): Promise<AggregateInterval[]> {
    this.#context.client();
    const { tags: checkedTags, intervals, aggregates } = checkAggregateQuery(tags, query, this.#known);
    refuseArrayTags(checkedTags, this.#tags.isArrayTag, "an aggregate");
    const needs = { ends: false, time: false, area: false };
    for (const name of aggregates) {
      needs.ends ||= NEEDS[name].ends;
      needs.time ||= NEEDS[name].time;
      needs.area ||= NEEDS[name].area;
    }
    const ids = checkedTags.map((tag) => this.#tags.catalogIds.get(tag)!);
    const sql = this.#aggregateSql(needs);
    const parameters = [
      arrayLiteral(ids),
      arrayLiteral(checkedTags.map((tag) => this.#tags.interpolations.get(tag) === "sloped")),
      intervals.start,
      intervals.intervalMs,
      intervals.end,
    ];
    const rows = await this.#context.runHistory("history.aggregate", (client, sessionSettings, remainingMs) =>
      // The windows need each tag's rows in time order, which the primary key gives for free; but
      // the planner costs a bitmap scan plus a sort lower, and that sort spills to disk at the
      // default work_mem on a day of 1 Hz data. Without sorts it reads the key in order.
      scanQuery<PartialsRow>(client, sql, parameters, {
        sortFree: needs.time,
        timeoutMs: remainingMs,
        sessionSettings,
      }),
    );
    return checkedTags.flatMap((tag, index) =>
      finish(
        tag,
        ids[index]!,
        this.#tags.interpolations.get(tag)!,
        intervals,
        rows.rows,
        aggregates,
        this.#dataTypes.get(tag)!,
      ),
    );
  }

  #aggregateSql(needs: { readonly ends: boolean; readonly time: boolean; readonly area: boolean }): string {
    const samples = this.#context.table("samples");
    const bound = (name: string, comparison: string, order: string, good: boolean): string =>
      `LEFT JOIN LATERAL (SELECT ${fastMillisecondsOf("time")} AS ms, ${good ? NUMERIC : GOOD} AS v,
         ${good ? `(${EXACT})::text` : "NULL"} AS x FROM ${samples}
         WHERE tag_id = input.tag_id AND time ${comparison} ${good ? `AND ${GOOD}` : ""}
         ORDER BY time ${order} LIMIT 1) AS ${name} ON true`;
    // Windows look back in time order (one tag per lateral subquery, so the primary key's order):
    // the previous sample (good durations) and the previous good one (areas).
    const windows = [
      needs.time ? "lag(ms) OVER w AS previous_ms" : "",
      needs.time ? "lag(good) OVER w AS previous_good" : "",
      needs.area ? "lag(num) OVER w AS previous_num" : "",
      needs.area
        ? "max(ms) FILTER (WHERE good) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_good_ms"
        : "",
    ].filter((column) => column !== "");
    const inInterval = (column: string): string => `${column} >= ${fastMillisecondsOf("bucket")}`;
    const columns = [
      "count(*) FILTER (WHERE good)::int4 AS count",
      "count(num) FILTER (WHERE good)::int4 AS numeric_count",
      // Values beyond HISTORY_ARITHMETIC_LIMIT stay out of sums and areas (float8 raises on overflow).
      `sum(num) FILTER (WHERE good AND ${WITHIN}) AS sum`,
      `coalesce(bool_or(NOT ${WITHIN}) FILTER (WHERE good), false) AS overflow`,
      // Minimum and maximum exactly: float values in float8, 64-bit integers in numeric.
      "min(num) FILTER (WHERE good AND exact IS NULL) AS minimum",
      "max(num) FILTER (WHERE good AND exact IS NULL) AS maximum",
      // float8 min/max return either of -0 and 0 on a tie; the earliest zero's sign decides (as in core).
      // (atan2(num, -1) is negative for -0 only; the arguments are evaluated for zeros only.)
      `(min(ARRAY[date_part('epoch', time), atan2(num, -1)]) FILTER (WHERE num = 0 AND good AND exact IS NULL))[2] < 0
         AS first_zero_negative`,
      "min(exact) FILTER (WHERE exact IS NOT NULL AND good)::text AS minimum_exact",
      "max(exact) FILTER (WHERE exact IS NOT NULL AND good)::text AS maximum_exact",
      // Filtered on exact first: float rows skip these aggregates without evaluating their arguments.
      `coalesce(bool_or(${IMPRECISE}) FILTER (WHERE exact IS NOT NULL AND good), false) AS imprecise`,
      "count(*) FILTER (WHERE NOT good)::int4 AS bad_count",
      ...(needs.ends
        ? [
            "min(ms) FILTER (WHERE good) AS first_good_ms",
            "(min(ARRAY[ms, num]) FILTER (WHERE good))[2] AS first_good_num",
            "max(ms) FILTER (WHERE good) AS last_good_ms",
            "(max(ARRAY[ms, num]) FILTER (WHERE good))[2] AS last_good_num",
            // The first and last good 64-bit integer, exactly; used when it is the first / last good sample.
            `(min(ARRAY[${MICROS}::numeric, exact]) FILTER (WHERE good AND exact IS NOT NULL))[1]::text AS first_exact_us`,
            `(min(ARRAY[${MICROS}::numeric, exact]) FILTER (WHERE good AND exact IS NOT NULL))[2]::text AS first_exact`,
            `(max(ARRAY[${MICROS}::numeric, exact]) FILTER (WHERE good AND exact IS NOT NULL))[1]::text AS last_exact_us`,
            `(max(ARRAY[${MICROS}::numeric, exact]) FILTER (WHERE good AND exact IS NOT NULL))[2]::text AS last_exact`,
          ]
        : []),
      ...(needs.time
        ? [
            "min(ms) AS first_any_ms",
            "(min(ARRAY[ms, good::int4]))[2] = 1 AS first_any_good",
            "max(ms) AS last_any_ms",
            "(max(ARRAY[ms, good::int4]))[2] = 1 AS last_any_good",
            `coalesce(sum(ms - previous_ms) FILTER (WHERE previous_good AND ${inInterval("previous_ms")}), 0)
               AS inner_good_ms`,
          ]
        : []),
      ...(needs.area
        ? [
            // The previous good sample is the previous row when that is good (nearly always); else
            // one primary-key probe at its time (ms is monotonic, so a float max finds it).
            // The same float8 arithmetic as core's `segmentArea`, never raising on underflow (`product`).
            `sum(CASE WHEN input.sloped THEN ${product(half("previous_good_num + num"), "(ms - previous_good_ms)")}
                      ELSE ${product("previous_good_num", "(ms - previous_good_ms)")} END)
               FILTER (WHERE good AND ${inInterval("previous_good_ms")} AND ${WITHIN}
                 AND abs(previous_good_num) <= ${LIMIT}) AS inner_area`,
          ]
        : []),
    ];
    const names = columns.map((column) => column.split(" AS ").at(-1)!);
    const boundNames = [
      "good_before.ms AS good_before_ms",
      "good_before.v AS good_before_num",
      "good_before.x AS good_before_exact",
      "any_before.ms AS any_before_ms",
      "any_before.v AS any_before_good",
      "good_after.ms AS good_after_ms",
      "good_after.v AS good_after_num",
      "good_after.x AS good_after_exact",
      "any_after.ms AS any_after_ms",
      "any_after.v AS any_after_good",
    ];
    const intervalsSql = `SELECT input.tag_id, intervals.*
      ${needs.time ? boundNames.map((column) => `, NULL AS ${column.split(" AS ")[1]}`).join("") : ""}
      FROM input CROSS JOIN LATERAL (
        SELECT floor((${fastMillisecondsOf("bucket")} - $3::float8) / $4::float8)::int4 AS k, ${columns.join(", ")}
        FROM ranked GROUP BY bucket
      ) AS intervals`;
    const boundsSql = `SELECT input.tag_id, NULL AS k, ${names.map((name) => `NULL AS ${name}`).join(", ")},
        ${boundNames.join(", ")}
      FROM input
      ${bound("good_before", `< ${timestampOf("$3")}`, "DESC", true)}
      ${bound("any_before", `< ${timestampOf("$3")}`, "DESC", false)}
      ${bound("good_after", `>= ${timestampOf("$5")}`, "ASC", true)}
      ${bound("any_after", `>= ${timestampOf("$5")}`, "ASC", false)}`;
    const perRow = needs.ends ? `, ${fastMillisecondsOf("time")} AS ms` : "";
    // One lateral subquery per tag: its rows come in the primary key's (time) order, which the
    // windows need; over several tags at once (tag_id = ANY) the planner sorted every row by
    // (tag_id, time) and spilled to disk at the default work_mem (see "Plan" in ADR 0011).
    const raw = `SELECT time, ${GOOD} AS good, ${NUMERIC} AS num, ${EXACT} AS exact,
        date_bin(make_interval(secs => ${BIN_MS} / 1000), time, ${timestampOf("$3")}) AS bucket ${perRow}
      FROM ${samples}
      WHERE tag_id = input.tag_id AND time >= ${timestampOf("$3")} AND time < ${timestampOf("$5")}`;
    const windowed = `SELECT raw.*, ${windows.join(", ")} FROM (${raw}) AS raw WINDOW w AS (ORDER BY time)`;
    // The previous good sample's value (areas): the previous row's when that is good, else one
    // primary-key probe at the previous good sample's time, only where the pair lies in one interval.
    const previousGoodNum = `CASE WHEN NOT good OR previous_good_ms IS NULL OR NOT ${inInterval("previous_good_ms")}
        THEN NULL WHEN previous_good THEN previous_num
        ELSE (SELECT ${NUMERIC} FROM ${samples} WHERE tag_id = input.tag_id AND time = ${timestampOf("previous_good_ms")}) END`;
    const ranked =
      windows.length === 0
        ? // A fence: without it the planner inlines the row expressions into every aggregate's FILTER.
          `(${raw} OFFSET 0)`
        : needs.area
          ? // A fence again, so each row's previous good value is found once.
            `(SELECT windowed.*, ${previousGoodNum} AS previous_good_num FROM (${windowed}) AS windowed OFFSET 0)`
          : // The window level is not flattened into the GROUP BY: good, num and exact are computed once per row.
            `(${windowed})`;
    return `WITH input AS (
        SELECT tag_id, sloped FROM unnest($1::text::int4[], $2::text::bool[]) AS input (tag_id, sloped)
      )
      ${intervalsSql.replace("FROM ranked", `FROM ${ranked} AS ranked`)}
      ${needs.time ? `UNION ALL ${boundsSql}` : ""}`;
  }

  /** Values at `time`; see `HistoryQueries.valueAt`. */
  async valueAt(tags: readonly string[], time: number): Promise<Sample[]> {
    this.#context.client();
    const checked = checkValueAtQuery(tags, time, this.#known);
    return this.#valuesAt(checked.tags, [checked.time], "history.valueAt", valueFromBounds);
  }

  /** Values at each of `times`, in one statement; see `HistoryQueries.valuesAt`. */
  async valuesAt(tags: readonly string[], times: readonly number[]): Promise<ValueAtTime[]> {
    this.#context.client();
    const checked = checkValuesAtQuery(tags, times, this.#known);
    return inRequestedOrder(
      checked,
      await this.#valuesAt(checked.tags, checked.times, "history.valuesAt", valueAtTime),
    );
  }

  /** Values at the start of each interval; see `HistoryQueries.interpolated`. */
  async interpolated(tags: readonly string[], query: IntervalQuery): Promise<Sample[]> {
    this.#context.client();
    const { tags: checkedTags, intervals } = checkIntervalQuery(tags, query, this.#known);
    const times = Array.from({ length: intervals.count }, (_, k) => intervals.start + k * intervals.intervalMs);
    return this.#valuesAt(checkedTags, times, "history.interpolated", valueFromBounds);
  }

  /**
   * The value of each tag at each of `times` (ascending, distinct), tag by tag, in one statement:
   * `times` is one array parameter, so any set of times (an uneven OPC UA ReadAtTime too) costs one
   * round trip and one budget. `valueOf` turns a time's bounds into the returned value.
   */
  async #valuesAt<TValue>(
    tags: readonly string[],
    times: readonly number[],
    operation: string,
    valueOf: (tag: string, time: number, bounds: BoundingSamples<SamplePoint>, interpolation: Interpolation) => TValue,
  ): Promise<TValue[]> {
    const samples = this.#context.table("samples");
    // Per tag and time, four probes of the primary key: the last sample at or before the time and
    // the first at or after it, and the nearest good ones, probed only when those are not good (a
    // one-time filter on the outer row). Each probe selects only what the bounds need, and the
    // statement returns the two good bounds and the two times, in few plain columns: 34 columns
    // (or JSON) cost more to analyze, plan and decode than the 400 index probes themselves.
    //
    // Over several times a nearest-good probe looks only between its time and the neighbouring
    // one (before: (previous time, time]; after: [time, next time)), and a time whose stretch holds
    // no good sample takes its neighbour's (windows carry the last found bound forward, the first
    // backward): a probe that walked to the nearest good sample from every time read a stretch of
    // bad rows once per time (1,000 times over 100k bad rows: 12 s), each row is now read at most
    // once per direction. The values are Part 13's bounding values exactly (ADR 0040).
    const carry = times.length > 1;
    const probe = (name: string, comparison: string, order: string, good: boolean): string =>
      `LEFT JOIN LATERAL (SELECT ${millisecondsOf("time")} AS ms, value_float, ${OTHER_VALUE} AS other
           ${good ? "" : `, ${GOOD} AS good`}
         FROM ${samples}
         WHERE ${good ? `${name.replace("good", "any")}.good IS NOT TRUE AND ${GOOD} AND` : ""}
           tag_id = input.tag_id AND time ${comparison} point.at
           ${good && carry ? (comparison === "<=" ? "AND time > point.previous" : "AND time < point.next") : ""}
         ORDER BY time ${order} LIMIT 1) AS ${name} ON true`;
    const columns = ["ms", "value_float", "other"];
    const bound = (side: string): string =>
      columns
        .map(
          (column) => `CASE WHEN any_${side}.good THEN any_${side}.${column} ELSE good_${side}.${column} END
           AS ${side}_${column}`,
        )
        .join(", ");
    // The times (ascending), each with its neighbours for the nearest-good probes' stretches.
    const neighbours = carry
      ? `, coalesce(${timestampOf("(lag(ms) OVER steps)")}, '-infinity'::timestamptz) AS previous,
           coalesce(${timestampOf("(lead(ms) OVER steps)")}, 'infinity'::timestamptz) AS next`
      : "";
    const points = `SELECT (ordinality - 1)::int4 AS k, ${timestampOf("ms")} AS at ${neighbours}
         FROM unnest($2::text::float8[]) WITH ORDINALITY AS times (ms, ordinality)
         ${carry ? "WINDOW steps AS (ORDER BY ordinality)" : ""}`;
    const cells = `SELECT input.ordinality AS tag_index, point.k, any_before.ms AS any_before_ms, any_after.ms AS any_after_ms,
                ${bound("before")}, ${bound("after")}
         FROM unnest($1::text::int4[]) WITH ORDINALITY AS input (tag_id, ordinality)
         CROSS JOIN (${points}) AS point
         ${probe("any_before", "<=", "DESC", false)}
         ${probe("good_before", "<=", "DESC", true)}
         ${probe("any_after", ">=", "ASC", false)}
         ${probe("good_after", ">=", "ASC", true)}`;
    // Carrying: the rows of a run share a group (a count of found bounds); only the run's first
    // row (last, after) has a bound, so max() over the group is that bound's value.
    const carried = `SELECT tag_index, k, any_before_ms, any_after_ms,
           ${columns.map((column) => `max(before_${column}) OVER before_run AS before_${column}`).join(", ")},
           ${columns.map((column) => `max(after_${column}) OVER after_run AS after_${column}`).join(", ")}
         FROM (SELECT cells.*,
                 count(before_ms) OVER (PARTITION BY tag_index ORDER BY k) AS before_group,
                 count(after_ms) OVER (PARTITION BY tag_index ORDER BY k DESC) AS after_group
               FROM (${cells}) AS cells) AS grouped
         WINDOW before_run AS (PARTITION BY tag_index, before_group),
                after_run AS (PARTITION BY tag_index, after_group)`;
    const rows = await this.#context.runHistory(operation, (client, sessionSettings, remainingMs) =>
      scanQuery<BoundsRow>(
        client,
        `${carry ? carried : cells} ORDER BY tag_index, k`,
        [arrayLiteral(tags.map((tag) => this.#tags.catalogIds.get(tag)!)), arrayLiteral(times)],
        { sortFree: false, timeoutMs: remainingMs, sessionSettings },
      ),
    );
    // A plain loop with no closure per row: this runs for every tag and time, and the rows
    // cost more to turn into samples than the index probes took (see bench/history.ts, (c)).
    const values = new Array<TValue>(rows.rows.length);
    for (let index = 0; index < rows.rows.length; index++) {
      const row = rows.rows[index]!;
      const tag = tags[Number(row.tag_index) - 1]!;
      const dataType = this.#tags.dataTypes.get(tag);
      values[index] = valueOf(
        tag,
        times[Number(row.k)]!,
        {
          goodBefore: goodPoint(tag, row.before_ms, row.before_value_float, row.before_other, dataType),
          goodAfter: goodPoint(tag, row.after_ms, row.after_value_float, row.after_other, dataType),
          anyBefore: row.any_before_ms === null ? undefined : { time: row.any_before_ms },
          anyAfter: row.any_after_ms === null ? undefined : { time: row.any_after_ms },
        },
        this.#tags.interpolations.get(tag)!,
      );
    }
    return values;
  }

  /** A trend for drawing (M4); see `HistoryQueries.downsample`. */
  async downsample(tag: string, query: DownsampleQuery): Promise<Sample[]> {
    this.#context.client();
    const { start, end, columns } = checkDownsampleQuery(tag, query, this.#known);
    refuseArrayTags([tag], this.#tags.isArrayTag, "a downsample");
    const samples = this.#context.table("samples");
    const range = `tag_id = $1 AND time >= ${timestampOf("$2")} AND time < ${timestampOf("$3")}`;
    const rows = await this.#context.runHistory("history.downsample", (client, sessionSettings, remainingMs) =>
      scanQuery<SampleRow>(
        client,
        `WITH numeric_samples AS (
           SELECT ${fastMillisecondsOf("time")} AS ms, ${NUMERIC} AS num, ${EXACT} AS exact, ${MICROS} AS us,
                  ${SEVERITY_RANK} AS rank
           FROM ${samples} WHERE ${range}
           OFFSET 0 -- a fence, as in aggregate: each expression once per row, hashed columns
         ), chosen AS (
           SELECT min(ms) FILTER (WHERE num IS NOT NULL) AS first_ms, max(ms) FILTER (WHERE num IS NOT NULL) AS last_ms,
                  (min(ARRAY[num, ms]) FILTER (WHERE num IS NOT NULL AND exact IS NULL))[2] AS min_ms,
                  -(max(ARRAY[num, -ms]) FILTER (WHERE num IS NOT NULL AND exact IS NULL))[2] AS max_ms,
                  (min(ARRAY[exact, us::numeric]) FILTER (WHERE exact IS NOT NULL))[2]::float8 / 1000 AS min_exact_ms,
                  -(max(ARRAY[exact, -us::numeric]) FILTER (WHERE exact IS NOT NULL))[2]::float8 / 1000 AS max_exact_ms,
                  (min(ARRAY[-rank, ms]) FILTER (WHERE rank > 0))[2] AS worst_ms
           FROM numeric_samples
           GROUP BY floor(((ms - $2::float8) * $4::float8) / ($3::float8 - $2::float8))
         ), picked AS (
           SELECT DISTINCT unnest(ARRAY[first_ms, last_ms, min_ms, max_ms, min_exact_ms, max_exact_ms, worst_ms]) AS ms
           FROM chosen
         )
         SELECT ${SAMPLE_ROW_COLUMNS} FROM picked
         JOIN ${samples} ON tag_id = $1 AND time = ${timestampOf("picked.ms")}
         ORDER BY time`,
        [this.#tags.catalogIds.get(tag)!, start, end, columns],
        { sortFree: false, timeoutMs: remainingMs, sessionSettings },
      ),
    );
    // The candidates hold each column's M4 picks (floats and 64-bit integers picked apart, each
    // exactly); the shared reference picks among them, so every store chooses the same samples.
    const candidates = rows.rows.map((row) => toSample(tag, row));
    return downsampleSeries(
      { timestamps: candidates.map((sample) => sample.timestamp), samples: candidates },
      start,
      end,
      columns,
    );
  }
}

/**
 * Runs one statement that scans a range of samples, with planner settings of its own. JIT
 * compilation is off: these statements are short but wide (dozens of aggregate and CASE
 * expressions), so past `jit_above_cost` (a second tag or day of 1 Hz data) PostgreSQL spent
 * 0.1–4 s compiling them for a query that runs in about 100 ms. `sortFree` turns sorts off, so
 * rows needed in time order come from the primary key. `statement_timeout` is what is left of
 * the read's budget (`timeoutMs()`, from `StoreContext.runHistory`, which also classifies the
 * server's cancel as `KILN_TIMEOUT`).
 *
 * With `sessionSettings` (the store's history pool, ADR 0040) the connection already has the
 * timeout (the whole `historyTimeoutMs`) and JIT off, and the statement is sent alone (one round
 * trip); only `sortFree` still needs a transaction for its `SET LOCAL`. Otherwise (a shared pool
 * or client) every setting is `SET LOCAL` in a transaction of the statement's own, so no other
 * statement is affected.
 */
export async function scanQuery<TRow>(
  client: SqlClient,
  sql: string,
  parameters: readonly unknown[],
  options: {
    readonly sortFree: boolean;
    readonly timeoutMs: () => number;
    readonly sessionSettings: boolean;
  },
): Promise<SqlResult<TRow>> {
  if (options.sessionSettings && !options.sortFree) return client.query<TRow>(sql, parameters);
  return client.transaction(async (transaction) => {
    await (options.sessionSettings
      ? transaction.query("SELECT set_config('enable_sort', 'off', true)")
      : transaction.query(
          `SELECT set_config('jit', 'off', true), set_config('statement_timeout', $1, true)${
            options.sortFree ? ", set_config('enable_sort', 'off', true)" : ""
          }`,
          // Measured once the connection is in hand: the wait for it spent part of the budget.
          [`${options.timeoutMs()}ms`],
        ));
    return transaction.query<TRow>(sql, parameters);
  });
}

/** The good bound of a {@link BoundsRow} (value in `value_float` or `other`) as a sample point; none when `time` is null. */
function goodPoint(
  tag: string,
  time: number | null,
  float: number | null,
  other: string | null,
  dataType: TagDataType | undefined,
): SamplePoint | undefined {
  return time === null
    ? undefined
    : samplePoint({ tag, value: float ?? otherValue(other, dataType), timestamp: time, quality: GOOD_QUALITY });
}

function point(
  time: number | null,
  value: number | null,
  good: boolean,
  exact?: string | null,
): HistoryPoint | undefined {
  return time === null ? undefined : { time, value: exact != null ? BigInt(exact) : value, good };
}

/** The exact value when the sample at `time` is the 64-bit integer found at `micros`, else undefined. */
function exactAt(time: number | null, micros: string | null, exact: string | null): string | null {
  return time !== null && micros !== null && Number(micros) / 1000 === time ? exact : null;
}

/** A zero `value` with the sign of the interval's earliest zero (-0 when `negative`); other values as they are. */
function signedZero(value: number | null, negative: boolean | null): number | null {
  return value === 0 ? (negative === true ? -0 : 0) : value;
}

function bigintOf(text: string | null): bigint | null {
  return text === null ? null : BigInt(text);
}

function finish(
  tag: string,
  id: number,
  interpolation: Interpolation,
  intervals: CheckedIntervals,
  rows: readonly PartialsRow[],
  aggregates: readonly AggregateName[],
  dataType: TagDataType,
): AggregateInterval[] {
  const partials: IntervalPartials[] = [];
  let outer: OuterBounds = {};
  for (const row of rows) {
    if (row.tag_id !== id) continue;
    if (row.k === null) {
      outer = {
        goodBefore: point(row.good_before_ms, row.good_before_num, true, row.good_before_exact),
        anyBefore: point(row.any_before_ms, null, row.any_before_good === true),
        goodAfter: point(row.good_after_ms, row.good_after_num, true, row.good_after_exact),
        anyAfter: point(row.any_after_ms, null, row.any_after_good === true),
      };
      continue;
    }
    partials.push({
      index: row.k,
      count: row.count ?? 0,
      numericCount: row.numeric_count ?? 0,
      sum: row.sum,
      minimum: smaller(signedZero(row.minimum, row.first_zero_negative), bigintOf(row.minimum_exact)),
      maximum: larger(signedZero(row.maximum, row.first_zero_negative), bigintOf(row.maximum_exact)),
      imprecise: row.imprecise === true,
      overflow: row.overflow === true,
      badCount: row.bad_count ?? 0,
      firstGood: point(
        row.first_good_ms,
        row.first_good_num,
        true,
        exactAt(row.first_good_ms, row.first_exact_us, row.first_exact),
      ),
      lastGood: point(
        row.last_good_ms,
        row.last_good_num,
        true,
        exactAt(row.last_good_ms, row.last_exact_us, row.last_exact),
      ),
      firstAny: point(row.first_any_ms, null, row.first_any_good === true),
      lastAny: point(row.last_any_ms, null, row.last_any_good === true),
      innerArea: row.inner_area ?? null,
      innerGoodMs: row.inner_good_ms ?? 0,
    });
  }
  return finishAggregates(tag, interpolation, intervals, partials, outer, aggregates, dataType);
}
