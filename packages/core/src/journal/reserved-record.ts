import { open, rm, statfs, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { crc32 } from "node:zlib";
import { KilnError } from "../domain/errors";

/** Options of {@link ReservedRecord.open}. */
export interface ReservedRecordOptions {
  /**
   * Free space, in bytes, that must remain on the volume after the room is reserved: when the
   * volume (`statfs`, blocks available to this user) has less than the missing room plus this,
   * the room is not taken and the open fails with `ENOSPC`, so the reserve never takes the last
   * space a journal beside it needs (issue 15). 0 skips the check. @default 0
   */
  readonly headroomBytes?: number;
}

/** `KRR1`: marks a slot that holds a record. */
const MAGIC = 0x4b525231;
/** `[u32 magic][u32 sequence][u32 length][u32 crc32(sequence ‖ length ‖ payload)]`. */
const SLOT_HEADER_BYTES = 16;

/**
 * One small record kept in a file whose room is reserved when it is opened, and overwritten in
 * place afterwards: the audit writer's last resort on a full disk (IEC 62443-3-3 CR 2.9,
 * issue 15). The file holds two slots of `slotBytes` each, written zero-filled and fsynced at
 * open, so a later {@link write} only overwrites blocks the file already owns and needs no free
 * space on file systems that update in place (ext4, xfs, tmpfs). A copy-on-write file system
 * (btrfs, ZFS) may still need free blocks for an overwrite: there a write can fail with
 * `ENOSPC`, which the owner reports.
 *
 * A write goes to the slot not holding the newest record, with a sequence number one higher,
 * and is fsynced before it resolves; a torn write damages only that slot, so {@link read} returns
 * the newest whole record, never a mix. Exactly one writer: the owner opens it only under the
 * lock of the journal it belongs to.
 */
export class ReservedRecord {
  /** The file. */
  readonly path: string;
  /** Most payload bytes a record holds. */
  readonly capacity: number;
  readonly #file: FileHandle;
  readonly #slotBytes: number;
  #sequence: number;
  #latest: Buffer | undefined;
  #exclusive: Promise<unknown> = Promise.resolve();

  private constructor(path: string, file: FileHandle, slotBytes: number, sequence: number, latest?: Buffer) {
    this.path = path;
    this.#file = file;
    this.#slotBytes = slotBytes;
    this.capacity = slotBytes - SLOT_HEADER_BYTES;
    this.#sequence = sequence;
    this.#latest = latest;
  }

  /**
   * Opens (creating it) the file at `path` and reserves its room: both slots are written in full
   * (zero-filled where no record is) and fsynced. Reads the newest whole record. A reservation
   * that fails (a disk that fills while it is written) is cut back to the size the file had, and
   * a file this open created is removed: a failed open never holds room it could not complete.
   * @throws KilnError `KILN_JOURNAL_FAILED` (retryable, `details.path`, `details.errno`) when the
   *   file cannot be opened, read or its room reserved (`ENOSPC` on a full disk, or when less than
   *   the room plus `headroomBytes` is free).
   */
  static async open(path: string, slotBytes: number, options: ReservedRecordOptions = {}): Promise<ReservedRecord> {
    let file: FileHandle | undefined;
    let created = false;
    try {
      try {
        file = await open(path, "wx");
        created = true;
      } catch (error) {
        if ((error as { code?: unknown }).code !== "EEXIST") throw error;
        file = await open(path, "a+");
      }
      await file.close();
      file = await open(path, "r+");
      const { size } = await file.stat();
      const best = await newestRecord(file, slotBytes, size);
      if (size < 2 * slotBytes) {
        const missing = 2 * slotBytes - size;
        const headroom = options.headroomBytes ?? 0;
        if (headroom > 0) {
          const volume = await statfs(dirname(path));
          const free = volume.bavail * volume.bsize;
          if (free < missing + headroom) {
            throw Object.assign(
              new Error(
                `the disk is full: ${free} bytes free, and the reserve takes ${missing} only while ${headroom} more stay free for the journal`,
              ),
              { code: "ENOSPC" },
            );
          }
        }
        // Reserve the room now, while there is some: the bytes past the end are written out as zeros.
        try {
          await writeFully(file, Buffer.alloc(missing), size);
          await file.sync();
        } catch (error) {
          // Never hold room that could not be completed: the journal beside it needs it.
          await file.truncate(size).catch(() => undefined);
          await file.sync().catch(() => undefined);
          throw error;
        }
      }
      return new ReservedRecord(path, file, slotBytes, best?.sequence ?? 0, best?.payload);
    } catch (error) {
      await file?.close().catch(() => undefined);
      if (created) await rm(path, { force: true }).catch(() => undefined);
      throw reservedError(path, "open", error);
    }
  }

  /**
   * Gives back the room of the file at `path` that does not hold its newest record, whichever slot
   * holds it: a newest record in the second slot is first copied over the first (in place, on
   * bytes the file already owns, with the next sequence number, fsynced), then everything past
   * the first slot's record is cut off. The newest record stays whole at every step (a crash
   * mid-copy leaves the second slot's record the newest) and is read back by {@link open}, which
   * reserves the room again when the volume has it. So at least one slot's room (`slotBytes`
   * less the record) is freed, whatever the record holds. For a full disk on which the journal's
   * lock cannot be taken (issue 15). Only under no live lock of that journal.
   * @returns true when bytes were freed; false when there is no such file, nothing to free, or
   *   the copy could not be written (a copy-on-write file system with no free block).
   */
  static async shrink(path: string, slotBytes: number): Promise<boolean> {
    let file: FileHandle;
    try {
      file = await open(path, "r+");
    } catch {
      return false;
    }
    try {
      const { size } = await file.stat();
      let best = await newestRecord(file, slotBytes, size);
      if (best !== undefined && best.slot === 1) {
        // The slot a sequence number goes to is its parity (see write): one more puts it in the first.
        const sequence = best.sequence + 1;
        try {
          await writeFully(file, encodeSlot(sequence, best.payload), 0);
          await file.sync();
        } catch {
          return false;
        }
        best = { slot: 0, sequence, payload: best.payload };
      }
      const keep = best === undefined ? 0 : SLOT_HEADER_BYTES + best.payload.length;
      if (keep >= size) return false;
      await file.truncate(keep);
      await file.sync();
      return true;
    } finally {
      await file.close();
    }
  }

  /**
   * Reads the newest whole record of the file at `path` without opening it for writing, reserving
   * room or changing anything: what a reserve holds can be known when {@link open} fails (a disk
   * still full after a crash, where the reserve gave back its room for the journal's lock).
   * @returns the payload, or undefined when there is no such file or no whole record in it.
   * @throws KilnError `KILN_JOURNAL_FAILED` (retryable, `details.path`, `details.errno`) when the
   *   file exists but cannot be read.
   */
  static async peek(path: string, slotBytes: number): Promise<Buffer | undefined> {
    let file: FileHandle;
    try {
      file = await open(path, "r");
    } catch (error) {
      if ((error as { code?: unknown }).code === "ENOENT") return undefined;
      throw reservedError(path, "read", error);
    }
    try {
      const { size } = await file.stat();
      const best = await newestRecord(file, slotBytes, size);
      return best?.payload;
    } catch (error) {
      throw reservedError(path, "read", error);
    } finally {
      await file.close();
    }
  }

  /** The newest record's payload, or undefined when none was written. */
  read(): Buffer | undefined {
    return this.#latest;
  }

  /**
   * Overwrites the older slot with `payload` and fsyncs it; when this resolves the record
   * survives a crash.
   * @throws RangeError when `payload` is larger than {@link capacity}; KilnError
   *   `KILN_JOURNAL_FAILED` (retryable, `details.errno`) when writing or syncing fails: the newest
   *   record before it is still whole.
   */
  write(payload: Uint8Array): Promise<void> {
    if (payload.length > this.capacity) {
      throw new RangeError(`A reserved record holds at most ${this.capacity} bytes, not ${payload.length}.`);
    }
    const run = this.#exclusive.then(async () => {
      const sequence = this.#sequence + 1;
      const slot = encodeSlot(sequence, payload);
      try {
        await writeFully(this.#file, slot, (sequence % 2) * this.#slotBytes);
        await this.#file.datasync();
      } catch (error) {
        throw reservedError(this.path, "write", error);
      }
      this.#sequence = sequence;
      this.#latest = Buffer.from(payload);
    });
    this.#exclusive = run.catch(() => undefined);
    return run;
  }

  /** Closes the file (the records stay). */
  async close(): Promise<void> {
    await this.#exclusive;
    await this.#file.close();
  }
}

/** A slot's bytes: its header (magic, sequence, length, checksum) and `payload`. */
function encodeSlot(sequence: number, payload: Uint8Array): Buffer {
  const slot = Buffer.alloc(SLOT_HEADER_BYTES + payload.length);
  slot.writeUInt32LE(MAGIC, 0);
  slot.writeUInt32LE(sequence >>> 0, 4);
  slot.writeUInt32LE(payload.length, 8);
  slot.set(payload, SLOT_HEADER_BYTES);
  slot.writeUInt32LE(crc32(payload, crc32(slot.subarray(4, 12))), 12);
  return slot;
}

/** The newest whole record of the two slots, with the slot holding it; undefined when neither holds one. */
async function newestRecord(
  file: FileHandle,
  slotBytes: number,
  size: number,
): Promise<{ slot: number; sequence: number; payload: Buffer } | undefined> {
  let best: { slot: number; sequence: number; payload: Buffer } | undefined;
  for (let slot = 0; slot < 2; slot++) {
    const found = await readSlot(file, slot * slotBytes, slotBytes, size);
    if (found !== undefined && (best === undefined || found.sequence > best.sequence)) best = { slot, ...found };
  }
  return best;
}

async function readSlot(
  file: FileHandle,
  offset: number,
  slotBytes: number,
  size: number,
): Promise<{ sequence: number; payload: Buffer } | undefined> {
  if (offset + SLOT_HEADER_BYTES > size) return undefined;
  const header = Buffer.alloc(SLOT_HEADER_BYTES);
  await file.read(header, 0, SLOT_HEADER_BYTES, offset);
  if (header.readUInt32LE(0) !== MAGIC) return undefined;
  const length = header.readUInt32LE(8);
  if (length > slotBytes - SLOT_HEADER_BYTES || offset + SLOT_HEADER_BYTES + length > size) return undefined;
  const payload = Buffer.alloc(length);
  await file.read(payload, 0, length, offset + SLOT_HEADER_BYTES);
  if (crc32(payload, crc32(header.subarray(4, 12))) !== header.readUInt32LE(12)) return undefined;
  return { sequence: header.readUInt32LE(4), payload };
}

async function writeFully(file: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let written = 0; written < data.length;) {
    const { bytesWritten } = await file.write(data, written, data.length - written, position + written);
    if (bytesWritten === 0) throw Object.assign(new Error("write made no progress"), { code: "ENOSPC" });
    written += bytesWritten;
  }
}

function reservedError(path: string, operation: string, error: unknown): KilnError {
  if (KilnError.is(error)) return error;
  const errno = (error as { code?: unknown } | null)?.code;
  const reason =
    errno === "ENOSPC" && !(error instanceof Error && error.message.startsWith("the disk is full"))
      ? "the disk is full"
      : error instanceof Error
        ? error.message
        : String(error);
  return new KilnError("KILN_JOURNAL_FAILED", `Reserved record ${path}: ${operation} failed: ${reason}.`, {
    cause: error,
    retryable: true,
    details: { path, operation, ...(typeof errno === "string" ? { errno } : {}) },
  });
}
