import { sameTagValue, type Tag } from "../domain/tags";
import type { Sample } from "../domain/sample";
import type { Clock } from "../ports/clock";
import { monotonicNow } from "../runtime/system-clock";
import { restamped } from "../cvt/receipt-stamp";

interface TagLogState {
  readonly mode: "change" | "periodic" | "none";
  readonly deadband: number;
  readonly periodMs: number;
  logged: boolean;
  lastValue: Sample["value"];
  /** Timestamp of the last logged sample (after any restamp). */
  lastTimestamp: number;
  /** Monotonic clock time the last sample was logged, for `periodic` (0 in the other modes). */
  lastLoggedAt: number;
  lastQualityCode: number;
  lastSeverity: string;
}

/**
 * Decides which CVT updates are logged, per tag policy:
 * - `change`: log when the value moved by more than the deadband since the last LOGGED value
 *   (absolute, or percent of the tag's range span), so slow drift is still recorded;
 *   non-numeric values are logged on any change. NaN compares equal to NaN and differs from every
 *   number, whatever the deadband, so a NaN period is logged once at its start and once at its end.
 *   Without a deadband, change is `Object.is`: -0 after 0 is a change. A change of the quality
 *   reason alone (same severity and code) is not a quality change.
 * - `periodic`: log when `periodMs` has passed on the system clock since the last logged sample
 *   (not on source time: a device that leaves an unchanged value's timestamp alone is still logged).
 * - `none`: never log.
 * A tag's first sample and every quality change are always logged (except under `none`).
 *
 * The current value table already stamps a changed value whose source timestamp did not advance
 * with its receive time (`receiptStamp`). What remains here is a `periodic` repeat of an unchanged
 * sample: it carries the last logged timestamp, so it is stamped the same way (the clock's time, at
 * least 1 µs after the last logged sample) and its reason says so (`RESTAMPED_REASON`).
 */
export class LoggingFilter {
  readonly #states = new Map<string, TagLogState>();
  readonly #clock: Pick<Clock, "now" | "monotonicNow">;

  /**
   * @param tags the tags and their logging policies.
   * @param clock the system clock (receive time, and the period of `periodic` logging).
   */
  constructor(tags: readonly Tag[], clock: Pick<Clock, "now" | "monotonicNow">) {
    this.#clock = clock;
    for (const tag of tags) {
      const policy = tag.logging;
      let deadband = 0;
      if (policy.mode === "change" && policy.deadband) {
        deadband =
          policy.deadband.kind === "absolute"
            ? policy.deadband.value
            : (policy.deadband.value / 100) * (tag.range ? tag.range.max - tag.range.min : 0);
      }
      this.#states.set(tag.name, {
        mode: policy.mode,
        deadband,
        periodMs: policy.mode === "periodic" ? policy.periodMs : 0,
        logged: false,
        lastValue: null,
        lastTimestamp: 0,
        lastLoggedAt: 0,
        lastQualityCode: 0,
        lastSeverity: "",
      });
    }
  }

  /**
   * The sample to log for this CVT update, or undefined when it is not logged. Records it as the
   * tag's last logged sample. The result is `sample` itself unless it had to be restamped.
   */
  select(sample: Sample): Sample | undefined {
    const state = this.#states.get(sample.tag);
    if (state === undefined || state.mode === "none") return undefined;
    // The clocks are read only when their reading is used: this runs for every CVT update.
    // Monotonic time measures the period of `periodic` logging; wall time stamps a repeat.
    const elapsedNow = state.mode === "periodic" ? monotonicNow(this.#clock) : 0;
    if (state.logged && !this.#qualityChanged(state, sample) && !this.#due(state, sample, elapsedNow)) return undefined;
    const repeat = state.mode === "periodic" && state.logged && sample.timestamp <= state.lastTimestamp;
    const logged = repeat ? restamped(sample, state.lastTimestamp, this.#clock.now()) : sample;
    state.logged = true;
    state.lastValue = sample.value;
    state.lastTimestamp = logged.timestamp;
    state.lastLoggedAt = elapsedNow;
    state.lastQualityCode = sample.quality.code;
    state.lastSeverity = sample.quality.severity;
    return logged;
  }

  #qualityChanged(state: TagLogState, sample: Sample): boolean {
    return state.lastQualityCode !== sample.quality.code || state.lastSeverity !== sample.quality.severity;
  }

  #due(state: TagLogState, sample: Sample, now: number): boolean {
    if (state.mode === "periodic") return now - state.lastLoggedAt >= state.periodMs;
    const value = sample.value;
    const last = state.lastValue;
    if (typeof value === "number" && typeof last === "number") {
      // NaN (a sensor asleep, an inverter at night) is a value of its own: NaN to NaN is no change,
      // NaN to a number or back is a change whatever the deadband (Object.is semantics).
      if (Number.isNaN(value) || Number.isNaN(last)) return Number.isNaN(value) !== Number.isNaN(last);
      // Without a deadband any change counts, -0 after 0 included (Object.is, as the CVT's valueChanged).
      return state.deadband > 0 ? Math.abs(value - last) > state.deadband : !Object.is(value, last);
    }
    return !sameTagValue(value, last); // an array: any changed element is a change (no deadband on arrays)
  }
}
