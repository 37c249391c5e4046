import type { Quality } from "./quality";
import type { TagValue } from "./tags";

/**
 * One observation of one tag: its value, the source timestamp (milliseconds since the Unix
 * epoch, from the PLC where it gives one) and its quality. Samples are keyed by
 * (tag, timestamp): storing the same sample twice is harmless.
 */
export interface Sample {
  /** The tag name. */
  readonly tag: string;
  /** The value; `null` when the source could not give one (quality is then bad). */
  readonly value: TagValue | null;
  /** Source timestamp, ms since the Unix epoch. */
  readonly timestamp: number;
  /** How far the value can be trusted. */
  readonly quality: Quality;
}
