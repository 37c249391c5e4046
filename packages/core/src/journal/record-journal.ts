import { mkdir, open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { crc32 } from "node:zlib";
import { KilnError, KilnValidationError } from "../domain/errors";
import { JournalLock } from "./journal-lock";

/**
 * `KJF1`, then the format version (both u32 little-endian): the first bytes of every journal file
 * written since format version 1, so a file of other data given as a journal path is refused, not
 * cut (issue 15). Files of earlier versions start with a record and are upgraded at open.
 */
const FILE_MAGIC = 0x4b4a4631;
const FILE_VERSION = 1;
/** Bytes of the file header: magic and version. */
export const JOURNAL_FILE_HEADER_BYTES = 8;
/** Most bytes of damaged stretches copied aside at one open (see {@link RecordJournalRecovery.damagedCopy}). */
export const JOURNAL_DAMAGED_COPY_MAX_BYTES = 4 * 1024 * 1024;
/** `KJR1`: marks the start of every record, so recovery can find the next one after a corrupt stretch. */
const MAGIC = 0x4b4a5231;
const HEADER_BYTES = 12;
const MAX_RECORD_BYTES = 256 * 1024 * 1024;
const SCAN_CHUNK_BYTES = 64 * 1024;
/** Set in a record's length field for a release mark; a payload length never reaches it. */
const MARK_FLAG = 0x8000_0000;
/** A release mark's payload: the file offset (u64) of the first record it does not release. */
const MARK_PAYLOAD_BYTES = 8;
/**
 * Releases after which a release writes a durable mark by itself, so at most this many minus one
 * released records are read back after a crash, whatever the owner does.
 */
export const JOURNAL_MARK_EVERY_RELEASES = 64;
/** Released bytes a release lets pile up before it compacts the file (once they also pass half of it). */
const COMPACT_AT_RELEASE_BYTES = 1024 * 1024;
/** Live bytes small enough to copy whenever an append needs the room released records take. */
const COMPACT_SMALL_LIVE_BYTES = 4 * 1024 * 1024;
const COPY_CHUNK_BYTES = 1024 * 1024;
/** Most record bytes one group-committed write takes; the rest of a batch follows in further writes. */
const GROUP_COMMIT_MAX_BYTES = 16 * 1024 * 1024;

/** The default size limit of a journal file: 1 GiB. */
export const DEFAULT_JOURNAL_MAX_BYTES = 1024 * 1024 * 1024;

/** Options of {@link RecordJournal.open}. */
export interface RecordJournalOptions {
  /**
   * Size limit of the file, in bytes. An append that would pass it first reclaims the room of
   * released records (compaction, see {@link RecordJournal}); when that is not enough it is
   * refused with `KILN_BUFFER_FULL` (nothing written), so the owner applies its overflow policy.
   * @default DEFAULT_JOURNAL_MAX_BYTES (1 GiB)
   */
  readonly maxBytes?: number;
  /**
   * The option the owner's user names this journal's path with (`spoolPath`,
   * `audit.backlog.path`, `storeAndForward.path`): messages say which to change, e.g. a locked
   * journal's. @default "journal path"
   */
  readonly pathOption?: string;
  /**
   * Called once when the journal's lock cannot be taken for a full disk (`ENOSPC`) and no live
   * process holds it: frees room the owner set aside (the audit writer's reserve), true when it
   * freed some; the lock is then tried again (see {@link JournalLock.acquire}). @default none
   */
  readonly makeRoom?: () => Promise<boolean>;
}

/** Options of {@link RecordJournal.release}. */
export interface RecordJournalReleaseOptions {
  /**
   * Resolve only once the release is durable: a release mark covering it (and every earlier
   * release) is written and fsynced, so a crash after this resolves never reads the record back.
   * Concurrent durable releases share one mark (one fsync). @default false
   */
  readonly durable?: boolean;
}

/** What {@link RecordJournal.open} found in an existing file. */
export interface RecordJournalRecovery {
  /** Complete, checksummed records found and not released: the records read back. */
  readonly records: number;
  /** Complete records found that a durable release mark had released: not read back. */
  readonly released: number;
  /**
   * Corrupt stretches skipped between good records after the last durable release mark (each
   * counted once, its bytes in `skippedBytes`). Damage among released records loses nothing and
   * is not counted.
   */
  readonly skippedRecords: number;
  /** Bytes of those corrupt stretches. */
  readonly skippedBytes: number;
  /** Bytes of a torn or corrupt tail that were cut off (0 for a clean file, and for a tail that is only a damaged mark). */
  readonly discardedBytes: number;
  /**
   * Torn or corrupt release marks: a skipped stretch or a cut-off tail that is one mark (its
   * header intact, the length field flagged as a mark's, no more bytes than a mark). Not counted
   * in `skippedRecords`, `skippedBytes` or `discardedBytes`: a damaged mark loses no record, at
   * most the releases it would have made durable are read back.
   */
  readonly discardedMarks: number;
  /**
   * Where the bytes of the corrupt stretches and the torn tail this open found were copied before
   * they were cut (forensic evidence, issue 15): `<path>.damaged-<UTC timestamp>`, holding for
   * each stretch `[u64 file offset][u32 length][bytes]` (little-endian), at most
   * {@link JOURNAL_DAMAGED_COPY_MAX_BYTES} of stretch bytes; `omittedBytes` counts the bytes past
   * that cap that were not copied. Absent when nothing was damaged (a damaged mark is not copied:
   * it holds no record) or when the copy could not be written (`error` then says why; the
   * recovery goes on, as the damaged bytes hold no readable record).
   */
  readonly damagedCopy?: {
    readonly path: string;
    readonly bytes: number;
    readonly omittedBytes: number;
    readonly error?: string;
  };
  /**
   * True when the file was written by an earlier version (no file header) and was rewritten with
   * one at this open (its live records copied, see {@link RecordJournal}).
   */
  readonly upgraded?: boolean;
}

interface RecordRef {
  readonly offset: number;
  readonly length: number;
}

/**
 * An append-only, crash-safe journal of opaque records on disk: the one mechanism behind every
 * durable backlog in Kiln (the sample spool, the audit backlog, Sparkplug store-and-forward).
 * Each record is `[u32 magic "KJR1"][u32 length][u32 crc32(length ‖ payload)][payload]`,
 * little-endian, and is fsynced before {@link append} resolves; appends queued behind one fsync
 * share the next (group commit, see {@link RecordJournal.append}).
 *
 * Nothing written is ever counted as durable unless it is: a failed write (a full disk, `ENOSPC`,
 * an I/O error) is cut back off the file and rejected with `KILN_JOURNAL_FAILED`. On open, a torn
 * tail (a crash mid-write) is cut off, and a corrupt stretch between good records is skipped and
 * counted, keeping every good record after it.
 *
 * Records are read back in order with {@link peek} and released with {@link release} once
 * handled. **Releases are made durable by release marks** (ADR 0034): a mark is a record of its
 * own (length field flagged, payload the offset of the first record still live), checksummed like
 * any other, so a torn mark is cut off like a torn record. A mark is written with the next append
 * (in the same write and fsync, when both fit under `maxBytes`), by a `release({ durable: true })` (group-committed), by every
 * {@link JOURNAL_MARK_EVERY_RELEASES}th release, and by {@link RecordJournal.close}. The guarantee: after a
 * crash, {@link RecordJournal.open} reads back every record not released, plus the records released after the
 * last durable mark: none released by a durable release, and at most
 * `JOURNAL_MARK_EVERY_RELEASES - 1` otherwise. At-least-once, never fewer.
 *
 * **Released bytes are reclaimed by compaction**: the live records are copied into
 * `<path>.compact`, fsynced, renamed over the file and the folder fsynced; a crash at any step
 * leaves either file whole (a leftover `<path>.compact` is deleted at open). A release compacts
 * once released bytes pass half the file (and 1 MiB); an append that would pass `maxBytes`
 * compacts when released bytes are at least a quarter of the file or the live records at most
 * 4 MiB (so a compaction never copies more than three bytes per byte it frees, except of small
 * files), and is refused only when the live records and the new one do not fit. When all are
 * released the file is truncated. An append that fails with `ENOSPC` while released records are held
 * compacts and is tried once more; compaction needs free space for the live records, so on a
 * volume with none left appends fail until the journal empties: keep `maxBytes` below the
 * volume's free space.
 */
export class RecordJournal {
  /** The journal file, as given to {@link RecordJournal.open}. */
  readonly path: string;
  /** Size limit in bytes. */
  readonly maxBytes: number;
  #file: FileHandle;
  readonly #lock: JournalLock;
  #records: RecordRef[];
  #head = 0;
  /** End of the file: every byte before it is a record, a mark or a skipped stretch. */
  #size: number;
  /** Bytes (headers included) of records not released. */
  #liveBytes: number;
  /** Releases since the last durable mark. */
  #unmarked = 0;
  #dirty = false;
  /** A compaction renamed the file but could not fsync its folder: the next write does it first. */
  #folderUnsynced = false;
  /** Released bytes below which a release does not try to compact again after a failed compaction. */
  #compactRetryAt = 0;
  /** A durable mark queued and not yet started, which a further durable release joins (group commit). */
  #markRequest: Promise<void> | undefined;
  /** Appends queued and not yet started, which a further append joins (group commit): one write, one fsync. */
  #appendBatch: { readonly payloads: Uint8Array[]; readonly run: Promise<(Error | undefined)[]> } | undefined;
  /** File operations run one at a time: a release that empties the file truncates it, which must not meet a write. */
  #exclusive: Promise<unknown> = Promise.resolve();
  /** Device and inode of the open file: an append checks that `path` still names it (issue 15). */
  #identity: { dev: number; ino: number };

  private constructor(
    path: string,
    file: FileHandle,
    lock: JournalLock,
    size: number,
    records: RecordRef[],
    maxBytes: number,
    identity: { dev: number; ino: number },
  ) {
    this.path = path;
    this.#file = file;
    this.#identity = identity;
    this.#lock = lock;
    this.#size = size;
    this.#records = records;
    this.#liveBytes = records.reduce((sum, record) => sum + HEADER_BYTES + record.length, 0);
    this.maxBytes = maxBytes;
  }

  /**
   * Opens (creating it and its folder if needed) the journal at `path`, takes its exclusive lock
   * (`<path>.lock`, see {@link JournalLock}: a journal has exactly one writer) and recovers it:
   * a leftover `<path>.compact` (a compaction cut off before its rename) is deleted, records
   * before the last durable release mark are skipped, a torn tail is cut off.
   * @throws KilnError `KILN_VALIDATION` for a bad `maxBytes`; `KILN_JOURNAL_LOCKED` (retryable)
   *   when another live journal, in this process or another on this host, has `path` open;
   *   `KILN_JOURNAL_FAILED` when the file cannot be opened or read.
   */
  static async open(
    path: string,
    options: RecordJournalOptions = {},
  ): Promise<{ journal: RecordJournal; recovery: RecordJournalRecovery }> {
    const maxBytes = options.maxBytes ?? DEFAULT_JOURNAL_MAX_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < JOURNAL_FILE_HEADER_BYTES + HEADER_BYTES + 2) {
      throw new KilnValidationError("journal options", [
        {
          path: "maxBytes",
          message: `must be an integer of at least ${JOURNAL_FILE_HEADER_BYTES + HEADER_BYTES + 2} bytes, not ${maxBytes}`,
        },
      ]);
    }
    try {
      await mkdir(dirname(path), { recursive: true });
    } catch (error) {
      throw journalError(path, "open", error);
    }
    const lock = await JournalLock.acquire(path, options.pathOption, options.makeRoom);
    let handle: FileHandle;
    try {
      // Only a compaction cut off before its rename leaves one; the journal itself is whole.
      await rm(compactionPath(path), { force: true });
      await (await open(path, "a+")).close();
      handle = await open(path, "r+");
    } catch (error) {
      await lock.release();
      throw journalError(path, "open", error);
    }
    let refusal: KilnError | undefined;
    try {
      const status = await handle.stat();
      const identity = { dev: status.dev, ino: status.ino };
      let size = status.size;
      const head = Buffer.alloc(JOURNAL_FILE_HEADER_BYTES);
      const { bytesRead } = await handle.read(head, 0, Math.min(size, JOURNAL_FILE_HEADER_BYTES), 0);
      const header = fileHeader();
      // Empty, or a header torn while the file was being created: nothing else was ever in it.
      if (size < JOURNAL_FILE_HEADER_BYTES && head.subarray(0, bytesRead).equals(header.subarray(0, bytesRead))) {
        await writeFully(handle, header, 0);
        await handle.truncate(JOURNAL_FILE_HEADER_BYTES);
        await handle.sync();
        size = JOURNAL_FILE_HEADER_BYTES;
        header.copy(head);
      }
      const legacy = head.readUInt32LE(0) !== FILE_MAGIC || size < JOURNAL_FILE_HEADER_BYTES;
      if (!legacy && head.readUInt32LE(4) !== FILE_VERSION) {
        refusal = formatError(
          path,
          `its file header names format version ${head.readUInt32LE(4)}, and this version of Kiln reads only version ${FILE_VERSION} (written by a newer Kiln?)`,
        );
        throw refusal;
      }
      const start = legacy ? 0 : JOURNAL_FILE_HEADER_BYTES;
      let items = 0;
      const found: RecordRef[] = [];
      const stretches: { end: number; bytes: number }[] = [];
      let releasedBefore = start;
      let offset = start;
      let end = start;
      while (offset < size) {
        const item = await readRecordAt(handle, offset, size);
        if (item !== undefined) {
          items++;
          if (offset > end) stretches.push({ end: offset, bytes: offset - end });
          // A mark never releases anything after itself (only a bug could write one that does): ignored.
          if (item.releasedBefore === undefined) found.push({ offset, length: item.length });
          else if (item.releasedBefore <= offset) releasedBefore = Math.max(releasedBefore, item.releasedBefore);
          offset += HEADER_BYTES + item.length;
          end = offset;
          continue;
        }
        const next = await findNextRecord(handle, offset + 1, size);
        if (next === undefined) break;
        offset = next;
      }
      if (legacy && items === 0) {
        // Not a journal: another file's data (a mistyped path, a symlink to the wrong file). Left untouched.
        refusal = formatError(
          path,
          `it holds ${size} bytes that are neither a journal file header nor any journal record (a file of other data, or a mistyped path?)`,
        );
        throw refusal;
      }
      const records = found.filter((record) => record.offset >= releasedBefore);
      let discardedMarks = 0;
      const damage: { end: number; bytes: number }[] = [];
      for (const stretch of stretches.filter((found) => found.end > releasedBefore)) {
        if (await isDamagedMark(handle, stretch.end - stretch.bytes, stretch.bytes)) discardedMarks++;
        else damage.push(stretch);
      }
      let discardedBytes = size - end;
      if (discardedBytes > 0 && (await isDamagedMark(handle, end, discardedBytes))) {
        discardedMarks++;
        discardedBytes = 0;
      }
      const damagedCopy = await copyDamaged(path, handle, [
        ...damage.map((stretch) => ({ offset: stretch.end - stretch.bytes, bytes: stretch.bytes })),
        ...(discardedBytes > 0 ? [{ offset: end, bytes: discardedBytes }] : []),
      ]);
      if (records.length === 0 && size > start) end = start;
      if (end < size && !legacy) {
        await handle.truncate(end);
        await handle.sync();
      }
      const journal = new RecordJournal(path, handle, lock, end, records, maxBytes, identity);
      // A file of an earlier version: its live records are copied behind a header (a compaction).
      if (legacy) await journal.#compact();
      return {
        journal,
        recovery: {
          records: records.length,
          released: found.length - records.length,
          skippedRecords: damage.length,
          skippedBytes: damage.reduce((sum, stretch) => sum + stretch.bytes, 0),
          discardedBytes,
          discardedMarks,
          ...(damagedCopy === undefined ? {} : { damagedCopy }),
          ...(legacy ? { upgraded: true } : {}),
        },
      };
    } catch (error) {
      await handle.close().catch(() => undefined);
      await lock.release();
      throw error === refusal ? error : journalError(path, "recover", error);
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

  /** Bytes the file holds now (released records and marks not yet compacted away included). */
  get bytes(): number {
    return this.#size;
  }

  /**
   * Appends one record and fsyncs it; when this resolves, the record survives a crash (and so do
   * the releases before it: a pending release mark is written in the same write).
   *
   * **Group commit**: appends called while another write is under way (or before their own has
   * started) are queued and written together, in call order, in one write and one fsync (a
   * batch's records beyond 16 MiB in further writes); each resolves only after that fsync, in call
   * order, and each is refused on its own (a record past the limit) or with every record of its
   * write (a failed write, which keeps none of them). Records are read back in call order.
   * @throws KilnError `KILN_BUFFER_FULL` (not retryable; nothing written) when the record would
   *   pass `maxBytes` even after compaction; `KILN_JOURNAL_FAILED` (retryable; nothing kept) when
   *   writing or syncing fails, e.g. `ENOSPC` on a full disk (`details.errno`).
   */
  append(payload: Uint8Array): Promise<void> {
    let batch = this.#appendBatch;
    if (batch === undefined) {
      const payloads: Uint8Array[] = [];
      const run = this.#serialized(() => {
        // From here on, a further append starts the next batch (behind this one's fsync).
        this.#appendBatch = undefined;
        return this.#appendAll(payloads);
      });
      batch = this.#appendBatch = { payloads, run };
    }
    const index = batch.payloads.push(payload) - 1;
    return batch.run.then((errors) => {
      const error = errors[index];
      if (error !== undefined) throw error;
    });
  }

  /**
   * Appends a batch in order (group commit): the records that fit are written together, with a
   * pending release mark in front, in one write and one fsync; at the size limit the records
   * before the one that does not fit are written first and that one is handled alone (compaction,
   * or `KILN_BUFFER_FULL` for it only). Resolves with each record's error (undefined: durable);
   * never rejects.
   */
  async #appendAll(payloads: readonly Uint8Array[]): Promise<(Error | undefined)[]> {
    const errors: (Error | undefined)[] = payloads.map(() => undefined);
    let group: { index: number; record: Buffer }[] = [];
    let groupBytes = 0;
    const flush = async (): Promise<void> => {
      if (group.length === 0) return;
      const taken = group;
      group = [];
      groupBytes = 0;
      try {
        await this.#writeRecords(taken.map((entry) => entry.record));
      } catch (error) {
        for (const entry of taken) errors[entry.index] = error as Error;
      }
    };
    for (let index = 0; index < payloads.length; index++) {
      const payload = payloads[index]!;
      if (payload.length === 0 || payload.length > MAX_RECORD_BYTES) {
        errors[index] = new RangeError(`A journal record holds 1 to ${MAX_RECORD_BYTES} bytes, not ${payload.length}.`);
        continue;
      }
      const record = encodeRecord(payload);
      const fits = this.#size + groupBytes + record.length <= this.maxBytes;
      if (!fits || groupBytes + record.length > GROUP_COMMIT_MAX_BYTES) {
        // Written first, so a compaction for this record copies them and a refusal concerns it alone.
        await flush();
        if (!fits) {
          try {
            await this.#makeRoom(record.length);
          } catch (error) {
            errors[index] = error as Error;
            continue;
          }
        }
      }
      group.push({ index, record });
      groupBytes += record.length;
    }
    await flush();
    return errors;
  }

  /**
   * Room for a record of `recordBytes` past the records written: compacts when that is worth it.
   * @throws KilnError `KILN_BUFFER_FULL` when it does not fit even so; `KILN_JOURNAL_FAILED` when
   *   the compaction fails.
   */
  async #makeRoom(recordBytes: number): Promise<void> {
    if (this.#size + recordBytes > this.maxBytes && this.#worthCompacting(recordBytes)) {
      try {
        await this.#compact();
      } catch (error) {
        throw journalError(this.path, "append", error);
      }
    }
    if (this.#size + recordBytes > this.maxBytes) {
      throw new KilnError(
        "KILN_BUFFER_FULL",
        `Journal ${this.path} is full: ${this.#size} of ${this.maxBytes} bytes used ` +
          `(${this.#liveBytes} by unreleased records), ${recordBytes} more needed.`,
        {
          details: {
            path: this.path,
            bytes: this.#size,
            liveBytes: this.#liveBytes,
            maxBytes: this.maxBytes,
            recordBytes,
          },
        },
      );
    }
  }

  /**
   * Writes encoded records (which fit under `maxBytes`) at the end in one write and one fsync,
   * releases not yet marked riding along in front when there is room; then they count. On
   * failure none of them is kept.
   */
  async #writeRecords(records: readonly Buffer[]): Promise<void> {
    const total = records.reduce((sum, record) => sum + record.length, 0);
    const encode = (): { bytes: Buffer; markBytes: number } => {
      const mark = this.#pendingMark();
      const withMark = mark !== undefined && this.#size + mark.length + total <= this.maxBytes;
      return withMark
        ? { bytes: Buffer.concat([mark, ...records]), markBytes: mark.length }
        : { bytes: records.length === 1 ? records[0]! : Buffer.concat(records), markBytes: 0 };
    };
    let { bytes, markBytes } = encode();
    try {
      await this.#write(bytes, "append");
    } catch (error) {
      // A full disk: released records may hold the room. A compaction needs only the live bytes
      // free (its copy is written before the old file goes), so with a small live tail it fits;
      // then the append is tried once more. Otherwise the first error stands.
      if (!KilnError.is(error) || error.details["errno"] !== "ENOSPC" || this.#size <= this.#liveBytes) throw error;
      try {
        await this.#compact();
      } catch {
        throw error;
      }
      ({ bytes, markBytes } = encode());
      await this.#write(bytes, "append");
    }
    const previous = { size: this.#size, unmarked: this.#unmarked, records: this.#records.length };
    if (markBytes > 0) this.#unmarked = 0;
    let offset = this.#size + markBytes;
    for (const record of records) {
      this.#records.push({ offset, length: record.length - HEADER_BYTES });
      offset += record.length;
    }
    this.#size += bytes.length;
    this.#liveBytes += total;
    try {
      await this.#checkStillAtPath();
    } catch (error) {
      // Not durable where the journal will be read back: the records are taken back off.
      this.#records.splice(previous.records);
      this.#size = previous.size;
      this.#unmarked = previous.unmarked;
      this.#liveBytes -= total;
      this.#dirty = true;
      await this.#cutBack().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Checks that `path` still names the open file (one `stat`, compared by device and inode): a
   * file deleted or renamed away while open takes writes that no later open reads back (issue 15).
   * When nothing is at `path`, the journal is made again there: the live records (read through
   * the open file, which still holds them) are copied into a new file renamed to `path`, as a
   * compaction does. When another file is there it is left alone and the append fails.
   * @throws KilnError `KILN_JOURNAL_FAILED` (`details.rule: "replaced"`) when `path` names another
   *   file or the journal cannot be made again.
   */
  async #checkStillAtPath(): Promise<void> {
    let found: { dev: number; ino: number } | undefined;
    try {
      found = await stat(this.path);
    } catch (error) {
      if ((error as { code?: unknown }).code !== "ENOENT") throw journalError(this.path, "append", error);
    }
    if (found !== undefined && found.dev === this.#identity.dev && found.ino === this.#identity.ino) return;
    if (found === undefined) {
      try {
        await this.#compact();
        return;
      } catch (error) {
        throw replacedError(this.path, "was deleted while open and could not be made again", error);
      }
    }
    throw replacedError(
      this.path,
      "now names another file (the journal file was replaced while open); that file is left untouched",
    );
  }

  /**
   * The payload of the oldest unreleased record, or of the one `position` records after it (`0`,
   * the default, is the oldest; {@link release} takes them in this order), or undefined when there
   * is none. Repeated calls return the same record while nothing is released.
   * @param position a whole number of records after the oldest. @default 0
   */
  async peek(position = 0): Promise<Buffer | undefined> {
    const next = Number.isInteger(position) && position >= 0 ? this.#records[this.#head + position] : undefined;
    if (next === undefined) return undefined;
    const payload = Buffer.alloc(next.length);
    try {
      // Started in this turn with the handle of this turn: a compaction swapping the file waits for it.
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
  scan(visit: (payload: Buffer) => void): Promise<void> {
    return this.#serialized(async () => {
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
    });
  }

  /**
   * Releases the oldest unreleased record (the one {@link peek} returns). In memory at once; made
   * durable by the next release mark (see {@link RecordJournal}), or before this resolves with
   * `durable: true`. Truncates the file once all are released; compacts it once released bytes
   * pass half of it.
   * @throws KilnError `KILN_JOURNAL_FAILED` (retryable) only with `durable: true`, when the mark
   *   cannot be written: the record stays released here, but may be read back after a crash.
   */
  release(options: RecordJournalReleaseOptions = {}): Promise<void> {
    const released = this.#serialized(() => this.#release());
    return options.durable === true ? released.then(() => this.#requestMark()) : released;
  }

  async #release(): Promise<void> {
    const released = this.#records[this.#head];
    if (released === undefined) return;
    this.#head++;
    this.#unmarked++;
    this.#liveBytes -= HEADER_BYTES + released.length;
    if (this.#head === this.#records.length) {
      this.#records = [];
      this.#head = 0;
      this.#size = JOURNAL_FILE_HEADER_BYTES;
      this.#liveBytes = 0;
      this.#dirty = true;
      // A failed truncation stays dirty: a durable release (or the next write) truncates again first.
      await this.#cutBack().catch(() => undefined);
      if (!this.#dirty) this.#unmarked = 0;
      return;
    }
    const releasedBytes = this.#size - this.#liveBytes;
    if (
      releasedBytes >= COMPACT_AT_RELEASE_BYTES &&
      releasedBytes > this.#liveBytes &&
      releasedBytes >= this.#compactRetryAt
    ) {
      try {
        await this.#compact();
        return;
      } catch {
        // Tried again once twice as much is released; the journal itself is unchanged.
        this.#compactRetryAt = releasedBytes * 2;
      }
    }
    if (this.#unmarked >= JOURNAL_MARK_EVERY_RELEASES) await this.#writeMark().catch(() => undefined);
    if (this.#head > 1024 && this.#head * 2 > this.#records.length) {
      this.#records.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** Closes the file and releases its lock. Releases are marked first; unreleased records stay on disk for the next open. */
  async close(): Promise<void> {
    try {
      await this.#serialized(() => this.#writeMark()).catch(() => undefined);
      await this.#file.close();
    } finally {
      await this.#lock.release();
    }
  }

  #serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#exclusive.then(work);
    this.#exclusive = run.catch(() => undefined);
    return run;
  }

  /** The mark queued and not yet started, else a new one: every durable release before it starts shares its fsync. */
  #requestMark(): Promise<void> {
    this.#markRequest ??= this.#serialized(async () => {
      this.#markRequest = undefined;
      await this.#writeMark();
    });
    return this.#markRequest;
  }

  /** A mark of the releases not yet marked, or undefined when there are none (or nothing is left to mark). */
  #pendingMark(): Buffer | undefined {
    const first = this.#records[this.#head];
    if (this.#unmarked === 0 || first === undefined) return undefined;
    const payload = Buffer.alloc(MARK_PAYLOAD_BYTES);
    payload.writeBigUInt64LE(BigInt(first.offset));
    return encodeRecord(payload, MARK_FLAG);
  }

  /** Makes every release so far durable: a mark written and fsynced (or a compaction, at the size limit). */
  async #writeMark(): Promise<void> {
    if (this.#dirty) {
      try {
        await this.#cutBack();
      } catch (error) {
        throw journalError(this.path, "release", error);
      }
    }
    const mark = this.#pendingMark();
    if (mark === undefined) {
      this.#unmarked = 0;
      return;
    }
    if (this.#size + mark.length > this.maxBytes) {
      try {
        await this.#compact();
      } catch (error) {
        throw journalError(this.path, "release", error);
      }
      return;
    }
    await this.#write(mark, "release");
    this.#size += mark.length;
    this.#unmarked = 0;
  }

  /** Writes `bytes` at the end and fsyncs them; on failure cuts them back off and rejects with `KILN_JOURNAL_FAILED`. */
  async #write(bytes: Buffer, operation: string): Promise<void> {
    try {
      if (this.#dirty) await this.#cutBack();
      this.#dirty = true;
      await writeFully(this.#file, bytes, this.#size);
      await this.#file.datasync();
      // After a compaction whose folder sync failed, a write is durable only once the rename is.
      if (this.#folderUnsynced) {
        await syncFolder(this.path);
        this.#folderUnsynced = false;
      }
      this.#dirty = false;
    } catch (error) {
      // Whatever reached the file is cut off again, so it can never be read back as a record.
      await this.#cutBack().catch(() => undefined);
      throw journalError(this.path, operation, error);
    }
  }

  /**
   * Whether an append of `needed` bytes past `maxBytes` should compact first: it must then fit,
   * and the copy must be worth it (released bytes at least a quarter of the file, or a small live tail).
   */
  #worthCompacting(needed: number): boolean {
    const releasedBytes = this.#size - this.#liveBytes;
    return (
      releasedBytes > 0 &&
      this.#liveBytes + needed <= this.maxBytes &&
      (releasedBytes * 4 >= this.#size || this.#liveBytes <= COMPACT_SMALL_LIVE_BYTES)
    );
  }

  /**
   * Rewrites the file with only the unreleased records: copied into `<path>.compact`, fsynced,
   * renamed over the file, the folder fsynced. A crash before the rename leaves the old file whole
   * (with its marks) and the copy is deleted at the next open; after it, the new file holds only
   * live records. The new file's handle is the one written, so no write can reach the old file.
   */
  async #compact(): Promise<void> {
    if (this.#dirty) await this.#cutBack();
    const temporary = compactionPath(this.path);
    const target = await open(temporary, "w+");
    const live = this.#records.slice(this.#head);
    const moved: RecordRef[] = [];
    let size = JOURNAL_FILE_HEADER_BYTES;
    let identity: { dev: number; ino: number };
    try {
      await writeFully(target, fileHeader(), 0);
      for (let first = 0; first < live.length;) {
        // A run of records with no mark between them is copied in one go.
        let last = first;
        const start = live[first]!.offset;
        let end = start + HEADER_BYTES + live[first]!.length;
        while (last + 1 < live.length && live[last + 1]!.offset === end) {
          last++;
          end += HEADER_BYTES + live[last]!.length;
        }
        await copyRange(this.#file, target, start, end, size);
        for (let index = first; index <= last; index++) {
          moved.push({ offset: live[index]!.offset - start + size, length: live[index]!.length });
        }
        size += end - start;
        first = last + 1;
      }
      await target.sync();
      const status = await target.stat();
      identity = { dev: status.dev, ino: status.ino };
      await rename(temporary, this.path);
    } catch (error) {
      await target.close().catch(() => undefined);
      await rm(temporary, { force: true }).catch(() => undefined);
      throw error;
    }
    const old = this.#file;
    this.#file = target;
    this.#records = moved;
    this.#head = 0;
    this.#identity = identity;
    this.#size = size;
    this.#liveBytes = size - JOURNAL_FILE_HEADER_BYTES;
    this.#unmarked = 0;
    this.#compactRetryAt = 0;
    // Waits for reads still under way on the old file (a peek), then lets it go.
    await old.close().catch(() => undefined);
    try {
      await syncFolder(this.path);
    } catch {
      this.#folderUnsynced = true;
    }
  }

  async #cutBack(): Promise<void> {
    await this.#file.truncate(this.#size);
    await this.#file.datasync();
    this.#dirty = false;
  }
}

function fileHeader(): Buffer {
  const header = Buffer.alloc(JOURNAL_FILE_HEADER_BYTES);
  header.writeUInt32LE(FILE_MAGIC, 0);
  header.writeUInt32LE(FILE_VERSION, 4);
  return header;
}

/**
 * Copies the damaged `stretches` of the journal at `path` into `<path>.damaged-<timestamp>`
 * before they are cut (see {@link RecordJournalRecovery.damagedCopy}); undefined when there are none.
 */
async function copyDamaged(
  path: string,
  handle: FileHandle,
  stretches: readonly { offset: number; bytes: number }[],
): Promise<RecordJournalRecovery["damagedCopy"]> {
  if (stretches.length === 0) return undefined;
  const aside = `${path}.damaged-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  let copied = 0;
  let omitted = 0;
  let target: FileHandle | undefined;
  try {
    target = await open(aside, "wx");
    let position = 0;
    for (const stretch of stretches) {
      const bytes = Math.min(stretch.bytes, JOURNAL_DAMAGED_COPY_MAX_BYTES - copied);
      omitted += stretch.bytes - bytes;
      if (bytes <= 0) continue;
      const prefix = Buffer.alloc(12);
      prefix.writeBigUInt64LE(BigInt(stretch.offset), 0);
      prefix.writeUInt32LE(bytes, 8);
      await writeFully(target, prefix, position);
      await copyRange(handle, target, stretch.offset, stretch.offset + bytes, position + prefix.length);
      position += prefix.length + bytes;
      copied += bytes;
    }
    await target.sync();
    await target.close();
    await syncFolder(path).catch(() => undefined);
    return { path: aside, bytes: copied, omittedBytes: omitted };
  } catch (error) {
    await target?.close().catch(() => undefined);
    const total = stretches.reduce((sum, stretch) => sum + stretch.bytes, 0);
    return {
      path: aside,
      bytes: 0,
      omittedBytes: total,
      error: error instanceof Error ? error.message : String(error),
    };
  }
}

function compactionPath(path: string): string {
  return `${path}.compact`;
}

/** Fsyncs the folder holding `path`, so a rename in it survives a power loss. */
async function syncFolder(path: string): Promise<void> {
  const folder = await open(dirname(path), "r");
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

/** Copies bytes `[start, end)` of `source` to `target` at `position`. */
async function copyRange(
  source: FileHandle,
  target: FileHandle,
  start: number,
  end: number,
  position: number,
): Promise<void> {
  const chunk = Buffer.alloc(Math.min(COPY_CHUNK_BYTES, end - start));
  for (let offset = start; offset < end;) {
    const length = Math.min(chunk.length, end - offset);
    const { bytesRead } = await source.read(chunk, 0, length, offset);
    if (bytesRead !== length) throw new Error(`short read at ${offset} while compacting`);
    await writeFully(target, chunk.subarray(0, length), position + offset - start);
    offset += length;
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

/** A record: `flags` is {@link MARK_FLAG} for a release mark, 0 for a payload. */
function encodeRecord(payload: Uint8Array, flags = 0): Buffer {
  const record = Buffer.alloc(HEADER_BYTES + payload.length);
  record.writeUInt32LE(MAGIC, 0);
  record.writeUInt32LE((payload.length | flags) >>> 0, 4);
  record.set(payload, HEADER_BYTES);
  record.writeUInt32LE(checksum(record.subarray(4, 8), payload), 8);
  return record;
}

/**
 * The payload length of a complete, checksummed record at `offset` (and, for a release mark, the
 * offset before which it releases every record), or undefined.
 */
async function readRecordAt(
  handle: FileHandle,
  offset: number,
  size: number,
): Promise<{ length: number; releasedBefore?: number } | undefined> {
  if (offset + HEADER_BYTES > size) return undefined;
  const header = Buffer.alloc(HEADER_BYTES);
  await handle.read(header, 0, HEADER_BYTES, offset);
  if (header.readUInt32LE(0) !== MAGIC) return undefined;
  const field = header.readUInt32LE(4);
  const mark = (field & MARK_FLAG) !== 0;
  const length = mark ? field & ~MARK_FLAG : field;
  if (mark && length !== MARK_PAYLOAD_BYTES) return undefined;
  if (length === 0 || length > MAX_RECORD_BYTES || offset + HEADER_BYTES + length > size) return undefined;
  const payload = Buffer.alloc(length);
  await handle.read(payload, 0, length, offset + HEADER_BYTES);
  if (checksum(header.subarray(4, 8), payload) !== header.readUInt32LE(8)) return undefined;
  return mark ? { length, releasedBefore: Number(payload.readBigUInt64LE(0)) } : { length };
}

/**
 * Whether the `bytes` at `offset` that are not a good record are a damaged release mark: a mark's
 * header start (magic, a length field flagged as a mark of {@link MARK_PAYLOAD_BYTES}) and no
 * more bytes than a mark holds. A tail torn inside the length field cannot be told from a record.
 */
async function isDamagedMark(handle: FileHandle, offset: number, bytes: number): Promise<boolean> {
  if (bytes < 8 || bytes > HEADER_BYTES + MARK_PAYLOAD_BYTES) return false;
  const header = Buffer.alloc(8);
  await handle.read(header, 0, 8, offset);
  return header.readUInt32LE(0) === MAGIC && header.readUInt32LE(4) === (MARK_FLAG | MARK_PAYLOAD_BYTES) >>> 0;
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

/** A file at a journal path that is not a journal Kiln can read: refused, left untouched. */
function formatError(path: string, reason: string): KilnError {
  return new KilnError(
    "KILN_JOURNAL_FAILED",
    `Journal ${path} is not a Kiln journal file and was left untouched: ${reason}. ` +
      `Check the journal path option; move the file away to start a new journal there.`,
    { retryable: false, details: { path, operation: "open", rule: "format" } },
  );
}

function replacedError(path: string, reason: string, cause?: unknown): KilnError {
  return new KilnError("KILN_JOURNAL_FAILED", `Journal ${path}: append failed: the path ${reason}.`, {
    retryable: true,
    ...(cause === undefined ? {} : { cause }),
    details: { path, operation: "append", rule: "replaced" },
  });
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
