import { KilnError, KilnValidationError } from "../domain/errors";
import type { Clock } from "@kiln/core";
import { SystemClock } from "../runtime/system-clock";

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

/** Options of {@link deadlineSignal}. */
export interface DeadlineSignalOptions {
  /** The clock the deadline is counted on. @default a new `SystemClock` */
  readonly clock?: Clock;
  /** A signal of the caller's own: the returned signal aborts with it too (then with its reason). */
  readonly signal?: AbortSignal;
}

/**
 * An `AbortSignal` that aborts `timeoutMs` ms from now (on `options.clock`) with a `KILN_TIMEOUT` `KilnError`, and
 * carries that deadline, so a driver called directly can return what it finished in time instead of failing the
 * whole call: `driver.read(tags, deadlineSignal(2_000))` returns the samples answered before the
 * deadline good and the rest bad, where `AbortSignal.timeout(2_000)` (whose deadline a driver cannot see) makes it
 * reject `KILN_ABORTED`, discarding them. Through a control system this is done for you (the port policy's timeout).
 *
 * @param timeoutMs - The time budget, ms (finite, ≥ 0).
 * @throws KilnValidationError (`KILN_VALIDATION`) naming `timeoutMs` when it is negative or not finite;
 *   nothing is started.
 * @example
 * const samples = await driver.read(tags.list(), deadlineSignal(1_500));
 */
export function deadlineSignal(timeoutMs: number, options: DeadlineSignalOptions = {}): AbortSignal {
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0)
    throw new KilnValidationError("deadlineSignal", [
      { path: "timeoutMs", message: `must be a finite number of ms ≥ 0 (got ${String(timeoutMs)})` },
    ]);
  const clock = options.clock ?? new SystemClock();
  const controller = new AbortController();
  const outer = options.signal;
  const timer = clock.setTimeout(() => {
    outer?.removeEventListener("abort", onOuterAbort);
    controller.abort(
      new KilnError("KILN_TIMEOUT", `The caller's deadline of ${timeoutMs} ms passed.`, {
        retryable: true,
        details: { timeoutMs },
      }),
    );
  }, timeoutMs);
  const onOuterAbort = (): void => {
    clock.clearTimeout(timer);
    controller.abort(outer?.reason);
  };
  if (outer?.aborted) onOuterAbort();
  else outer?.addEventListener("abort", onOuterAbort, { once: true });
  setSignalDeadline(controller.signal, clock, clock.now() + timeoutMs);
  return controller.signal;
}
