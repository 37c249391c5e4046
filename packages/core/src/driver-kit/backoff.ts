import { backoffDelay, type RetryJitter } from "../resilience/retry";

const defaultRandom: () => number = Math.random;

/**
 * How a driver spaces its reconnect attempts: capped exponential backoff with jitter, the same
 * formula as the core's retry policy ({@link backoffDelay}).
 */
export interface ReconnectBackoff {
  /** Delay before the first reconnect attempt, in ms. ≥ 0. */
  readonly initialDelayMs: number;
  /** Upper bound of any delay, before jitter, in ms. ≥ `initialDelayMs`. */
  readonly maxDelayMs: number;
  /** Growth factor from one attempt to the next. ≥ 1. @default 2 */
  readonly multiplier?: number;
  /**
   * A retry jitter kind (`"full"`, `"equal"`, `"none"`, see {@link backoffDelay}), or a fraction in
   * `[0, 1]`: each delay is shortened by up to that fraction at random, so many drivers that lost
   * the same device do not retry in step. @default 0.2
   */
  readonly jitter?: RetryJitter | number;
}

/**
 * The wait before reconnect attempt number `attempt` (1-based), in whole ms:
 * `min(maxDelayMs, initialDelayMs × multiplier^(attempt − 1))`, then jittered.
 *
 * This module is the one place a driver's backoff is computed, and the one place the default
 * source of randomness is chosen: `random` (values in `[0, 1)`) is injectable, so tests pass a
 * fixed one.
 *
 * @param random source of randomness in `[0, 1)`. @default Math.random
 * @throws `RangeError` when `attempt` is not an integer ≥ 1, `random()` is outside `[0, 1)` or a
 *   fractional `jitter` is outside `[0, 1]`.
 *
 * @example
 * // 100, 200, 400, 800, 1000, 1000... (random 0: no shortening)
 * reconnectDelay(3, { initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.5 }, () => 0); // 400
 */
export function reconnectDelay(
  attempt: number,
  backoff: ReconnectBackoff,
  random: (() => number) | undefined = defaultRandom,
): number {
  const value = (random ?? defaultRandom)();
  const jitter = backoff.jitter ?? 0.2;
  const policy = {
    initialDelayMs: backoff.initialDelayMs,
    maxDelayMs: backoff.maxDelayMs,
    multiplier: backoff.multiplier ?? 2,
  };
  if (typeof jitter === "string") return backoffDelay(attempt, { ...policy, jitter }, value);
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`jitter must be in [0, 1], got ${jitter}`);
  return Math.floor(backoffDelay(attempt, { ...policy, jitter: "none" }, value) * (1 - jitter * value));
}
