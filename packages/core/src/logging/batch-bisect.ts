import { KilnError } from "../domain/errors";
import type { Sample } from "../domain/sample";
import type { SampleConflict, SampleWriteResult } from "@kiln/core/driver-kit";

/** One sample a store refused on its own, with the error of its last, single-sample write. */
export interface RefusedSample {
  /** The sample, as it was in the batch. */
  readonly sample: Sample;
  /** The refusal, for the `samples-drop` reason (see {@link refusalReason}). */
  readonly error: unknown;
}

/** What {@link bisectBatch} achieved: how many samples it stored and which it could not. */
export interface BisectOutcome {
  /** Samples of the parts the store took (their conflicts included). */
  readonly written: number;
  /** Samples the store refused even alone, in batch order. */
  readonly refused: readonly RefusedSample[];
  /** Conflicts the store reported for the parts it took (see `SampleWriteResult`). */
  readonly conflicts: readonly SampleConflict[];
}

/**
 * Isolates the poison samples of a batch a store refused as a whole with a non-retryable error
 * (one value a database cannot hold fails the whole statement): splits the batch in halves and
 * writes each, splitting again every half that fails, until the failing samples stand alone.
 * Everything else is stored; a batch with one poison sample costs about 2·log2(n) writes.
 *
 * A half whose sibling was stored is split at once without being written whole: the failure of
 * their parent is then in it. Writes must be idempotent on (tag, timestamp), as `SampleSink`
 * writes are, so a part written twice is harmless.
 *
 * @param batch the batch that failed.
 * @param error the error it failed with.
 * @param write stores one part of the batch and resolves with the sink's result; rejects when
 *   the store refuses it.
 * @param isRefusal whether a part's failure refuses its samples. When it says no (the write was
 *   aborted, the logger is stopping), bisecting stops and that failure is rethrown; parts already
 *   stored stay stored, so the caller may hand the whole batch on again.
 * @returns the number of samples stored and the refused ones.
 */
export async function bisectBatch(
  batch: readonly Sample[],
  error: unknown,
  write: (part: readonly Sample[]) => Promise<SampleWriteResult | void>,
  isRefusal: (error: unknown) => boolean,
): Promise<BisectOutcome> {
  let written = 0;
  const refused: RefusedSample[] = [];
  const conflicts: SampleConflict[] = [];
  const split = async (part: readonly Sample[], partError: unknown): Promise<void> => {
    if (part.length === 0) return;
    if (part.length === 1) {
      refused.push({ sample: part[0]!, error: partError });
      return;
    }
    const middle = part.length >>> 1;
    const first = part.slice(0, middle);
    const second = part.slice(middle);
    const firstStored = await attempt(first);
    if (firstStored) await split(second, partError);
    else await attempt(second);
  };
  // Writes `part`; on a refusal splits it. Resolves whether it was stored whole.
  const attempt = async (part: readonly Sample[]): Promise<boolean> => {
    let result: SampleWriteResult | void;
    try {
      result = await write(part);
    } catch (partError) {
      if (!isRefusal(partError)) throw partError;
      await split(part, partError);
      return false;
    }
    written += part.length;
    conflicts.push(...conflictsOf(result));
    return true;
  };
  if (!isRefusal(error)) throw error;
  await split(batch, error);
  return { written, refused, conflicts };
}

/** A refusal in words for a `samples-drop` reason: the Kiln error code and message, or the error as text. */
export function refusalReason(error: unknown): string {
  return KilnError.is(error) ? `${error.code}: ${error.message}` : String(error);
}

/**
 * The conflicts a sink's `writeBatch` resolved with: its `conflicts` array, or none when it
 * resolved `void` (a sink written before conflicts were reported) or anything else.
 */
export function conflictsOf(result: SampleWriteResult | void): readonly SampleConflict[] {
  const conflicts = (result as Partial<SampleWriteResult> | undefined | null)?.conflicts;
  return Array.isArray(conflicts) ? conflicts : [];
}
