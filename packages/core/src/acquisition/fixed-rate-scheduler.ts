import type { Clock, TimerHandle } from "../ports/clock";
import { monotonicNow } from "../runtime/system-clock";

/** While a cycle overruns, its skipped cycles are reported (`onOverrun`) at most this often, in ms. */
export const OVERRUN_REPORT_INTERVAL_MS = 1_000;

/** What a cycle's task is told. */
export interface CycleInfo {
  /** Cycle number since start (0-based); skipped cycles are never run, so numbers may jump. */
  readonly cycle: number;
  /** When the cycle was due, on the clock's monotonic time ({@link Clock.monotonicNow}). */
  readonly scheduledAt: number;
  /** When it actually started, on the same time; `startedAt - scheduledAt` is the period error. */
  readonly startedAt: number;
}

/** Reported when a cycle ran past the start of the next one(s). */
export interface OverrunInfo {
  /** The cycle that overran. */
  readonly cycle: number;
  /** How many following cycles were skipped. */
  readonly missedCycles: number;
  /** How long the cycle took, in ms. */
  readonly durationMs: number;
}

/** Options of {@link FixedRateScheduler}. */
export interface FixedRateSchedulerOptions {
  /** The clock the schedule is anchored to; due times are on its monotonic time, so a wall-clock step moves nothing. */
  readonly clock: Clock;
  /** Period in ms (> 0). */
  readonly periodMs: number;
  /** The work of one cycle; the next cycle never starts before it settles. */
  readonly task: (info: CycleInfo) => Promise<void> | void;
  /**
   * Called with the cycles skipped because a cycle overran: while it runs, at most once per
   * {@link OVERRUN_REPORT_INTERVAL_MS} with those skipped since the last call, and when it ends
   * with the rest. `cyclesSkipped` counts each as its due time passes.
   */
  readonly onOverrun?: (info: OverrunInfo) => void;
  /** Called with each cycle's start lateness (ms), for period-error metrics. */
  readonly onLateness?: (latenessMs: number) => void;
  /** Called when the task throws; the schedule goes on. */
  readonly onError?: (error: unknown) => void;
}

/**
 * Runs a task at a fixed rate anchored to the start time: cycle `k` is due at
 * `start + k × period`, whatever earlier cycles cost, so the schedule never drifts. Time is the
 * clock's monotonic time ({@link Clock.monotonicNow}): a step of the wall clock neither stalls the
 * schedule (a step back) nor makes it skip cycles (a step forward). A cycle
 * that runs past the next due time(s) makes the scheduler skip those cycles (counted and
 * reported), never run them late in a burst.
 */
export class FixedRateScheduler {
  readonly #options: FixedRateSchedulerOptions;
  #timer: TimerHandle | undefined;
  #start = 0;
  #running = false;
  #current: Promise<void> | undefined;
  /** Cycles run since start. */
  cyclesRun = 0;
  /** Cycles skipped because of overruns since start. */
  cyclesSkipped = 0;

  constructor(options: FixedRateSchedulerOptions) {
    if (!(options.periodMs > 0) || !Number.isFinite(options.periodMs)) {
      throw new RangeError(`periodMs must be a positive finite number, got ${options.periodMs}`);
    }
    this.#options = options;
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return this.#running;
  }

  /** Starts the schedule; the first cycle runs at once (cycle 0 is due now). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#start = monotonicNow(this.#options.clock);
    this.cyclesRun = 0;
    this.cyclesSkipped = 0;
    this.#schedule(0);
  }

  /** Stops the schedule and waits for a cycle in progress to finish. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#current;
  }

  #schedule(cycle: number): void {
    const { clock, periodMs } = this.#options;
    const due = this.#start + cycle * periodMs;
    this.#timer = clock.setTimeout(
      () => {
        this.#timer = undefined;
        this.#current = this.#run(cycle, due);
      },
      due - monotonicNow(clock),
    );
  }

  async #run(cycle: number, scheduledAt: number): Promise<void> {
    if (!this.#running) return;
    const { clock, periodMs, task, onOverrun, onLateness, onError } = this.#options;
    const startedAt = monotonicNow(clock);
    // Node fires timers on a coarser clock than performance.now(): a start a fraction of a ms early is on time.
    onLateness?.(Math.max(0, startedAt - scheduledAt));
    // Cycles a long task makes the schedule skip are counted as their due times pass, not only
    // when it ends: a scan held back for an hour shows its skipped cycles during that hour.
    const live = { skipped: 0, unreported: 0, reportedAt: startedAt, timer: undefined as TimerHandle | undefined };
    const watch = (): void => {
      const due = this.#start + (cycle + 1 + live.skipped) * periodMs;
      // 1 ms past the due time: still running then, the cycle is certainly skipped.
      live.timer = clock.setTimeout(
        () => {
          if (!this.#running) return;
          live.skipped++;
          live.unreported++;
          this.cyclesSkipped++;
          const now = monotonicNow(clock);
          if (now - live.reportedAt >= OVERRUN_REPORT_INTERVAL_MS) {
            onOverrun?.({ cycle, missedCycles: live.unreported, durationMs: now - startedAt });
            live.unreported = 0;
            live.reportedAt = now;
          }
          watch();
        },
        due + 1 - monotonicNow(clock),
      );
    };
    watch();
    try {
      await task({ cycle, scheduledAt, startedAt });
    } catch (error) {
      onError?.(error);
    } finally {
      if (live.timer !== undefined) clock.clearTimeout(live.timer);
    }
    this.cyclesRun++;
    if (!this.#running) return;
    const finishedAt = monotonicNow(clock);
    // The next cycle is the first one whose due time has not passed yet (or is exactly now).
    let next = cycle + 1;
    const elapsedCycles = Math.floor((finishedAt - this.#start) / periodMs);
    const earliestDue = this.#start + elapsedCycles * periodMs;
    if (elapsedCycles >= next) next = earliestDue === finishedAt ? elapsedCycles : elapsedCycles + 1;
    const missed = next - cycle - 1;
    const unreported = live.unreported + Math.max(0, missed - live.skipped);
    this.cyclesSkipped += Math.max(0, missed - live.skipped);
    if (unreported > 0) onOverrun?.({ cycle, missedCycles: unreported, durationMs: finishedAt - startedAt });
    this.#schedule(next);
  }
}
