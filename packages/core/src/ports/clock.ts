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
  /** Milliseconds since the Unix epoch. */
  now(): number;
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
