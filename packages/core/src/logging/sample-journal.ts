import { mkdir, open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { crc32 } from "node:zlib";
import type { Sample } from "../domain/sample";

const HEADER_BYTES = 8;
const MAX_RECORD_BYTES = 256 * 1024 * 1024;

/** What {@link SampleJournal.open} found in an existing file. */
export interface JournalRecovery {
  /** Complete, checksummed records found. */
  readonly records: number;
  /** Samples in those records. */
  readonly samples: number;
  /** Bytes of a torn or corrupt tail that were cut off (0 for a clean file). */
  readonly discardedBytes: number;
}

/**
 * An append-only, crash-safe journal of sample batches on disk (the spool of the `spool`
 * overflow policy). Each record is `[u32 length][u32 crc32][JSON payload]`, little-endian, and
 * is fsynced before `append` resolves. On open, a torn or corrupt tail (a crash mid-write) is
 * detected by length and checksum and cut off; every record before it is kept.
 *
 * Records are read back in order with {@link SampleJournal.peek} and released with
 * {@link SampleJournal.release} once stored; when all are released the file is truncated.
 */
export class SampleJournal {
  /** The journal file, as given to {@link SampleJournal.open}. */
  readonly path: string;
  readonly #file: FileHandle;
  #size: number;
  #readOffset = 0;
  #records: number;
  #samples: number;
  #pending: { samples: Sample[]; bytes: number } | undefined;

  private constructor(path: string, file: FileHandle, size: number, records: number, samples: number) {
    this.path = path;
    this.#file = file;
    this.#size = size;
    this.#records = records;
    this.#samples = samples;
  }

  /** Opens (creating if needed) the journal at `path`, recovering from a torn tail. */
  static async open(path: string): Promise<{ journal: SampleJournal; recovery: JournalRecovery }> {
    await mkdir(dirname(path), { recursive: true });
    const file = await open(path, "a+");
    await file.close();
    const handle = await open(path, "r+");
    const { size } = await handle.stat();
    let offset = 0;
    let records = 0;
    let samples = 0;
    const header = Buffer.alloc(HEADER_BYTES);
    while (offset + HEADER_BYTES <= size) {
      await handle.read(header, 0, HEADER_BYTES, offset);
      const length = header.readUInt32LE(0);
      const checksum = header.readUInt32LE(4);
      if (length === 0 || length > MAX_RECORD_BYTES || offset + HEADER_BYTES + length > size) break;
      const payload = Buffer.alloc(length);
      await handle.read(payload, 0, length, offset + HEADER_BYTES);
      if (crc32(payload) !== checksum) break;
      records++;
      samples += countSamples(payload);
      offset += HEADER_BYTES + length;
    }
    const discardedBytes = size - offset;
    if (discardedBytes > 0) {
      await handle.truncate(offset);
      await handle.sync();
    }
    return {
      journal: new SampleJournal(path, handle, offset, records, samples),
      recovery: { records, samples, discardedBytes },
    };
  }

  /** Records not yet released. */
  get records(): number {
    return this.#records;
  }

  /** Samples in records not yet released. */
  get samples(): number {
    return this.#samples;
  }

  /** True when every record has been released. */
  get empty(): boolean {
    return this.#records === 0;
  }

  /** Appends one batch as one record and fsyncs it. */
  async append(samples: readonly Sample[]): Promise<void> {
    if (samples.length === 0) return;
    const payload = Buffer.from(JSON.stringify(samples, replacer));
    const record = Buffer.alloc(HEADER_BYTES + payload.length);
    record.writeUInt32LE(payload.length, 0);
    record.writeUInt32LE(crc32(payload), 4);
    payload.copy(record, HEADER_BYTES);
    await this.#file.write(record, 0, record.length, this.#size);
    await this.#file.datasync();
    this.#size += record.length;
    this.#records++;
    this.#samples += samples.length;
  }

  /** The oldest unreleased batch, or undefined when there is none. Repeated calls return the same batch. */
  async peek(): Promise<Sample[] | undefined> {
    if (this.#pending) return this.#pending.samples;
    if (this.#readOffset + HEADER_BYTES > this.#size) return undefined;
    const header = Buffer.alloc(HEADER_BYTES);
    await this.#file.read(header, 0, HEADER_BYTES, this.#readOffset);
    const length = header.readUInt32LE(0);
    const payload = Buffer.alloc(length);
    await this.#file.read(payload, 0, length, this.#readOffset + HEADER_BYTES);
    const samples = JSON.parse(payload.toString("utf8"), reviver) as Sample[];
    this.#pending = { samples, bytes: HEADER_BYTES + length };
    return samples;
  }

  /** Releases the batch last returned by {@link peek}; truncates the file once all are released. */
  async release(): Promise<void> {
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    this.#readOffset += pending.bytes;
    this.#records--;
    this.#samples -= pending.samples.length;
    if (this.#readOffset >= this.#size) {
      await this.#file.truncate(0);
      await this.#file.datasync();
      this.#size = 0;
      this.#readOffset = 0;
    }
  }

  /** Closes the file. Unreleased records stay on disk for the next open. */
  async close(): Promise<void> {
    await this.#file.close();
  }
}

function countSamples(payload: Buffer): number {
  return (JSON.parse(payload.toString("utf8")) as unknown[]).length;
}

function replacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? { $bigint: value.toString() } : value;
}

function reviver(_key: string, value: unknown): unknown {
  if (typeof value === "object" && value !== null && "$bigint" in value) {
    return BigInt((value as { $bigint: string }).$bigint);
  }
  return value;
}
