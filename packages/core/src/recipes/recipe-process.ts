import type { ProcessRecord, ProcessStatus } from "@kiln/core/driver-kit";

/** Distribution of timing errors (actual − planned, ms) of one step kind over a run. All 0 when `count` is 0. */
export interface TimingStats {
  /** Number of steps measured. */
  readonly count: number;
  /** Median error. */
  readonly p50: number;
  /** 99th percentile error (nearest rank). */
  readonly p99: number;
  /** Largest error. */
  readonly max: number;
}

/** How a process ended. */
export interface ProcessResult {
  /** The process id. */
  readonly processId: string;
  /** Its final status. */
  readonly status: "completed" | "aborted" | "failed";
  /** Why it was aborted or failed. */
  readonly reason?: string;
  /** The error that failed it. */
  readonly error?: unknown;
  /** Run-time path of the last step that finished. */
  readonly lastCompletedStep?: string;
  /** Number of non-container steps (everything but `loop` and `call`) that finished. */
  readonly stepsCompleted: number;
  /** When it began running (ms since epoch). */
  readonly startedAt: number;
  /** When it ended. */
  readonly endedAt: number;
  /** Pulse timing error (open time − planned; open time is measured between the on and off writes completing) and wait timing error. */
  readonly timing: { readonly pulse: TimingStats; readonly wait: TimingStats };
  /** Problems met while stopping or saving, in order: what went wrong in addition to the outcome. */
  readonly problems: readonly {
    /**
     * `pulse-off`: a pulse's off value could not be written; `step-write`: a step write in flight
     * when the process was aborted failed afterwards; `safe-state`: a safe-state write failed;
     * `machine`: the state machine refused; `save`: the final save failed.
     */
    readonly stage: "pulse-off" | "step-write" | "safe-state" | "machine" | "save";
    /** The tag concerned, for writes. */
    readonly tag?: string;
    /** The error. */
    readonly error: unknown;
  }[];
  /** True when the final record and every event were saved. */
  readonly persisted: boolean;
}

/** Something that went wrong while a process was being stopped or saved, in addition to its outcome. */
export type ProcessProblem = ProcessResult["problems"][number];

/**
 * A recipe run on a machine. Commands take effect as follows:
 *
 * - `pause()`: at the next step boundary (a running wait or pulse completes first); resolves
 *   once paused; rejects if the machine refuses (the process then keeps running) or the process
 *   ends first. Pausing a paused process does nothing.
 * - `resume()`: resolves once running again; cancels a pause that has not taken effect yet.
 * - `abort(reason)`: at once. The current wait, pulse, ramp or waitUntil is cancelled (a pulse
 *   still writes its off value), the safe state is written, and the machine is ended (or faulted
 *   with `{ fault: true }`, as an interlock does). Resolves with the result; harmless when ended.
 *
 * `pause` and `resume` reject with `KILN_INVALID_TRANSITION` once the process has ended.
 */
export interface RecipeProcess {
  /** The process id (aggregate id of its events). */
  readonly id: string;
  /** The current status. */
  readonly status: ProcessStatus;
  /** The current record (as last changed; saved at the granularity documented on `RecipeExecutor`). */
  readonly record: ProcessRecord;
  /** Resolves when the process has ended; never rejects. */
  readonly finished: Promise<ProcessResult>;
  /** True while a pause has been requested and not yet taken (the process still runs to its next step boundary). */
  readonly pauseRequested: boolean;
  /** Pauses at the next step boundary. */
  pause(): Promise<void>;
  /** Resumes a paused process. */
  resume(): Promise<void>;
  /** Aborts at once and applies the safe state. */
  abort(reason?: string, options?: { readonly fault?: boolean }): Promise<ProcessResult>;
}

/** Nearest-rank percentiles of `errors` (ms). */
export function timingStats(errors: readonly number[]): TimingStats {
  if (errors.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const sorted = [...errors].sort((a, b) => a - b);
  const rank = (quantile: number): number => sorted[Math.max(0, Math.ceil(quantile * sorted.length) - 1)]!;
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted.at(-1)! };
}
