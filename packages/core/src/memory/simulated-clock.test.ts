import { describe, expect, test } from "vitest";
import { SimulatedClock } from "./simulated-clock";

describe("SimulatedClock", () => {
  test("fires timers in due order as time advances", async () => {
    const clock = new SimulatedClock({ start: 1_000 });
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 20);
    await clock.advance(15);
    expect(fired).toEqual(["a@1010"]);
    await clock.advance(5);
    expect(fired).toEqual(["a@1010", "b@1020", "c@1020"]);
    expect(clock.now()).toBe(1_020);
  });

  test("lets async chains scheduled by timers run before the next timer", async () => {
    const clock = new SimulatedClock({ start: 0 });
    const seen: number[] = [];
    const loop = async (): Promise<void> => {
      for (let i = 0; i < 3; i++) {
        await clock.sleep(100);
        await Promise.resolve();
        seen.push(clock.now());
      }
    };
    const done = loop();
    await clock.advance(300);
    await done;
    expect(seen).toEqual([100, 200, 300]);
  });

  test("cleared timers never fire", async () => {
    const clock = new SimulatedClock();
    let fired = false;
    const handle = clock.setTimeout(() => (fired = true), 5);
    clock.clearTimeout(handle);
    await clock.advance(10);
    expect(fired).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  test("sleep rejects with the abort reason and clears its timer", async () => {
    const clock = new SimulatedClock();
    const controller = new AbortController();
    const sleeping = clock.sleep(1_000, controller.signal);
    controller.abort(new Error("stop"));
    await expect(sleeping).rejects.toThrow("stop");
    expect(clock.pendingTimers).toBe(0);
  });

  test("refuses to go back in time", async () => {
    await expect(new SimulatedClock().advance(-1)).rejects.toThrow(RangeError);
  });
});

test("stepWall moves now() only: monotonicNow() and pending timers stay on simulated time", async () => {
  const clock = new SimulatedClock({ start: 10_000 });
  let fired = false;
  clock.setTimeout(() => (fired = true), 100);
  clock.stepWall(-5_000);
  expect(clock.now()).toBe(5_000);
  expect(clock.monotonicNow()).toBe(10_000);
  await clock.advance(99);
  expect(fired).toBe(false);
  await clock.advance(1);
  expect(fired).toBe(true);
  expect(clock.now()).toBe(5_100);
  expect(clock.monotonicNow()).toBe(10_100);
});
