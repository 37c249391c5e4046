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
