import { describe, expect, test } from "vitest";
import { effectiveKeepAliveMs, linkSilenceMs, smoothedMaxMs, subscriptionTiming } from "./opcua-subscription-timing";

const defaults = { maxPublishingIntervalMs: 1_000, keepAliveMs: 5_000 };

describe("subscriptionTiming", () => {
  // Issue 13, MEDIUM-1/2: the publishing interval used to be the group's period, so a 5 s group's
  // subscription lived 12 × 5 s and a 30 s group's was refused by node-opcua (W09).
  test.each([
    [50, { publishingIntervalMs: 50, maxKeepAliveCount: 100, lifetimeCount: 300, limitedBySession: false }],
    [1_000, { publishingIntervalMs: 1_000, maxKeepAliveCount: 5, lifetimeCount: 15, limitedBySession: false }],
    [5_000, { publishingIntervalMs: 1_000, maxKeepAliveCount: 5, lifetimeCount: 15, limitedBySession: false }],
    [30_000, { publishingIntervalMs: 1_000, maxKeepAliveCount: 5, lifetimeCount: 15, limitedBySession: false }],
  ])("a %i ms group publishes at most every second, keep-alive 5 s, lifetime 15 s", (period, expected) => {
    const timing = subscriptionTiming(period, 60_000, defaults);
    expect(timing).toEqual(expected);
    expect(timing.maxKeepAliveCount * timing.publishingIntervalMs).toBeLessThanOrEqual(5_000);
    expect(timing.lifetimeCount * timing.publishingIntervalMs).toBeLessThanOrEqual(15_000);
  });

  test("a session timeout shorter than the keep-alive shortens the keep-alive to it (never W09)", () => {
    const timing = subscriptionTiming(5_000, 2_000, { maxPublishingIntervalMs: 200, keepAliveMs: 5_000 });
    expect(timing).toEqual({
      publishingIntervalMs: 200,
      maxKeepAliveCount: 10,
      lifetimeCount: 30,
      limitedBySession: false,
    });
  });

  // Issue 13, M/L-4: a granted session timeout below three publishing intervals was refused
  // (KILN_VALIDATION); the timing now adapts to it.
  test("a session timeout below three publishing intervals lowers the publishing interval to a third of it", () => {
    expect(subscriptionTiming(5_000, 2_500, defaults)).toEqual({
      publishingIntervalMs: 833,
      maxKeepAliveCount: 3,
      lifetimeCount: 9,
      limitedBySession: true,
    });
    const timing = subscriptionTiming(100, 1_500, defaults);
    expect(timing).toEqual({
      publishingIntervalMs: 100,
      maxKeepAliveCount: 15,
      lifetimeCount: 45,
      limitedBySession: false,
    });
  });

  test("the keep-alive period never exceeds the granted session timeout", () => {
    for (const session of [100, 250, 999, 1_500, 2_999, 4_000]) {
      const timing = subscriptionTiming(10_000, session, defaults);
      expect(timing.maxKeepAliveCount).toBeGreaterThanOrEqual(3);
      expect(timing.maxKeepAliveCount * timing.publishingIntervalMs).toBeLessThanOrEqual(session);
    }
  });
});

describe("effectiveKeepAliveMs and linkSilenceMs", () => {
  test("the session keep-alive is the option, or half a shorter granted session timeout", () => {
    expect(effectiveKeepAliveMs(5_000, 60_000)).toBe(5_000);
    expect(effectiveKeepAliveMs(5_000, 4_000)).toBe(2_000);
    expect(effectiveKeepAliveMs(5_000, 150)).toBe(100);
    expect(linkSilenceMs(5_000)).toBe(10_000);
  });
});

// Issue 13, pass on fix13e, MEDIUM-2 and LOW-3 (docs/adr/0022, amendments fix13f and fix13g).
describe("linkSilenceMs with the measured response time", () => {
  test("adds the response time, capped at requestMs: never more than 2 keep-alives + requestMs; no widening", () => {
    expect(linkSilenceMs(1_000, { requestMs: 10_000, responseMs: 1_200 })).toBe(3_200);
    expect(linkSilenceMs(1_000, { requestMs: 10_000, responseMs: 0 })).toBe(2_000);
    expect(linkSilenceMs(1_000, { requestMs: 10_000, responseMs: 60_000 })).toBe(12_000);
    expect(linkSilenceMs(5_000, { requestMs: 3_000, responseMs: 60_000 })).toBe(13_000);
  });

  test("smoothedMaxMs takes a longer response at once and forgets it by eighths", () => {
    expect(smoothedMaxMs(100, 1_200)).toBe(1_200);
    expect(smoothedMaxMs(1_200, 400)).toBe(1_100);
    expect(smoothedMaxMs(1_200, Number.NaN)).toBe(1_200);
  });
});
