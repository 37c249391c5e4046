import type { Clock } from "../ports/clock";

interface Deadline {
  readonly clock: Clock;
  readonly at: number;
}

/**
 * The deadlines, in one registry per process under a `Symbol.for` key on `globalThis`: an application
 * that ends up with two copies of `@kiln/core` (a driver package resolving its own) still has the
 * core's `withTimeout` of one copy and a driver's `signalTimeLeft` of the other agree, instead of the
 * driver silently seeing no deadline.
 */
const deadlines: WeakMap<AbortSignal, Deadline> = sharedRegistry();

function sharedRegistry(): WeakMap<AbortSignal, Deadline> {
  const key = Symbol.for("@kiln/core/signal-deadlines@1");
  const existing = (globalThis as Record<symbol, unknown>)[key];
  if (existing instanceof WeakMap) return existing as WeakMap<AbortSignal, Deadline>;
  const registry = new WeakMap<AbortSignal, Deadline>();
  Object.defineProperty(globalThis, key, { value: registry, enumerable: false, configurable: false, writable: false });
  return registry;
}

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
