import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { Clock } from "../ports/clock";
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitBreakerSnapshot } from "./circuit-breaker";
import { assertClock, assertName, assertNumber } from "./option-assertions";
import { createRetryPolicy, retry, type RetryInfo, type RetryPolicy, type RetryPolicyOptions } from "./retry";
import { withTimeout } from "./timeout";

/** Breaker settings of a {@link CallPolicy} that builds its own breaker. */
export type CallPolicyBreakerOptions = Omit<CircuitBreakerOptions, "name" | "clock" | "bus">;

/** Options of {@link CallPolicy}. */
export interface CallPolicyOptions {
  /** What the policy guards (`"plc:line-1"`, `"store"`); names the breaker and the timeout. */
  readonly name: string;
  /** Source of time for the timeout, the backoff and the breaker. */
  readonly clock: Clock;
  /** Time allowed to each attempt, in ms. `Infinity` disables it (not advised for device calls). */
  readonly timeoutMs: number;
  /** Retry schedule for {@link CallPolicy.execute}. Omit it for a single attempt. */
  readonly retry?: RetryPolicyOptions;
  /**
   * The breaker's settings, or an existing {@link CircuitBreaker} to share (e.g. one breaker per
   * device for its read policy and its write policy). A shared breaker is not disposed with the policy.
   */
  readonly breaker: CallPolicyBreakerOptions | CircuitBreaker;
  /** Where the breaker it builds publishes `breaker-state-change`. */
  readonly bus?: EventBus<KilnEvents>;
  /** Called before each backoff wait. */
  readonly onRetry?: (info: RetryInfo) => void;
}

const SINGLE_ATTEMPT: RetryPolicyOptions = { maxAttempts: 1, initialDelayMs: 0, maxDelayMs: 0 };

/**
 * The policy the core wraps around every driver and store call: a timeout on each attempt,
 * inside a circuit breaker, inside a retry.
 *
 * ```
 * retry( breaker( timeout( operation ) ) )
 * ```
 *
 * Why this order:
 * - **Timeout innermost, per attempt**: a hung call becomes a `KILN_TIMEOUT` failure that the
 *   breaker counts, a half-open probe can never hang the breaker, and each retry gets the full
 *   `timeoutMs` instead of sharing one budget.
 * - **Breaker inside retry**: every attempt is counted separately, so a burst of failing attempts
 *   trips the breaker; and once it is open, later attempts are refused at once without touching
 *   the device or starting a timer.
 * - **Retry outermost**: `KILN_CIRCUIT_OPEN` is retryable, so the retry waits its normal backoff
 *   and tries again; if the breaker turned half-open meanwhile, that attempt is the probe. When
 *   the attempts run out while the breaker is still open, the caller gets `KILN_CIRCUIT_OPEN`.
 *   Retry does not stretch its waits to the breaker's `retryInMs`: the caller's latency budget
 *   is the retry schedule, not the breaker's recovery time.
 *
 * The caller's signal reaches every layer: it aborts the running attempt, ends a backoff wait
 * at once, and a failure caused by it is not counted by the breaker.
 *
 * @example
 * const policy = new CallPolicy({
 *   name: "plc:line-1", clock, bus, timeoutMs: 2_000,
 *   retry: { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2_000 },
 *   breaker: { failureThreshold: 5, recoveryTimeMs: 10_000 },
 * });
 * const samples = await policy.execute((signal) => driver.read(tags, { signal }));
 */
export class CallPolicy {
  /** The policy's name. */
  readonly name: string;
  /** The breaker every call goes through. */
  readonly breaker: CircuitBreaker;
  /** The checked retry schedule used by {@link CallPolicy.execute}. */
  readonly retryPolicy: RetryPolicy;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #ownsBreaker: boolean;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;

  /** @throws `TypeError`/`RangeError` for invalid options (a programmer error). */
  constructor(options: CallPolicyOptions) {
    if (typeof options !== "object" || options === null) throw new TypeError("policy options must be an object");
    assertName(options.name, "policy.name");
    assertClock(options.clock, "policy.clock");
    assertNumber(options.timeoutMs, "policy.timeoutMs", { min: 0, exclusiveMin: true, allowInfinity: true });
    this.name = options.name;
    this.#clock = options.clock;
    this.#timeoutMs = options.timeoutMs;
    this.retryPolicy = createRetryPolicy(options.retry ?? SINGLE_ATTEMPT);
    this.#onRetry = options.onRetry;
    if (options.breaker instanceof CircuitBreaker) {
      this.breaker = options.breaker;
      this.#ownsBreaker = false;
    } else {
      this.breaker = new CircuitBreaker({
        ...options.breaker,
        name: options.name,
        clock: options.clock,
        bus: options.bus,
      });
      this.#ownsBreaker = true;
    }
  }

  /** The breaker's state and counters, for health reports. */
  get snapshot(): CircuitBreakerSnapshot {
    return this.breaker.snapshot;
  }

  /**
   * Runs an idempotent `operation` under timeout, breaker and retry.
   *
   * @param operation receives a signal that aborts when its attempt times out or `signal` aborts.
   * @returns what the first successful attempt resolves with.
   * @throws the last attempt's error, unchanged: `KILN_TIMEOUT`, `KILN_CIRCUIT_OPEN`, or the
   *   operation's own error (at once when it is not retryable).
   * @throws the signal's reason when `signal` aborts.
   *
   * @param onRetry called before each backoff wait of this call, after the policy's own `onRetry`.
   */
  execute<T>(
    operation: (signal: AbortSignal) => Promise<T>,
    signal?: AbortSignal,
    onRetry?: (info: RetryInfo) => void,
  ): Promise<T> {
    const policyOnRetry = this.#onRetry;
    const both =
      policyOnRetry && onRetry
        ? (info: RetryInfo): void => {
            policyOnRetry(info);
            onRetry(info);
          }
        : (policyOnRetry ?? onRetry);
    return retry(() => this.#attempt(operation, signal), this.retryPolicy, {
      clock: this.#clock,
      signal,
      onRetry: both,
    });
  }

  /**
   * Runs `operation` once under timeout and breaker, never retrying: for calls that are not
   * idempotent, such as a PLC write that pulses an output.
   *
   * @throws as {@link CallPolicy.execute}, after a single attempt.
   */
  executeOnce<T>(operation: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#attempt(operation, signal);
  }

  /** Disposes the breaker when the policy built it; a shared breaker is left alone. */
  dispose(): void {
    if (this.#ownsBreaker) this.breaker.dispose();
  }

  /** Same as {@link CallPolicy.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  #attempt<T>(operation: (signal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    return this.breaker.execute(
      () => withTimeout(operation, { clock: this.#clock, timeoutMs: this.#timeoutMs, name: this.name, signal }),
      signal,
    );
  }
}
