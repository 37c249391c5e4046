/**
 * The pipeline under test (a SimulatedPlc whose every tag counts 0, 1, 2... one step per scan →
 * createControlSystem → PostgresStore) and the count that checks it: per tag, which sequence
 * numbers reached the database, how many are missing, how many are there twice.
 */
import { createControlSystem, defineTags, SimulatedPlc, type ControlSystem } from "@kiln/core";
import { PostgresStore } from "@kiln/store-postgres";
import pg from "pg";

/** Tags per pipeline: `seq.0` ... `seq.<n-1>`, each a uint32 sequence number. */
export const TAG_COUNT = 100;
/** Scan period, in ms: 100 tags every 20 ms is 5,000 samples/s. */
export const SCAN_PERIOD_MS = 20;

const tags = defineTags(
  Object.fromEntries(
    Array.from({ length: TAG_COUNT }, (_, index) => [`seq.${index}`, { dataType: "uint32" as const }]),
  ),
);

/** Logging settings a fault case chooses (the rest is fixed here). */
export interface FaultLogging {
  readonly overflow: "spool" | "drop-oldest";
  readonly spoolPath?: string;
  readonly spoolMaxBytes?: number;
  readonly maxBufferedSamples?: number;
  readonly writeTimeoutMs?: number;
  readonly drainTimeoutMs?: number;
}

/** A running pipeline and what it reported. */
export interface FaultPipeline {
  readonly system: ControlSystem;
  /** Every `samples-drop` event: count and reason. */
  readonly drops: { readonly count: number; readonly reason: string }[];
  /** Sum of the counts of {@link drops}. */
  dropped(): number;
}

/**
 * Builds and starts the pipeline against `url`, in its own `schema`. Sequence numbers start at
 * `firstSequence` (a restarted process uses a different range, so its samples are told apart).
 */
export async function startPipeline(options: {
  readonly url: string;
  readonly schema: string;
  readonly logging: FaultLogging;
  readonly firstSequence?: number;
}): Promise<FaultPipeline> {
  const plc = new SimulatedPlc({
    tags,
    sources: Object.fromEntries(
      tags.names.map((name) => [name, { kind: "counter" as const, start: options.firstSequence ?? 0 }]),
    ),
  });
  const store = new PostgresStore({ connectionString: options.url, schema: options.schema, maxConnections: 4 });
  const { writeTimeoutMs = 2_000, drainTimeoutMs = 10_000, ...logging } = options.logging;
  const system = createControlSystem({
    machineId: "faults",
    tags,
    driver: plc,
    store,
    // No staleness sweep: a late scan on a loaded machine would log the last value again (uncertain,
    // new timestamp), which the count would see as a duplicate.
    scanGroups: { default: { periodMs: SCAN_PERIOD_MS, staleAfterPeriods: 0 } },
    logging: {
      maxBatchSize: 500,
      maxLatencyMs: 100,
      maxBufferedSamples: 5_000,
      writeTimeoutMs,
      drainTimeoutMs,
      retry: { initialDelayMs: 50, maxDelayMs: 500 },
      breaker: { failureThreshold: 3, recoveryTimeMs: 300 },
      ...logging,
    },
  });
  const drops: { count: number; reason: string }[] = [];
  system.bus.on("samples-drop", (event) => void drops.push({ count: event.count, reason: event.reason }));
  await system.start();
  return { system, drops, dropped: () => drops.reduce((sum, drop) => sum + drop.count, 0) };
}

/** What the database holds of a pipeline's sequence numbers in `[from, to)`. */
export interface SequenceCount {
  /** Rows stored. */
  readonly rows: number;
  /** Distinct (tag, sequence number) pairs stored. */
  readonly distinct: number;
  /** Rows beyond the first of the same (tag, sequence number). */
  readonly duplicates: number;
  /** Sequence numbers missing below each tag's highest stored one, summed over tags. */
  readonly gaps: number;
  /** Per tag: the number of sequence numbers stored. */
  readonly perTag: ReadonlyMap<string, number>;
}

/** Counts the rows of `schema` by sequence number, for values in `[from, to)`. */
export async function countSequences(url: string, schema: string, from = 0, to = 2 ** 32): Promise<SequenceCount> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ tag: string; rows: number; distinct: number; low: string; high: string }>(
      `SELECT t.name AS tag, count(*)::int4 AS rows, count(DISTINCT s.value_float)::int4 AS distinct,
              min(s.value_float) AS low, max(s.value_float) AS high
         FROM "${schema}".samples s JOIN "${schema}".tags t ON t.id = s.tag_id
        WHERE s.value_float >= $1 AND s.value_float < $2
        GROUP BY t.name`,
      [from, to],
    );
    let rows = 0;
    let distinct = 0;
    let gaps = 0;
    const perTag = new Map<string, number>();
    for (const row of result.rows) {
      rows += row.rows;
      distinct += row.distinct;
      gaps += Number(row.high) - from + 1 - row.distinct;
      perTag.set(row.tag, row.distinct);
    }
    return { rows, distinct, duplicates: rows - distinct, gaps, perTag };
  } finally {
    await client.end();
  }
}

/** Polls `condition` every 50 ms until it holds; throws with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits `ms` of wall time (the length of an outage). */
export function hold(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
