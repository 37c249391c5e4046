// CurrentValueTable is homed in "@kiln/core/advanced"; what its declarations name from the main
// entry is imported by package name so the API reports show that home (ADR 0027).
import type { Clock, CurrentValueView, CvtChange, CvtObserver, Disposer, Quality, Sample, Tag } from "@kiln/core";
import { consistentQuality, quality, QualityCodes } from "../domain/quality";
import { KilnError } from "../domain/errors";
import { monotonicNow, SystemClock } from "../runtime/system-clock";
import { receiptStamp, restamped } from "./receipt-stamp";
import { frozenTagValue, sameTagValue } from "../domain/tags";

export type { CurrentValueView, CvtChange, CvtObserver } from "./current-value-view";

interface Entry {
  sample: Sample;
  /** Receive time on the clock's monotonic time, for staleness. */
  receivedAt: number;
  staleAfterMs: number;
  stale: boolean;
  /** The current sample was made by Kiln (stale or no-communication marker), not by the device. */
  synthetic: boolean;
  /**
   * The latest timestamp the tag has had: a sample must pass it, not only the current one's, to
   * keep its source timestamp. After a restamp to receive time (the current timestamp went back),
   * a device still sending the same future timestamp would otherwise land on a stored one.
   */
  newest: number;
  /**
   * The timestamp the tag's producer last delivered with a value (not Kiln's markers): what
   * `CvtChange.sourceTimestamp` carries for a marker, so a marker never looks like the source
   * advancing (review 15g, H5: a link dropping more often than `maxSourceAgeMs` kept a frozen
   * interlock input fresh, each loss marker stamped with a new time).
   */
  delivered: number;
}

/** A new frozen sample of these fields; `quality` must be frozen already. */
function sealedSample(tag: string, value: Sample["value"], timestamp: number, quality: Quality): Sample {
  return Object.freeze({ tag, value, timestamp, quality });
}

/**
 * A frozen {@link CvtChange}; `readIssued` only when given. Two literals rather than a spread of a
 * conditional object: this runs for every sample, and the spread allocated and copied an extra
 * object each time (issue 16).
 */
function frozenChange(
  sample: Sample,
  previous: Sample | undefined,
  valueChanged: boolean,
  qualityChanged: boolean,
  sourceTimestamp: number,
  readIssued: number | undefined,
): CvtChange {
  return Object.freeze(
    readIssued === undefined
      ? { sample, previous, valueChanged, qualityChanged, sourceTimestamp }
      : { sample, previous, valueChanged, qualityChanged, sourceTimestamp, readIssued },
  );
}

/** `quality` itself when frozen, else a frozen copy. */
function frozenQuality(quality: Quality): Quality {
  return Object.isFrozen(quality) ? quality : Object.freeze({ ...quality });
}

/** Quality a tag takes when its source stops answering: uncertain, last usable value. */
export const NO_COMMUNICATION: Quality = Object.freeze(
  quality("uncertain", "no communication, last usable value", QualityCodes.UncertainNoCommunicationLastUsableValue),
);

/**
 * A read-only view of `table`: a separate frozen object forwarding to its reads and observers.
 * A cast cannot reach the mutators through it: the table is not reachable from it.
 */
export function currentValueViewOf(table: CurrentValueTable): CurrentValueView {
  return Object.freeze({
    get: (tag: string) => table.get(tag),
    value: (tag: string) => table.value(tag),
    snapshot: () => table.snapshot(),
    get size() {
      return table.size;
    },
    observe: (tag: string, observer: CvtObserver) => table.observe(tag, observer),
    observeAll: (observer: CvtObserver) => table.observeAll(observer),
  });
}

/**
 * The current value table: the last value, quality and source timestamp of every tag, with
 * change detection and observers. Reads are synchronous map lookups. Observers run
 * synchronously inside `update`, isolated from each other: one that throws is reported through
 * `onObserverError` and the others still run.
 */
export class CurrentValueTable implements CurrentValueView {
  readonly #entries = new Map<string, Entry>();
  readonly #tagObservers = new Map<string, Set<CvtObserver>>();
  readonly #allObservers = new Set<CvtObserver>();
  readonly #known: ReadonlySet<string>;
  readonly #onObserverError: (error: unknown, change: CvtChange) => void;
  readonly #clock: Pick<Clock, "now" | "monotonicNow">;

  /**
   * @param options.clock receive times and staleness: staleness windows are measured on its
   *   monotonic time, so a wall-clock step neither freezes nor ages a value. @default new SystemClock()
   */
  constructor(options: {
    tags: readonly Tag[];
    clock?: Pick<Clock, "now" | "monotonicNow">;
    onObserverError?: (error: unknown, change: CvtChange) => void;
  }) {
    this.#known = new Set(options.tags.map((tag) => tag.name));
    this.#clock = options.clock ?? new SystemClock();
    this.#onObserverError = options.onObserverError ?? (() => undefined);
  }

  /** The current sample of `tag`, or undefined before its first value. */
  get(tag: string): Sample | undefined {
    return this.#entries.get(tag)?.sample;
  }

  /** The current value of `tag`, or undefined before its first value. */
  value(tag: string): Sample["value"] | undefined {
    return this.#entries.get(tag)?.sample.value;
  }

  /** Every tag's current sample. */
  snapshot(): Sample[] {
    return [...this.#entries.values()].map((entry) => entry.sample);
  }

  /** Number of tags that have a value. */
  get size(): number {
    return this.#entries.size;
  }

  /** Observes one tag. @throws KilnError `KILN_TAG_UNKNOWN` for a tag not in the table's catalog. */
  observe(tag: string, observer: CvtObserver): Disposer {
    if (!this.#known.has(tag))
      throw new KilnError("KILN_TAG_UNKNOWN", `Cannot observe unknown tag "${tag}".`, { details: { tag } });
    let set = this.#tagObservers.get(tag);
    if (!set) this.#tagObservers.set(tag, (set = new Set()));
    set.add(observer);
    return () => void set.delete(observer);
  }

  /** Observes every tag. */
  observeAll(observer: CvtObserver): Disposer {
    this.#allObservers.add(observer);
    return () => void this.#allObservers.delete(observer);
  }

  /**
   * Records samples as the tags' current values and notifies observers. Samples for tags the
   * table does not know are ignored. A sample's quality whose severity and status code disagree
   * (or that is no quality) is kept as the worse of the two, with the reason "inconsistent
   * quality: ..." (never shown better than the source said; every store takes it). A tag's
   * timestamps only advance: a sample whose source
   * timestamp does not advance past the current one
   * - with a changed value (`Object.is`) or quality (severity or code) is a new value with a stale
   *   device time: it is stamped with the receive time (`receiptStamp`: at least 1 µs after
   *   the current one) and its quality reason ends with {@link RESTAMPED_REASON}; its severity is
   *   kept (the value is fresh, only its time is Kiln's);
   * - unchanged is a repeat: the current sample stays as it is, and observers see it again
   *   (`valueChanged` and `qualityChanged` false).
   * Either way the tag was heard from: its staleness window starts again.
   * What the table keeps is frozen: a sample the producer froze itself (its quality too, and its
   * value when an array) is kept as it is, any other is copied and the copy frozen.
   * Staleness is measured from now on the clock's monotonic time.
   * @param receivedAt wall time of receipt (ms since the Unix epoch). @default clock.now()
   * @param readIssued the order number of the poll read the samples answer (`CvtChange.readIssued`).
   */
  update(samples: readonly Sample[], receivedAt: number = this.#clock.now(), readIssued?: number): void {
    const receivedAtMonotonic = monotonicNow(this.#clock);
    for (const sample of samples) this.#apply(sample, receivedAt, receivedAtMonotonic, false, readIssued);
  }

  /**
   * Marks a tag as stale when no update arrives for `staleAfterMs` (0 disables it).
   * Checked by {@link sweepStale}.
   */
  setStaleAfter(tag: string, staleAfterMs: number): void {
    this.#staleAfter.set(tag, staleAfterMs);
    const entry = this.#entries.get(tag);
    if (entry) entry.staleAfterMs = staleAfterMs;
  }

  readonly #staleAfter = new Map<string, number>();

  /**
   * Turns the quality of every tag not updated within its staleness window (measured on the
   * clock's monotonic time) to `uncertain`, keeping its last value. Returns the tags that went
   * stale in this sweep.
   * @param now wall time, the timestamp of the degraded samples. @default clock.now()
   * @param tags only these tags (all when absent): acquisition sweeps one scan group at a time.
   */
  sweepStale(now: number = this.#clock.now(), tags?: readonly string[]): string[] {
    const elapsedNow = monotonicNow(this.#clock);
    const turned: string[] = [];
    // No pair per tag: a sweep of a large group runs after each of its polls.
    if (tags === undefined)
      for (const [tag, entry] of this.#entries) this.#sweepOne(tag, entry, elapsedNow, now, turned);
    else {
      // The entries of a list swept before, by position: a tag's entry, once made, is the same object
      // for the table's life, so a large group's sweep after each poll looks no name up in the map of
      // every tag (a cache miss per tag; issue 16). Only tags without a value yet are looked up again.
      let entries = this.#sweepLists.get(tags);
      if (entries === undefined) this.#sweepLists.set(tags, (entries = new Array<Entry | undefined>(tags.length)));
      for (let index = 0; index < tags.length; index++) {
        const tag = tags[index]!;
        let entry = entries[index];
        // The name is checked: a caller may have changed its array since.
        if (entry === undefined || entry.sample.tag !== tag) entries[index] = entry = this.#entries.get(tag);
        this.#sweepOne(tag, entry, elapsedNow, now, turned);
      }
    }
    return turned;
  }

  /** Per tag list given to {@link sweepStale} (acquisition passes the same array each poll): its entries. */
  readonly #sweepLists = new WeakMap<readonly string[], (Entry | undefined)[]>();

  #sweepOne(tag: string, entry: Entry | undefined, elapsedNow: number, now: number, turned: string[]): void {
    if (entry === undefined) return;
    if (entry.stale || entry.staleAfterMs <= 0 || elapsedNow - entry.receivedAt < entry.staleAfterMs) return;
    if (entry.sample.quality.severity === "bad") return;
    turned.push(tag);
    this.#degrade(
      entry,
      now,
      quality("uncertain", `stale: no update within ${entry.staleAfterMs} ms`, QualityCodes.UncertainLastUsableValue),
    );
    entry.stale = true;
  }

  /**
   * Sets `quality` on each of `tags` that has a value, keeping the last value (used when a
   * driver loses communication). Observers see a quality change at time `now`.
   */
  degrade(tags: readonly string[], degraded: Quality, now: number): void {
    for (const tag of tags) {
      const entry = this.#entries.get(tag);
      if (entry) this.#degrade(entry, now, degraded);
    }
  }

  #degrade(entry: Entry, now: number, degraded: Quality): void {
    const current = entry.sample;
    if (current.quality.code === degraded.code && current.quality.severity === degraded.severity) return;
    const timestamp = receiptStamp(current.timestamp, now);
    this.#apply({ tag: current.tag, value: current.value, timestamp, quality: degraded }, now, entry.receivedAt, true);
  }

  #apply(
    input: Sample,
    receivedAt: number,
    receivedAtMonotonic: number,
    keepReceivedAt = false,
    readIssued?: number,
  ): void {
    // Samples are immutable once published: what the table holds and hands out is frozen,
    // so no reader (observer, `get`, `snapshot`) can change what alarms, interlocks and recipe
    // conditions act on, and the producer keeps its own object. The input's fields are read once
    // here; the copy is made only when the table keeps a new sample (a repeat keeps the current one).
    const { tag, timestamp } = input;
    // An array value is frozen too (a copy when the producer's is not), so no one changes it under observers.
    const value =
      Array.isArray(input.value) && !Object.isFrozen(input.value) ? frozenTagValue(input.value) : input.value;
    // A tag with an entry is known: the catalog is consulted only for a tag's first value.
    const entry = this.#entries.get(tag);
    if (entry === undefined && !this.#known.has(tag)) return;
    const given = frozenQuality(consistentQuality(input.quality));
    // A producer that hands over a frozen sample (frozen quality, scalar or frozen array value)
    // can no longer change it: the table keeps that object rather than a copy of it.
    const adoptable = value === input.value && given === input.quality && Object.isFrozen(input);
    let sample: Sample;
    let change: CvtChange;
    if (entry === undefined) {
      sample = adoptable ? input : sealedSample(tag, value, timestamp, given);
      this.#entries.set(tag, {
        sample,
        receivedAt: receivedAtMonotonic,
        staleAfterMs: this.#staleAfter.get(tag) ?? 0,
        stale: false,
        synthetic: keepReceivedAt,
        newest: timestamp,
        delivered: timestamp,
      });
      change = frozenChange(sample, undefined, true, true, timestamp, readIssued);
    } else {
      const previous = entry.sample;
      // Kiln's own markers (keepReceivedAt) come stamped after the current sample already.
      if (keepReceivedAt || (timestamp > previous.timestamp && timestamp > entry.newest)) {
        sample = adoptable ? input : sealedSample(tag, value, timestamp, given);
      } else if (entry.synthetic) {
        // What we hold is our own marker. A device value unchanged since before an outage keeps
        // its old source timestamp; it follows the marker so history stays in time order.
        sample = sealedSample(tag, value, receiptStamp(previous.timestamp, receivedAt), given);
      } else if (
        sameTagValue(previous.value, value) &&
        previous.quality.code === given.code &&
        previous.quality.severity === given.severity
      ) {
        sample = previous; // a repeat: nothing new, but the tag was heard from
      } else {
        // restamped returns new objects no one else holds: freezing them in place is a frozen copy.
        const stamped = restamped({ tag, value, timestamp, quality: given }, previous.timestamp, receivedAt);
        Object.freeze(stamped.quality);
        sample = Object.freeze(stamped);
      }
      entry.synthetic = keepReceivedAt;
      entry.sample = sample;
      if (sample.timestamp > entry.newest) entry.newest = sample.timestamp;
      if (!keepReceivedAt) {
        entry.receivedAt = receivedAtMonotonic;
        entry.stale = false;
        entry.delivered = timestamp;
      }
      change = frozenChange(
        sample,
        previous,
        !sameTagValue(previous.value, sample.value),
        previous.quality.code !== sample.quality.code || previous.quality.severity !== sample.quality.severity,
        entry.delivered,
        keepReceivedAt ? undefined : readIssued,
      );
    }
    const tagObservers = this.#tagObservers.size > 0 ? this.#tagObservers.get(tag) : undefined;
    if (tagObservers) for (const observer of tagObservers) this.#notify(observer, change);
    for (const observer of this.#allObservers) this.#notify(observer, change);
  }

  #notify(observer: CvtObserver, change: CvtChange): void {
    try {
      observer(change);
    } catch (error) {
      this.#onObserverError(error, change);
    }
  }
}
