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
  /** Runs `callback` once after `delayMs`. */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  /** Cancels a timer; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void;
  /**
   * Resolves after `delayMs`. With `signal`, rejects with the signal's reason when it aborts
   * first, and clears the timer.
   */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void>;
}

/** Shared implementation of {@link Clock.sleep} on top of setTimeout/clearTimeout. */
export function sleepOn(
  clock: Pick<Clock, "setTimeout" | "clearTimeout">,
  delayMs: number,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The real clock: wall time and Node's timers. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    return { __timer: setTimeout(callback, Math.max(0, delayMs)) };
  }

  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle.__timer as NodeJS.Timeout);
  }

  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, delayMs, signal);
  }
}
