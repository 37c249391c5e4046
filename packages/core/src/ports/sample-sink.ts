import type { Sample } from "../domain/sample";

/**
 * One sample a sink did not store because a different sample already holds its (tag, timestamp):
 * one stored before (`existing: "stored"`), or, when none was, the first of that key earlier in
 * the same batch (`existing: "batch"`). "Different" means another value or quality, compared
 * exactly as `sameSamplePayload` from `@kiln/core/driver-kit` does (`Object.is` on the value, so
 * `0` and `-0` differ, `NaN` equals `NaN`, `1` and `1n` differ; the quality code and reason). The
 * sample that holds the key is left as it was. Source of the rule: docs/adr/0018-sample-conflicts-reported.md.
 */
export interface SampleConflict {
  /** The refused sample, as it was in the batch. */
  readonly sample: Sample;
  /** Where the other sample with the same (tag, timestamp) is: already stored, or earlier in this batch. */
  readonly existing: "stored" | "batch";
}

/** What a {@link SampleSink.writeBatch} reports besides "durable". */
export interface SampleWriteResult {
  /**
   * The samples of the batch that were not stored because a different sample holds their
   * (tag, timestamp), in batch order; empty when there were none. Identical duplicates (a retry,
   * a replay, the same sample twice in a batch) are not conflicts: they are stored once, silently.
   */
  readonly conflicts: readonly SampleConflict[];
}

/**
 * Where the logging pipeline writes batches of samples.
 *
 * Contract (checked by `storeConformance`): `writeBatch` is idempotent on (tag, timestamp), so
 * writing a batch again after an unknown outcome (timeout, dropped connection) stores each
 * sample once. Duplicates inside one batch are stored once. When two samples share a
 * (tag, timestamp), the FIRST one stored wins (in a batch: the earlier one), as with
 * `ON CONFLICT DO NOTHING`; but a later sample whose value or quality differs is never merged
 * silently: the sink reports it in {@link SampleWriteResult.conflicts}, and the pipeline counts
 * it as dropped (`samples-drop` with its tag). An identical one is not reported, so retries and
 * replays stay silent. A malformed sample rejects the whole batch with `KILN_VALIDATION`. A
 * failure rejects with a `KilnError` whose `retryable` says whether to try again; a rejected
 * batch is either wholly written or not written at all.
 *
 * A sink written before conflicts were reported may resolve `void`: the pipeline then counts
 * no conflicts (and the conformance suite fails it).
 */
export interface SampleSink {
  /** The sink contract version. */
  readonly sinkApiVersion: "1";
  /**
   * Stores `samples`. Resolves once they are durable, with the samples refused as conflicts
   * (see {@link SampleWriteResult}); `void` is read as "no conflicts".
   */
  writeBatch(samples: readonly Sample[]): Promise<SampleWriteResult | void>;
}
