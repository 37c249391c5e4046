import type { Sample } from "../domain/sample";
import { RecordJournal, type RecordJournalOptions } from "../journal/record-journal";

/** What {@link SampleJournal.open} found in an existing file. */
export interface JournalRecovery {
  /** Complete, checksummed records found. */
  readonly records: number;
  /** Samples in those records. */
  readonly samples: number;
  /** Corrupt stretches between good records that were skipped (their samples are lost and counted here). */
  readonly skippedRecords: number;
  /** Bytes of a torn or corrupt tail that were cut off (0 for a clean file). */
  readonly discardedBytes: number;
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
  #undecodable = 0;

  private constructor(records: RecordJournal) {
    this.#records = records;
  }

  /**
   * Opens (creating if needed) the spool at `path` and takes its lock, recovering from a torn
   * tail or a corrupt stretch.
   * @throws KilnError `KILN_JOURNAL_LOCKED` when another live journal has `path` open;
   *   `KILN_JOURNAL_FAILED` when the file cannot be opened or read.
   */
  static async open(
    path: string,
    options: RecordJournalOptions = {},
  ): Promise<{ journal: SampleJournal; recovery: JournalRecovery }> {
    const { journal: records, recovery } = await RecordJournal.open(path, options);
    const journal = new SampleJournal(records);
    // Count each record's samples once; the counts are kept so peek and release stay cheap.
    await records
      .scan((payload) => {
        let count = 0;
        try {
          count = decodeSamples(payload.toString("utf8")).length;
        } catch {
          // Counted as undecodable when peek reaches it.
        }
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
   * Appends one batch as one record and fsyncs it.
   * @throws KilnError `KILN_BUFFER_FULL` past the size limit, `KILN_JOURNAL_FAILED` when the
   *   disk refuses it (e.g. `ENOSPC`); in both cases nothing of the batch is kept.
   */
  async append(samples: readonly Sample[]): Promise<void> {
    if (samples.length === 0) return;
    await this.#records.append(Buffer.from(encodeSamples(samples)));
    this.#counts.push(samples.length);
    this.#samples += samples.length;
  }

  /**
   * The oldest unreleased batch, or undefined when there is none. Repeated calls return the same
   * batch. A record that cannot be decoded is skipped and counted in {@link undecodable}.
   */
  async peek(): Promise<Sample[] | undefined> {
    while (this.#pending === undefined) {
      const payload = await this.#records.peek();
      if (payload === undefined) return undefined;
      try {
        this.#pending = decodeSamples(payload.toString("utf8"));
      } catch {
        this.#undecodable++;
        await this.#drop();
      }
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
    await this.#records.release();
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

/** The inverse of {@link encodeExactJson}. */
export function decodeExactJson(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value === "object" && value !== null) {
      if ("$bigint" in value) return BigInt((value as { $bigint: string }).$bigint);
      if ("$number" in value) return Number((value as { $number: string }).$number);
    }
    return value;
  });
}

/** JSON with every sample value kept exact (see {@link encodeExactJson}). */
export function encodeSamples(samples: readonly Sample[]): string {
  return encodeExactJson(samples);
}

/** The inverse of {@link encodeSamples}. */
export function decodeSamples(text: string): Sample[] {
  return decodeExactJson(text) as Sample[];
}
