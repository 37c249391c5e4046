import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { abortError, raceAbort, untilAbort } from "./abort";

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
