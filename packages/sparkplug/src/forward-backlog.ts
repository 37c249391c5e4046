import { KilnError, RecordJournal, type RecordJournalRecovery } from "@kiln/core/driver-kit";
import { decodePayload } from "./payload";

/**
 * Where a record was published while its edge node awaits host acknowledgements (ADR 0037): the
 * birth epoch it was published in and the number of its DDATA message in the session.
 */
export interface SentMark {
  readonly epoch: number;
  readonly message: number;
}

/** What the backlog knows of one record without reading it again. */
interface RecordInfo {
  /** Monotonic id, so a release can tell that the record it published is still the oldest. */
  readonly id: number;
  readonly samples: number;
  /** The oldest sample's timestamp (ms since the epoch), or undefined when the record has none. */
  readonly oldest: number | undefined;
  readonly bytes: number;
  /** The payload, kept in memory while the node awaits acknowledgements (records leave the journal out of order of sending). */
  readonly payload?: Uint8Array;
  /** Set once published in an epoch; a record whose mark is of an older epoch is to be sent again. */
  sent?: SentMark;
  /**
   * Set once an acknowledgement covered it: never sent again, released when every record before
   * it is (the journal releases oldest first; a record sent later under a higher message number
   * can stand before it).
   */
  acked?: true;
}

/** The oldest record of a backlog, as read for replay. */
export interface BacklogRecord {
  readonly id: number;
  readonly samples: number;
  readonly bytes: Uint8Array;
}

/**
 * The store-and-forward backlog of an edge node: records (each an encoded Sparkplug payload of
 * historical metrics, one flush's changes) in time order, bounded by bytes and samples.
 * Internal. Appends may be under way together (the journal writes those queued behind one fsync
 * in the next); a record counts (in `records`, `samples`, `bytes`) once its append resolved, and
 * appends resolve in call order. The edge node serializes every other call but releases by
 * acknowledgement.
 */
export interface ForwardBacklog {
  readonly durable: boolean;
  readonly records: number;
  readonly samples: number;
  readonly bytes: number;
  readonly oldestTimestamp: number | undefined;
  /** Appends a record. @throws KilnError `KILN_BUFFER_FULL` past the byte limit (nothing kept); `KILN_JOURNAL_FAILED`. */
  append(bytes: Uint8Array, samples: number, oldest: number | undefined): Promise<void>;
  /** The oldest record whose id is greater than `after` (the oldest of all without it), or undefined. */
  peekAfter(after?: number): Promise<BacklogRecord | undefined>;
  /**
   * Releases the oldest records while their id is at most `through` (records are released oldest
   * first; one already dropped is skipped), the last durably; returns the ids released.
   */
  releaseThrough(through: number): Promise<number[]>;
  /** Drops the oldest record; returns its sample count, or undefined when empty. */
  dropOldest(): Promise<number | undefined>;
  /**
   * The oldest record's id, whether it was published (a sent mark, in any epoch) and whether a
   * host acknowledged it, or undefined when empty.
   */
  oldestRecord(): { readonly id: number; readonly sent: boolean; readonly acked: boolean } | undefined;
  close(): Promise<void>;
  // ---- while awaiting host acknowledgements (ADR 0037; payloads kept in memory) ----
  /** Appends a record already published (live DDATA) with its mark. */
  appendSent(bytes: Uint8Array, samples: number, oldest: number | undefined, sent: SentMark): Promise<void>;
  /** The oldest record neither sent in `epoch` nor acknowledged, or undefined. */
  nextUnsent(epoch: number): BacklogRecord | undefined;
  /** Marks a record as sent in an epoch (nothing when it is gone). */
  markSent(id: number, sent: SentMark): void;
  /** Records and samples not sent in `epoch`, and those sent in it (unacknowledged); acknowledged ones in neither. */
  tally(epoch: number): { unsentRecords: number; unsentSamples: number; sentRecords: number; sentSamples: number };
  /**
   * Marks every record sent in `epoch` with a message number at most `through` as acknowledged
   * (wherever it stands) and releases the oldest records while each is acknowledged, the last
   * release durably. Takes them all at once (nothing comes between the count and the releases).
   * Returns the records released and the samples newly acknowledged.
   */
  releaseAcknowledged(epoch: number, through: number): Promise<{ records: number; samples: number }>;
}

/** Bytes a record takes in a journal file beyond its payload (the RecordJournal header). */
const RECORD_OVERHEAD_BYTES = 12;

abstract class BaseBacklog {
  protected readonly infos: RecordInfo[] = [];
  protected nextId = 1;
  #samples = 0;
  #bytes = 0;

  get records(): number {
    return this.infos.length;
  }

  get samples(): number {
    return this.#samples;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get oldestTimestamp(): number | undefined {
    for (const info of this.infos) if (info.oldest !== undefined) return info.oldest;
    return undefined;
  }

  protected track(
    samples: number,
    oldest: number | undefined,
    bytes: number,
    payload?: Uint8Array,
    sent?: SentMark,
  ): void {
    this.infos.push({
      id: this.nextId++,
      samples,
      oldest,
      bytes,
      ...(payload === undefined ? {} : { payload }),
      ...(sent === undefined ? {} : { sent }),
    });
    this.#samples += samples;
    this.#bytes += bytes + RECORD_OVERHEAD_BYTES;
  }

  protected untrack(): RecordInfo | undefined {
    const info = this.infos.shift();
    if (info !== undefined) {
      this.#samples -= info.samples;
      this.#bytes -= info.bytes + RECORD_OVERHEAD_BYTES;
    }
    return info;
  }

  /** The position of the oldest record whose id is greater than `after`, or -1. */
  protected positionAfter(after: number | undefined): number {
    if (after === undefined) return this.infos.length > 0 ? 0 : -1;
    // Ids grow with position: most calls ask for the record after the one at the front.
    return this.infos.findIndex((info) => info.id > after);
  }

  /** How many of the oldest records have an id of at most `through`. */
  protected countThrough(through: number): number {
    let count = 0;
    while (count < this.infos.length && this.infos[count]!.id <= through) count++;
    return count;
  }

  oldestRecord(): { readonly id: number; readonly sent: boolean; readonly acked: boolean } | undefined {
    const info = this.infos[0];
    return info === undefined ? undefined : { id: info.id, sent: info.sent !== undefined, acked: info.acked === true };
  }

  nextUnsent(epoch: number): BacklogRecord | undefined {
    for (const info of this.infos) {
      if (info.sent?.epoch === epoch || info.acked) continue;
      return info.payload === undefined ? undefined : { id: info.id, samples: info.samples, bytes: info.payload };
    }
    return undefined;
  }

  markSent(id: number, sent: SentMark): void {
    const info = this.infos.find((each) => each.id === id);
    if (info !== undefined) info.sent = sent;
  }

  tally(epoch: number): { unsentRecords: number; unsentSamples: number; sentRecords: number; sentSamples: number } {
    const tally = { unsentRecords: 0, unsentSamples: 0, sentRecords: 0, sentSamples: 0 };
    for (const info of this.infos) {
      if (info.acked) continue;
      if (info.sent?.epoch === epoch) {
        tally.sentRecords++;
        tally.sentSamples += info.samples;
      } else {
        tally.unsentRecords++;
        tally.unsentSamples += info.samples;
      }
    }
    return tally;
  }

  /**
   * Marks what an acknowledgement of `through` in `epoch` covers; returns the samples newly
   * marked and how many of the oldest records are acknowledged (releasable).
   */
  protected acknowledge(epoch: number, through: number): { samples: number; releasable: number } {
    let samples = 0;
    for (const info of this.infos) {
      if (info.acked || info.sent === undefined || info.sent.epoch !== epoch || info.sent.message > through) continue;
      info.acked = true;
      samples += info.samples;
    }
    let releasable = 0;
    while (releasable < this.infos.length && this.infos[releasable]!.acked) releasable++;
    return { samples, releasable };
  }
}

/** A backlog in memory: the same bounds and order as the journal, lost when the process ends. */
export class MemoryBacklog extends BaseBacklog implements ForwardBacklog {
  readonly durable = false;
  readonly #payloads: Uint8Array[] = [];
  readonly #maxBytes: number;

  constructor(maxBytes: number) {
    super();
    this.#maxBytes = maxBytes;
  }

  append(bytes: Uint8Array, samples: number, oldest: number | undefined, sent?: SentMark): Promise<void> {
    if (this.bytes + bytes.length + RECORD_OVERHEAD_BYTES > this.#maxBytes) {
      return Promise.reject(
        new KilnError(
          "KILN_BUFFER_FULL",
          `Store-and-forward buffer is full: ${this.bytes} of ${this.#maxBytes} bytes used.`,
        ),
      );
    }
    this.#payloads.push(bytes);
    this.track(samples, oldest, bytes.length, bytes, sent);
    return Promise.resolve();
  }

  appendSent(bytes: Uint8Array, samples: number, oldest: number | undefined, sent: SentMark): Promise<void> {
    return this.append(bytes, samples, oldest, sent);
  }

  releaseAcknowledged(epoch: number, through: number): Promise<{ records: number; samples: number }> {
    const { samples, releasable } = this.acknowledge(epoch, through);
    for (let index = 0; index < releasable; index++) {
      this.#payloads.shift();
      this.untrack();
    }
    return Promise.resolve({ records: releasable, samples });
  }

  peekAfter(after?: number): Promise<BacklogRecord | undefined> {
    const position = this.positionAfter(after);
    const info = this.infos[position];
    return Promise.resolve(
      info === undefined ? undefined : { id: info.id, samples: info.samples, bytes: this.#payloads[position]! },
    );
  }

  releaseThrough(through: number): Promise<number[]> {
    const released: number[] = [];
    for (let count = this.countThrough(through); count > 0; count--) {
      this.#payloads.shift();
      released.push(this.untrack()!.id);
    }
    return Promise.resolve(released);
  }

  dropOldest(): Promise<number | undefined> {
    this.#payloads.shift();
    return Promise.resolve(this.untrack()?.samples);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A backlog in core's crash-safe {@link RecordJournal}: each record fsynced before it counts. */
export class JournalBacklog extends BaseBacklog implements ForwardBacklog {
  readonly durable = true;
  readonly #journal: RecordJournal;
  readonly #owned: boolean;
  /** Payloads kept in memory (awaiting host acknowledgements, ADR 0037). */
  readonly #keep: boolean;

  private constructor(journal: RecordJournal, owned: boolean, keep: boolean) {
    super();
    this.#journal = journal;
    this.#owned = owned;
    this.#keep = keep;
  }

  /**
   * Wraps an open journal, reading every record once to know its samples and oldest timestamp.
   * A record that is not a Sparkplug payload counts 0 samples (its count is unknown) and is
   * dropped when replay reaches it.
   */
  static async of(
    journal: RecordJournal,
    owned: boolean,
    keepPayloads = false,
  ): Promise<{ backlog: JournalBacklog; unreadableRecords: number }> {
    const backlog = new JournalBacklog(journal, owned, keepPayloads);
    let unreadableRecords = 0;
    await journal.scan((payload) => {
      const info = describeRecord(payload);
      if (info === undefined) unreadableRecords++;
      backlog.track(info?.samples ?? 0, info?.oldest, payload.length, keepPayloads ? payload : undefined);
    });
    return { backlog, unreadableRecords };
  }

  /** Opens the journal at `path` (its lock held until {@link close}). */
  static async open(
    path: string,
    maxBytes: number,
    keepPayloads = false,
  ): Promise<{ backlog: JournalBacklog; recovery: RecordJournalRecovery; unreadableRecords: number }> {
    const { journal, recovery } = await RecordJournal.open(path, { maxBytes, pathOption: "storeAndForward.path" });
    try {
      return { ...(await JournalBacklog.of(journal, true, keepPayloads)), recovery };
    } catch (error) {
      await journal.close();
      throw error;
    }
  }

  async append(bytes: Uint8Array, samples: number, oldest: number | undefined, sent?: SentMark): Promise<void> {
    await this.#journal.append(bytes);
    this.track(samples, oldest, bytes.length, this.#keep ? bytes : undefined, sent);
  }

  appendSent(bytes: Uint8Array, samples: number, oldest: number | undefined, sent: SentMark): Promise<void> {
    return this.append(bytes, samples, oldest, sent);
  }

  /**
   * Releases what an acknowledgement covers: every record but the last without a mark of its own,
   * the last durably (one release mark fsynced for all of them, ADR 0034), so a crash after it
   * never sends them again.
   */
  async releaseAcknowledged(epoch: number, through: number): Promise<{ records: number; samples: number }> {
    const { samples, releasable } = this.acknowledge(epoch, through);
    // All taken at once (no await between them), so a concurrent release or drop cannot come
    // between the count and the releases: the journal releases its oldest records in this order.
    const releases: Promise<unknown>[] = [];
    for (let index = 0; index < releasable; index++) {
      releases.push(this.#journal.release({ durable: index === releasable - 1 }));
      this.untrack();
    }
    await Promise.all(releases);
    return { records: releasable, samples };
  }

  async peekAfter(after?: number): Promise<BacklogRecord | undefined> {
    // The journal's records and the infos are released together, oldest first: same positions.
    const position = this.positionAfter(after);
    const info = this.infos[position];
    if (info === undefined) return undefined;
    const bytes = await this.#journal.peek(position);
    return bytes === undefined ? undefined : { id: info.id, samples: info.samples, bytes };
  }

  /**
   * Releases replayed records, the last durably (one release mark fsynced for all of them before
   * this resolves, ADR 0034), so a crash after it never sends them again: a crash mid-replay
   * resends at most the records published since the last such release (one replay window).
   */
  async releaseThrough(through: number): Promise<number[]> {
    const count = this.countThrough(through);
    // All taken at once (no await between them), as in releaseAcknowledged.
    const releases: Promise<unknown>[] = [];
    const released: number[] = [];
    for (let index = 0; index < count; index++) {
      releases.push(this.#journal.release({ durable: index === count - 1 }));
      released.push(this.untrack()!.id);
    }
    await Promise.all(releases);
    return released;
  }

  /**
   * Drops the oldest record at the limit. Not durable by itself: the append that follows it
   * carries its release mark in the same write, so a drop comes back after a crash only when that
   * append failed (it is then counted as dropped and sent).
   */
  async dropOldest(): Promise<number | undefined> {
    if (this.infos.length === 0) return undefined;
    return this.#releaseOldest(false);
  }

  async #releaseOldest(durable: boolean): Promise<number | undefined> {
    // Untracked with the journal's release, whether or not its mark can be written: the journal
    // has released it in memory either way.
    const released = this.#journal.release({ durable });
    const samples = this.untrack()?.samples;
    await released;
    return samples;
  }

  async close(): Promise<void> {
    if (this.#owned) await this.#journal.close();
  }
}

/** Samples and oldest timestamp of a record, or undefined when it is not a Sparkplug payload. */
function describeRecord(payload: Uint8Array): { samples: number; oldest: number | undefined } | undefined {
  try {
    const decoded = decodePayload(payload);
    let oldest: number | undefined;
    for (const metric of decoded.metrics) {
      if (metric.timestamp !== undefined && (oldest === undefined || metric.timestamp < oldest))
        oldest = metric.timestamp;
    }
    return { samples: decoded.metrics.length, oldest };
  } catch {
    return undefined;
  }
}
