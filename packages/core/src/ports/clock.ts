/** An opaque handle for a timer created by a {@link Clock}. */
export interface TimerHandle {
  /** @internal */
  readonly __timer: unknown;
}

/**
 * The source of time for everything in Kiln. Domain code never calls `Date.now()` or
 * `setTimeout` directly, so tests can run on a simulated clock.
 */
export interface Clock {
  /**
   * Wall time: milliseconds since the Unix epoch. Kiln uses it only to stamp samples, events and
   * records; it may step (an NTP correction, an operator setting the time), so Kiln never measures
   * elapsed time with it when {@link Clock.monotonicNow} is there.
   */
  now(): number;
  /**
   * Milliseconds on a clock that never steps, from an arbitrary origin (`performance.now()` on
   * `SystemClock`; the simulated time on `SimulatedClock`). Kiln measures elapsed time with it:
   * scan due times and period error, staleness windows, flush latency, periodic logging, breaker
   * cool-downs. Optional: a clock without it is measured with {@link Clock.now}, and a step of its
   * wall time then shifts those measurements too.
   */
  monotonicNow?(): number;
  /**
   * Runs `callback` once after `delayMs`. Any duration is honoured, including ones beyond
   * 2^31 − 1 ms (about 24.8 days); a negative or `NaN` delay means 0, `Infinity` never fires.
   */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  /** Cancels a timer; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void;
  /**
   * Resolves after `delayMs`. With `signal`, rejects with the signal's reason when it aborts
   * first, and clears the timer.
   */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void>;
}
