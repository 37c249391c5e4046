import type { Clock } from "../ports/clock";

interface Deadline {
  readonly clock: Clock;
  readonly at: number;
}

const deadlines = new WeakMap<AbortSignal, Deadline>();

/**
 * Records that `signal` will abort when `clock` reaches `at` (ms on that clock): the caller's time
 * budget. {@link withTimeout} records it on the signal it hands to the operation, so a callee can
 * finish early with what it has instead of being cut off (see {@link signalTimeLeft}).
 */
export function setSignalDeadline(signal: AbortSignal, clock: Clock, at: number): void {
  deadlines.set(signal, { clock, at });
}

/**
 * The time left (ms, ≥ 0, on the caller's clock) before `signal` aborts because its caller's time
 * budget runs out, or `undefined` when the signal carries no deadline (an `AbortSignal.any` of
 * several signals does not inherit one). A driver's `read` uses it to return the samples it has,
 * marking the rest bad, before the core gives up on the whole call.
 *
 * @example
 * const left = signalTimeLeft(signal); // 1_950 inside a read under acquisition.timeoutMs 2_000
 */
export function signalTimeLeft(signal: AbortSignal | undefined): number | undefined {
  const deadline = signal === undefined ? undefined : deadlines.get(signal);
  if (deadline === undefined) return undefined;
  return Math.max(0, deadline.at - deadline.clock.now());
}
