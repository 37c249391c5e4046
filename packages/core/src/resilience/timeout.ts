import { KilnError } from "../domain/errors";
import type { Clock, TimerHandle } from "../ports/clock";
import { assertClock, assertNumber } from "./option-assertions";
import { setSignalDeadline } from "./signal-deadline";

/**
 * How an operation that {@link withTimeout} gave up on settled afterwards: `landed` when it
 * resolved (the store did store it, the device did take it), `failed` with its error when it
 * rejected.
 */
export type LateOutcome = { readonly landed: true } | { readonly landed: false; readonly error: unknown };

const lateOutcomes = new WeakMap<object, Promise<LateOutcome>>();

/**
 * The late outcome of the call a `KILN_TIMEOUT` from {@link withTimeout} abandoned: resolves (never
 * rejects) once that call settles. `undefined` for any other error (or a timeout raised elsewhere).
 * The error keeps its identity through a breaker and a single attempt, so whoever catches the
 * timeout can learn whether the abandoned call landed (issue 15, fix15ak: an audit entry set aside
 * after its call timed out, whose call then stored it, was reported not in the trail).
 */
export function lateOutcomeOf(error: unknown): Promise<LateOutcome> | undefined {
  return typeof error === "object" && error !== null ? lateOutcomes.get(error) : undefined;
}

/** Options of {@link withTimeout}. */
export interface TimeoutOptions {
  /** Where the timer comes from. */
  readonly clock: Clock;
  /** How long the operation may run, in ms. `Infinity` disables the timer. Must be greater than 0. */
  readonly timeoutMs: number;
  /** What is being timed, for the error (`"opcua read"`, `"store writeBatch"`). @default "operation" */
  readonly name?: string;
  /** Aborting it aborts the operation and rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * Runs `operation`, giving up after `timeoutMs` on the injected clock.
 *
 * The operation receives an `AbortSignal` that aborts when the time runs out or when the outer
 * `signal` aborts, and carries its deadline (`signalTimeLeft(signal)` from the driver kit); a well-behaved operation stops its work then. `withTimeout` does not wait for
 * it: it rejects at once; what the operation settles with later is not its result, but is kept
 * for whoever caught the timeout ({@link lateOutcomeOf}). The timer
 * and the outer-signal listener are removed as soon as the result is known.
 *
 * @returns what `operation` resolves with, if it does so in time.
 * @throws {@link KilnError} `KILN_TIMEOUT` (retryable, `details: { operation, timeoutMs }`) when the
 *   time runs out; the inner signal is aborted with that same error.
 * @throws the outer signal's `reason` when it aborts first (also when it is already aborted, in
 *   which case `operation` is not called).
 * @throws whatever `operation` throws or rejects with, unchanged.
 * @throws `TypeError`/`RangeError`, synchronously, for invalid options (a programmer error).
 *
 * @example
 * const samples = await withTimeout((signal) => driver.read(tags, { signal }), {
 *   clock, timeoutMs: 2_000, name: "plc read",
 * });
 */
export function withTimeout<T>(operation: (signal: AbortSignal) => Promise<T>, options: TimeoutOptions): Promise<T> {
  assertClock(options.clock, "options.clock");
  assertNumber(options.timeoutMs, "options.timeoutMs", { min: 0, exclusiveMin: true, allowInfinity: true });
  const { clock, timeoutMs, signal: outer } = options;
  const name = options.name ?? "operation";

  return new Promise<T>((resolve, reject) => {
    if (outer?.aborted) {
      reject(outer.reason);
      return;
    }
    const controller = new AbortController();
    let settled = false;
    let timer: TimerHandle | undefined;
    let pending: Promise<T> | undefined;

    const finish = (): boolean => {
      if (settled) return false;
      settled = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      outer?.removeEventListener("abort", onOuterAbort);
      return true;
    };
    const onOuterAbort = (): void => {
      if (!finish()) return;
      controller.abort(outer?.reason);
      reject(outer?.reason);
    };

    if (timeoutMs !== Infinity) {
      setSignalDeadline(controller.signal, clock, clock.now() + timeoutMs);
      timer = clock.setTimeout(() => {
        if (!finish()) return;
        const error = new KilnError(
          "KILN_TIMEOUT",
          `${name} did not complete within ${timeoutMs} ms. Check that the device or store is reachable, or raise timeoutMs.`,
          { retryable: true, details: { operation: name, timeoutMs } },
        );
        // The abandoned call's own settlement, for whoever catches the timeout (fix15ak).
        const call = pending;
        if (call !== undefined)
          lateOutcomes.set(
            error,
            call.then(
              (): LateOutcome => ({ landed: true }),
              (lateError: unknown): LateOutcome => ({ landed: false, error: lateError }),
            ),
          );
        controller.abort(error);
        reject(error);
      }, timeoutMs);
    }
    outer?.addEventListener("abort", onOuterAbort, { once: true });

    try {
      pending = Promise.resolve(operation(controller.signal));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (value) => {
        if (finish()) resolve(value);
      },
      (error: unknown) => {
        if (finish()) reject(error);
      },
    );
  });
}
