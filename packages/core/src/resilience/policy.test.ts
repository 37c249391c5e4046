import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { SimulatedClock } from "../memory/simulated-clock";
import { CircuitBreaker } from "./circuit-breaker";
import { CallPolicy, type CallPolicyOptions } from "./policy";
import type { RetryInfo } from "./retry";

type BreakerEvent = KilnEvents["breaker-state-change"];

function setup(overrides: Partial<CallPolicyOptions> = {}) {
  const clock = new SimulatedClock({ start: 0 });
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const events: BreakerEvent[] = [];
  bus.on("breaker-state-change", (event) => void events.push(event));
  const retries: RetryInfo[] = [];
  const policy = new CallPolicy({
    name: "plc:line-1",
    clock,
    bus,
    timeoutMs: 50,
    // Delays 100, 200, 400, 800 (no jitter, so the schedule is exact).
    retry: { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 1_000, jitter: "none" },
    breaker: { failureThreshold: 3, recoveryTimeMs: 10_000 },
    onRetry: (info) => retries.push(info),
    ...overrides,
  });
  return { clock, bus, events, retries, policy };
}

/** A device that hangs until `healthy` is set, recording when and with which signal it was called. */
function flakyDevice(clock: SimulatedClock) {
  const device = {
    healthy: false,
    calls: [] as { at: number; signal: AbortSignal }[],
    read: (signal: AbortSignal): Promise<string> => {
      device.calls.push({ at: clock.now(), signal });
      return device.healthy ? Promise.resolve(`value@${clock.now()}`) : new Promise<string>(() => undefined);
    },
  };
  return device;
}

describe("CallPolicy", () => {
  test("timed-out attempts trip the breaker; later attempts are refused without touching the device", async () => {
    const { clock, policy, events, retries } = setup();
    const device = flakyDevice(clock);
    const result = policy.execute(device.read).catch((error: unknown) => error);
    await clock.advance(5_000);
    const error = await result;
    // Attempts at 0, 150, 400 each time out after 50 ms; the third trips the breaker at 450.
    expect(device.calls.map((call) => call.at)).toEqual([0, 150, 400]);
    expect(device.calls.every((call) => call.signal.aborted)).toBe(true);
    // Attempts 4 (at 850) and 5 (at 1650) meet the open breaker; its error is retryable, so the
    // retry waited its normal backoff, and the last one is what the caller gets.
    expect(KilnError.is(error, "KILN_CIRCUIT_OPEN")).toBe(true);
    expect(retries.map((info) => [info.attempt, info.delayMs])).toEqual([
      [1, 100],
      [2, 200],
      [3, 400],
      [4, 800],
    ]);
    expect(retries.slice(0, 3).every((info) => KilnError.is(info.error, "KILN_TIMEOUT"))).toBe(true);
    expect(KilnError.is(retries[3]?.error, "KILN_CIRCUIT_OPEN")).toBe(true);
    expect(events.map((event) => [event.at, event.from, event.to])).toEqual([[450, "closed", "open"]]);
    expect(policy.snapshot).toMatchObject({ failures: 3, rejections: 2, successes: 0 });
  });

  test("when the breaker turns half-open during the backoff, the next attempt is the probe that closes it", async () => {
    const { clock, policy, events } = setup({ breaker: { failureThreshold: 3, recoveryTimeMs: 500 } });
    const device = flakyDevice(clock);
    const result = policy.execute(device.read);
    // Open at 450, half-open on its own at 950; attempt 4 at 850 is refused, attempt 5 at 1650 probes.
    await clock.advance(1_000);
    expect(policy.breaker.state.state).toBe("half-open");
    device.healthy = true;
    await clock.advance(1_000);
    await expect(result).resolves.toBe("value@1650");
    expect(device.calls.map((call) => call.at)).toEqual([0, 150, 400, 1_650]);
    expect(events.map((event) => `${event.at}:${event.from}>${event.to}`)).toEqual([
      "450:closed>open",
      "950:open>half-open",
      "1650:half-open>closed",
    ]);
  });

  test("gives every attempt its own full timeout", async () => {
    const { clock, policy } = setup({ breaker: { failureThreshold: 10, recoveryTimeMs: 1_000 } });
    const device = flakyDevice(clock);
    const abortedAt: number[] = [];
    const result = policy
      .execute((signal) => {
        signal.addEventListener("abort", () => abortedAt.push(clock.now()));
        return device.read(signal);
      })
      .catch((error: unknown) => error);
    await clock.advance(5_000);
    expect(KilnError.is(await result, "KILN_TIMEOUT")).toBe(true);
    expect(abortedAt).toEqual([50, 200, 450, 900, 1_750]);
  });

  test("does not retry a non-retryable error and leaves the breaker closed on a caller fault", async () => {
    const { clock, policy } = setup();
    let calls = 0;
    const failure = new KilnError("KILN_TAG_NOT_WRITABLE", "read-only");
    const result = policy.execute(async () => {
      calls++;
      throw failure;
    });
    await expect(result).rejects.toBe(failure);
    expect(calls).toBe(1);
    expect(policy.breaker.state).toEqual({ state: "closed", failures: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  test("executeOnce never retries, but still times out and counts towards the breaker", async () => {
    const { clock, policy } = setup({ breaker: { failureThreshold: 1, recoveryTimeMs: 1_000 } });
    const device = flakyDevice(clock);
    const result = policy.executeOnce(device.read).catch((error: unknown) => error);
    await clock.advance(5_000);
    expect(KilnError.is(await result, "KILN_TIMEOUT")).toBe(true);
    expect(device.calls).toHaveLength(1);
    expect(policy.breaker.state.state).toBe("half-open");
  });

  test("without a retry schedule, makes a single attempt", async () => {
    const { clock, policy } = setup({ retry: undefined });
    const device = flakyDevice(clock);
    const result = policy.execute(device.read).catch((error: unknown) => error);
    await clock.advance(5_000);
    expect(KilnError.is(await result, "KILN_TIMEOUT")).toBe(true);
    expect(device.calls).toHaveLength(1);
  });

  test("the caller's abort stops the running attempt at once, is not retried and is not counted", async () => {
    const { clock, policy } = setup({ breaker: { failureThreshold: 1, recoveryTimeMs: 1_000 } });
    const device = flakyDevice(clock);
    const controller = new AbortController();
    const result = policy.execute(device.read, controller.signal).catch((error: unknown) => error);
    await clock.advance(10);
    const reason = new KilnError("KILN_ABORTED", "stopping");
    controller.abort(reason);
    expect(await result).toBe(reason);
    expect(device.calls).toHaveLength(1);
    expect(device.calls[0]?.signal.aborted).toBe(true);
    expect(policy.breaker.state).toEqual({ state: "closed", failures: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  test("policies can share a breaker, and disposing a policy leaves a shared breaker running", async () => {
    const { clock, bus } = setup();
    const breaker = new CircuitBreaker({ name: "plc:line-1", clock, bus, failureThreshold: 1, recoveryTimeMs: 1_000 });
    const reads = new CallPolicy({ name: "plc:line-1 read", clock, timeoutMs: 50, breaker });
    const writes = new CallPolicy({ name: "plc:line-1 write", clock, timeoutMs: 50, breaker });
    const device = flakyDevice(clock);
    const failed = reads.execute(device.read).catch((error: unknown) => error);
    await clock.advance(50);
    expect(KilnError.is(await failed, "KILN_TIMEOUT")).toBe(true);
    await expect(writes.executeOnce(async () => "written")).rejects.toSatisfy((error: unknown) =>
      KilnError.is(error, "KILN_CIRCUIT_OPEN"),
    );
    reads.dispose();
    await clock.advance(1_000);
    expect(breaker.state.state).toBe("half-open");
  });

  test("dispose() stops the breaker it built", async () => {
    const { clock, policy } = setup({ breaker: { failureThreshold: 1, recoveryTimeMs: 1_000 } });
    const result = policy.executeOnce(flakyDevice(clock).read).catch((error: unknown) => error);
    await clock.advance(50);
    await result;
    expect(clock.pendingTimers).toBe(1);
    policy.dispose();
    expect(clock.pendingTimers).toBe(0);
  });

  test.each<[string, Partial<CallPolicyOptions>, typeof RangeError | typeof TypeError]>([
    ["timeoutMs 0", { timeoutMs: 0 }, RangeError],
    ["negative retry delay", { retry: { maxAttempts: 2, initialDelayMs: -1, maxDelayMs: 10 } }, RangeError],
    ["zero failure threshold", { breaker: { failureThreshold: 0, recoveryTimeMs: 1 } }, RangeError],
    ["empty name", { name: "" }, RangeError],
  ])("rejects %s as a programmer error", (_label, override, errorClass) => {
    expect(() => setup(override)).toThrow(errorClass);
  });
});
