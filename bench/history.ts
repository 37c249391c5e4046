import { GOOD, defineTags, quality, type Sample, type TagDefinitionInput } from "@kiln/core";
import type { HistoryQueries } from "@kiln/core/driver-kit";
import { PostgresStore } from "@kiln/store-postgres";
import pg from "pg";
import { compareScans, machine, round } from "./harness";

/**
 * History benchmark: 100 tags x 1 day of 1 Hz data (8.64 M rows) in PostgreSQL, loaded with the
 * store's own `writeBatch` (binary COPY), then three queries, each beside the same question
 * written by hand in SQL against the same table, in the same run (alternating rounds):
 * (a) 1-minute Average/Minimum/Maximum of one tag over the day (1,440 intervals);
 * (b) a 1,000-point downsampled trend of one tag over the day;
 * (c) `valueAt` of 100 tags at one time.
 * Runs in its own database, `kiln_bench_history`, created on the server of `DATABASE_URL` and
 * dropped at the end. Needs `DATABASE_URL`; without it the record says it was skipped.
 */
export async function run(): Promise<Record<string, unknown>[]> {
  const url = process.env.DATABASE_URL;
  if (url === undefined || url === "") {
    return [{ name: "history", unit: "ms", skipped: true, reason: "DATABASE_URL is not set" }];
  }
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
    await admin.query(`CREATE DATABASE ${DATABASE}`);
    const benchUrl = new URL(url);
    benchUrl.pathname = `/${DATABASE}`;
    try {
      return await measure(benchUrl.toString());
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    }
  } finally {
    await admin.end();
  }
}

const DATABASE = "kiln_bench_history";
const TAGS = 100;
const DAY_S = 86_400;
const START = Date.UTC(2026, 0, 1);
const END = START + DAY_S * 1000;
const COMPARE = { warmup: 3, rounds: 4, roundMs: 1_500 };
const BAD = quality("bad", "sensor failure");

function tagName(index: number): string {
  return `line1.sensor${String(index).padStart(3, "0")}`;
}

/** One tag-day: a slow sine with noise, a spike every 997 s and a 10 s bad stretch every hour. */
function tagDay(tag: string, index: number): Sample[] {
  const samples = new Array<Sample>(DAY_S);
  for (let second = 0; second < DAY_S; second++) {
    const bad = second % 3600 < 10 && second > 0;
    const spike = second % 997 === index ? 40 : 0;
    const value = 50 + 10 * Math.sin((2 * Math.PI * second) / 3600 + index) + Math.sin(second * 7.3) + spike;
    samples[second] = {
      tag,
      value: bad ? null : value,
      timestamp: START + second * 1000,
      quality: bad ? BAD : GOOD,
    };
  }
  return samples;
}

async function measure(url: string): Promise<Record<string, unknown>[]> {
  const store = new PostgresStore({ connectionString: url, maxConnections: 2 });
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  // The database is dropped WITH (FORCE) at the end; an idle client it terminates must not crash the run.
  pool.on("error", () => undefined);
  try {
    const definitions: Record<string, TagDefinitionInput> = {};
    for (let index = 0; index < TAGS; index++) definitions[tagName(index)] = { dataType: "float64", unit: "bar" };
    const names = Object.keys(definitions);
    await store.open(defineTags(definitions).list());
    const loadStarted = performance.now();
    for (let index = 0; index < TAGS; index += 2) {
      await Promise.all([index, index + 1].map((tag) => store.samples.writeBatch(tagDay(names[tag]!, tag))));
    }
    const loadMs = performance.now() - loadStarted;
    await pool.query("VACUUM ANALYZE kiln.samples");
    const rows = (await pool.query<{ count: string }>("SELECT count(*) FROM kiln.samples")).rows[0]!.count;
    if (Number(rows) !== TAGS * DAY_S) throw new Error(`loaded ${rows} of ${TAGS * DAY_S} rows`);
    const history = store.history;
    const tag = names[7]!;
    const tagId = (await pool.query<{ id: number }>("SELECT id FROM kiln.tags WHERE name = $1", [tag])).rows[0]!.id;
    const ids = (await pool.query<{ id: number }>("SELECT id FROM kiln.tags ORDER BY name")).rows.map((row) => row.id);
    const at = START + 12 * 3_600_000 + 500;
    const seconds = (ms: number): string => `to_timestamp(${ms} / 1000.0)`;
    const common = { machine: machine(), rows: TAGS * DAY_S, loadMs: Math.round(loadMs) };

    const queries = [
      {
        name: "history-aggregate",
        what: "1-minute Average/Minimum/Maximum of one tag over a day (1,440 intervals)",
        kiln: async () => {
          const result = await history.aggregate([tag], {
            start: START,
            end: END,
            intervalMs: 60_000,
            aggregates: ["Average", "Minimum", "Maximum"],
          });
          if (result.length !== 1_440) throw new Error(`aggregate gave ${result.length} intervals`);
        },
        baselineMethod:
          "GROUP BY date_bin('1 minute') with avg/min/max FILTER (WHERE good) and a count of samples not good (the quality)",
        baseline: async () => {
          // Same result set and quality rule as the store: good = quality code 0..2^30-1 (uncertain
          // counts as bad) with a finite value; an interval holding any sample that is not good is uncertain.
          const result = await pool.query(
            `SELECT bucket, avg(value_float) FILTER (WHERE good), min(value_float) FILTER (WHERE good),
                    max(value_float) FILTER (WHERE good), count(*) FILTER (WHERE NOT good)
             FROM (SELECT date_bin('1 minute', time, ${seconds(START)}) AS bucket, value_float,
                          coalesce(quality BETWEEN 0 AND 1073741823 AND abs(value_float) < 'Infinity', false) AS good
                   FROM kiln.samples WHERE tag_id = $1 AND time >= ${seconds(START)} AND time < ${seconds(END)}) AS s
             GROUP BY bucket ORDER BY bucket`,
            [tagId],
          );
          if (result.rows.length !== 1_440) throw new Error(`baseline gave ${result.rows.length} buckets`);
          return result.rows as unknown[];
        },
        previousMethod:
          "until this change: GROUP BY date_bin of the rows with quality >= 0 (its count of bad samples was always 0: the WHERE had removed them)",
        previous: async () => {
          const result = await pool.query(
            `SELECT date_bin('1 minute', time, ${seconds(START)}) AS bucket, avg(value_float), min(value_float),
                    max(value_float), count(*) FILTER (WHERE quality < 0)
             FROM kiln.samples WHERE tag_id = $1 AND time >= ${seconds(START)} AND time < ${seconds(END)}
               AND quality >= 0 GROUP BY bucket ORDER BY bucket`,
            [tagId],
          );
          if (result.rows.length !== 1_440) throw new Error(`baseline gave ${result.rows.length} buckets`);
        },
      },
      {
        name: "history-downsample",
        what: "1,000-point trend (M4 with quality markers, 200 columns) of one tag over a day (86,400 rows)",
        kiln: async () => {
          await history.downsample(tag, { start: START, end: END, points: 1_000 });
        },
        baselineMethod: "M4 by hand: row_number() per column for first/last/min/max",
        baseline: async () => {
          await pool.query(
            `SELECT time, value_float, quality FROM (
               SELECT time, value_float, quality,
                 row_number() OVER (PARTITION BY c ORDER BY time) AS f,
                 row_number() OVER (PARTITION BY c ORDER BY time DESC) AS l,
                 row_number() OVER (PARTITION BY c ORDER BY value_float, time) AS lo,
                 row_number() OVER (PARTITION BY c ORDER BY value_float DESC, time) AS hi
               FROM (SELECT time, value_float, quality,
                       floor(extract(epoch FROM time - ${seconds(START)}) * 200 / ${DAY_S}) AS c
                     FROM kiln.samples WHERE tag_id = $1 AND time >= ${seconds(START)} AND time < ${seconds(END)}
                       AND value_float IS NOT NULL) AS s
             ) AS r WHERE f = 1 OR l = 1 OR lo = 1 OR hi = 1 ORDER BY time`,
            [tagId],
          );
        },
      },
      {
        name: "history-value-at",
        what: "valueAt of 100 sloped tags at one time",
        kiln: async () => {
          const values = await history.valueAt(names, at);
          if (values.length !== TAGS) throw new Error(`valueAt gave ${values.length} values`);
        },
        baselineMethod:
          "per tag, LATERAL ... LIMIT 1 probes for the last and first sample and the last and first good sample around the time; the line between the good ones and the quality computed in SQL",
        baseline: async () => {
          // The store's answer for a sloped tag (Part 13 interpolated bounding values): the value on
          // the line between the good samples around the time (held after the last one), good only
          // when no other sample lies between them and the time; no good sample before: no data.
          const result = await pool.query(
            `SELECT input.id,
               CASE WHEN gb.time IS NULL THEN NULL
                    WHEN gb.time = point.at OR ga.time IS NULL THEN gb.value_float
                    ELSE gb.value_float + (ga.value_float - gb.value_float)
                         * (extract(epoch FROM point.at - gb.time) / extract(epoch FROM ga.time - gb.time)) END AS value,
               CASE WHEN gb.time IS NULL THEN 'bad' WHEN gb.time = point.at THEN 'good'
                    WHEN ab.time <> gb.time OR ga.time IS NULL OR aa.time <> ga.time THEN 'uncertain'
                    ELSE 'good' END AS quality
             FROM unnest($1::int4[]) WITH ORDINALITY AS input (id, position)
             CROSS JOIN (SELECT ${seconds(at)} AS at) AS point
             LEFT JOIN LATERAL (SELECT time FROM kiln.samples
               WHERE tag_id = input.id AND time <= point.at ORDER BY time DESC LIMIT 1) AS ab ON true
             LEFT JOIN LATERAL (SELECT time, value_float FROM kiln.samples
               WHERE tag_id = input.id AND time <= point.at AND quality BETWEEN 0 AND 1073741823
                 AND abs(value_float) < 'Infinity' ORDER BY time DESC LIMIT 1) AS gb ON true
             LEFT JOIN LATERAL (SELECT time FROM kiln.samples
               WHERE tag_id = input.id AND time >= point.at ORDER BY time LIMIT 1) AS aa ON true
             LEFT JOIN LATERAL (SELECT time, value_float FROM kiln.samples
               WHERE tag_id = input.id AND time >= point.at AND quality BETWEEN 0 AND 1073741823
                 AND abs(value_float) < 'Infinity' ORDER BY time LIMIT 1) AS ga ON true
             ORDER BY input.position`,
            [ids],
          );
          if (result.rows.length !== TAGS) throw new Error(`baseline gave ${result.rows.length} rows`);
          return result.rows as unknown[];
        },
        previousMethod:
          "until this change: LATERAL last row at or before the time, per tag (stepped, no quality rules: at the time measured it returns a bad sample's null)",
        previous: async () => {
          const result = await pool.query(
            `SELECT input.id, s.time, s.value_float, s.quality
             FROM unnest($1::int4[]) AS input (id)
             LEFT JOIN LATERAL (SELECT time, value_float, quality FROM kiln.samples
               WHERE tag_id = input.id AND time <= ${seconds(at)} ORDER BY time DESC LIMIT 1) AS s ON true`,
            [ids],
          );
          if (result.rows.length !== TAGS) throw new Error(`baseline gave ${result.rows.length} rows`);
        },
      },
    ];
    await sameAnswers(history, tag, names, at, queries[0]!.baseline, queries[2]!.baseline);
    const records: Record<string, unknown>[] = [];
    for (const query of queries) {
      const perSecond = await compareScans(query.kiln, async () => void (await query.baseline()), COMPARE);
      const kilnMs = 1_000 / perSecond.kiln;
      const baselineMs = 1_000 / perSecond.baseline;
      // The baseline used before it was made to answer the same question, measured too (own rounds).
      let previous: Record<string, unknown> | undefined;
      if ("previous" in query && query.previous !== undefined) {
        const again = await compareScans(query.kiln, query.previous, COMPARE);
        previous = {
          kiln: round(1_000 / again.kiln, 2),
          baseline: round(1_000 / again.baseline, 2),
          ratio: round(again.kiln / again.baseline, 2),
          baselineMethod: query.previousMethod,
        };
      }
      records.push({
        name: query.name,
        unit: "ms",
        what: query.what,
        kiln: round(kilnMs, 2),
        baseline: round(baselineMs, 2),
        ratio: round(baselineMs / kilnMs, 2),
        baselineMethod: query.baselineMethod,
        ...(previous ? { previous } : {}),
        ...common,
      });
    }
    return records;
  } finally {
    await Promise.allSettled([store.close(), pool.end()]);
  }
}

/**
 * Checks once, before timing, that the hand-written baselines of (a) and (c) give the store's
 * answer: the same values (to 1e-9) and the same quality severity for every interval and tag.
 */
async function sameAnswers(
  history: HistoryQueries,
  tag: string,
  names: readonly string[],
  at: number,
  aggregateBaseline: () => Promise<unknown[] | void>,
  valueAtBaseline: () => Promise<unknown[] | void>,
): Promise<void> {
  const close = (a: unknown, b: unknown): boolean =>
    a === null || b === null ? a === b : Math.abs(Number(a) - Number(b)) <= 1e-9 * Math.max(1, Math.abs(Number(a)));
  const intervals = await history.aggregate([tag], {
    start: START,
    end: END,
    intervalMs: 60_000,
    aggregates: ["Average", "Minimum", "Maximum"],
  });
  const buckets = (await aggregateBaseline()) as {
    avg: number | null;
    min: number | null;
    max: number | null;
    count: string;
  }[];
  intervals.forEach((interval, index) => {
    const row = buckets[index]!;
    const severity = row.avg === null ? "bad" : Number(row.count) > 0 ? "uncertain" : "good";
    const { Average, Minimum, Maximum } = interval.values;
    if (
      !close(Average!.value, row.avg) ||
      !close(Minimum!.value, row.min) ||
      !close(Maximum!.value, row.max) ||
      [Average, Minimum, Maximum].some((value) => value!.quality.severity !== severity)
    )
      throw new Error(`aggregate and its baseline differ in interval ${index}`);
  });
  const values = await history.valueAt(names, at);
  const rows = (await valueAtBaseline()) as { value: number | null; quality: string }[];
  values.forEach((sample, index) => {
    if (!close(sample.value, rows[index]!.value) || sample.quality.severity !== rows[index]!.quality)
      throw new Error(`valueAt and its baseline differ for ${sample.tag}`);
  });
}
