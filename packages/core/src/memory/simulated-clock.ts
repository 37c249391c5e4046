import { normalizeDelay, sleepOn } from "../runtime/system-clock";
import type { Clock, TimerHandle } from "@kiln/core";

interface PendingTimer {
  readonly id: number;
  readonly due: number;
  readonly callback: () => void;
}

/**
 * A clock that moves only when told to. Timers fire in due order as time is advanced, and
 * pending promise work settles between timers, so async code driven by this clock behaves as
 * it would in real time, only faster and deterministically.
 *
 * Its monotonic time ({@link SimulatedClock.monotonicNow}) is the simulated time; its wall time
 * ({@link SimulatedClock.now}) is the same plus an offset that {@link SimulatedClock.stepWall}
 * changes, to test a host whose wall clock steps (an NTP correction).
 *
 * @example
 * const clock = new SimulatedClock({ start: Date.UTC(2026, 0, 1) });
 * const done = clock.sleep(1_000);
 * await clock.advance(1_000); // `done` is now resolved
 * clock.stepWall(-60_000); // now() goes back a minute; timers and monotonicNow() do not move
 */
export class SimulatedClock implements Clock {
  /** Simulated (monotonic) time; timers are due on it. */
  #now: number;
  #wallOffset = 0;
  #nextId = 1;
  #timers: PendingTimer[] = [];

  constructor(options: { start?: number } = {}) {
    this.#now = options.start ?? Date.UTC(2026, 0, 1);
  }

  /** Wall time: the simulated time plus the offset set by {@link SimulatedClock.stepWall}. */
  now(): number {
    return this.#now + this.#wallOffset;
  }

  /** The simulated time, which never steps (it starts at `options.start`). */
  monotonicNow(): number {
    return this.#now;
  }

  /**
   * Steps the wall clock by `deltaMs` (negative: back), as an NTP correction or an operator
   * setting the time would: {@link SimulatedClock.now} moves, {@link SimulatedClock.monotonicNow}
   * and pending timers do not.
   */
  stepWall(deltaMs: number): void {
    if (!Number.isFinite(deltaMs)) throw new RangeError(`deltaMs must be finite, got ${deltaMs}`);
    this.#wallOffset += deltaMs;
  }

  /** Calls `callback` once when simulated time reaches now + `delayMs` (ms; NaN and negative mean 0), during an {@link SimulatedClock.advance}. */
  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer: PendingTimer = { id: this.#nextId++, due: this.#now + normalizeDelay(delayMs), callback };
    // Keep timers sorted by due time, then creation order.
    let index = this.#timers.length;
    while (index > 0 && this.#timers[index - 1]!.due > timer.due) index--;
    this.#timers.splice(index, 0, timer);
    return { __timer: timer.id };
  }

  /** Cancels a timer of {@link SimulatedClock.setTimeout}; a fired or cancelled one is ignored. */
  clearTimeout(handle: TimerHandle): void {
    const index = this.#timers.findIndex((timer) => timer.id === handle.__timer);
    if (index >= 0) this.#timers.splice(index, 1);
  }

  /** Resolves once simulated time has advanced `delayMs` (ms); rejects with the signal's reason when `signal` aborts first. */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, delayMs, signal);
  }

  /** Number of timers waiting to fire. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way, in order, and
   * letting pending promise work settle after each.
   */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new RangeError("SimulatedClock cannot go back in time");
    await this.advanceTo(this.now() + ms);
  }

  /** Moves time forward to the absolute wall time `target` (ms since epoch, as {@link SimulatedClock.now} reads it). */
  async advanceTo(wallTarget: number): Promise<void> {
    const target = wallTarget - this.#wallOffset;
    await settle();
    for (;;) {
      const next = this.#timers[0];
      if (!next || next.due > target) break;
      this.#timers.shift();
      this.#now = Math.max(this.#now, next.due);
      next.callback();
      await settle();
    }
    this.#now = Math.max(this.#now, target);
    await settle();
  }

  /** Fires timers until none is left (timers set for `Infinity` never fire) or `limit` have fired; returns how many fired. */
  async runAll(limit = 100_000): Promise<number> {
    let fired = 0;
    await settle();
    while (this.#timers.length > 0 && fired < limit && this.#timers[0]!.due !== Infinity) {
      const next = this.#timers.shift()!;
      this.#now = Math.max(this.#now, next.due);
      next.callback();
      fired++;
      await settle();
    }
    return fired;
  }
}

/** Lets queued microtasks and immediate callbacks run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
