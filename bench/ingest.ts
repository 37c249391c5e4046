import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { defineTags, GOOD, type KilnEvents, type Sample, SystemClock, type TagDefinitionInput } from "@kiln/core";
import { EventBus } from "../packages/core/src/events/event-bus";
import { SampleLogger } from "../packages/core/src/logging/sample-logger";
import { guardSampleSink } from "../packages/core/src/compose/port-policies";
import { PostgresStore } from "@kiln/store-postgres";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import pgCopyStreams from "pg-copy-streams";

/**
 * Ingest benchmark: 1,000 tags x 1,000 scans (1,000,000 samples) pushed through Kiln's logging
 * pipeline (`SampleLogger`: batches of 5,000, two lanes in flight) into `PostgresStore`, against the baseline of the database's own bulk load: one
 * `COPY FROM STDIN` (text, like `psql \copy`) of the same rows, rendered beforehand, into an
 * identical table (same columns, primary key and BRIN index) through `pg`, in the same run.
 * Each side runs twice, alternating, and keeps its best time. The second record is the same
 * measurement on embedded PGlite (baseline: PGlite's own text COPY from `/dev/blob`).
 *
 * Needs `DATABASE_URL` for the server figure; without it that record says it was skipped.
 */
export async function run(): Promise<Record<string, unknown>[]> {
  const records: Record<string, unknown>[] = [];
  const url = process.env.DATABASE_URL;
  if (url === undefined || url === "") {
    records.push({ name: "ingest", unit: "samples/s", skipped: true, reason: "DATABASE_URL is not set" });
  } else {
    records.push(await serverIngest(url));
  }
  records.push(await pgliteIngest());
  return records;
}

const TAGS = 1_000;
const SCANS = 1_000;
const BATCH = 5_000;
const CONCURRENCY = 2;
const ROUNDS = 2;
const START = Date.UTC(2026, 0, 1);
const SCAN_MS = 100;

function tagNames(): string[] {
  return Array.from({ length: TAGS }, (_unused, index) => `line1.sensor${String(index).padStart(4, "0")}`);
}

/** Scan-major samples, as acquisition produces them: every tag of scan 0, then of scan 1... */
function makeSamples(names: readonly string[]): Sample[] {
  const samples: Sample[] = new Array<Sample>(names.length * SCANS);
  let index = 0;
  for (let scan = 0; scan < SCANS; scan++) {
    const timestamp = START + scan * SCAN_MS;
    for (let tag = 0; tag < names.length; tag++) {
      samples[index++] = { tag: names[tag]!, value: Math.sin(scan / 10 + tag) * 100, timestamp, quality: GOOD };
    }
  }
  return samples;
}

/**
 * Pushes the samples through Kiln's logging pipeline (laned batcher, p-queue, store breaker and
 * retry) into the store, and times until the last batch is committed (`stop()` drains).
 */
async function writeThroughStore(store: PostgresStore, samples: readonly Sample[]): Promise<number> {
  const clock = new SystemClock();
  const bus = new EventBus<KilnEvents>();
  const logger = new SampleLogger({
    sink: guardSampleSink(
      store.samples,
      {
        timeoutMs: 60_000,
        retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 50, maxDelayMs: 1_000 },
        breaker: { failureThreshold: 5, recoveryTimeMs: 5_000 },
      },
      { clock, bus },
    ),
    clock,
    bus,
    maxBatchSize: BATCH,
    maxLatencyMs: 50,
    flushConcurrency: CONCURRENCY,
    maxBufferedSamples: BATCH * CONCURRENCY * 4,
    overflow: "block",
    drainTimeoutMs: 120_000,
  });
  await logger.start();
  const started = performance.now();
  for (let index = 0; index < samples.length; index++) {
    if (index % BATCH === 0) {
      const room = logger.reserveRoom(Math.min(BATCH, samples.length - index));
      if (room.ready) await room.ready;
      room.release();
    }
    logger.append(samples[index]!);
  }
  await logger.stop();
  const elapsed = performance.now() - started;
  const { samplesOut, samplesDropped } = logger.health();
  if (samplesOut !== samples.length || samplesDropped !== 0) {
    throw new Error(`pipeline committed ${samplesOut} of ${samples.length} samples (${samplesDropped} dropped)`);
  }
  return elapsed;
}

/** The same rows as `COPY` text lines: tag id, quality, ISO time, float value. */
function renderCopyText(samples: readonly Sample[], ids: ReadonlyMap<string, number>): string[] {
  const chunks: string[] = [];
  const lines: string[] = [];
  for (const sample of samples) {
    lines.push(`${ids.get(sample.tag)}\t0\t${new Date(sample.timestamp).toISOString()}\t${sample.value as number}\n`);
    if (lines.length === 10_000) chunks.push(lines.splice(0).join(""));
  }
  if (lines.length > 0) chunks.push(lines.join(""));
  return chunks;
}

/** The one method both `pg.Pool` and PGlite offer that the benchmark needs. */
interface Queryable {
  query(text: string): Promise<{ rows: unknown[] }>;
}

async function rowsOf<TRow>(client: Queryable, text: string): Promise<TRow[]> {
  return (await client.query(text)).rows as TRow[];
}

async function tagIds(client: Queryable, schema: string): Promise<Map<string, number>> {
  const rows = await rowsOf<{ id: number; name: string }>(client, `SELECT id, name FROM "${schema}".tags`);
  return new Map(rows.map((row) => [row.name, row.id]));
}

async function count(client: Queryable, table: string): Promise<number> {
  const rows = await rowsOf<{ count: number }>(client, `SELECT count(*)::int4 AS count FROM ${table}`);
  return rows[0]!.count;
}

function summarise(kilnMs: number, baselineMs: number, extra: Record<string, unknown>): Record<string, unknown> {
  const total = TAGS * SCANS;
  const kiln = Math.round(total / (kilnMs / 1000));
  const baseline = Math.round(total / (baselineMs / 1000));
  return {
    unit: "samples/s",
    kiln,
    baseline,
    ratio: Math.round((kiln / baseline) * 100) / 100,
    samples: total,
    batchSize: BATCH,
    concurrency: CONCURRENCY,
    rounds: ROUNDS,
    ...extra,
  };
}

async function serverIngest(url: string): Promise<Record<string, unknown>> {
  const schema = `kiln_bench_${process.pid}`;
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  const store = new PostgresStore({ connectionString: url, schema, maxConnections: CONCURRENCY });
  try {
    const names = tagNames();
    const definitions: Record<string, TagDefinitionInput> = {};
    for (const name of names) definitions[name] = { dataType: "float64", unit: "bar" };
    await store.open(defineTags(definitions).list());
    const samples = makeSamples(names);
    const text = renderCopyText(samples, await tagIds(admin, schema));
    const samplesTable = `"${schema}".samples`;
    const baselineTable = `"${schema}".baseline`;
    await admin.query(`CREATE TABLE ${baselineTable} (LIKE ${samplesTable} INCLUDING ALL)`);
    let kilnMs = Infinity;
    let baselineMs = Infinity;
    for (let round = 0; round < ROUNDS; round++) {
      await admin.query(`TRUNCATE ${samplesTable}, ${baselineTable}`);
      await admin.query(`CHECKPOINT`);
      const client = await admin.connect();
      try {
        const started = performance.now();
        await pipeline(
          Readable.from(text),
          client.query(pgCopyStreams.from(`COPY ${baselineTable} (tag_id, quality, time, value_float) FROM STDIN`)),
        );
        baselineMs = Math.min(baselineMs, performance.now() - started);
      } finally {
        client.release();
      }
      await admin.query(`CHECKPOINT`);
      kilnMs = Math.min(kilnMs, await writeThroughStore(store, samples));
    }
    const stored = await count(admin, samplesTable);
    const copied = await count(admin, baselineTable);
    if (stored !== samples.length || copied !== samples.length) {
      throw new Error(`ingest bench stored ${stored} and copied ${copied} of ${samples.length} rows`);
    }
    return {
      name: "ingest",
      ...summarise(kilnMs, baselineMs, { baselineMethod: "COPY FROM STDIN, text, one stream, rows pre-rendered" }),
    };
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await store.close();
    await admin.end();
  }
}

async function pgliteIngest(): Promise<Record<string, unknown>> {
  const pglite = await PGlite.create();
  const schema = "kiln_bench";
  const store = new PostgresStore({ pglite, schema });
  try {
    const names = tagNames();
    const definitions: Record<string, TagDefinitionInput> = {};
    for (const name of names) definitions[name] = { dataType: "float64" };
    await store.open(defineTags(definitions).list());
    const samples = makeSamples(names);
    const text = renderCopyText(samples, await tagIds(pglite, schema)).join("");
    const samplesTable = `"${schema}".samples`;
    const baselineTable = `"${schema}".baseline`;
    await pglite.query(`CREATE TABLE ${baselineTable} (LIKE ${samplesTable} INCLUDING ALL)`);
    let kilnMs = Infinity;
    let baselineMs = Infinity;
    for (let round = 0; round < ROUNDS; round++) {
      await pglite.query(`TRUNCATE ${samplesTable}, ${baselineTable}`);
      const started = performance.now();
      await pglite.query(`COPY ${baselineTable} (tag_id, quality, time, value_float) FROM '/dev/blob'`, [], {
        blob: new Blob([text]),
      });
      baselineMs = Math.min(baselineMs, performance.now() - started);
      kilnMs = Math.min(kilnMs, await writeThroughStore(store, samples));
    }
    const stored = await count(pglite, samplesTable);
    if (stored !== samples.length) throw new Error(`PGlite ingest bench stored ${stored} of ${samples.length} rows`);
    return {
      name: "ingest-pglite",
      ...summarise(kilnMs, baselineMs, { baselineMethod: "PGlite COPY FROM '/dev/blob', text, rows pre-rendered" }),
    };
  } finally {
    await store.close();
    await pglite.close();
  }
}
