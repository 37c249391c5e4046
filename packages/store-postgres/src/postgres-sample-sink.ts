import { KilnError, type Sample } from "@kiln/core";
import {
  type SampleConflict,
  type SampleHistory,
  type SampleSink,
  type SampleWriteResult,
} from "@kiln/core/driver-kit";
import { sameSamplePayload, type BucketQuery, type SampleBucket, type SampleQuery } from "@kiln/core/driver-kit";
import { IssueCollector } from "./input-checks";
import { scanQuery } from "./postgres-history";
import { sqlStateOf, UNIQUE_VIOLATION } from "./postgres-error";
import {
  checkSamples,
  encodeBinaryCopy,
  prepareSamples,
  SAMPLE_COLUMNS,
  unnestParameters,
  type PreparedSamples,
} from "./sample-encoding";
import type { SqlClient } from "./sql-client";
import { millisecondsOf, timestampOf, timestampOfMicroseconds } from "./sql-expressions";
import type { StoreContext } from "./store-context";
import type { TagRegistry } from "./tag-registry";
import { SAMPLE_ROW_COLUMNS, toSample, type SampleRow } from "./sample-row";

const DEFAULT_LIMIT = 10_000;

/**
 * Statements the insert path runs for one batch at most: a row that a concurrent writer commits
 * while the statement runs is neither inserted nor visible to it, so it is compared again by a
 * next statement, which sees it.
 */
const MAX_INSERT_STATEMENTS = 3;

const NO_CONFLICTS: SampleWriteResult = Object.freeze({ conflicts: Object.freeze([]) });

interface BucketRow {
  readonly start: number;
  readonly min: number;
  readonly max: number;
  readonly avg: number;
  readonly first: number;
  readonly last: number;
  readonly count: number;
}

/** The insert path's answer: one row per refused or unseen input row, or one row with `position` null. */
interface InsertRow {
  /** Rows the statement inserted (the same on every row). */
  readonly inserted: number;
  /** The input row's 0-based index in the batch as given, or null when no row is refused. */
  readonly position: number | null;
  /** `stored`/`batch` as in `SampleConflict.existing`; `unseen` when a concurrent writer holds the key. */
  readonly existing: "stored" | "batch" | "unseen" | null;
}

/**
 * SQL that is true when the rows `a` and `b` of `samples`' columns hold the same payload, as
 * `sameSamplePayload` compares samples: float8 `=` treats NaN as equal to NaN but -0 as equal
 * to 0, so zeros are compared by their bytes; text is compared escaped on both sides (as stored).
 */
function samePayload(a: string, b: string): string {
  return `(${a}.quality = ${b}.quality
    AND ${a}.quality_reason IS NOT DISTINCT FROM ${b}.quality_reason
    AND ${a}.value_int IS NOT DISTINCT FROM ${b}.value_int
    AND ${a}.value_uint IS NOT DISTINCT FROM ${b}.value_uint
    AND ${a}.value_bool IS NOT DISTINCT FROM ${b}.value_bool
    AND ${a}.value_text IS NOT DISTINCT FROM ${b}.value_text
    AND ${a}.value_array IS NOT DISTINCT FROM ${b}.value_array
    AND ${a}.value_float IS NOT DISTINCT FROM ${b}.value_float
    AND (${a}.value_float IS NULL OR ${a}.value_float <> 0
         OR float8send(${a}.value_float) = float8send(${b}.value_float)))`;
}

/**
 * Sample ingest and history on the `samples` table.
 *
 * Ingest: a batch is checked, de-duplicated on (tag, timestamp) keeping the first occurrence, and
 * sent as one binary COPY: one atomic statement at the database's own bulk-load speed. When the
 * COPY meets a row already stored (a retry after an unknown outcome, a replay), it fails whole
 * with a unique violation and the batch is sent again as one statement that inserts with
 * `ON CONFLICT DO NOTHING`, which keeps the stored rows, and in the same round trip returns the
 * input rows whose stored row holds another payload: they are reported as conflicts
 * (`SampleWriteResult`), identical ones are not. Later samples of a (tag, timestamp) in the batch
 * are compared with the sample that holds it (stored before, or the first in the batch).
 * After such a conflict the next batch goes straight to that path, until one inserts every row.
 * A batch holding a uint64 above int64 (`value_uint`, outside the COPY columns) also takes it.
 * Text is escaped so that every string is stored exactly (docs/adr/0012-storable-values.md).
 */
export class PostgresSampleSink implements SampleSink, SampleHistory {
  /** The sink contract version. */
  readonly sinkApiVersion = "1";
  readonly #context: StoreContext;
  readonly #tags: TagRegistry;
  #preferInsert = false;

  constructor(context: StoreContext, tags: TagRegistry) {
    this.#context = context;
    this.#tags = tags;
  }

  /**
   * Stores `samples` once each; safe to retry. Resolves once committed, with the samples not
   * stored because a different sample holds their (tag, timestamp), in batch order.
   */
  async writeBatch(samples: readonly Sample[]): Promise<SampleWriteResult> {
    this.#context.client();
    if (!Array.isArray(samples)) throw new TypeError("writeBatch expects an array of samples");
    if (samples.length === 0) return NO_CONFLICTS;
    checkSamples(samples);
    const conflicts = await this.#context.run("samples.writeBatch", async (client) => {
      const ids = await this.#tags.idsOf(client, samples);
      const batch = prepareSamples(samples, ids);
      if (client.copyBinary && !this.#preferInsert && !batch.unsigned && !batch.arrays) {
        try {
          await client.copyBinary(this.#context.table("samples"), SAMPLE_COLUMNS, encodeBinaryCopy(batch));
          // Every kept sample was inserted: a repeat conflicts when it differs from its first.
          return batch.repeats
            .filter((repeat) => !sameSamplePayload(repeat.sample, batch.samples[repeat.first]!))
            .map((repeat): SampleConflict => ({ sample: repeat.sample, existing: "batch" }));
        } catch (error) {
          if (sqlStateOf(error) !== UNIQUE_VIOLATION) throw error;
        }
      }
      return this.#insert(client, samples, batch, ids);
    });
    return conflicts.length === 0 ? NO_CONFLICTS : { conflicts };
  }

  /**
   * Inserts what is not stored yet and returns the conflicts, in batch order. Rows a concurrent
   * writer committed during the statement are tried again in a new statement, which sees them.
   */
  async #insert(
    client: SqlClient,
    samples: readonly Sample[],
    batch: PreparedSamples,
    ids: Int32Array,
  ): Promise<SampleConflict[]> {
    const found: { position: number; conflict: SampleConflict }[] = [];
    let pending = batch;
    // Index in `samples` of each sample of `pending` (the identity for the whole batch).
    let origin: readonly number[] | undefined;
    for (let statement = 1; ; statement++) {
      const rows = (await client.query<InsertRow>(this.#insertSql, unnestParameters(pending))).rows;
      if (statement === 1) this.#preferInsert = client.copyBinary !== undefined && rows[0]!.inserted < batch.length;
      const unseen: number[] = [];
      for (const { position, existing } of rows) {
        if (position === null || existing === null) continue;
        const index = origin ? origin[position]! : position;
        if (existing === "unseen") unseen.push(index);
        else found.push({ position: index, conflict: { sample: samples[index]!, existing } });
      }
      if (unseen.length === 0) break;
      if (statement === MAX_INSERT_STATEMENTS) {
        throw new KilnError(
          "KILN_STORE_ERROR",
          "samples.writeBatch: rows kept changing under concurrent writers; the batch can be written again",
          { retryable: true },
        );
      }
      unseen.sort((a, b) => a - b);
      origin = unseen;
      pending = prepareSamples(
        unseen.map((index) => samples[index]!),
        Int32Array.from(unseen, (index) => ids[index]!),
      );
    }
    return found.sort((a, b) => a.position - b.position).map((entry) => entry.conflict);
  }

  /**
   * One statement: the input rows (kept samples and their repeats), the insert of the kept ones
   * (ordered by key so concurrent retries of overlapping batches lock rows in the same order),
   * and the input rows refused: those whose key holds a stored row with another payload, repeats
   * that differ from the kept sample this statement inserted, and rows whose key neither was
   * inserted nor is visible (committed by a concurrent writer after the statement began). The
   * main query does not see the rows the insert adds, so `stored` is what was there before.
   */
  get #insertSql(): string {
    const samplesTable = this.#context.table("samples");
    return `WITH input AS MATERIALIZED (
         SELECT position, kept, tag_id, quality, ${timestampOfMicroseconds("micros")} AS time,
                value_float, value_int::int8 AS value_int, value_bool, value_text, quality_reason,
                value_uint::numeric AS value_uint, value_array::jsonb AS value_array
         FROM unnest($1::text::int4[], $2::text::int4[], $3::text::float8[], $4::text::float8[],
                     $5::text::text[], $6::text::bool[], $7::text::text[], $8::text::text[], $9::text::text[],
                     $10::text::bool[], $11::text::int4[], $12::text::text[])
              AS unnested (tag_id, quality, micros, value_float, value_int, value_bool, value_text, quality_reason,
                           value_uint, kept, position, value_array)
       ),
       inserted AS (
         INSERT INTO ${samplesTable} (${SAMPLE_COLUMNS.join(", ")}, value_uint, value_array)
         SELECT tag_id, quality, time, value_float, value_int, value_bool, value_text, quality_reason, value_uint,
                value_array
         FROM input
         WHERE kept
         ORDER BY tag_id, time
         ON CONFLICT DO NOTHING
         RETURNING tag_id, time
       )
       SELECT summary.inserted, refused.position, refused.existing
       FROM (SELECT count(*)::int4 AS inserted FROM inserted) AS summary
       LEFT JOIN (
         SELECT input.position,
                CASE WHEN stored.tag_id IS NOT NULL THEN 'stored'
                     WHEN inserted.tag_id IS NOT NULL THEN 'batch'
                     ELSE 'unseen' END AS existing
         FROM input
         LEFT JOIN ${samplesTable} AS stored ON stored.tag_id = input.tag_id AND stored.time = input.time
         LEFT JOIN inserted ON inserted.tag_id = input.tag_id AND inserted.time = input.time
         LEFT JOIN input AS winner ON winner.kept AND winner.tag_id = input.tag_id AND winner.time = input.time
         WHERE CASE WHEN stored.tag_id IS NOT NULL THEN NOT ${samePayload("stored", "input")}
                    WHEN inserted.tag_id IS NOT NULL THEN NOT input.kept AND NOT ${samePayload("winner", "input")}
                    ELSE true END
       ) AS refused ON true
       ORDER BY refused.position`;
  }

  /** Samples of one tag in `[from, to)`, oldest first, paged with `limit` and `after`. */
  async readSamples(query: SampleQuery): Promise<Sample[]> {
    this.#context.client();
    const issues = new IssueCollector();
    if (typeof query !== "object" || query === null) issues.add("", "must be a sample query object");
    else {
      issues.string("tag", query.tag);
      issues.finite("from", query.from);
      issues.finite("to", query.to);
      if (query.limit !== undefined) issues.integer("limit", query.limit, 1);
      issues.optionalFinite("after", query.after);
    }
    issues.throwIfAny("sample query");
    if (query.from >= query.to) return [];
    const parameters: unknown[] = [query.tag, query.from, query.to, query.limit ?? DEFAULT_LIMIT];
    if (query.after !== undefined) parameters.push(query.after);
    // A history read (ADR 0040): on the history connections, within historyTimeoutMs, so a
    // HistoryRead of many nodes never holds the writers' connections or runs unbounded.
    const rows = await this.#context.runHistory("samples.readSamples", (client, sessionSettings, remainingMs) =>
      scanQuery<SampleRow>(
        client,
        `SELECT ${SAMPLE_ROW_COLUMNS}
         FROM ${this.#context.table("samples")}
         WHERE tag_id = (SELECT id FROM ${this.#context.table("tags")} WHERE name = $1)
           AND time >= ${timestampOf("$2")} AND time < ${timestampOf("$3")}
           ${query.after === undefined ? "" : `AND time > ${timestampOf("$5")}`}
         ORDER BY time
         LIMIT $4`,
        parameters,
        { sortFree: false, timeoutMs: remainingMs, sessionSettings },
      ),
    );
    const dataType = this.#tags.dataTypes.get(query.tag);
    return rows.rows.map((row) => toSample(query.tag, row, dataType));
  }

  /**
   * Min, max, avg, first, last and count of the numeric samples (float or 64-bit integer, finite)
   * of one tag, per `bucketMs` bucket aligned to `from` (`date_bin`), oldest first; empty buckets
   * are omitted.
   */
  async readBuckets(query: BucketQuery): Promise<SampleBucket[]> {
    this.#context.client();
    const issues = new IssueCollector();
    if (typeof query !== "object" || query === null) issues.add("", "must be a bucket query object");
    else {
      issues.string("tag", query.tag);
      issues.finite("from", query.from);
      issues.finite("to", query.to);
      if (typeof query.bucketMs !== "number" || !Number.isFinite(query.bucketMs) || query.bucketMs < 0.001) {
        issues.add("bucketMs", "must be a finite number of at least 0.001 (one microsecond)");
      }
    }
    issues.throwIfAny("bucket query");
    if (query.from >= query.to) return [];
    const rows = await this.#context.runHistory("samples.readBuckets", (client, sessionSettings, remainingMs) =>
      scanQuery<BucketRow>(
        client,
        `SELECT ${millisecondsOf("bucket")} AS start, min(value) AS min, max(value) AS max, avg(value) AS avg,
                (array_agg(value ORDER BY time))[1] AS first, (array_agg(value ORDER BY time DESC))[1] AS last,
                count(*)::int4 AS count
         FROM (
           SELECT date_bin(make_interval(secs => $4::float8 / 1000), time, ${timestampOf("$2")}) AS bucket, time,
                  coalesce(value_float, value_int::float8, value_uint::float8) AS value
           FROM ${this.#context.table("samples")}
           WHERE tag_id = (SELECT id FROM ${this.#context.table("tags")} WHERE name = $1)
             AND time >= ${timestampOf("$2")} AND time < ${timestampOf("$3")}
             AND (value_int IS NOT NULL OR value_uint IS NOT NULL
                  OR value_float NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8))
         ) AS numeric_samples
         GROUP BY bucket
         ORDER BY bucket`,
        [query.tag, query.from, query.to, query.bucketMs],
        { sortFree: false, timeoutMs: remainingMs, sessionSettings },
      ),
    );
    return rows.rows.map((row) => ({
      start: row.start,
      min: row.min,
      max: row.max,
      avg: row.avg,
      first: row.first,
      last: row.last,
      count: row.count,
    }));
  }
}
