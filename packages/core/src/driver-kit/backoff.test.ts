import { describe, expect, test } from "vitest";
import { KilnValidationError } from "../domain/errors";
import { checkBackoff, MAX_DRIVER_DURATION_MS, reconnectDelay, type ReconnectBackoff } from "./backoff";

describe("reconnectDelay", () => {
  const backoff = { initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.5 };

  test("grows exponentially up to the cap (random 0: no shortening)", () => {
    expect([1, 2, 3, 4, 5, 11].map((attempt) => reconnectDelay(attempt, backoff, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  test("a fractional jitter shortens by up to that fraction", () => {
    expect(reconnectDelay(3, backoff, () => 0.999_999)).toBe(200);
    expect(reconnectDelay(3, backoff, () => 0.5)).toBe(300);
  });

  test("a retry jitter kind uses the retry policy's formula", () => {
    expect(reconnectDelay(3, { ...backoff, jitter: "full" }, () => 0.5)).toBe(200);
    expect(reconnectDelay(3, { ...backoff, jitter: "none" }, () => 0.5)).toBe(400);
  });

  test("rejects out-of-range input", () => {
    expect(() => reconnectDelay(0, backoff, () => 0)).toThrow(RangeError);
    expect(() => reconnectDelay(1, backoff, () => 1)).toThrow(RangeError);
    expect(() => reconnectDelay(1, { ...backoff, jitter: 1.5 }, () => 0)).toThrow(KilnValidationError);
  });

  test("a backoff that would retry in a hot loop or never is KILN_VALIDATION naming the field", () => {
    const bad: [Partial<ReconnectBackoff>, string][] = [
      [{ initialDelayMs: Number.NaN }, "backoff.initialDelayMs"],
      [{ initialDelayMs: -100, maxDelayMs: -1 }, "backoff.initialDelayMs"],
      [{ initialDelayMs: 0 }, "backoff.initialDelayMs"],
      [{ maxDelayMs: Number.NaN }, "backoff.maxDelayMs"],
      [{ maxDelayMs: 1 }, "backoff.maxDelayMs"],
      // Past Node's timer limit (2^31 − 1 ms) a delay fires after 1 ms: a hot reconnect loop.
      [{ maxDelayMs: 3_000_000_000 }, "backoff.maxDelayMs"],
      [
        { initialDelayMs: MAX_DRIVER_DURATION_MS + 1, maxDelayMs: MAX_DRIVER_DURATION_MS + 1 },
        "backoff.initialDelayMs",
      ],
      [{ maxDelayMs: MAX_DRIVER_DURATION_MS + 1 }, "backoff.maxDelayMs"],
      [{ multiplier: 0.5 }, "backoff.multiplier"],
      [{ jitter: "sometimes" as never }, "backoff.jitter"],
    ];
    for (const [override, path] of bad) {
      let issues: readonly { path: string }[] = [];
      try {
        checkBackoff({ ...backoff, ...override });
      } catch (error) {
        issues = (error as KilnValidationError).issues;
      }
      expect(issues.map((issue) => issue.path)).toContain(path);
    }
    expect(() =>
      checkBackoff({ initialDelayMs: MAX_DRIVER_DURATION_MS, maxDelayMs: MAX_DRIVER_DURATION_MS }),
    ).not.toThrow();
    for (const jitter of ["full", "equal", "none", 0, 1] as const) {
      expect(() => checkBackoff({ ...backoff, jitter })).not.toThrow();
    }
  });

  test("a multiplier that does not reach maxDelayMs within 1,000 attempts is refused, naming the field and the rule (adv13g)", () => {
    const refused = (override: Partial<typeof backoff>): KilnValidationError => {
      try {
        checkBackoff({ ...backoff, ...override }, "reconnect");
      } catch (error) {
        return error as KilnValidationError;
      }
      throw new Error(`accepted ${JSON.stringify(override)}`);
    };
    // 100 ms → 1,000 ms at 1.0000001: about 23 million attempts, in practice never.
    const error = refused({ multiplier: 1.0000001 });
    expect(error.code).toBe("KILN_VALIDATION");
    expect(error.issues).toEqual([
      { path: "reconnect.multiplier", message: expect.stringMatching(/within 1000 attempts .*use at least 1\.0023/) },
    ]);
    // A multiplier of 1 never grows: a constant delay is written with equal delays.
    expect(refused({ multiplier: 1 }).issues[0]!.message).toMatch(/it never grows.*constant delay/);
    expect(() => checkBackoff({ ...backoff, maxDelayMs: backoff.initialDelayMs, multiplier: 1 })).not.toThrow();
    // The least multiplier named is accepted; the rule is the bound already used for the loss window.
    expect(() => checkBackoff({ ...backoff, multiplier: 1.1 })).not.toThrow();
    expect(() => checkBackoff({ ...backoff, multiplier: 1.002308 })).not.toThrow();
    expect(() =>
      checkBackoff({ initialDelayMs: 1, maxDelayMs: MAX_DRIVER_DURATION_MS, multiplier: 1.02 }),
    ).not.toThrow();
    expect(() => checkBackoff({ initialDelayMs: 1, maxDelayMs: MAX_DRIVER_DURATION_MS, multiplier: 1.01 })).toThrow(
      KilnValidationError,
    );
  });
});

describe("checkBackoff names the field that breaks the rule (adv13h)", () => {
  const issuesOf = (backoff: Partial<ReconnectBackoff>): readonly { path: string; message: string }[] => {
    try {
      checkBackoff(backoff as ReconnectBackoff, "reconnect");
    } catch (error) {
      return (error as KilnValidationError).issues;
    }
    return [];
  };

  test("a tiny initialDelayMs with the default multiplier blames initialDelayMs, not multiplier ('got undefined')", () => {
    const issues = issuesOf({ initialDelayMs: 1e-300, maxDelayMs: 30_000 });
    expect(issues).toEqual([
      {
        path: "reconnect.initialDelayMs",
        message: expect.stringMatching(
          /within 1000 attempts \(got 1e-300: with multiplier 2 \(the default\).*use at least/,
        ),
      },
    ]);
    expect(issues[0]!.message).not.toMatch(/undefined/);
    // The value it names is accepted.
    const least = Number(/use at least (\S+)$/.exec(issues[0]!.message)![1]);
    expect(issuesOf({ initialDelayMs: least, maxDelayMs: 30_000 })).toEqual([]);
  });

  test("sibling: a tiny initialDelayMs with a given multiplier the default would not rescue blames initialDelayMs", () => {
    expect(
      issuesOf({ initialDelayMs: 1e-300, maxDelayMs: 30_000, multiplier: 1.5 }).map((issue) => issue.path),
    ).toEqual(["reconnect.initialDelayMs"]);
    // A slow multiplier over an ordinary range is still the multiplier's fault.
    expect(
      issuesOf({ initialDelayMs: 100, maxDelayMs: 30_000, multiplier: 1.0000001 }).map((issue) => issue.path),
    ).toEqual(["reconnect.multiplier"]);
  });

  test("a string is said to be a string, not read as the number it spells", () => {
    expect(issuesOf({ initialDelayMs: 100, maxDelayMs: 1_000, multiplier: "2" as never })).toEqual([
      { path: "reconnect.multiplier", message: 'must be a finite number ≥ 1, got the string "2" (not a number)' },
    ]);
    expect(issuesOf({ initialDelayMs: "100" as never, maxDelayMs: 1_000 })[0]).toEqual({
      path: "reconnect.initialDelayMs",
      message: expect.stringContaining('got the string "100" (not a number)'),
    });
    expect(issuesOf({ initialDelayMs: 100, maxDelayMs: "1000" as never })[0]).toEqual({
      path: "reconnect.maxDelayMs",
      message: expect.stringContaining('got the string "1000" (not a number)'),
    });
    expect(issuesOf({ initialDelayMs: 100, maxDelayMs: 1_000, jitter: "0.5" as never })[0]!.message).toContain(
      'got "0.5"',
    );
  });
});
