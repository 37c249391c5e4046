import { describe, expect, test } from "vitest";
import { afterEventLoopTurn } from "./event-loop-turn";

describe("afterEventLoopTurn", () => {
  test("work that settles in microtasks still lets a timer run in a tight loop", async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const until = Date.now() + 100;
    let calls = 0;
    while (Date.now() < until && calls < 5_000_000) {
      expect(await afterEventLoopTurn(Promise.resolve(calls))).toBe(calls);
      calls++;
    }
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(5);
  });

  test("a rejection is passed on after the turn; work that waited on I/O is not held again", async () => {
    await expect(afterEventLoopTurn(Promise.reject(new Error("offline")))).rejects.toThrow("offline");
    let immediates = 0;
    const counting = new Promise<number>((resolve) =>
      setTimeout(() => {
        resolve(7);
      }, 5),
    );
    const result = afterEventLoopTurn(counting);
    setImmediate(() => immediates++);
    expect(await result).toBe(7);
    expect(immediates).toBe(1);
  });
});
