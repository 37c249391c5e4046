import { describe, expect, test } from "vitest";
import { SessionPacer } from "./opcua-session-pacer";

describe("SessionPacer", () => {
  test("a session within its share is never refused, however many calls it has in flight", async () => {
    const pacer = new SessionPacer(() => ({ msPerSecond: 100, maxWaiting: 2 }));
    const session = {};
    const calls = Array.from({ length: 20 }, () => pacer.admit(session)); // 20 in flight, maxWaiting 2
    for (const call of calls) {
      const charge = await call; // in arrival order, each once the one before was answered
      expect(charge).toBeTypeOf("function");
      charge!(1); // 20 ms of its 100 ms share together
    }
  });

  test("a session over its share waits its turn, one beyond maxWaiting is refused, and another session is unaffected", async () => {
    const pacer = new SessionPacer(() => ({ msPerSecond: 100, maxWaiting: 2 }));
    const flooder = {};
    (await pacer.admit(flooder))!(130); // 30 ms over: ~300 ms to pay back
    const waiting = [pacer.admit(flooder), pacer.admit(flooder)];
    expect(await pacer.admit(flooder)).toBeUndefined();
    const other = await pacer.admit({});
    expect(other).toBeTypeOf("function");
    const started = performance.now();
    const first = await waiting[0]!;
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    first!(0);
    expect(await waiting[1]!).toBeTypeOf("function");
  });
});
