import { KilnError } from "../domain/errors";
import { checkSample, type Sample } from "../domain/sample";
import { RecordJournal, type RecordJournalOptions } from "../journal/record-journal";

/**
 * A spool record holds about this many bytes at most (one sample larger than this gets a record
 * of its own): 4 MiB. A batch is split at this bound, so no batch is too large to spool (the JSON
 * of 100 samples of long strings passes V8's string limit).
 */
export const SPOOL_RECORD_TARGET_BYTES = 4 * 1024 * 1024;

/** What {@link SampleJournal.open} found in an existing file. */
export interface JournalRecovery {
  /** Complete, checksummed records found. */
  readonly records: number;
  /** Samples in those records. */
  readonly samples: number;
  /** Corrupt stretches between good records that were skipped (their samples are lost; how many is unknown). */
  readonly skippedRecords: number;
  /** Bytes of those corrupt stretches. */
  readonly skippedBytes: number;
  /** Bytes of a torn or corrupt tail that were cut off (0 for a clean file). */
  readonly discardedBytes: number;
}

/** What the spool skipped while replaying, reported by {@link SampleJournalOptions.onSkip}. */
export interface SampleJournalSkip {
  /**
   * `record`: a checksummed record that is not a batch of samples (its sample count is unknown);
   * `samples`: samples of a record that are not valid samples (the rest of the record is replayed).
   */
  readonly kind: "record" | "samples";
  /** Records skipped (`record`) or samples skipped (`samples`). */
  readonly count: number;
  /** Why, naming the first broken rule. */
  readonly reason: string;
}

/** Options of {@link SampleJournal.open}. */
export interface SampleJournalOptions extends RecordJournalOptions {
  /** Called once for each skip, when the record is released. */
  readonly onSkip?: (skip: SampleJournalSkip) => void;
}

/**
 * The sample spool: batches of samples in a {@link RecordJournal} (crash-safe, fsynced per
 * batch, bounded by `maxBytes`, corrupt stretches skipped and counted). Every value a sample
 * may hold reads back equal: `bigint`, `NaN`, `±Infinity` and `-0` included, which plain JSON
 * would turn into `null` or `0`.
 */
export class SampleJournal {
  readonly #records: RecordJournal;
  readonly #counts: number[] = [];
  #samples = 0;
  #pending: Sample[] | undefined;
  #pendingSkip: SampleJournalSkip | undefined;
  #undecodable = 0;
  readonly #onSkip: ((skip: SampleJournalSkip) => void) | undefined;

  private constructor(records: RecordJournal, onSkip: ((skip: SampleJournalSkip) => void) | undefined) {
    this.#records = records;
    this.#onSkip = onSkip;
  }

  /**
   * Opens (creating if needed) the spool at `path` and takes its lock, recovering from a torn
   * tail or a corrupt stretch.
   * @throws KilnError `KILN_JOURNAL_LOCKED` when another live journal has `path` open;
   *   `KILN_JOURNAL_FAILED` when the file cannot be opened or read.
   */
  static async open(
    path: string,
    options: SampleJournalOptions = {},
  ): Promise<{ journal: SampleJournal; recovery: JournalRecovery }> {
    const { journal: records, recovery } = await RecordJournal.open(path, options);
    const journal = new SampleJournal(records, options.onSkip);
    // Count each record's samples once; the counts are kept so peek and release stay cheap.
    await records
      .scan((payload) => {
        // A record that is not a batch counts 0 samples, and is counted as undecodable when peek reaches it.
        const count = decodeBatch(payload.toString("utf8"))?.length ?? 0;
        journal.#counts.push(count);
        journal.#samples += count;
      })
      .catch(async (error: unknown) => {
        await records.close().catch(() => undefined);
        throw error;
      });
    return {
      journal,
      recovery: {
        records: recovery.records,
        samples: journal.#samples,
        skippedRecords: recovery.skippedRecords,
        skippedBytes: recovery.skippedBytes,
        discardedBytes: recovery.discardedBytes,
      },
    };
  }

  /** The spool file. */
  get path(): string {
    return this.#records.path;
  }

  /** Records not yet released. */
  get records(): number {
    return this.#records.records;
  }

  /** Samples in records not yet released. */
  get samples(): number {
    return this.#samples;
  }

  /** Bytes the spool file holds now. */
  get bytes(): number {
    return this.#records.bytes;
  }

  /** Records that passed their checksum but could not be decoded, skipped by {@link peek} (0 unless a bug wrote them). */
  get undecodable(): number {
    return this.#undecodable;
  }

  /** True when every record has been released. */
  get empty(): boolean {
    return this.#records.empty;
  }

  /**
   * Appends one batch, in order, as one record or more (split at {@link SPOOL_RECORD_TARGET_BYTES}),
   * each fsynced.
   * @throws KilnError `KILN_BUFFER_FULL` past the size limit, `KILN_JOURNAL_FAILED` when the
   *   disk refuses it (e.g. `ENOSPC`) or a sample cannot be encoded. Nothing of the failing record
   *   is kept; when earlier records of the batch were kept, `details.appendedSamples` says how
   *   many of the batch's first samples are durable.
   */
  async append(samples: readonly Sample[]): Promise<void> {
    let appended = 0;
    try {
      for (const record of encodeRecords(samples)) {
        await this.#records.append(record.payload);
        this.#counts.push(record.count);
        this.#samples += record.count;
        appended += record.count;
      }
    } catch (error) {
      throw appendError(this.path, error, appended);
    }
  }

  /**
   * The oldest unreleased batch, or undefined when there is none. Repeated calls return the same
   * batch. Every sample is checked ({@link checkSample}): a record that is not a batch of samples
   * (it passed its checksum, so only a bug or a hand-made file writes one) is skipped, counted in
   * {@link undecodable} and reported (`onSkip`, kind `record`); the samples of a record that are
   * not valid samples are left out and reported (kind `samples`) when the record is released.
   */
  async peek(): Promise<Sample[] | undefined> {
    while (this.#pending === undefined) {
      const payload = await this.#records.peek();
      if (payload === undefined) return undefined;
      const batch = decodeBatch(payload.toString("utf8"));
      if (batch === undefined) {
        this.#undecodable++;
        this.#pendingSkip = { kind: "record", count: 1, reason: "spool record is not a batch of samples" };
        await this.#drop();
        continue;
      }
      const samples: Sample[] = [];
      let malformed = 0;
      let firstIssue: string | undefined;
      for (const [index, sample] of batch.entries()) {
        const issues = checkSample(sample, `[${index}]`);
        if (issues.length === 0) {
          samples.push(sample as Sample);
          continue;
        }
        malformed++;
        firstIssue ??= `${issues[0]!.path} ${issues[0]!.message}`;
      }
      this.#pendingSkip =
        malformed === 0
          ? undefined
          : { kind: "samples", count: malformed, reason: `spool sample malformed: ${firstIssue ?? ""}` };
      if (samples.length === 0) {
        await this.#drop();
        continue;
      }
      this.#pending = samples;
    }
    return this.#pending;
  }

  /** Releases the batch last returned by {@link peek}; truncates the file once all are released. */
  async release(): Promise<void> {
    if (this.#pending === undefined) return;
    await this.#drop();
  }

  async #drop(): Promise<void> {
    this.#pending = undefined;
    this.#samples -= this.#counts.shift() ?? 0;
    const skip = this.#pendingSkip;
    this.#pendingSkip = undefined;
    await this.#records.release();
    if (skip !== undefined) this.#onSkip?.(skip);
  }

  /** Closes the file. Unreleased records stay on disk for the next open. */
  async close(): Promise<void> {
    await this.#records.close();
  }
}

/** JSON with every value kept exact: bigint, NaN, ±Infinity and -0 are tagged objects. */
export function encodeExactJson(value: unknown): string {
  return JSON.stringify(value, (_key, child: unknown) => {
    if (typeof child === "bigint") return { $bigint: child.toString() };
    if (typeof child === "number" && (!Number.isFinite(child) || Object.is(child, -0))) {
      return { $number: Object.is(child, -0) ? "-0" : String(child) };
    }
    return child;
  });
}

const EXACT_NUMBERS: ReadonlyMap<unknown, number> = new Map([
  ["NaN", Number.NaN],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["-Infinity", Number.NEGATIVE_INFINITY],
  ["-0", -0],
]);

/**
 * The inverse of {@link encodeExactJson}.
 * @throws SyntaxError for text that is not JSON, or a tagged value {@link encodeExactJson} never
 *   writes (`{ "$bigint": "x" }`, `{ "$number": "5" }`): never read back as some other value.
 */
export function decodeExactJson(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value === "object" && value !== null) {
      if ("$bigint" in value) {
        const digits = (value as { $bigint: unknown }).$bigint;
        if (typeof digits !== "string" || !/^-?\d+$/.test(digits)) throw new SyntaxError("bad $bigint");
        return BigInt(digits);
      }
      if ("$number" in value) {
        const number = EXACT_NUMBERS.get((value as { $number: unknown }).$number);
        if (number === undefined) throw new SyntaxError("bad $number");
        return number;
      }
    }
    return value;
  });
}

/**
 * The records of a batch: JSON arrays of samples (every value kept exact, see
 * {@link encodeExactJson}) of about {@link SPOOL_RECORD_TARGET_BYTES} at most. Lazy, so a sample
 * that cannot be encoded fails only its own record.
 */
function* encodeRecords(samples: readonly Sample[]): Generator<{ payload: Buffer; count: number }> {
  let parts: string[] = [];
  let bytes = 2;
  const record = () => ({ payload: Buffer.from(`[${parts.join(",")}]`, "utf8"), count: parts.length });
  for (const sample of samples) {
    const part = encodeExactJson(sample);
    const size = Buffer.byteLength(part, "utf8") + 1;
    if (parts.length > 0 && bytes + size > SPOOL_RECORD_TARGET_BYTES) {
      yield record();
      parts = [];
      bytes = 2;
    }
    parts.push(part);
    bytes += size;
  }
  if (parts.length > 0) yield record();
}

function appendError(path: string, error: unknown, appendedSamples: number): unknown {
  if (appendedSamples === 0 && KilnError.is(error)) return error;
  const kiln = KilnError.is(error)
    ? error
    : new KilnError("KILN_JOURNAL_FAILED", `Journal ${path}: append failed: ${String(error)}.`, {
        cause: error,
        details: { path, operation: "append" },
      });
  return new KilnError(kiln.code, kiln.message, {
    cause: kiln.cause,
    retryable: kiln.retryable,
    details: { ...kiln.details, appendedSamples },
  });
}

/**
 * The array a spool record holds, or undefined when the record is not one (not exact JSON, or
 * not an array). Its elements are not checked yet: see {@link SampleJournal.peek}.
 */
function decodeBatch(text: string): unknown[] | undefined {
  try {
    const decoded = decodeExactJson(text);
    return Array.isArray(decoded) ? decoded : undefined;
  } catch {
    return undefined;
  }
}
