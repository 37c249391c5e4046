import { KilnError, type KilnErrorCode } from "../domain/errors";
import type { BreakerState, KilnEvents } from "../events/catalogue";
import type { Disposer, EventBus } from "../events/event-bus";
import type { Clock, TimerHandle } from "../ports/clock";
import { assertClock, assertName, assertNumber, assertOptionalFunction } from "./option-assertions";

/** A breaker's state and counters, for health reports. */
export interface CircuitBreakerSnapshot {
  /** The breaker's name (the device or store it guards). */
  readonly name: string;
  /**
   * The current state; each variant carries only its own data (narrow by `state`).
   * - `closed`: calls pass; `failures` counts consecutive counted failures.
   * - `open`: calls are refused without running. `until` is when it turns half-open on its own,
   *   or `null` when it was isolated (`CircuitBreaker.isolate`) and waits for `reset()`.
   * - `half-open`: up to `halfOpenMaxCalls` probe calls pass; the first result decides.
   */
  readonly state:
    | { readonly state: "closed"; readonly failures: number }
    | { readonly state: "open"; readonly openedAt: number; readonly until: number | null }
    | { readonly state: "half-open" };
  /** When the breaker entered its current state, ms since the Unix epoch. */
  readonly since: number;
  /** Calls that succeeded, since creation. */
  readonly successes: number;
  /** Calls that failed with an error counted by `isFailure`, since creation. */
  readonly failures: number;
  /** Calls refused without running because the breaker was open (or half-open and busy). */
  readonly rejections: number;
}

/** A breaker's state, by name for this module. */
type CircuitState = CircuitBreakerSnapshot["state"];

/** A state change, as told to {@link CircuitBreaker.onStateChange} listeners. */
export interface CircuitStateChange {
  /** When it changed, ms since the Unix epoch. */
  readonly at: number;
  /** The breaker's name. */
  readonly breaker: string;
  /** The state before. */
  readonly from: BreakerState;
  /** The state after. */
  readonly to: BreakerState;
  /** Why, in words (`"3 consecutive failures"`, `"recovery time elapsed"`, `"probe succeeded"`...). */
  readonly reason: string;
}

/** Options of {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** What the breaker guards (`"plc:line-1"`, `"store"`). Appears in events and errors. */
  readonly name: string;
  /** Source of time and of the recovery timer. */
  readonly clock: Clock;
  /** Consecutive counted failures that open a closed breaker. An integer ≥ 1. */
  readonly failureThreshold: number;
  /** How long the breaker stays open before it turns half-open on its own, in ms. > 0. */
  readonly recoveryTimeMs: number;
  /** Probe calls admitted at once while half-open. An integer ≥ 1. @default 1 */
  readonly halfOpenMaxCalls?: number;
  /** Where `breaker-state-change` events are published. */
  readonly bus?: EventBus<KilnEvents>;
  /**
   * Whether an error says the guarded dependency is unhealthy. Errors it rejects neither count
   * towards opening nor reset the count, and a half-open probe failing with one leaves the
   * breaker half-open. @default {@link isBreakerFailure}
   */
  readonly isFailure?: (error: unknown) => boolean;
}

/**
 * Codes that prove the dependency answered and the caller was at fault (or gave up), so they say
 * nothing about the dependency's health.
 */
const CALLER_FAULT_CODES: ReadonlySet<KilnErrorCode> = new Set<KilnErrorCode>([
  "KILN_VALIDATION",
  "KILN_INVALID_TRANSITION",
  "KILN_TAG_UNKNOWN",
  "KILN_TAG_NOT_WRITABLE",
  "KILN_OUT_OF_RANGE",
  "KILN_WRITE_REJECTED",
  "KILN_NOT_SUPPORTED",
  "KILN_CONCURRENCY_CONFLICT",
  "KILN_NOT_FOUND",
  "KILN_ALREADY_EXISTS",
  "KILN_FORBIDDEN",
  "KILN_ABORTED",
  "KILN_HISTORY_EVICTED",
]);

/**
 * The default {@link CircuitBreakerOptions.isFailure}: every error counts against the dependency
 * except those that show it answered or that the caller cancelled:
 * - a non-retryable `KilnError` whose code is a caller fault (`KILN_VALIDATION`, `KILN_TAG_UNKNOWN`,
 *   `KILN_TAG_NOT_WRITABLE`, `KILN_OUT_OF_RANGE`, `KILN_WRITE_REJECTED`, `KILN_NOT_SUPPORTED`,
 *   `KILN_INVALID_TRANSITION`, `KILN_CONCURRENCY_CONFLICT`, `KILN_NOT_FOUND`, `KILN_ALREADY_EXISTS`,
 *   `KILN_FORBIDDEN`, `KILN_ABORTED`, `KILN_HISTORY_EVICTED`);
 * - a `TypeError` or `RangeError` (a programmer error in the caller);
 * - an `AbortError` (the caller aborted its own signal).
 *
 * Timeouts, connection and device errors, store errors and unknown errors count.
 */
export function isBreakerFailure(error: unknown): boolean {
  if (KilnError.is(error)) return error.retryable || !CALLER_FAULT_CODES.has(error.code);
  if (error instanceof TypeError || error instanceof RangeError) return false;
  if (typeof error === "object" && error !== null && (error as { name?: unknown }).name === "AbortError") return false;
  return true;
}

/**
 * A circuit breaker for one device or store. After `failureThreshold` consecutive failures it
 * opens and refuses calls at once with `KILN_CIRCUIT_OPEN`, sparing the dependency and the
 * caller. After `recoveryTimeMs` it turns half-open by itself, on a clock timer, even with no
 * traffic, so health reports and events show the change when it happens. Half-open, it lets
 * `halfOpenMaxCalls` probes through: the first success closes it, the first counted failure opens
 * it for another `recoveryTimeMs`.
 *
 * Every state change publishes `breaker-state-change` on `bus` and calls the
 * {@link CircuitBreaker.onStateChange} listeners, in that order. A result that arrives after the
 * state it was admitted in has changed (a slow call finishing after the breaker opened) updates
 * the counters but not the state.
 *
 * @example
 * const breaker = new CircuitBreaker({ name: "plc:line-1", clock, failureThreshold: 5, recoveryTimeMs: 10_000, bus });
 * const samples = await breaker.execute(() => driver.read(tags));
 * breaker.dispose();
 */
export class CircuitBreaker {
  /** The breaker's name. */
  readonly name: string;
  readonly #clock: Clock;
  readonly #failureThreshold: number;
  readonly #recoveryTimeMs: number;
  readonly #halfOpenMaxCalls: number;
  readonly #bus: EventBus<KilnEvents> | undefined;
  readonly #isFailure: (error: unknown) => boolean;
  readonly #listeners = new Set<(change: CircuitStateChange) => void>();
  #state: CircuitState = { state: "closed", failures: 0 };
  #since: number;
  // Bumped on every state change, so a result from an earlier state cannot move the breaker.
  #generation = 0;
  #probesInFlight = 0;
  #timer: TimerHandle | undefined;
  #disposed = false;
  #successes = 0;
  #failures = 0;
  #rejections = 0;

  /** @throws `TypeError`/`RangeError` for invalid options (a programmer error). */
  constructor(options: CircuitBreakerOptions) {
    if (typeof options !== "object" || options === null) throw new TypeError("breaker options must be an object");
    assertName(options.name, "breaker.name");
    assertClock(options.clock, "breaker.clock");
    assertNumber(options.failureThreshold, "breaker.failureThreshold", { min: 1, integer: true });
    assertNumber(options.recoveryTimeMs, "breaker.recoveryTimeMs", { min: 0, exclusiveMin: true });
    const halfOpenMaxCalls = options.halfOpenMaxCalls ?? 1;
    assertNumber(halfOpenMaxCalls, "breaker.halfOpenMaxCalls", { min: 1, integer: true });
    assertOptionalFunction(options.isFailure, "breaker.isFailure");
    this.name = options.name;
    this.#clock = options.clock;
    this.#failureThreshold = options.failureThreshold;
    this.#recoveryTimeMs = options.recoveryTimeMs;
    this.#halfOpenMaxCalls = halfOpenMaxCalls;
    this.#bus = options.bus;
    this.#isFailure = options.isFailure ?? isBreakerFailure;
    this.#since = options.clock.now();
  }

  /** The current state. */
  get state(): CircuitState {
    return this.#state;
  }

  /** State and counters, for health reports. */
  get snapshot(): CircuitBreakerSnapshot {
    return {
      name: this.name,
      state: this.#state,
      since: this.#since,
      successes: this.#successes,
      failures: this.#failures,
      rejections: this.#rejections,
    };
  }

  /**
   * Runs `operation` if the breaker admits it, and records the outcome.
   *
   * @returns what `operation` resolves with.
   * @throws {@link KilnError} `KILN_CIRCUIT_OPEN` without calling `operation` while open, or while
   *   half-open with every probe slot taken. `details: { breaker, retryInMs }`; retryable, except
   *   when the breaker is isolated (`retryInMs: null`, `details.isolated: true`).
   * @throws {@link KilnError} `KILN_LIFECYCLE` after {@link CircuitBreaker.dispose}.
   * @throws whatever `operation` throws, unchanged.
   *
   * @param signal the caller's signal, if any. When it has aborted by the time `operation`
   *   fails, the failure is not counted: the caller gave up, which says nothing about the
   *   dependency's health.
   */
  async execute<T>(operation: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#disposed) {
      throw new KilnError("KILN_LIFECYCLE", `Circuit breaker "${this.name}" is disposed; create a new one.`, {
        details: { breaker: this.name },
      });
    }
    this.#admit();
    const generation = this.#generation;
    const probe = this.#state.state === "half-open";
    if (probe) this.#probesInFlight++;
    try {
      const value = await operation();
      this.#successes++;
      if (generation === this.#generation) this.#onSuccess();
      return value;
    } catch (error) {
      const counted = signal?.aborted !== true && this.#isFailure(error);
      if (counted) this.#failures++;
      if (generation === this.#generation) this.#onError(counted);
      throw error;
    } finally {
      if (probe && generation === this.#generation) this.#probesInFlight--;
    }
  }

  /**
   * Subscribes to state changes; returns a disposer. Listeners run synchronously after the
   * bus event is published. A listener that throws does not affect the breaker or the other
   * listeners; its error is published as `handler-error` on the bus when there is one.
   */
  onStateChange(listener: (change: CircuitStateChange) => void): Disposer {
    const entry = (change: CircuitStateChange): void => listener(change);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /**
   * Closes the breaker now (e.g. an operator confirmed the device is back), clearing the failure
   * count and the recovery timer; an isolated breaker is released too. A breaker that was not
   * closed publishes `breaker-state-change` with `reason`.
   * @param reason why it was reset. @default "manual reset"
   */
  reset(reason = "manual reset"): void {
    if (this.#state.state === "closed") {
      this.#state = { state: "closed", failures: 0 };
      return;
    }
    this.#transition({ state: "closed", failures: 0 }, reason);
  }

  /**
   * Opens the breaker until {@link CircuitBreaker.reset} (e.g. for maintenance): no recovery
   * timer, no probes. Calls are refused with a non-retryable `KILN_CIRCUIT_OPEN`.
   */
  isolate(): void {
    if (this.#state.state === "open" && this.#state.until === null) return;
    this.#transition({ state: "open", openedAt: this.#clock.now(), until: null }, "isolated");
  }

  /** Clears the recovery timer and drops the listeners. Later calls to `execute` reject with `KILN_LIFECYCLE`. */
  dispose(): void {
    this.#disposed = true;
    this.#clearTimer();
    this.#listeners.clear();
  }

  /** Same as {@link CircuitBreaker.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  #admit(): void {
    const state = this.#state;
    // The timer normally moves the breaker on time; this catches a timer that fired late.
    if (state.state === "open" && state.until !== null && this.#clock.now() >= state.until) {
      this.#transition({ state: "half-open" }, "recovery time elapsed");
      return;
    }
    if (state.state === "open") {
      this.#rejections++;
      const isolated = state.until === null;
      const retryInMs = isolated ? null : Math.max(0, state.until - this.#clock.now());
      throw new KilnError(
        "KILN_CIRCUIT_OPEN",
        isolated
          ? `Circuit breaker "${this.name}" is isolated; calls are refused until it is reset.`
          : `Circuit breaker "${this.name}" is open after repeated failures; calls are refused for another ${retryInMs} ms.`,
        { retryable: !isolated, details: { breaker: this.name, retryInMs, isolated } },
      );
    }
    if (state.state === "half-open" && this.#probesInFlight >= this.#halfOpenMaxCalls) {
      this.#rejections++;
      throw new KilnError(
        "KILN_CIRCUIT_OPEN",
        `Circuit breaker "${this.name}" is half-open and already probing; retry shortly.`,
        { retryable: true, details: { breaker: this.name, retryInMs: 0, isolated: false } },
      );
    }
  }

  #onSuccess(): void {
    const state = this.#state;
    if (state.state === "half-open") this.#transition({ state: "closed", failures: 0 }, "probe succeeded");
    else if (state.state === "closed" && state.failures !== 0) this.#state = { state: "closed", failures: 0 };
  }

  #onError(counted: boolean): void {
    if (!counted) return;
    const state = this.#state;
    if (state.state === "half-open") {
      this.#open("probe failed");
    } else if (state.state === "closed") {
      const failures = state.failures + 1;
      if (failures >= this.#failureThreshold) this.#open(`${failures} consecutive failures`);
      else this.#state = { state: "closed", failures };
    }
  }

  #open(reason: string): void {
    const openedAt = this.#clock.now();
    this.#transition({ state: "open", openedAt, until: openedAt + this.#recoveryTimeMs }, reason);
  }

  #transition(next: CircuitState, reason: string): void {
    const from = this.#state.state;
    this.#state = next;
    this.#generation++;
    this.#probesInFlight = 0;
    this.#since = this.#clock.now();
    this.#clearTimer();
    if (next.state === "open" && next.until !== null && !this.#disposed) {
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.#transition({ state: "half-open" }, "recovery time elapsed");
      }, next.until - this.#since);
    }
    const change: CircuitStateChange = { at: this.#since, breaker: this.name, from, to: next.state, reason };
    void this.#bus?.publish("breaker-state-change", change);
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (error) {
        void this.#bus?.publish("handler-error", { at: this.#since, eventType: "breaker-state-change", error });
      }
    }
  }

  #clearTimer(): void {
    if (this.#timer === undefined) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
