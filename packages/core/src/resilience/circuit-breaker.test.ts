import { describe, expect, test } from "vitest";
import { KilnError, KilnValidationError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { SimulatedClock } from "../memory/simulated-clock";
import {
  CircuitBreaker,
  isBreakerFailure,
  type CircuitBreakerOptions,
  type CircuitStateChange,
} from "./circuit-breaker";

type BreakerEvent = KilnEvents["breaker-state-change"];

function setup(overrides: Partial<CircuitBreakerOptions> = {}) {
  const clock = new SimulatedClock({ start: 0 });
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const events: BreakerEvent[] = [];
  bus.on("breaker-state-change", (event) => void events.push(event));
  const breaker = new CircuitBreaker({
    name: "plc:line-1",
    clock,
    bus,
    failureThreshold: 3,
    recoveryTimeMs: 1_000,
    ...overrides,
  });
  let calls = 0;
  const succeed = (): Promise<unknown> =>
    breaker.execute(async () => {
      calls++;
      return "ok";
    });
  const fail = (error: unknown = new KilnError("KILN_DEVICE_ERROR", "no answer", { retryable: true })) =>
    breaker
      .execute(async () => {
        calls++;
        throw error;
      })
      .catch((caught: unknown) => caught);
  return { clock, bus, events, breaker, succeed, fail, calls: () => calls };
}

const transitions = (events: readonly { from: string; to: string }[]): string[] =>
  events.map((event) => `${event.from}>${event.to}`);

describe("CircuitBreaker", () => {
  test("opens after failureThreshold consecutive failures, not before", async () => {
    const { breaker, fail, events, clock } = setup();
    await clock.advance(5);
    await fail();
    await fail();
    expect(breaker.state).toEqual({ state: "closed", failures: 2 });
    expect(events).toHaveLength(0);
    await fail();
    expect(breaker.state).toEqual({ state: "open", openedAt: 5, until: 1_005 });
    expect(events).toEqual([
      { at: 5, breaker: "plc:line-1", from: "closed", to: "open", reason: "3 consecutive failures" },
    ]);
  });

  test("a success resets the consecutive failure count", async () => {
    const { breaker, fail, succeed } = setup();
    await fail();
    await fail();
    await succeed();
    expect(breaker.state).toEqual({ state: "closed", failures: 0 });
    await fail();
    await fail();
    expect(breaker.state.state).toBe("closed");
  });

  test("while open, rejects at once with a retryable KILN_CIRCUIT_OPEN without calling the operation", async () => {
    const { breaker, fail, succeed, clock, calls } = setup();
    await fail();
    await fail();
    await fail();
    await clock.advance(300);
    const error = await succeed().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CIRCUIT_OPEN")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    expect((error as KilnError).details).toMatchObject({ breaker: "plc:line-1", retryInMs: 700 });
    expect(calls()).toBe(3);
    expect(breaker.snapshot).toMatchObject({ successes: 0, failures: 3, rejections: 1 });
  });

  test("turns half-open by itself after recoveryTimeMs, with no calls, and publishes it", async () => {
    const { breaker, fail, events, clock } = setup();
    await fail();
    await fail();
    await fail();
    await clock.advance(999);
    expect(breaker.state.state).toBe("open");
    await clock.advance(1);
    expect(breaker.state).toEqual({ state: "half-open" });
    expect(events.at(-1)).toEqual({
      at: 1_000,
      breaker: "plc:line-1",
      from: "open",
      to: "half-open",
      reason: "recovery time elapsed",
    });
    expect(clock.pendingTimers).toBe(0);
  });

  test("a successful probe closes the breaker", async () => {
    const { breaker, fail, succeed, events, clock } = setup();
    for (let i = 0; i < 3; i++) await fail();
    await clock.advance(1_000);
    await expect(succeed()).resolves.toBe("ok");
    expect(breaker.state).toEqual({ state: "closed", failures: 0 });
    expect(events.at(-1)).toMatchObject({ from: "half-open", to: "closed", reason: "probe succeeded" });
  });

  test("a failed probe re-opens the breaker for another recovery period", async () => {
    const { breaker, fail, clock, events } = setup();
    for (let i = 0; i < 3; i++) await fail();
    await clock.advance(1_000);
    await clock.advance(250);
    await fail();
    expect(breaker.state).toEqual({ state: "open", openedAt: 1_250, until: 2_250 });
    expect(events.at(-1)).toMatchObject({ from: "half-open", to: "open", reason: "probe failed" });
    await clock.advance(999);
    expect(breaker.state.state).toBe("open");
    await clock.advance(1);
    expect(breaker.state.state).toBe("half-open");
  });

  test("publishes every change in order, on the bus and to local listeners alike", async () => {
    const { breaker, fail, succeed, clock, events } = setup();
    const local: CircuitStateChange[] = [];
    breaker.onStateChange((change) => local.push(change));
    for (let i = 0; i < 3; i++) await fail();
    await clock.advance(1_000);
    await fail();
    await clock.advance(1_000);
    await succeed();
    expect(transitions(events)).toEqual([
      "closed>open",
      "open>half-open",
      "half-open>open",
      "open>half-open",
      "half-open>closed",
    ]);
    expect(events.map((event) => event.at)).toEqual([0, 1_000, 1_000, 2_000, 2_000]);
    expect(local).toEqual(events);
  });

  test("admits only halfOpenMaxCalls probes at a time", async () => {
    const { breaker, fail, clock } = setup({ halfOpenMaxCalls: 2 });
    for (let i = 0; i < 3; i++) await fail();
    await clock.advance(1_000);
    let started = 0;
    const release: Array<() => void> = [];
    const probe = (): Promise<unknown> =>
      breaker.execute(() => {
        started++;
        return new Promise<void>((resolve) => release.push(resolve));
      });
    const first = probe();
    const second = probe();
    const third = probe().catch((error: unknown) => error);
    expect(KilnError.is(await third, "KILN_CIRCUIT_OPEN")).toBe(true);
    expect(started).toBe(2);
    release[0]!();
    await first;
    expect(breaker.state.state).toBe("closed");
    release[1]!();
    await second;
    expect(breaker.state.state).toBe("closed");
  });

  test("a result from a call admitted before the state changed updates counters, not the state", async () => {
    const { breaker, fail, clock, events } = setup();
    const slow: Array<{ settle: () => void; result: Promise<unknown> }> = [];
    for (const outcome of ["success", "failure"]) {
      let settle: () => void = () => undefined;
      const result = breaker
        .execute(
          () =>
            new Promise<string>((resolve, reject) => {
              settle = () => (outcome === "success" ? resolve("late") : reject(new Error("late failure")));
            }),
        )
        .catch((error: unknown) => error);
      slow.push({ settle: () => settle(), result });
    }
    for (let i = 0; i < 3; i++) await fail();
    await clock.advance(1_000);
    expect(breaker.state.state).toBe("half-open");
    // Neither was admitted as a probe, so neither may close or re-open the breaker.
    for (const call of slow) {
      call.settle();
      await call.result;
    }
    expect(breaker.state.state).toBe("half-open");
    expect(breaker.snapshot).toMatchObject({ successes: 1, failures: 4 });
    expect(transitions(events)).toEqual(["closed>open", "open>half-open"]);
  });

  test("by default, caller-fault errors neither count nor reset the count", async () => {
    const { breaker, fail } = setup();
    await fail();
    await fail();
    await fail(new KilnValidationError("write", [{ path: "value", message: "too big" }]));
    await fail(new KilnError("KILN_TAG_NOT_WRITABLE", "read-only"));
    await fail(new TypeError("bad argument"));
    expect(breaker.state).toEqual({ state: "closed", failures: 2 });
    expect(breaker.snapshot.failures).toBe(2);
    await fail(new Error("socket hang up"));
    expect(breaker.state.state).toBe("open");
  });

  test("an uncounted error during a probe leaves the breaker half-open and frees the probe slot", async () => {
    const { breaker, fail, succeed, clock } = setup();
    for (let i = 0; i < 3; i++) await fail();
    await clock.advance(1_000);
    await fail(new KilnError("KILN_OUT_OF_RANGE", "too big"));
    expect(breaker.state.state).toBe("half-open");
    await succeed();
    expect(breaker.state.state).toBe("closed");
  });

  test("a custom isFailure decides what counts", async () => {
    const { breaker, fail } = setup({ failureThreshold: 1, isFailure: (error) => error === "counted" });
    await fail(new KilnError("KILN_TIMEOUT", "slow", { retryable: true }));
    expect(breaker.state.state).toBe("closed");
    await fail("counted");
    expect(breaker.state.state).toBe("open");
  });

  test("a failure after the caller's signal aborted is not counted", async () => {
    const { breaker } = setup({ failureThreshold: 1 });
    const controller = new AbortController();
    const result = breaker.execute(async () => {
      controller.abort();
      throw new Error("aborted mid-call");
    }, controller.signal);
    await expect(result).rejects.toThrow("aborted mid-call");
    expect(breaker.state).toEqual({ state: "closed", failures: 0 });
  });

  test("passes the operation's value and error through unchanged", async () => {
    const { breaker } = setup();
    const value = { samples: [1, 2] };
    await expect(breaker.execute(async () => value)).resolves.toBe(value);
    const failure = new KilnError("KILN_DEVICE_ERROR", "x", { retryable: true });
    await expect(breaker.execute(() => Promise.reject(failure))).rejects.toBe(failure);
  });

  test("isolate() opens until reset(), with no timer and a non-retryable rejection", async () => {
    const { breaker, succeed, clock, events, calls } = setup();
    breaker.isolate();
    expect(breaker.state).toEqual({ state: "open", openedAt: 0, until: null });
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(60_000);
    const error = await succeed().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CIRCUIT_OPEN")).toBe(true);
    expect((error as KilnError).retryable).toBe(false);
    expect((error as KilnError).details).toMatchObject({ retryInMs: null, isolated: true });
    breaker.reset();
    await succeed();
    expect(calls()).toBe(1);
    expect(events.map((event) => `${event.from}>${event.to}:${event.reason}`)).toEqual([
      "closed>open:isolated",
      "open>closed:manual reset",
    ]);
  });

  test("reset() closes an open breaker and cancels its recovery timer", async () => {
    const { breaker, fail, clock } = setup();
    for (let i = 0; i < 3; i++) await fail();
    expect(clock.pendingTimers).toBe(1);
    breaker.reset();
    expect(breaker.state).toEqual({ state: "closed", failures: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  test("onStateChange returns a disposer, and a throwing listener is reported, not propagated", async () => {
    const { breaker, fail, bus } = setup({ failureThreshold: 1 });
    const handlerErrors: unknown[] = [];
    bus.on("handler-error", (event) => void handlerErrors.push(event.error));
    const seen: string[] = [];
    const boom = new Error("listener bug");
    breaker.onStateChange(() => {
      throw boom;
    });
    const dispose = breaker.onStateChange((change) => seen.push(change.to));
    await fail();
    dispose();
    breaker.reset();
    expect(seen).toEqual(["open"]);
    expect(handlerErrors).toEqual([boom, boom]);
  });

  test("dispose() clears the recovery timer and later calls reject with KILN_LIFECYCLE", async () => {
    const { breaker, fail, succeed, clock } = setup();
    for (let i = 0; i < 3; i++) await fail();
    breaker.dispose();
    expect(clock.pendingTimers).toBe(0);
    await expect(succeed()).rejects.toSatisfy((error: unknown) => KilnError.is(error, "KILN_LIFECYCLE"));
  });

  test.each<[string, Partial<Record<keyof CircuitBreakerOptions, unknown>>, typeof RangeError | typeof TypeError]>([
    ["failureThreshold 0", { failureThreshold: 0 }, RangeError],
    ["fractional failureThreshold", { failureThreshold: 2.5 }, RangeError],
    ["recoveryTimeMs 0", { recoveryTimeMs: 0 }, RangeError],
    ["halfOpenMaxCalls 0", { halfOpenMaxCalls: 0 }, RangeError],
    ["empty name", { name: "" }, RangeError],
    ["missing clock", { clock: undefined }, TypeError],
    ["non-function isFailure", { isFailure: "yes" }, TypeError],
  ])("rejects %s as a programmer error", (_label, override, errorClass) => {
    const clock = new SimulatedClock();
    const options = { name: "x", clock, failureThreshold: 1, recoveryTimeMs: 1, ...override };
    expect(() => new CircuitBreaker(options as CircuitBreakerOptions)).toThrow(errorClass);
  });
});

describe("isBreakerFailure", () => {
  test.each<[string, unknown, boolean]>([
    ["a timeout", new KilnError("KILN_TIMEOUT", "t", { retryable: true }), true],
    ["a connection failure", new KilnError("KILN_CONNECTION_FAILED", "c"), true],
    ["a store error", new KilnError("KILN_STORE_ERROR", "s"), true],
    ["an unknown Error", new Error("e"), true],
    ["a thrown string", "oops", true],
    ["a validation error", new KilnValidationError("x", []), false],
    ["a read-only tag", new KilnError("KILN_TAG_NOT_WRITABLE", "w"), false],
    ["a caller abort", new KilnError("KILN_ABORTED", "a"), false],
    ["a DOM AbortError", new DOMException("aborted", "AbortError"), false],
    ["a TypeError", new TypeError("t"), false],
    ["a retryable caller-fault code", new KilnError("KILN_NOT_FOUND", "n", { retryable: true }), true],
  ])("%s counts: %s", (_label, error, expected) => {
    expect(isBreakerFailure(error)).toBe(expected);
  });
});
