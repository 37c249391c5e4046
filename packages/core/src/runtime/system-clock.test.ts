import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { GOOD } from "../domain/quality";
import { defineTags } from "../domain/tags";
import { AlarmEngine } from "../alarms/alarm-engine";
import { FixedRateScheduler } from "../acquisition/fixed-rate-scheduler";
import { SimulatedClock } from "../memory/simulated-clock";
import { MAX_TIMER_DELAY_MS, SystemClock } from "./system-clock";

const DAY = 24 * 60 * 60 * 1000;

// Fake timers reproduce Node's overflow: a bare setTimeout over 2^31 − 1 ms fires after 1 ms.
describe("SystemClock with delays beyond 2^31 − 1 ms", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1) });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a 30-day timer fires after 30 days, not after 1 ms or 24.8 days", () => {
    const clock = new SystemClock();
    const fired: number[] = [];
    const start = clock.now();
    clock.setTimeout(() => fired.push(clock.now() - start), 30 * DAY);
    vi.advanceTimersByTime(1);
    vi.advanceTimersByTime(MAX_TIMER_DELAY_MS);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(30 * DAY - MAX_TIMER_DELAY_MS - 2);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([30 * DAY]);
  });

  it("clearing a long timer mid-chain stops it", () => {
    const clock = new SystemClock();
    let fired = false;
    const handle = clock.setTimeout(() => (fired = true), 40 * DAY);
    vi.advanceTimersByTime(MAX_TIMER_DELAY_MS + 1);
    clock.clearTimeout(handle);
    vi.advanceTimersByTime(40 * DAY);
    expect(fired).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("an Infinity delay never fires and a NaN delay means 0, on both clocks", async () => {
    const system = new SystemClock();
    const simulated = new SimulatedClock();
    const fired: string[] = [];
    system.setTimeout(() => fired.push("system infinity"), Infinity);
    system.setTimeout(() => fired.push("system nan"), Number.NaN);
    simulated.setTimeout(() => fired.push("simulated infinity"), Infinity);
    simulated.setTimeout(() => fired.push("simulated nan"), Number.NaN);
    vi.advanceTimersByTime(100 * DAY);
    vi.useRealTimers();
    await simulated.runAll();
    expect(fired.sort()).toEqual(["simulated nan", "system nan"]);
    expect(simulated.now()).toBe(Date.UTC(2026, 0, 1));
  });

  it("a 30-day alarm shelf on the system clock expires after 30 days", () => {
    const clock = new SystemClock();
    const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
    const engine = new AlarmEngine({
      clock,
      tags,
      definitions: [{ tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2 }],
    });
    engine.observe({ tag: "chamber.pressure", value: 6, timestamp: clock.now(), quality: GOOD });
    engine.shelve("chamber.pressure:HI", { durationMs: 30 * DAY });
    vi.advanceTimersByTime(1_000);
    expect(engine.get("chamber.pressure:HI").state.name).toBe("shelved");
    vi.advanceTimersByTime(29 * DAY);
    expect(engine.get("chamber.pressure:HI").state.name).toBe("shelved");
    vi.advanceTimersByTime(DAY);
    expect(engine.get("chamber.pressure:HI").state.name).not.toBe("shelved");
  });

  it("a scan group with a 30-day period polls once per period, not at 1 kHz", async () => {
    const clock = new SystemClock();
    let cycles = 0;
    const scheduler = new FixedRateScheduler({ clock, periodMs: 30 * DAY, task: () => void cycles++ });
    scheduler.start();
    await vi.advanceTimersByTimeAsync(1_000);
    const afterStart = cycles;
    expect(afterStart).toBeLessThanOrEqual(1);
    await vi.advanceTimersByTimeAsync(29 * DAY);
    expect(cycles).toBe(afterStart);
    await vi.advanceTimersByTimeAsync(DAY);
    expect(cycles).toBe(afterStart + 1);
    await scheduler.stop();
  });
});
