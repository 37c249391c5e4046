import { mkdir, open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { crc32 } from "node:zlib";
import { KilnError, KilnValidationError } from "../domain/errors";
import { JournalLock } from "./journal-lock";

/** `KJR1`: marks the start of every record, so recovery can find the next one after a corrupt stretch. */
const MAGIC = 0x4b4a5231;
const HEADER_BYTES = 12;
const MAX_RECORD_BYTES = 256 * 1024 * 1024;
const SCAN_CHUNK_BYTES = 64 * 1024;

/** The default size limit of a journal file: 1 GiB. */
export const DEFAULT_JOURNAL_MAX_BYTES = 1024 * 1024 * 1024;

/** Options of {@link RecordJournal.open}. */
export interface RecordJournalOptions {
  /**
   * Size limit of the file, in bytes. An append that would pass it is refused with
   * `KILN_BUFFER_FULL` (nothing written), so the owner applies its overflow policy.
   * @default DEFAULT_JOURNAL_MAX_BYTES (1 GiB)
   */
  readonly maxBytes?: number;
}

/** What {@link RecordJournal.open} found in an existing file. */
export interface RecordJournalRecovery {
  /** Complete, checksummed records found. */
  readonly records: number;
  /** Corrupt stretches skipped between good records (each counted once, its bytes in `skippedBytes`). */
  readonly skippedRecords: number;
  /** Bytes of corrupt stretches skipped between good records. */
  readonly skippedBytes: number;
  /** Bytes of a torn or corrupt tail that were cut off (0 for a clean file). */
  readonly discardedBytes: number;
}

interface RecordRef {
  readonly offset: number;
  readonly length: number;
}

/**
 * An append-only, crash-safe journal of opaque records on disk: the one mechanism behind every
 * durable backlog in Kiln (the sample spool, and backlogs of the same kind). Each record is
 * `[u32 magic "KJR1"][u32 length][u32 crc32(length ‖ payload)][payload]`, little-endian, and is
 * fsynced before {@link append} resolves.
 *
 * Nothing written is ever counted as durable unless it is: a failed write (a full disk, `ENOSPC`,
 * an I/O error) is cut back off the file and rejected with `KILN_JOURNAL_FAILED`; an append past
 * `maxBytes` is refused with `KILN_BUFFER_FULL` before anything is written. On open, a torn tail
 * (a crash mid-write) is cut off, and a corrupt stretch between good records is skipped and
 * counted, keeping every good record after it.
 *
 * Records are read back in order with {@link peek} and released with {@link release} once
 * handled; when all are released the file is truncated.
 */
export class RecordJournal {
  /** The journal file, as given to {@link RecordJournal.open}. */
  readonly path: string;
  /** Size limit in bytes. */
  readonly maxBytes: number;
  readonly #file: FileHandle;
  readonly #lock: JournalLock;
  readonly #records: RecordRef[];
  #head = 0;
  #size: number;
  #dirty = false;
  /** Appends and releases run one at a time: a release that empties the file truncates it, which must not meet a write. */
  #exclusive: Promise<unknown> = Promise.resolve();

  private constructor(
    path: string,
    file: FileHandle,
    lock: JournalLock,
    size: number,
    records: RecordRef[],
    maxBytes: number,
  ) {
    this.path = path;
    this.#file = file;
    this.#lock = lock;
    this.#size = size;
    this.#records = records;
    this.maxBytes = maxBytes;
  }

  /**
   * Opens (creating it and its folder if needed) the journal at `path`, takes its exclusive lock
   * (`<path>.lock`, see {@link JournalLock}: a journal has exactly one writer) and recovers it.
   * @throws KilnError `KILN_VALIDATION` for a bad `maxBytes`; `KILN_JOURNAL_LOCKED` (retryable)
   *   when another live journal, in this process or another on this host, has `path` open;
   *   `KILN_JOURNAL_FAILED` when the file cannot be opened or read.
   */
  static async open(
    path: string,
    options: RecordJournalOptions = {},
  ): Promise<{ journal: RecordJournal; recovery: RecordJournalRecovery }> {
    const maxBytes = options.maxBytes ?? DEFAULT_JOURNAL_MAX_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < HEADER_BYTES + 2) {
      throw new KilnValidationError("journal options", [
        { path: "maxBytes", message: `must be an integer of at least ${HEADER_BYTES + 2} bytes, not ${maxBytes}` },
      ]);
    }
    try {
      await mkdir(dirname(path), { recursive: true });
    } catch (error) {
      throw journalError(path, "open", error);
    }
    const lock = await JournalLock.acquire(path);
    let handle: FileHandle;
    try {
      await (await open(path, "a+")).close();
      handle = await open(path, "r+");
    } catch (error) {
      await lock.release();
      throw journalError(path, "open", error);
    }
    try {
      const { size } = await handle.stat();
      const records: RecordRef[] = [];
      let offset = 0;
      let end = 0;
      let skippedRecords = 0;
      let skippedBytes = 0;
      while (offset < size) {
        const length = await readRecordAt(handle, offset, size);
        if (length !== undefined) {
          if (offset > end) {
            skippedRecords++;
            skippedBytes += offset - end;
          }
          records.push({ offset, length });
          offset += HEADER_BYTES + length;
          end = offset;
          continue;
        }
        const next = await findNextRecord(handle, offset + 1, size);
        if (next === undefined) break;
        offset = next;
      }
      const discardedBytes = size - end;
      if (discardedBytes > 0) {
        await handle.truncate(end);
        await handle.sync();
      }
      return {
        journal: new RecordJournal(path, handle, lock, end, records, maxBytes),
        recovery: { records: records.length, skippedRecords, skippedBytes, discardedBytes },
      };
    } catch (error) {
      await handle.close().catch(() => undefined);
      await lock.release();
      throw journalError(path, "recover", error);
    }
  }

  /** Records not yet released. */
  get records(): number {
    return this.#records.length - this.#head;
  }

  /** True when every record has been released. */
  get empty(): boolean {
    return this.records === 0;
  }

  /** Bytes the file holds now. */
  get bytes(): number {
    return this.#size;
  }

  /**
   * Appends one record and fsyncs it; when this resolves, the record survives a crash.
   * @throws KilnError `KILN_BUFFER_FULL` (not retryable; nothing written) when the record would
   *   pass `maxBytes`; `KILN_JOURNAL_FAILED` (retryable; nothing kept) when writing or syncing
   *   fails, e.g. `ENOSPC` on a full disk (`details.errno`).
   */
  append(payload: Uint8Array): Promise<void> {
    return this.#serialized(() => this.#append(payload));
  }

  async #append(payload: Uint8Array): Promise<void> {
    if (payload.length === 0 || payload.length > MAX_RECORD_BYTES) {
      throw new RangeError(`A journal record holds 1 to ${MAX_RECORD_BYTES} bytes, not ${payload.length}.`);
    }
    const record = encodeRecord(payload);
    if (this.#size + record.length > this.maxBytes) {
      throw new KilnError(
        "KILN_BUFFER_FULL",
        `Journal ${this.path} is full: ${this.#size} of ${this.maxBytes} bytes used, ${record.length} more needed.`,
        { details: { path: this.path, bytes: this.#size, maxBytes: this.maxBytes, recordBytes: record.length } },
      );
    }
    try {
      if (this.#dirty) await this.#cutBack();
      this.#dirty = true;
      await writeFully(this.#file, record, this.#size);
      await this.#file.datasync();
      this.#dirty = false;
    } catch (error) {
      // Whatever reached the file is cut off again, so it can never be read back as a record.
      await this.#cutBack().catch(() => undefined);
      throw journalError(this.path, "append", error);
    }
    this.#records.push({ offset: this.#size, length: payload.length });
    this.#size += record.length;
  }

  /** The oldest unreleased record's payload, or undefined when there is none. Repeated calls return the same record. */
  async peek(): Promise<Buffer | undefined> {
    const next = this.#records[this.#head];
    if (next === undefined) return undefined;
    const payload = Buffer.alloc(next.length);
    try {
      await this.#file.read(payload, 0, next.length, next.offset + HEADER_BYTES);
    } catch (error) {
      throw journalError(this.path, "read", error);
    }
    return payload;
  }

  /**
   * Calls `visit` with the payload of every unreleased record, oldest first, without releasing any.
   * @throws KilnError `KILN_JOURNAL_FAILED` when the file cannot be read.
   */
  async scan(visit: (payload: Buffer) => void): Promise<void> {
    for (let index = this.#head; index < this.#records.length; index++) {
      const { offset, length } = this.#records[index]!;
      const payload = Buffer.alloc(length);
      try {
        await this.#file.read(payload, 0, length, offset + HEADER_BYTES);
      } catch (error) {
        throw journalError(this.path, "read", error);
      }
      visit(payload);
    }
  }

  /** Releases the record last returned by {@link peek}; truncates the file once all are released. */
  release(): Promise<void> {
    return this.#serialized(() => this.#release());
  }

  async #release(): Promise<void> {
    if (this.#head >= this.#records.length) return;
    this.#head++;
    if (this.#head === this.#records.length) {
      this.#records.length = 0;
      this.#head = 0;
      this.#size = 0;
      this.#dirty = true;
      await this.#cutBack().catch(() => undefined);
    } else if (this.#head > 1024 && this.#head * 2 > this.#records.length) {
      this.#records.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** Closes the file and releases its lock. Unreleased records stay on disk for the next open. */
  async close(): Promise<void> {
    try {
      await this.#file.close();
    } finally {
      await this.#lock.release();
    }
  }

  #serialized(work: () => Promise<void>): Promise<void> {
    const run = this.#exclusive.then(work);
    this.#exclusive = run.catch(() => undefined);
    return run;
  }

  async #cutBack(): Promise<void> {
    await this.#file.truncate(this.#size);
    await this.#file.datasync();
    this.#dirty = false;
  }
}

/**
 * Writes all of `data` at `position`. A write the disk can take only part of returns short
 * without an error (a nearly full disk); the rest is written again, which fails with `ENOSPC`
 * when there is no room, so a record is never taken as written when only part of it is.
 */
async function writeFully(file: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let written = 0; written < data.length;) {
    const { bytesWritten } = await file.write(data, written, data.length - written, position + written);
    if (bytesWritten === 0) throw Object.assign(new Error("write made no progress"), { code: "ENOSPC" });
    written += bytesWritten;
  }
}

function encodeRecord(payload: Uint8Array): Buffer {
  const record = Buffer.alloc(HEADER_BYTES + payload.length);
  record.writeUInt32LE(MAGIC, 0);
  record.writeUInt32LE(payload.length, 4);
  record.set(payload, HEADER_BYTES);
  record.writeUInt32LE(checksum(record.subarray(4, 8), payload), 8);
  return record;
}

/** The payload length of a complete, checksummed record at `offset`, or undefined. */
async function readRecordAt(handle: FileHandle, offset: number, size: number): Promise<number | undefined> {
  if (offset + HEADER_BYTES > size) return undefined;
  const header = Buffer.alloc(HEADER_BYTES);
  await handle.read(header, 0, HEADER_BYTES, offset);
  if (header.readUInt32LE(0) !== MAGIC) return undefined;
  const length = header.readUInt32LE(4);
  if (length === 0 || length > MAX_RECORD_BYTES || offset + HEADER_BYTES + length > size) return undefined;
  const payload = Buffer.alloc(length);
  await handle.read(payload, 0, length, offset + HEADER_BYTES);
  return checksum(header.subarray(4, 8), payload) === header.readUInt32LE(8) ? length : undefined;
}

/** crc32 of the length field followed by the payload, so a damaged length is caught too. */
function checksum(lengthField: Uint8Array, payload: Uint8Array): number {
  return crc32(payload, crc32(lengthField));
}

/** The offset of the next complete record at or after `from`, or undefined when none follows. */
async function findNextRecord(handle: FileHandle, from: number, size: number): Promise<number | undefined> {
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(MAGIC, 0);
  const chunk = Buffer.alloc(SCAN_CHUNK_BYTES + 3);
  for (let start = from; start < size; start += SCAN_CHUNK_BYTES) {
    const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, size - start), start);
    let index = chunk.subarray(0, bytesRead).indexOf(magic);
    while (index !== -1) {
      if (await readRecordAt(handle, start + index, size)) return start + index;
      index = chunk.subarray(0, bytesRead).indexOf(magic, index + 1);
    }
  }
  return undefined;
}

function journalError(path: string, operation: string, error: unknown): KilnError {
  if (KilnError.is(error)) return error;
  const errno = (error as { code?: unknown } | null)?.code;
  const reason = errno === "ENOSPC" ? "the disk is full" : error instanceof Error ? error.message : String(error);
  return new KilnError("KILN_JOURNAL_FAILED", `Journal ${path}: ${operation} failed: ${reason}.`, {
    cause: error,
    retryable: true,
    details: { path, operation, ...(typeof errno === "string" ? { errno } : {}) },
  });
}
