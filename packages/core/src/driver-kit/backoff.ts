import { KilnValidationError, type ValidationIssue } from "../domain/errors";
import { backoffDelay, type RetryJitter } from "../resilience/retry";

const defaultRandom: () => number = Math.random;

/**
 * The longest timeout, delay or period a driver option accepts, in ms: 1 hour (3,600,000 ms). Far
 * below Node's timer limit of 2^31 − 1 ms (about 24.8 days), past which `setTimeout` and
 * `setInterval` fire after 1 ms instead (a `TimeoutOverflowWarning`): a keep-alive of 1e12 ms
 * would poll the device in a hot loop. A longer setting is a typo, not a choice; drivers refuse
 * it with `KILN_VALIDATION` naming the field (adversarial review 13j, L2).
 */
export const MAX_DRIVER_DURATION_MS = 3_600_000;

/**
 * How a driver spaces its reconnect attempts: capped exponential backoff with jitter, the same
 * formula as the core's retry policy ({@link backoffDelay}).
 */
export interface ReconnectBackoff {
  /**
   * Delay before the first reconnect attempt, in ms. > 0 (0 would retry a dead device in a hot
   * loop), at most {@link MAX_DRIVER_DURATION_MS} (1 hour).
   */
  readonly initialDelayMs: number;
  /** Upper bound of any delay, before jitter, in ms. ≥ `initialDelayMs`, at most {@link MAX_DRIVER_DURATION_MS} (1 hour). */
  readonly maxDelayMs: number;
  /** Growth factor from one attempt to the next. A finite number ≥ 1. @default 2 */
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
 * @throws `KilnValidationError` (`KILN_VALIDATION`) when `backoff` breaks a rule of
 *   {@link checkBackoff} (NaN, negative, `initialDelayMs` 0, `jitter` outside `[0, 1]`);
 *   `RangeError` when `attempt` is not an integer ≥ 1 or `random()` is outside `[0, 1)`.
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
  checkBackoff(backoff);
  const value = (random ?? defaultRandom)();
  const jitter = backoff.jitter ?? 0.2;
  const policy = {
    initialDelayMs: backoff.initialDelayMs,
    maxDelayMs: backoff.maxDelayMs,
    multiplier: backoff.multiplier ?? 2,
  };
  if (typeof jitter === "string") return backoffDelay(attempt, { ...policy, jitter }, value);
  return Math.floor(backoffDelay(attempt, { ...policy, jitter: "none" }, value) * (1 - jitter * value));
}

const JITTER_KINDS: ReadonlySet<unknown> = new Set(["full", "equal", "none"]);

/**
 * The most attempts a backoff may take to grow from `initialDelayMs` to `maxDelayMs` (adversarial
 * pass adv13g: `multiplier: 1.0000001` was accepted and never backed off in practice: 1,000 attempts
 * later the delay had grown by 0.01 %). Also the bound of the driver kit's window of losses.
 */
export const MAX_BACKOFF_STEPS = 1_000;

/**
 * The attempt (1-based) whose delay first reaches `maxDelayMs`, before jitter: 1 when
 * `maxDelayMs ≤ initialDelayMs`; `Infinity` when the delay never grows (`multiplier` ≤ 1). Assumes
 * finite positive delays (see {@link checkBackoff}).
 */
export function backoffStepsToCap(
  backoff: Pick<ReconnectBackoff, "initialDelayMs" | "maxDelayMs" | "multiplier">,
): number {
  const multiplier = backoff.multiplier ?? 2;
  if (backoff.maxDelayMs <= backoff.initialDelayMs) return 1;
  if (!(multiplier > 1)) return Number.POSITIVE_INFINITY;
  // The smallest n with initialDelayMs × multiplier^(n − 1) ≥ maxDelayMs (a hair of slack for rounding).
  return Math.max(
    1,
    Math.ceil(Math.log(backoff.maxDelayMs / backoff.initialDelayMs) / Math.log(multiplier) - 1e-9) + 1,
  );
}

/**
 * The rule on `multiplier` that {@link checkBackoff} and the control system's options apply: the
 * delay reaches `maxDelayMs` within {@link MAX_BACKOFF_STEPS} attempts (a constant delay is
 * `maxDelayMs` equal to `initialDelayMs`). Returns the field to blame and the issue's message, or
 * undefined when it holds. The field is `multiplier` when a multiplier was given and the default
 * (2) would meet the rule; else `initialDelayMs`: the range from it to `maxDelayMs` is too wide for
 * the multiplier (`initialDelayMs: 1e-300` with the default multiplier; adv13h).
 */
export function multiplierProblem(
  backoff: Pick<ReconnectBackoff, "initialDelayMs" | "maxDelayMs" | "multiplier">,
): { readonly field: "initialDelayMs" | "multiplier"; readonly message: string } | undefined {
  const steps = backoffStepsToCap(backoff);
  if (steps <= MAX_BACKOFF_STEPS) return undefined;
  const multiplier = backoff.multiplier ?? 2;
  const named = backoff.multiplier === undefined ? "2 (the default)" : String(multiplier);
  const attempts = Number.isFinite(steps) ? `${steps} attempts` : "it never grows";
  if (backoff.multiplier !== undefined && backoffStepsToCap({ ...backoff, multiplier: 2 }) <= MAX_BACKOFF_STEPS) {
    const least = Math.ceil((backoff.maxDelayMs / backoff.initialDelayMs) ** (1 / (MAX_BACKOFF_STEPS - 1)) * 1e6) / 1e6;
    return {
      field: "multiplier",
      message: `must make the delay grow from initialDelayMs to maxDelayMs within ${MAX_BACKOFF_STEPS} attempts (got ${named}: ${attempts}); use at least ${least}, or maxDelayMs equal to initialDelayMs for a constant delay`,
    };
  }
  const growth = multiplier > 1 ? multiplier : 2;
  // A hair above the exact bound so the value named is accepted.
  const least = Number(((backoff.maxDelayMs / growth ** (MAX_BACKOFF_STEPS - 1)) * 1.01).toPrecision(3));
  return {
    field: "initialDelayMs",
    message: `must be large enough for the delay to grow to maxDelayMs within ${MAX_BACKOFF_STEPS} attempts (got ${backoff.initialDelayMs}: with multiplier ${named} and maxDelayMs ${backoff.maxDelayMs}, ${attempts}); use at least ${least}`,
  };
}

/** A value as an issue names it: a string is said to be one (`"2"` is not the number 2). */
function describeValue(value: unknown): string {
  return typeof value === "string" ? `the string ${JSON.stringify(value)} (not a number)` : String(value);
}

/**
 * The one check of a {@link ReconnectBackoff}: `initialDelayMs` a finite number > 0,
 * `maxDelayMs` finite and ≥ `initialDelayMs`, both at most {@link MAX_DRIVER_DURATION_MS}
 * (a longer delay overflows Node's timer and retries after 1 ms), `multiplier` (when given) finite and ≥ 1,
 * and such that the delay reaches `maxDelayMs` within 1,000 attempts
 * (`maxDelayMs` equal to `initialDelayMs` is a constant delay, any multiplier), `jitter` (when given) `"full"`, `"equal"`, `"none"` or a fraction in `[0, 1]`. NaN fails every rule.
 *
 * @param path the field path of `backoff` in the caller's options, for the issues (`"reconnect"`).
 * @throws `KilnValidationError` (`KILN_VALIDATION`) listing every broken rule by field path.
 */
export function checkBackoff(backoff: ReconnectBackoff, path = "backoff"): void {
  const issues: ValidationIssue[] = [];
  const field = (name: string): string => (path === "" ? name : `${path}.${name}`);
  const { initialDelayMs, maxDelayMs, multiplier, jitter } = (backoff ?? {}) as Partial<ReconnectBackoff>;
  const finite = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);
  if (!finite(initialDelayMs) || initialDelayMs <= 0 || initialDelayMs > MAX_DRIVER_DURATION_MS) {
    issues.push({
      path: field("initialDelayMs"),
      message: `must be a finite number > 0 and at most ${MAX_DRIVER_DURATION_MS} (1 hour), got ${describeValue(initialDelayMs)}`,
    });
  }
  if (
    !finite(maxDelayMs) ||
    !(maxDelayMs >= (finite(initialDelayMs) ? initialDelayMs : 0)) ||
    maxDelayMs <= 0 ||
    maxDelayMs > MAX_DRIVER_DURATION_MS
  ) {
    issues.push({
      path: field("maxDelayMs"),
      message: `must be a finite number > 0, at least initialDelayMs and at most ${MAX_DRIVER_DURATION_MS} (1 hour), got ${describeValue(maxDelayMs)}`,
    });
  }
  if (multiplier !== undefined && (!finite(multiplier) || multiplier < 1)) {
    issues.push({
      path: field("multiplier"),
      message: `must be a finite number ≥ 1, got ${describeValue(multiplier)}`,
    });
  } else if (finite(initialDelayMs) && finite(maxDelayMs) && initialDelayMs > 0 && maxDelayMs >= initialDelayMs) {
    const problem = multiplierProblem({ initialDelayMs, maxDelayMs, multiplier });
    if (problem !== undefined) issues.push({ path: field(problem.field), message: problem.message });
  }
  if (
    jitter !== undefined &&
    !JITTER_KINDS.has(jitter) &&
    !(typeof jitter === "number" && jitter >= 0 && jitter <= 1)
  ) {
    issues.push({
      path: field("jitter"),
      message: `must be "full", "equal", "none" or a fraction in [0, 1], got ${typeof jitter === "string" ? JSON.stringify(jitter) : String(jitter)}`,
    });
  }
  if (issues.length > 0) throw new KilnValidationError("reconnect backoff", issues);
}
