import type { Clock } from "../ports/clock";
import { monotonicNow } from "./system-clock";

/** A wall-clock step beyond this many ms is reported ({@link WallClockWatch}). */
export const WALL_CLOCK_STEP_THRESHOLD_MS = 1_000;

/**
 * Notices when the wall clock steps (an NTP correction, an operator setting the time): the
 * difference between wall time and monotonic time jumps by more than
 * {@link WALL_CLOCK_STEP_THRESHOLD_MS} between two checks. A slow slew (NTP adjusts the rate by at
 * most 0.05 %) is followed, never reported. A clock without monotonic time never reports.
 */
export class WallClockWatch {
  readonly #clock: Pick<Clock, "now" | "monotonicNow">;
  #offset: number | undefined;

  constructor(clock: Pick<Clock, "now" | "monotonicNow">) {
    this.#clock = clock;
  }

  /** The step (ms, negative: back) since the last check, or undefined when the wall clock did not step. */
  check(): number | undefined {
    if (this.#clock.monotonicNow === undefined) return undefined;
    const offset = this.#clock.now() - monotonicNow(this.#clock);
    const previous = this.#offset;
    this.#offset = offset;
    if (previous === undefined) return undefined;
    const step = offset - previous;
    return Math.abs(step) > WALL_CLOCK_STEP_THRESHOLD_MS ? step : undefined;
  }
}
