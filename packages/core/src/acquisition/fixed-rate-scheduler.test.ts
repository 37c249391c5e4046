import { describe, expect, test } from "vitest";
import { SimulatedClock } from "../memory/simulated-clock";
import { FixedRateScheduler, type OverrunInfo } from "./fixed-rate-scheduler";

describe("FixedRateScheduler", () => {
  test("does not drift over 10,000 cycles even when each cycle costs time", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const starts: number[] = [];
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 50,
      task: async ({ scheduledAt }) => {
        starts.push(scheduledAt);
        await clock.sleep(7); // work that takes 7 ms of the 50 ms period
      },
    });
    scheduler.start();
    await clock.advance(50 * 10_000 - 1);
    await scheduler.stop();
    expect(starts).toHaveLength(10_000);
    expect(starts.at(-1)).toBe(50 * 9_999);
    expect(starts.every((start, index) => start === index * 50)).toBe(true);
    expect(scheduler.cyclesSkipped).toBe(0);
  });

  test("reports lateness of zero on an exact clock", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const lateness: number[] = [];
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 10,
      task: () => undefined,
      onLateness: (ms) => lateness.push(ms),
    });
    scheduler.start();
    await clock.advance(95);
    await scheduler.stop();
    expect(lateness).toEqual(new Array(10).fill(0));
  });

  test("an overrun skips the missed cycles, counts them and keeps the anchor", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const starts: number[] = [];
    const overruns: OverrunInfo[] = [];
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 100,
      task: async ({ cycle, startedAt }) => {
        starts.push(startedAt);
        if (cycle === 2) await clock.sleep(350); // runs 200..550: cycles 3, 4, 5 are missed
      },
      onOverrun: (info) => overruns.push(info),
    });
    scheduler.start();
    await clock.advance(800);
    await scheduler.stop();
    expect(starts).toEqual([0, 100, 200, 600, 700, 800]);
    expect(overruns).toEqual([{ cycle: 2, missedCycles: 3, durationMs: 350 }]);
    expect(scheduler.cyclesSkipped).toBe(3);
  });

  test("a cycle ending exactly on a due time runs that cycle at once", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const starts: number[] = [];
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 100,
      task: async ({ cycle, startedAt }) => {
        starts.push(startedAt);
        if (cycle === 0) await clock.sleep(200);
      },
    });
    scheduler.start();
    await clock.advance(300);
    await scheduler.stop();
    expect(starts).toEqual([0, 200, 300]);
    expect(scheduler.cyclesSkipped).toBe(1);
  });

  test("a failing task is reported and the schedule goes on", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const errors: unknown[] = [];
    let runs = 0;
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 10,
      task: () => {
        runs++;
        throw new Error("read failed");
      },
      onError: (error) => errors.push(error),
    });
    scheduler.start();
    await clock.advance(30);
    await scheduler.stop();
    expect(runs).toBe(4);
    expect(errors).toHaveLength(4);
  });

  test("stop waits for the cycle in progress and nothing runs after", async () => {
    const clock = new SimulatedClock({ start: 0 });
    let finished = 0;
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 10,
      task: async () => {
        await clock.sleep(5);
        finished++;
      },
    });
    scheduler.start();
    await clock.advance(2);
    const stopping = scheduler.stop();
    await clock.advance(10);
    await stopping;
    await clock.advance(100);
    expect(finished).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  test("rejects a nonsensical period", () => {
    const clock = new SimulatedClock();
    expect(() => new FixedRateScheduler({ clock, periodMs: 0, task: () => undefined })).toThrow(RangeError);
  });
});

describe("FixedRateScheduler on a wall clock that steps", () => {
  for (const stepMs of [-60_000, 3_600_000]) {
    test(`a wall-clock step of ${stepMs} ms neither stalls the schedule nor skips cycles`, async () => {
      const clock = new SimulatedClock({ start: 0 });
      const lateness: number[] = [];
      let runs = 0;
      const scheduler = new FixedRateScheduler({
        clock,
        periodMs: 50,
        task: () => void runs++,
        onLateness: (ms) => lateness.push(ms),
      });
      scheduler.start();
      await clock.advance(1_000);
      clock.stepWall(stepMs);
      await clock.advance(1_000);
      await scheduler.stop();
      expect(runs).toBe(41);
      expect(scheduler.cyclesSkipped).toBe(0);
      expect(Math.max(...lateness)).toBe(0);
    });
  }
});

describe("FixedRateScheduler: skipped cycles are reported as they happen", () => {
  test("a cycle held for 5 s shows its skipped cycles during the hold, reported once a second, and the total is exact", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const overruns: OverrunInfo[] = [];
    let hold = true;
    const scheduler = new FixedRateScheduler({
      clock,
      periodMs: 100,
      task: async ({ cycle }) => {
        if (cycle === 0 && hold) await clock.sleep(5_000);
      },
      onOverrun: (info) => overruns.push(info),
    });
    scheduler.start();
    await clock.advance(2_550);
    expect(scheduler.cyclesSkipped).toBe(25); // cycles 1..25 were due by 2,501 ms
    expect(overruns.map((info) => info.missedCycles)).toEqual([10, 10]);
    await clock.advance(2_500);
    hold = false;
    await scheduler.stop();
    // Held 0..5,000: cycles 1..49 skipped, cycle 50 runs at 5,000.
    expect(scheduler.cyclesSkipped).toBe(49);
    expect(overruns.reduce((sum, info) => sum + info.missedCycles, 0)).toBe(49);
  });
});
