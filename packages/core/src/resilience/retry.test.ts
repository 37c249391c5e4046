import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import { backoffDelay, createRetryPolicy, retry, type RetryInfo, type RetryPolicyOptions } from "./retry";

const transient = (n: number): KilnError => new KilnError("KILN_CONNECTION_FAILED", `drop ${n}`, { retryable: true });

describe("backoffDelay", () => {
  const base = { initialDelayMs: 100, maxDelayMs: 1_000, multiplier: 2 } as const;
  const schedule = (jitter: "full" | "equal" | "none", random: number): number[] =>
    [1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, { ...base, jitter }, random));

  test("grows exponentially and is capped at maxDelayMs without jitter", () => {
    expect(schedule("none", 0.99)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  test("full jitter scales the capped delay by random", () => {
    expect(schedule("full", 0.5)).toEqual([50, 100, 200, 400, 500, 500]);
    expect(schedule("full", 0)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test("equal jitter keeps at least half of the capped delay", () => {
    expect(schedule("equal", 0)).toEqual([50, 100, 200, 400, 500, 500]);
    expect(schedule("equal", 0.5)).toEqual([75, 150, 300, 600, 750, 750]);
  });

  test("honours a custom multiplier and rounds down to whole ms", () => {
    const policy = { initialDelayMs: 10, maxDelayMs: 100, multiplier: 1.5, jitter: "none" } as const;
    expect([1, 2, 3, 4].map((attempt) => backoffDelay(attempt, policy, 0))).toEqual([10, 15, 22, 33]);
  });

  test("stays at the cap for huge attempt numbers and at 0 for a zero initial delay", () => {
    expect(backoffDelay(5_000, { ...base, jitter: "none" }, 0)).toBe(1_000);
    expect(backoffDelay(5_000, { ...base, initialDelayMs: 0, jitter: "none" }, 0)).toBe(0);
  });

  test("rejects a random value outside [0, 1) and a non-positive attempt", () => {
    expect(() => backoffDelay(1, { ...base, jitter: "full" }, 1)).toThrow(RangeError);
    expect(() => backoffDelay(1, { ...base, jitter: "full" }, -0.1)).toThrow(RangeError);
    expect(() => backoffDelay(0, { ...base, jitter: "full" }, 0.5)).toThrow(RangeError);
  });
});

describe("createRetryPolicy", () => {
  test("applies the defaults", () => {
    const policy = createRetryPolicy({ maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 100 });
    expect(policy).toMatchObject({ multiplier: 2, jitter: "full", random: Math.random, shouldRetry: undefined });
  });

  const valid: RetryPolicyOptions = { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 100 };
  test.each<[string, Partial<Record<keyof RetryPolicyOptions, unknown>>, typeof RangeError | typeof TypeError]>([
    ["maxAttempts 0", { maxAttempts: 0 }, RangeError],
    ["maxAttempts 1.5", { maxAttempts: 1.5 }, RangeError],
    ["negative initialDelayMs", { initialDelayMs: -1 }, RangeError],
    ["maxDelayMs below initialDelayMs", { maxDelayMs: 5 }, RangeError],
    ["infinite maxDelayMs", { maxDelayMs: Infinity }, RangeError],
    ["multiplier below 1", { multiplier: 0.5 }, RangeError],
    ["unknown jitter", { jitter: "half" }, RangeError],
    ["string maxAttempts", { maxAttempts: "3" }, TypeError],
    ["non-function random", { random: 0.5 }, TypeError],
    ["non-function shouldRetry", { shouldRetry: true }, TypeError],
  ])("rejects %s", (_label, override, errorClass) => {
    expect(() => createRetryPolicy({ ...valid, ...override } as RetryPolicyOptions)).toThrow(errorClass);
  });
});

describe("retry", () => {
  const policy: RetryPolicyOptions = {
    maxAttempts: 5,
    initialDelayMs: 100,
    maxDelayMs: 300,
    jitter: "full",
    random: () => 0.5,
  };

  test("retries retryable errors on the exact capped, jittered schedule and returns the first success", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const startedAt: number[] = [];
    const retries: RetryInfo[] = [];
    const errors = [transient(1), transient(2), transient(3), transient(4)];
    const result = retry(
      async (attempt) => {
        startedAt.push(clock.now());
        if (attempt <= 4) throw errors[attempt - 1];
        return `ok on ${attempt}`;
      },
      policy,
      { clock, onRetry: (info) => retries.push(info) },
    );
    await clock.runAll();
    await expect(result).resolves.toBe("ok on 5");
    // Delays 50, 100, 150 (capped at 300 × 0.5), 150.
    expect(startedAt).toEqual([0, 50, 150, 300, 450]);
    expect(retries).toEqual([
      { attempt: 1, delayMs: 50, error: errors[0] },
      { attempt: 2, delayMs: 100, error: errors[1] },
      { attempt: 3, delayMs: 150, error: errors[2] },
      { attempt: 4, delayMs: 150, error: errors[3] },
    ]);
  });

  test("rethrows the last error unchanged once maxAttempts are used", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const thrown: KilnError[] = [];
    const result = retry(
      async (attempt) => {
        const error = transient(attempt);
        thrown.push(error);
        throw error;
      },
      { ...policy, maxAttempts: 3 },
      { clock },
    ).catch((error: unknown) => error);
    await clock.runAll();
    expect(thrown).toHaveLength(3);
    expect(await result).toBe(thrown[2]);
  });

  test.each([
    ["a non-retryable KilnError", new KilnError("KILN_TAG_NOT_WRITABLE", "read-only")],
    ["a plain Error", new Error("bug")],
  ])("does not retry %s", async (_label, failure) => {
    const clock = new SimulatedClock({ start: 0 });
    let calls = 0;
    const result = retry(
      async () => {
        calls++;
        throw failure;
      },
      policy,
      { clock },
    );
    await expect(result).rejects.toBe(failure);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  test("shouldRetry replaces the default decision and sees the attempt number", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const asked: number[] = [];
    let calls = 0;
    const result = retry(
      async () => {
        calls++;
        throw new Error("plain, but we know it is transient");
      },
      {
        ...policy,
        shouldRetry: (_error, attempt) => {
          asked.push(attempt);
          return attempt < 2;
        },
      },
      { clock },
    ).catch((error: unknown) => error);
    await clock.runAll();
    expect(await result).toBeInstanceOf(Error);
    expect(calls).toBe(2);
    expect(asked).toEqual([1, 2]);
  });

  test("shouldRetry can refuse an error the default would retry", async () => {
    const clock = new SimulatedClock({ start: 0 });
    let calls = 0;
    const result = retry(
      async () => {
        calls++;
        throw transient(calls);
      },
      { ...policy, shouldRetry: () => false },
      { clock },
    );
    await expect(result).rejects.toSatisfy((error: unknown) => KilnError.is(error, "KILN_CONNECTION_FAILED"));
    expect(calls).toBe(1);
  });

  test("an abort during the backoff wait stops at once, with the abort reason and no further attempt", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const controller = new AbortController();
    let calls = 0;
    const result = retry(
      async () => {
        calls++;
        throw transient(calls);
      },
      { ...policy, initialDelayMs: 10_000, maxDelayMs: 10_000, jitter: "none" },
      { clock, signal: controller.signal },
    ).catch((error: unknown) => error);
    await clock.advance(100);
    expect(clock.pendingTimers).toBe(1);
    const reason = new KilnError("KILN_ABORTED", "shutting down");
    controller.abort(reason);
    // No clock advance: the wait must end on the abort itself.
    expect(await result).toBe(reason);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  test("does not start when the signal is already aborted", async () => {
    const clock = new SimulatedClock({ start: 0 });
    let calls = 0;
    const reason = new Error("cancelled");
    const result = retry(async () => ++calls, policy, { clock, signal: AbortSignal.abort(reason) });
    await expect(result).rejects.toBe(reason);
    expect(calls).toBe(0);
  });

  test("stops with the abort reason when the signal aborted while an attempt was failing", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const controller = new AbortController();
    const reason = new Error("cancelled");
    let calls = 0;
    const result = retry(
      async () => {
        calls++;
        controller.abort(reason);
        throw transient(calls);
      },
      policy,
      { clock, signal: controller.signal },
    );
    await expect(result).rejects.toBe(reason);
    expect(calls).toBe(1);
  });

  test("throws synchronously for an invalid policy", () => {
    const clock = new SimulatedClock({ start: 0 });
    expect(() => retry(async () => 1, { ...policy, initialDelayMs: -1 }, { clock })).toThrow(RangeError);
  });
});
