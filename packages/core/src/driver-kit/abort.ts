import { KilnError } from "../domain/errors";

/**
 * The error a call rejects with when `signal` aborted it: the signal's reason when that is a
 * `KilnError` (a timeout, a close), otherwise a `KILN_ABORTED` error with the reason as `cause`.
 *
 * @param what names the call in the message ("the read", "connecting to opc.tcp://...").
 */
export function abortError(signal: AbortSignal, what = "the call"): KilnError {
  if (KilnError.is(signal.reason)) return signal.reason;
  return new KilnError("KILN_ABORTED", `${capitalise(what)} was aborted.`, { cause: signal.reason });
}

/**
 * Settles like `promise`, unless `signal` aborts first: then it rejects at once with
 * {@link abortError}. The work behind `promise` is not cancelled (pass the signal into it for
 * that); its later outcome is ignored, a late rejection included. Without a signal it returns
 * `promise` itself.
 *
 * @throws the {@link abortError} of `signal` (a `KilnError`, `KILN_ABORTED` unless the signal's
 *   reason is itself a `KilnError`) when it aborts before `promise` settles or was aborted already.
 *
 * @example
 * const values = await raceAbort(session.read(nodes), signal, "the read");
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, what?: string): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(abortError(signal, what));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      promise.catch(() => undefined);
      reject(abortError(signal, what));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** A promise that never settles on its own: it rejects with {@link abortError} when `signal` aborts. */
export function untilAbort(signal: AbortSignal | undefined, what?: string): Promise<never> {
  return raceAbort(new Promise<never>(() => undefined), signal, what);
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
