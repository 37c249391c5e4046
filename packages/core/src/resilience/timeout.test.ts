import { getEventListeners } from "node:events";
import { describe, expect, test, vi } from "vitest";
import { KilnError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import { signalTimeLeft } from "./signal-deadline";
import { withTimeout } from "./timeout";

/** An operation that never settles on its own but records the signal it was given. */
function hanging(): { operation: (signal: AbortSignal) => Promise<never>; signals: AbortSignal[] } {
  const signals: AbortSignal[] = [];
  return { signals, operation: (signal) => (signals.push(signal), new Promise<never>(() => undefined)) };
}

describe("withTimeout", () => {
  test("resolves with the operation's value when it finishes in time and clears its timer", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const result = withTimeout(async () => (await clock.sleep(40), "done"), { clock, timeoutMs: 50 });
    await clock.advance(40);
    await expect(result).resolves.toBe("done");
    expect(clock.pendingTimers).toBe(0);
  });

  test("tells the operation the time left before its deadline through signalTimeLeft", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const left: (number | undefined)[] = [];
    const result = withTimeout(
      async (signal) => {
        left.push(signalTimeLeft(signal));
        await clock.sleep(30);
        left.push(signalTimeLeft(signal));
        return "done";
      },
      { clock, timeoutMs: 50 },
    );
    await clock.advance(30);
    await expect(result).resolves.toBe("done");
    expect(left).toEqual([50, 20]);
    expect(signalTimeLeft(new AbortController().signal)).toBeUndefined();
    expect(signalTimeLeft(undefined)).toBeUndefined();
  });

  test("rejects with a retryable KILN_TIMEOUT at timeoutMs and aborts the operation's signal with it", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const { operation, signals } = hanging();
    const result = withTimeout(operation, { clock, timeoutMs: 50, name: "plc read" });
    const outcome = result.then(
      () => undefined,
      (error: unknown) => error,
    );
    await clock.advance(49);
    expect(signals[0]?.aborted).toBe(false);
    await clock.advance(1);
    const error = await outcome;
    expect(KilnError.is(error, "KILN_TIMEOUT")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    expect((error as KilnError).details).toEqual({ operation: "plc read", timeoutMs: 50 });
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[0]?.reason).toBe(error);
  });

  test("passes the operation's own rejection through unchanged and clears its timer", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const failure = new KilnError("KILN_DEVICE_ERROR", "boom");
    await expect(withTimeout(() => Promise.reject(failure), { clock, timeoutMs: 50 })).rejects.toBe(failure);
    expect(clock.pendingTimers).toBe(0);
  });

  test("turns a synchronous throw into a rejection", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const failure = new Error("sync");
    const operation = (): Promise<never> => {
      throw failure;
    };
    await expect(withTimeout(operation, { clock, timeoutMs: 50 })).rejects.toBe(failure);
  });

  test("ignores a result that arrives after the timeout", async () => {
    const clock = new SimulatedClock({ start: 0 });
    let late: (value: string) => void = () => undefined;
    const result = withTimeout(() => new Promise<string>((resolve) => (late = resolve)), { clock, timeoutMs: 10 });
    const outcome = result.then(
      (value) => value,
      (error: unknown) => error,
    );
    await clock.advance(10);
    late("too late");
    expect(KilnError.is(await outcome, "KILN_TIMEOUT")).toBe(true);
  });

  test("propagates an outer abort to the operation and rejects with the abort reason", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const controller = new AbortController();
    const { operation, signals } = hanging();
    const result = withTimeout(operation, { clock, timeoutMs: 50, signal: controller.signal });
    const reason = new KilnError("KILN_ABORTED", "stopping");
    controller.abort(reason);
    await expect(result).rejects.toBe(reason);
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[0]?.reason).toBe(reason);
    expect(clock.pendingTimers).toBe(0);
  });

  test("does not call the operation when the outer signal is already aborted", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const { operation, signals } = hanging();
    const reason = new Error("cancelled");
    await expect(withTimeout(operation, { clock, timeoutMs: 50, signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
    expect(signals).toHaveLength(0);
  });

  test("removes its listener from the outer signal once settled, however it settles", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const controller = new AbortController();
    const { operation } = hanging();
    await expect(withTimeout(async () => "ok", { clock, timeoutMs: 50, signal: controller.signal })).resolves.toBe(
      "ok",
    );
    const timedOut = withTimeout(operation, { clock, timeoutMs: 50, signal: controller.signal }).catch(
      (error: unknown) => error,
    );
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
    await clock.advance(50);
    expect(KilnError.is(await timedOut, "KILN_TIMEOUT")).toBe(true);
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  test("with timeoutMs Infinity sets no timer", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const { operation } = hanging();
    void withTimeout(operation, { clock, timeoutMs: Infinity });
    expect(clock.pendingTimers).toBe(0);
  });

  test.each([0, -5, Number.NaN, "50"])("rejects timeoutMs %s as a programmer error", (timeoutMs) => {
    const clock = new SimulatedClock({ start: 0 });
    expect(() => withTimeout(async () => 1, { clock, timeoutMs: timeoutMs as number })).toThrow(
      typeof timeoutMs === "number" && !Number.isNaN(timeoutMs) ? RangeError : TypeError,
    );
  });
});

describe("signal deadlines across copies of @kiln/core (adv12e LOW)", () => {
  test("a deadline set by one copy of the module is seen by another copy", async () => {
    vi.resetModules();
    const copyA = await import("./signal-deadline");
    vi.resetModules();
    const copyB = await import("./signal-deadline");
    expect(copyA.signalTimeLeft).not.toBe(copyB.signalTimeLeft);
    const signal = new AbortController().signal;
    copyA.setSignalDeadline(signal, { now: () => 1_000 } as never, 3_000);
    expect(copyB.signalTimeLeft(signal)).toBe(2_000);
    expect(copyB.signalTimeLeft(new AbortController().signal)).toBeUndefined();
  });
});
