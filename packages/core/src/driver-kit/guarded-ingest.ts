import type { CircuitBreakerSnapshot, Clock, Sample, Store, Tag } from "@kiln/core";
import type { SampleWriteResult } from "@kiln/core/driver-kit";
import { callPolicy, type PortPolicy } from "../compose/port-policies";
import type { PortCall } from "../resilience/guarded-ports";

/**
 * A store's sample ingest (tag registration and `samples.writeBatch`) under one port policy;
 * see {@link guardIngest}.
 */
export interface GuardedIngest {
  /**
   * Registers tag metadata (`store.open(tags)`, idempotent): each attempt under the policy's
   * timeout and through the ingest breaker, retried like {@link GuardedIngest.writeBatch}.
   * @throws the first error retrying cannot fix (a non-retryable `KilnError`), or the signal's reason.
   */
  open(tags: readonly Tag[], call?: PortCall): Promise<void>;
  /**
   * Stores `samples` (`store.samples.writeBatch`, idempotent on (tag, timestamp)): each attempt
   * under the timeout (`KILN_TIMEOUT`) and through the breaker, retried on the policy's schedule
   * while the failure is retryable, the store did not classify it, or the breaker is open.
   * Resolves with the sink's result (its conflicts), or `void` from a sink that reports none.
   * @throws the first error retrying cannot fix, the last one when the attempts run out, or the
   *   signal's reason once `call.signal` aborts (a running attempt ends at once).
   */
  writeBatch(samples: readonly Sample[], call?: PortCall): Promise<SampleWriteResult | void>;
  /** The ingest breaker (`store:samples`) now, for the adapter's health report. */
  readonly breaker: CircuitBreakerSnapshot;
  /** Closes the breaker and clears its recovery timer (at stop: a stopped adapter holds no timer). */
  reset(reason: string): void;
}

/**
 * Wraps the sample ingest of `store` in `policy`, the same mechanism composition applies to a
 * control system's own store ports: for an adapter that writes into a {@link Store} itself (a
 * Sparkplug host), so it writes no retry loop, timeout or breaker of its own. Registration and
 * writes share one breaker: both fail when the store's ingest path does.
 *
 * @param policy `timeoutMs` per attempt, the breaker, and `retry` (omit it for one attempt; pass
 *   `maxAttempts: Number.MAX_SAFE_INTEGER` to retry until stored or aborted, with an injected
 *   `random` for the backoff's jitter).
 * @throws `TypeError`/`RangeError` for an invalid policy or clock (a programmer error).
 *
 * @example
 * const ingest = guardIngest(store, {
 *   timeoutMs: 10_000,
 *   breaker: { failureThreshold: 5, recoveryTimeMs: 10_000 },
 *   retry: { maxAttempts: Number.MAX_SAFE_INTEGER, initialDelayMs: 200, maxDelayMs: 10_000, random },
 * }, clock);
 * await ingest.writeBatch(samples, { signal, onRetry: ({ error }) => log.warn(error) });
 */
export function guardIngest(store: Pick<Store, "open" | "samples">, policy: PortPolicy, clock: Clock): GuardedIngest {
  const ingest = callPolicy("samples", policy, true, { clock });
  return {
    open: (tags, call = {}) => ingest.execute(() => store.open(tags), call.signal, call.onRetry),
    writeBatch: (samples, call = {}) =>
      ingest.execute(() => store.samples.writeBatch(samples), call.signal, call.onRetry),
    get breaker() {
      return ingest.breaker.snapshot;
    },
    reset: (reason) => ingest.breaker.reset(reason),
  };
}
