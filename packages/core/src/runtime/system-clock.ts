import type { Clock, TimerHandle } from "../ports/clock";

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

/**
 * Reads `clock`'s monotonic time ({@link Clock.monotonicNow}), or its wall time when it has none.
 * Every elapsed-time measurement in Kiln goes through here, so a wall-clock step never moves a
 * schedule, a staleness window or a timeout.
 */
export function monotonicNow(clock: Pick<Clock, "now" | "monotonicNow">): number {
  return clock.monotonicNow === undefined ? clock.now() : clock.monotonicNow();
}

/** The longest delay Node's `setTimeout` honours (2^31 − 1 ms, about 24.8 days); longer ones fire after 1 ms. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * The delay a {@link Clock} timer waits for, in ms: negative and `NaN` mean 0, `Infinity` never fires.
 * Both clocks apply it, so a simulated run agrees with a real one.
 */
export function normalizeDelay(delayMs: number): number {
  return Number.isNaN(delayMs) ? 0 : Math.max(0, delayMs);
}

interface ChainedTimer {
  current: NodeJS.Timeout | undefined;
}

/**
 * The real clock: wall time (`Date.now()`), monotonic time (`performance.now()`) and Node's
 * timers. Delays of any length are honoured: one longer than `MAX_TIMER_DELAY_MS` (2^31 − 1 ms)
 * is waited out as a chain of shorter timers, measured on monotonic time, instead of firing after
 * 1 ms as a bare `setTimeout` would.
 */
export class SystemClock implements Clock {
  /** `Date.now()`: wall time, ms since the Unix epoch. */
  now(): number {
    return Date.now();
  }

  /** `performance.now()`: ms since the process started, never stepped by a wall-clock change. */
  monotonicNow(): number {
    return performance.now();
  }

  /** Calls `callback` once after `delayMs` (ms; NaN and negative mean 0, any length honoured). */
  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const delay = normalizeDelay(delayMs);
    const timer: ChainedTimer = { current: undefined };
    if (delay <= MAX_TIMER_DELAY_MS) {
      timer.current = setTimeout(callback, delay);
      return { __timer: timer };
    }
    const due = performance.now() + delay;
    const wait = (): void => {
      const remaining = due - performance.now();
      if (remaining <= 0) {
        timer.current = undefined;
        callback();
        return;
      }
      timer.current = setTimeout(wait, Math.min(remaining, MAX_TIMER_DELAY_MS));
    };
    wait();
    return { __timer: timer };
  }

  /** Cancels a timer of {@link SystemClock.setTimeout}; a fired or cancelled one is ignored. */
  clearTimeout(handle: TimerHandle): void {
    const timer = handle.__timer as ChainedTimer;
    if (timer.current !== undefined) clearTimeout(timer.current);
    timer.current = undefined;
  }

  /** Resolves after `delayMs` (ms); rejects with the signal's reason when `signal` aborts first. */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, delayMs, signal);
  }
}
