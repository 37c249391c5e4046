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
    const dispose = onAbort(signal, () => {
      promise.catch(() => undefined);
      reject(abortError(signal, what));
    });
    promise.then(
      (value) => {
        dispose();
        resolve(value);
      },
      (error: unknown) => {
        dispose();
        reject(error);
      },
    );
  });
}

/** The callbacks waiting on each signal, behind the one listener {@link onAbort} adds to it. */
const waiting = new WeakMap<AbortSignal, Set<() => void>>();
/** The `abort` listener behind each set of waiting callbacks. */
const listeners = new WeakMap<Set<() => void>, () => void>();

/**
 * Calls `callback` once when `signal` aborts (at once, synchronously, when it has aborted already) and
 * returns a disposer that stops waiting. However many callers wait on one signal, it holds a single
 * `abort` listener, which fans out to them and is removed when the last one stops waiting: a caller's
 * signal shared by many concurrent requests (a shutdown signal, `maxInFlight` requests of one read) never
 * trips Node's `MaxListenersExceededWarning`. A callback that throws is rethrown in a microtask (an uncaught
 * exception, as from a listener) without keeping the others from running.
 *
 * @example
 * const dispose = onAbort(signal, () => socket.destroy());
 * try { await work(); } finally { dispose(); }
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  if (signal.aborted) {
    callback();
    return () => undefined;
  }
  let callbacks = waiting.get(signal);
  if (callbacks === undefined) {
    const set = new Set<() => void>();
    callbacks = set;
    waiting.set(signal, set);
    const fanOut = (): void => {
      waiting.delete(signal);
      for (const waiter of [...set]) {
        try {
          waiter();
        } catch (error) {
          queueMicrotask(() => {
            throw error;
          });
        }
      }
      set.clear();
    };
    signal.addEventListener("abort", fanOut, { once: true });
    listeners.set(set, fanOut);
  }
  const set = callbacks;
  let active = true;
  const entry = (): void => {
    if (!active) return;
    active = false;
    callback();
  };
  set.add(entry);
  return () => {
    if (!active) return;
    active = false;
    set.delete(entry);
    if (set.size === 0 && waiting.get(signal) === set) {
      waiting.delete(signal);
      const fanOut = listeners.get(set);
      if (fanOut) signal.removeEventListener("abort", fanOut);
    }
  };
}

/** A promise that never settles on its own: it rejects with {@link abortError} when `signal` aborts. */
export function untilAbort(signal: AbortSignal | undefined, what?: string): Promise<never> {
  return raceAbort(new Promise<never>(() => undefined), signal, what);
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
