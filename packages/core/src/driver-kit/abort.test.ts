import { getEventListeners } from "node:events";
import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { abortError, onAbort, raceAbort, untilAbort } from "./abort";

describe("raceAbort", () => {
  test("settles like the promise when the signal never aborts", async () => {
    const controller = new AbortController();
    await expect(raceAbort(Promise.resolve(7), controller.signal)).resolves.toBe(7);
    const failure = new Error("device said no");
    await expect(raceAbort(Promise.reject(failure), controller.signal)).rejects.toBe(failure);
  });

  test("returns the promise itself without a signal", () => {
    const promise = Promise.resolve(1);
    expect(raceAbort(promise, undefined)).toBe(promise);
  });

  test("an already-aborted signal rejects at once with KILN_ABORTED, the reason as cause", async () => {
    const reason = new Error("stop");
    const error = await raceAbort(new Promise(() => undefined), AbortSignal.abort(reason), "the read").catch(
      (caught: unknown) => caught,
    );
    expect(KilnError.is(error, "KILN_ABORTED")).toBe(true);
    expect((error as KilnError).cause).toBe(reason);
    expect((error as KilnError).message).toBe("The read was aborted.");
  });

  test("an abort mid-call rejects with a KilnError reason unchanged, and a late rejection is ignored", async () => {
    const controller = new AbortController();
    let fail!: (error: unknown) => void;
    const pending = new Promise((_resolve, reject) => (fail = reject));
    const racing = raceAbort(pending, controller.signal);
    const reason = new KilnError("KILN_TIMEOUT", "too slow", { retryable: true });
    controller.abort(reason);
    await expect(racing).rejects.toBe(reason);
    fail(new Error("late"));
  });

  test("untilAbort waits for the signal", async () => {
    const controller = new AbortController();
    const waiting = untilAbort(controller.signal);
    controller.abort();
    expect(KilnError.is(await waiting.catch((caught: unknown) => caught), "KILN_ABORTED")).toBe(true);
    expect(abortError(AbortSignal.abort(new KilnError("KILN_NOT_CONNECTED", "closed"))).code).toBe(
      "KILN_NOT_CONNECTED",
    );
  });
});

describe("one abort listener per signal (adv12e: MaxListenersExceededWarning at maxInFlight 10+)", () => {
  test("twenty races on one signal hold one listener, all reject on abort, and the listener goes with the last", async () => {
    const controller = new AbortController();
    const races = Array.from({ length: 20 }, (_, index) =>
      raceAbort(new Promise(() => undefined), controller.signal, `request ${index}`),
    );
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
    controller.abort();
    const errors = await Promise.all(races.map((race) => race.catch((error: unknown) => error)));
    expect(errors.every((error) => KilnError.is(error, "KILN_ABORTED"))).toBe(true);
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  test("races that settle remove their callback; the listener is gone once none waits", async () => {
    const controller = new AbortController();
    const resolvers: (() => void)[] = [];
    const races = Array.from({ length: 12 }, () =>
      raceAbort(new Promise<void>((resolve) => resolvers.push(resolve)), controller.signal),
    );
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
    for (const resolve of resolvers.slice(0, 11)) resolve();
    await Promise.all(races.slice(0, 11));
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
    resolvers[11]!();
    await races[11];
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    // A new waiter after the last one left adds the listener again, and abort still reaches it.
    const late = raceAbort(new Promise(() => undefined), controller.signal);
    controller.abort();
    await expect(late).rejects.toMatchObject({ code: "KILN_ABORTED" });
  });

  test("onAbort: a disposed callback is not called, an already aborted signal calls at once", () => {
    const controller = new AbortController();
    const calls: string[] = [];
    const disposeA = onAbort(controller.signal, () => calls.push("a"));
    onAbort(controller.signal, () => calls.push("b"));
    disposeA();
    controller.abort();
    expect(calls).toEqual(["b"]);
    onAbort(controller.signal, () => calls.push("c"));
    expect(calls).toEqual(["b", "c"]);
  });
});
