import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { SimulatedClock } from "../memory/simulated-clock";
import { deadlineSignal, signalTimeLeft } from "./signal-deadline";

describe("deadlineSignal", () => {
  test("carries its deadline (signalTimeLeft) and aborts KILN_TIMEOUT when the clock reaches it", async () => {
    const clock = new SimulatedClock();
    const signal = deadlineSignal(1_000, { clock });
    expect(signalTimeLeft(signal)).toBe(1_000);
    await clock.advance(400);
    expect(signalTimeLeft(signal)).toBe(600);
    expect(signal.aborted).toBe(false);
    await clock.advance(600);
    expect(signal.aborted).toBe(true);
    expect(KilnError.is(signal.reason, "KILN_TIMEOUT")).toBe(true);
  });

  test("an already aborted caller signal aborts it at once with its reason; a bad budget is KILN_VALIDATION naming timeoutMs", () => {
    const own = new AbortController();
    own.abort("stop");
    const signal = deadlineSignal(10, { clock: new SimulatedClock(), signal: own.signal });
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe("stop");
    for (const bad of [Number.NaN, Infinity, -1]) {
      const error = (() => {
        try {
          deadlineSignal(bad);
        } catch (caught) {
          return caught;
        }
        return undefined;
      })();
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnError).message).toMatch(/timeoutMs: must be a finite number of ms ≥ 0/);
    }
  });
});
