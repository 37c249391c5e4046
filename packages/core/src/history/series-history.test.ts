import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { samplePoint, valueFromBounds, valuesInSeries, type SampleSeries } from "./series-history";

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

describe("valuesInSeries", () => {
  const BAD = quality("bad", "sensor failure");
  /** A good 0 at 0 s, 100,000 bad samples, a good 100 at 100,001 s; `reads` counts sample reads. */
  function stretch(): { series: SampleSeries; reads: () => number } {
    const list: Sample[] = [
      { tag: "a", value: 0, timestamp: 0, quality: GOOD },
      ...Array.from({ length: 100_000 }, (_, index): Sample => ({
        tag: "a",
        value: null,
        timestamp: (index + 1) * 1000,
        quality: BAD,
      })),
      { tag: "a", value: 100, timestamp: 100_001_000, quality: GOOD },
    ];
    let count = 0;
    const samples = new Proxy(list, {
      get(target, key, receiver) {
        if (typeof key === "string" && /^\d+$/.test(key)) count++;
        return Reflect.get(target, key, receiver) as unknown;
      },
    });
    return { series: { timestamps: list.map((sample) => sample.timestamp), samples }, reads: () => count };
  }

  test("1,000 times over a 100k stretch of bad samples read each sample at most once per direction, with the values of a search from each time", () => {
    const { series, reads } = stretch();
    const times = Array.from({ length: 1_000 }, (_, index) => 500 + index * 100_000);
    const values = valuesInSeries("a", series, times, "sloped");
    expect(reads()).toBeLessThan(2 * series.samples.length + 4 * times.length);
    // The oracle: each time searched on its own, from scratch, over the same series.
    const plain: SampleSeries = { timestamps: series.timestamps, samples: [...series.samples] };
    for (const [index, time] of times.entries()) {
      if (index % 97 === 0) expect(values[index]).toEqual(valuesInSeries("a", plain, [time], "sloped")[0]);
    }
    expect(values[500]).toMatchObject({ value: (500 + 500 * 100_000) / 1_000_010, timestamp: 500 + 500 * 100_000 });
    expect(values[500]!.quality.severity).toBe("uncertain");
  });

  test("times before the first and after the last sample, and a single time, take the nearest good sample on each side", () => {
    const { series } = stretch();
    const [before, single, after] = [
      valuesInSeries("a", series, [-1_000, -500], "sloped"),
      valuesInSeries("a", series, [50_000_000], "stepped"),
      valuesInSeries("a", series, [200_000_000, 300_000_000], "stepped"),
    ];
    expect(before.map((value) => value.value)).toEqual([null, null]);
    expect(single[0]).toMatchObject({ value: 0 });
    expect(after.map((value) => value.value)).toEqual([100, 100]);
  });
});
