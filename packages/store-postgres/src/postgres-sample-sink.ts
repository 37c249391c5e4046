import { type Sample, type SampleHistory, type SampleSink } from "@kiln/core";
import { type BucketQuery, type SampleBucket, type SampleQuery } from "@kiln/core/driver-kit";
import { IssueCollector } from "./input-checks";
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
import { millisecondsOf, timestampOf } from "./sql-expressions";
import type { StoreContext } from "./store-context";
import type { TagRegistry } from "./tag-registry";
import { SAMPLE_ROW_COLUMNS, toSample, type SampleRow } from "./sample-row";

const DEFAULT_LIMIT = 10_000;

interface BucketRow {
  readonly start: number;
  readonly min: number;
  readonly max: number;
  readonly avg: number;
  readonly first: number;
  readonly last: number;
  readonly count: number;
}

/**
 * Sample ingest and history on the `samples` table.
 *
 * Ingest: a batch is checked, de-duplicated on (tag, timestamp) keeping the first occurrence, and
 * sent as one binary COPY: one atomic statement at the database's own bulk-load speed. When the
 * COPY meets a row already stored (a retry after an unknown outcome, a replay), it fails whole
 * with a unique violation and the batch is sent again as
 * `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`, which keeps the stored rows.
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

  /** Stores `samples` once each; safe to retry. Resolves once committed. */
  async writeBatch(samples: readonly Sample[]): Promise<void> {
    this.#context.client();
    if (!Array.isArray(samples)) throw new TypeError("writeBatch expects an array of samples");
    if (samples.length === 0) return;
    const names = checkSamples(samples);
    await this.#context.run("samples.writeBatch", async (client) => {
      await this.#tags.ensure(client, names);
      const batch = prepareSamples(samples, this.#tags.ids);
      if (client.copyBinary && !this.#preferInsert && !batch.unsigned) {
        try {
          await client.copyBinary(this.#context.table("samples"), SAMPLE_COLUMNS, encodeBinaryCopy(batch));
          return;
        } catch (error) {
          if (sqlStateOf(error) !== UNIQUE_VIOLATION) throw error;
        }
      }
      const inserted = await this.#insert(client, batch);
      this.#preferInsert = client.copyBinary !== undefined && inserted < batch.length;
    });
  }

  /** Inserts what is not stored yet; resolves with the number of rows inserted. */
  async #insert(client: SqlClient, batch: PreparedSamples): Promise<number> {
    // Ordered by key so concurrent retries of overlapping batches lock rows in the same order.
    const result = await client.query(
      `INSERT INTO ${this.#context.table("samples")} (${SAMPLE_COLUMNS.join(", ")}, value_uint)
       SELECT tag_id, quality, to_timestamp(micros / 1000000), value_float, value_int::int8, value_bool,
              value_text, quality_reason, value_uint::numeric
       FROM unnest($1::text::int4[], $2::text::int4[], $3::text::float8[], $4::text::float8[],
                   $5::text::text[], $6::text::bool[], $7::text::text[], $8::text::text[], $9::text::text[])
            AS input (tag_id, quality, micros, value_float, value_int, value_bool, value_text, quality_reason,
                      value_uint)
       ORDER BY tag_id, micros
       ON CONFLICT DO NOTHING`,
      unnestParameters(batch),
    );
    return result.rowCount;
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
    const rows = await this.#context.run("samples.readSamples", (client) =>
      client.query<SampleRow>(
        `SELECT ${SAMPLE_ROW_COLUMNS}
         FROM ${this.#context.table("samples")}
         WHERE tag_id = (SELECT id FROM ${this.#context.table("tags")} WHERE name = $1)
           AND time >= ${timestampOf("$2")} AND time < ${timestampOf("$3")}
           ${query.after === undefined ? "" : `AND time > ${timestampOf("$5")}`}
         ORDER BY time
         LIMIT $4`,
        parameters,
      ),
    );
    return rows.rows.map((row) => toSample(query.tag, row));
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
    const rows = await this.#context.run("samples.readBuckets", (client) =>
      client.query<BucketRow>(
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
