import type { Sample } from "../domain/sample";

/**
 * Where the logging pipeline writes batches of samples.
 *
 * Contract (checked by `storeConformance`): `writeBatch` is idempotent on (tag, timestamp), so
 * writing a batch again after an unknown outcome (timeout, dropped connection) stores each
 * sample once. Duplicates inside one batch are stored once. When two samples share a
 * (tag, timestamp), the FIRST one stored wins (in a batch: the earlier one), as with
 * `ON CONFLICT DO NOTHING`. A malformed sample rejects the whole batch with `KILN_VALIDATION`. A failure rejects with a
 * `KilnError` whose `retryable` says whether to try again; a rejected batch is either wholly
 * written or not written at all.
 */
export interface SampleSink {
  /** The sink contract version. */
  readonly sinkApiVersion: "1";
  /** Stores `samples`. Resolves once they are durable. */
  writeBatch(samples: readonly Sample[]): Promise<void>;
}
