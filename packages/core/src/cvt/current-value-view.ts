import type { Sample } from "../domain/sample";
import type { Disposer } from "../domain/disposer";

/** What an observer receives for every update of a tag. */
export interface CvtChange {
  /** The new sample (now the tag's current value). */
  readonly sample: Sample;
  /** The sample it replaced; undefined for a tag's first value. */
  readonly previous: Sample | undefined;
  /** True when the value differs from the previous one (always true for a first value). */
  readonly valueChanged: boolean;
  /** True when severity or code differ from the previous quality (always true for a first value). */
  readonly qualityChanged: boolean;
  /**
   * The timestamp (ms since the Unix epoch) the tag's producer last delivered, as delivered: the
   * device's source timestamp of this update, or, for Kiln's own quality marker (stale, no
   * communication), the one the producer delivered before it (a marker is no news from the
   * source; its own time is `sample.timestamp`). It differs from `sample.timestamp` when the table restamped the sample (its source timestamp
   * did not advance past the tag's last one) or kept the current sample as a repeat. It may go
   * back (a device clock stepped back): whether a source is still alive is judged on it, not on
   * the kept sample's timestamp, which only advances (review 15e).
   */
  readonly sourceTimestamp: number;
  /**
   * For an update from a poll read: the read's place in the control system's device-call order,
   * taken when the read was issued (a number; a later read, or a write answered later, has a
   * greater one). Absent for a subscription notification, Kiln's own quality markers and values
   * put in by hand. A read issued before some event could have sampled the device before it,
   * however late it answers: what a failed safe-state write waits for as evidence (ADR 0042,
   * amendment fix15z).
   */
  readonly readIssued?: number;
}

/** Called synchronously for each update. Must be cheap; hand heavy work off. */
export type CvtObserver = (change: CvtChange) => void;

/**
 * The reading half of the `CurrentValueTable` (`@kiln/core/advanced`): what a host gets as
 * `system.cvt`. Reads and observers only; it has no `update`, `degrade`, `setStaleAfter` or `sweepStale`, so code holding
 * it cannot put a value into the table that the alarms, the logging pipeline and recipe
 * conditions would take as the device's. Only acquisition writes the table (and
 * `system.unchecked.cvt`, which bypasses every check).
 */
export interface CurrentValueView {
  /**
   * The current sample of `tag` (value, quality, source timestamp), or undefined before its first
   * value. Samples are frozen when they enter the table: a reader cannot change them.
   */
  get(tag: string): Sample | undefined;
  /** The current value of `tag`, or undefined before its first value. */
  value(tag: string): Sample["value"] | undefined;
  /** Every tag's current sample (a new array; the samples in it are frozen). */
  snapshot(): Sample[];
  /** Number of tags that have a value. */
  readonly size: number;
  /**
   * Observes one tag; observers run synchronously on every change and are isolated from each other.
   * The change and its samples are frozen: an observer cannot alter what the others see.
   * @throws KilnError `KILN_TAG_UNKNOWN` for a tag not in the catalog.
   */
  observe(tag: string, observer: CvtObserver): Disposer;
  /** Observes every tag. */
  observeAll(observer: CvtObserver): Disposer;
}
