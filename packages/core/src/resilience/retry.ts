import { isRetryable } from "../domain/errors";
import type { Clock } from "../ports/clock";
import { assertClock, assertNumber, assertOptionalFunction } from "./option-assertions";

/** How a backoff delay is randomised. See {@link backoffDelay}. */
export type RetryJitter = "full" | "equal" | "none";

/** The jitter kinds, for validation and documentation. */
export const RETRY_JITTERS: readonly RetryJitter[] = ["full", "equal", "none"];

/** What a caller writes to configure retries. Normalised and checked by {@link createRetryPolicy}. */
export interface RetryPolicyOptions {
  /** Total number of attempts, the first one included. `1` means "never retry". An integer ≥ 1. */
  readonly maxAttempts: number;
  /** Delay before the second attempt, before jitter, in ms. ≥ 0. */
  readonly initialDelayMs: number;
  /** Upper bound of any delay, before jitter, in ms. ≥ `initialDelayMs`. */
  readonly maxDelayMs: number;
  /** Growth factor of the delay from one retry to the next. ≥ 1. @default 2 */
  readonly multiplier?: number;
  /**
   * `"full"`: uniform in `[0, delay)`; `"equal"`: uniform in `[delay/2, delay)`; `"none"`: exactly
   * `delay`. Full jitter spreads retries of many clients best. @default "full"
   */
  readonly jitter?: RetryJitter;
  /** Source of randomness in `[0, 1)`, injectable for tests. @default Math.random */
  readonly random?: () => number;
  /**
   * Decides whether a failed attempt is retried. Replaces the default, which is
   * {@link isRetryable} (only `KilnError`s flagged `retryable`). Not consulted after the last attempt.
   */
  readonly shouldRetry?: (error: unknown, attempt: number) => boolean;
}

/** A checked retry policy with every default applied. */
export interface RetryPolicy {
  /** Total number of attempts, the first one included. */
  readonly maxAttempts: number;
  /** Delay before the second attempt, before jitter, in ms. */
  readonly initialDelayMs: number;
  /** Upper bound of any delay, before jitter, in ms. */
  readonly maxDelayMs: number;
  /** Growth factor of the delay. */
  readonly multiplier: number;
  /** How delays are randomised. */
  readonly jitter: RetryJitter;
  /** Source of randomness in `[0, 1)`. */
  readonly random: () => number;
  /** Custom retry decision, when one was given. */
  readonly shouldRetry: ((error: unknown, attempt: number) => boolean) | undefined;
}

/**
 * Checks `options` and applies the defaults. Passing an already normalised policy returns an
 * equal policy.
 *
 * @throws `TypeError` for a wrong type and `RangeError` for a value out of range (negative delay,
 *   `maxDelayMs < initialDelayMs`, `multiplier < 1`, `maxAttempts < 1`...). These are programmer
 *   errors; each message names the option.
 *
 * @example
 * const policy = createRetryPolicy({ maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 5_000 });
 */
export function createRetryPolicy(options: RetryPolicyOptions): RetryPolicy {
  if (typeof options !== "object" || options === null) throw new TypeError("retry policy must be an object");
  assertNumber(options.maxAttempts, "retry.maxAttempts", { min: 1, integer: true });
  assertNumber(options.initialDelayMs, "retry.initialDelayMs", { min: 0 });
  assertNumber(options.maxDelayMs, "retry.maxDelayMs", { min: options.initialDelayMs });
  const multiplier = options.multiplier ?? 2;
  assertNumber(multiplier, "retry.multiplier", { min: 1 });
  const jitter = options.jitter ?? "full";
  if (typeof jitter !== "string") throw new TypeError(`retry.jitter must be a string, got ${typeof jitter}`);
  if (!RETRY_JITTERS.includes(jitter)) {
    throw new RangeError(`retry.jitter must be one of ${RETRY_JITTERS.join(", ")}, got "${jitter}"`);
  }
  assertOptionalFunction(options.random, "retry.random");
  assertOptionalFunction(options.shouldRetry, "retry.shouldRetry");
  return Object.freeze({
    maxAttempts: options.maxAttempts,
    initialDelayMs: options.initialDelayMs,
    maxDelayMs: options.maxDelayMs,
    multiplier,
    jitter,
    random: options.random ?? Math.random,
    shouldRetry: options.shouldRetry,
  });
}

/**
 * The wait after failed attempt number `attempt` (1-based), before the next one, in whole ms.
 *
 * The un-jittered delay is `min(maxDelayMs, initialDelayMs × multiplier^(attempt − 1))`; jitter
 * then applies (see {@link RetryPolicyOptions.jitter}) and the result is rounded down. Pure: the
 * same inputs always give the same delay.
 *
 * @param random a value in `[0, 1)`, usually `policy.random()`.
 * @throws `RangeError` when `attempt` is not an integer ≥ 1 or `random` is outside `[0, 1)`.
 *
 * @example
 * // 100, 200, 400, 800, 1000, 1000... with jitter "none", initial 100, max 1000
 * backoffDelay(3, policy, 0.5);
 */
export function backoffDelay(
  attempt: number,
  policy: Pick<RetryPolicy, "initialDelayMs" | "maxDelayMs" | "multiplier" | "jitter">,
  random: number,
): number {
  assertNumber(attempt, "attempt", { min: 1, integer: true });
  if (!(random >= 0 && random < 1)) throw new RangeError(`random must be in [0, 1), got ${random}`);
  // 0 × Infinity is NaN, so a zero initial delay short-circuits before the power can overflow.
  const exponential = policy.initialDelayMs === 0 ? 0 : policy.initialDelayMs * policy.multiplier ** (attempt - 1);
  const capped = Math.min(policy.maxDelayMs, exponential);
  switch (policy.jitter) {
    case "none":
      return Math.floor(capped);
    case "equal":
      return Math.floor(capped / 2 + (random * capped) / 2);
    case "full":
      return Math.floor(random * capped);
  }
}

/** What {@link RetryOptions.onRetry} is told before each wait. */
export interface RetryInfo {
  /** The attempt that just failed (1-based). The next one is `attempt + 1`. */
  readonly attempt: number;
  /** How long the retry waits before the next attempt, in ms. */
  readonly delayMs: number;
  /** Why the attempt failed. */
  readonly error: unknown;
}

/** Per-call options of {@link retry}. */
export interface RetryOptions {
  /** Where the backoff waits come from. */
  readonly clock: Clock;
  /**
   * Aborting it stops the retries: a pending backoff wait ends at once and no further attempt
   * starts; `retry` rejects with the signal's reason. An attempt already running is not
   * interrupted by `retry` itself: pass the signal into the operation for that.
   */
  readonly signal?: AbortSignal;
  /** Called before each backoff wait (for logging, metrics, events). If it throws, `retry` rejects with that error. */
  readonly onRetry?: (info: RetryInfo) => void;
}

/**
 * Calls `operation` until it succeeds, the attempts run out, or an error is not worth retrying.
 *
 * An error is retried when `policy.shouldRetry(error, attempt)` says so or, without one, when
 * {@link isRetryable} does (a `KilnError` flagged `retryable`: timeouts, dropped connections,
 * open breakers). Between attempts it waits {@link backoffDelay} on `options.clock`.
 *
 * @param operation receives the attempt number (1-based).
 * @returns what the first successful attempt resolves with.
 * @throws the last attempt's error, unchanged, when attempts are exhausted or the error is not retried.
 * @throws the signal's reason when `options.signal` aborts.
 * @throws `TypeError`/`RangeError`, synchronously, for an invalid policy or clock (a programmer error).
 *
 * @example
 * await retry(() => sink.writeBatch(samples), { maxAttempts: 5, initialDelayMs: 200, maxDelayMs: 10_000 }, { clock });
 */
export function retry<T>(
  operation: (attempt: number) => Promise<T>,
  policy: RetryPolicyOptions,
  options: RetryOptions,
): Promise<T> {
  // Checked before the first attempt and thrown synchronously: a bad policy is a programmer error.
  const checked = createRetryPolicy(policy);
  assertClock(options.clock, "options.clock");
  return run(operation, checked, options);
}

async function run<T>(
  operation: (attempt: number) => Promise<T>,
  checked: RetryPolicy,
  { clock, signal, onRetry }: RetryOptions,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw signal.reason;
    try {
      return await operation(attempt);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (attempt >= checked.maxAttempts) throw error;
      const worthRetrying = checked.shouldRetry ? checked.shouldRetry(error, attempt) : isRetryable(error);
      if (!worthRetrying) throw error;
      const delayMs = backoffDelay(attempt, checked, checked.random());
      onRetry?.({ attempt, delayMs, error });
      await clock.sleep(delayMs, signal);
    }
  }
}
