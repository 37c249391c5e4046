import { KilnError } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { subscriptionTiming } from "./opcua-subscription-timing";

const defaults = { maxPublishingIntervalMs: 1_000, keepAliveMs: 5_000 };

describe("subscriptionTiming", () => {
  // Issue 13, MEDIUM-1/2: the publishing interval used to be the group's period, so a 5 s group's
  // subscription lived 12 × 5 s and a 30 s group's was refused by node-opcua (W09).
  test.each([
    [50, { publishingIntervalMs: 50, maxKeepAliveCount: 100, lifetimeCount: 300 }],
    [1_000, { publishingIntervalMs: 1_000, maxKeepAliveCount: 5, lifetimeCount: 15 }],
    [5_000, { publishingIntervalMs: 1_000, maxKeepAliveCount: 5, lifetimeCount: 15 }],
    [30_000, { publishingIntervalMs: 1_000, maxKeepAliveCount: 5, lifetimeCount: 15 }],
  ])("a %i ms group publishes at most every second, keep-alive 5 s, lifetime 15 s", (period, expected) => {
    const timing = subscriptionTiming(period, 60_000, defaults);
    expect(timing).toEqual(expected);
    expect(timing.maxKeepAliveCount * timing.publishingIntervalMs).toBeLessThanOrEqual(5_000);
    expect(timing.lifetimeCount * timing.publishingIntervalMs).toBeLessThanOrEqual(15_000);
  });

  test("a session timeout shorter than the keep-alive shortens the keep-alive to it (never W09)", () => {
    const timing = subscriptionTiming(5_000, 2_000, { maxPublishingIntervalMs: 200, keepAliveMs: 5_000 });
    expect(timing).toEqual({ publishingIntervalMs: 200, maxKeepAliveCount: 10, lifetimeCount: 30 });
  });

  test("a session timeout below three publishing intervals is a non-retryable KILN_VALIDATION naming the option", () => {
    let caught: unknown;
    try {
      subscriptionTiming(5_000, 2_500, defaults);
    } catch (error) {
      caught = error;
    }
    expect(KilnError.is(caught, "KILN_VALIDATION")).toBe(true);
    expect(caught).toMatchObject({ retryable: false });
    expect((caught as KilnError).details.issues).toEqual([
      expect.objectContaining({ path: "subscriptions.maxPublishingIntervalMs" }),
    ]);
  });
});
