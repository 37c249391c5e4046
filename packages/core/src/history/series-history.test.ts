import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { samplePoint, valueFromBounds } from "./series-history";

const sample = (value: Sample["value"], good = true): Sample => ({
  tag: "a",
  value,
  timestamp: 1_000,
  quality: good ? GOOD : quality("bad", "sensor failure"),
});

describe("samplePoint", () => {
  test("is the sample's time, exact numeric value and good flag, and keeps the sample itself", () => {
    const float = sample(2.5);
    expect(samplePoint(float)).toStrictEqual({ time: 1_000, value: 2.5, good: true, sample: float });
    const big = sample(9_007_199_254_740_993n);
    expect(samplePoint(big)).toStrictEqual({ time: 1_000, value: 9_007_199_254_740_993n, good: true, sample: big });
    expect(samplePoint(undefined)).toBeUndefined();
  });

  test("booleans are 0/1, text has no numeric value, and NaN, null or bad quality are not good", () => {
    expect(samplePoint(sample(true))).toMatchObject({ value: 1, good: true });
    expect(samplePoint(sample("open"))).toMatchObject({ value: null, good: true });
    expect(samplePoint(sample(Number.NaN))).toMatchObject({ value: null, good: false });
    expect(samplePoint(sample(null))).toMatchObject({ value: null, good: false });
    expect(samplePoint(sample(3, false))).toMatchObject({ value: 3, good: false });
  });

  test("a stepped value from sample points comes back with the sample's own type (a bigint stays exact)", () => {
    const big = { ...sample(9_007_199_254_740_993n), tag: "counter" };
    const value = valueFromBounds(
      "counter",
      1_500,
      { goodBefore: samplePoint(big), anyBefore: samplePoint(big), anyAfter: { time: 2_000 } },
      "stepped",
    );
    expect(value).toMatchObject({ tag: "counter", value: 9_007_199_254_740_993n, timestamp: 1_500 });
    expect(value.quality.severity).toBe("good");
  });
});
