import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { MemoryStore, type MemoryStoreOptions } from "./memory-store";
import { SimulatedClock } from "./simulated-clock";

// Issue 16, fix16b: history that rests on evicted samples is never answered as good (ADR 0045).
const T0 = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
const BAD = quality("bad", "sensor fault");
const at = (offset: number, value: number | null, tag = "a", sampleQuality = GOOD): Sample => ({
  tag,
  value,
  timestamp: T0 + offset,
  quality: sampleQuality,
});

async function openStore(retention: MemoryStoreOptions["retention"]) {
  // The store's clock is after every stamp written (a stamp ahead of it moves the horizon no further: fix16o).
  const store = new MemoryStore({ clock: new SimulatedClock({ start: T0 + DAY }), retention });
  await store.open([
    { name: "a", dataType: "float64", interpolation: "stepped" } as never,
    { name: "b", dataType: "float64", interpolation: "stepped" } as never,
  ]);
  return store;
}

describe("MemoryStore history before the retention horizon", () => {
  test("an aggregate interval starting before the horizon is uncertain, naming it; one from it on stays good", async () => {
    const store = await openStore({ maxSamples: 3 });
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    expect(store.retainedFrom).toBe(T0 + 20);
    const [early, late] = await store.history.aggregate(["a"], {
      start: T0 + 10,
      end: T0 + 50,
      intervalMs: 20,
      aggregates: ["Count", "Minimum", "Average"],
    });
    // Kept: 20 only (10 evicted). Unmarked, Count 1 and Minimum 20 would pass for good.
    for (const name of ["Count", "Minimum", "Average"] as const) {
      expect(early!.values[name]!.quality.severity).toBe("uncertain");
      expect(early!.values[name]!.quality.reason).toContain(
        "evicted by retention (complete from 2026-01-01T00:00:00.020Z)",
      );
      expect(late!.values[name]!.quality.severity).toBe("good");
    }
    expect(late!.values.Count!.value).toBe(2);
  });

  test("an interval with nothing kept stays bad, and says the history was evicted", async () => {
    const store = await openStore({ maxSamples: 2 });
    await store.samples.writeBatch([0, 10, 20, 30].map((offset) => at(offset, offset)));
    const [gone] = await store.history.aggregate(["a"], {
      start: T0,
      end: T0 + 20,
      intervalMs: 20,
      aggregates: ["Count"],
    });
    expect(gone!.values.Count!.quality.severity).toBe("bad");
    expect(gone!.values.Count!.quality.reason).toContain("evicted by retention");
  });

  test("readBuckets marks a bucket that lost samples to the retention; later buckets carry no quality", async () => {
    const store = await openStore({ maxSamples: 3 });
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    const buckets = await store.samples.readBuckets({ tag: "a", from: T0 + 10, to: T0 + 50, bucketMs: 20 });
    expect(buckets.map((bucket) => [bucket.start - T0, bucket.count, bucket.quality?.severity])).toEqual([
      [10, 1, "uncertain"],
      [30, 2, undefined],
    ]);
  });

  test("readBuckets keeps a bucket whose samples were all evicted: present, count 0, bad with the reason", async () => {
    const store = await openStore({ maxSamples: 3 });
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    const buckets = await store.samples.readBuckets({ tag: "a", from: T0 - 10, to: T0 + 50, bucketMs: 10 });
    // Unfixed: the buckets at 0 and 10 were left out, with no mark (adv16b F3).
    expect(buckets.map((bucket) => [bucket.start - T0, bucket.count, bucket.quality?.severity])).toEqual([
      [0, 0, "bad"],
      [10, 0, "bad"],
      [20, 1, undefined],
      [30, 1, undefined],
      [40, 1, undefined],
    ]);
    expect(buckets[0]!.quality!.reason).toContain("evicted by retention");
    expect(Number.isNaN(buckets[0]!.avg)).toBe(true);
    // Too many empty buckets: refused, naming the tag, never cut short silently.
    const error = await store.samples
      .readBuckets({ tag: "a", from: T0 - 10, to: T0 + 50, bucketMs: 0.0005 })
      .catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_HISTORY_EVICTED")).toBe(true);
  });

  test("readSamples continuing with after across evicted samples rejects KILN_HISTORY_EVICTED with the resume point", async () => {
    const store = await openStore({ maxSamples: 1_000 });
    await store.samples.writeBatch([0, 10, 20, 30].map((offset) => at(offset, offset)));
    const first = await store.samples.readSamples({ tag: "a", from: T0, to: T0 + 1_000, limit: 2 });
    expect(first.map((sample) => sample.timestamp - T0)).toEqual([0, 10]);
    // A chatty tag moves the horizon past a's 20 while the reader is between pages.
    const small = new MemoryStore({ clock: new SimulatedClock({ start: T0 }), retention: { maxSamples: 3 } });
    await small.open([]);
    await small.samples.writeBatch([0, 10, 20, 30].map((offset) => at(offset, offset)));
    await small.samples.writeBatch([40, 50].map((offset) => at(offset, offset)));
    const error = await small.samples
      .readSamples({ tag: "a", from: T0, to: T0 + 1_000, limit: 2, after: T0 + 10 })
      .catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_HISTORY_EVICTED")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ tag: "a", after: T0 + 10, evictedThrough: T0 + 20 });
    const rest = await small.samples.readSamples({ tag: "a", from: T0, to: T0 + 1_000, after: T0 + 20 });
    expect(rest.map((sample) => sample.timestamp - T0)).toEqual([30, 40, 50]);
  });

  test("a stale cursor pages on when nothing was evicted from the range still to be read (adv16b F5)", async () => {
    const store = await openStore({ maxSamples: 3 });
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    expect(store.evicted.samples).toBe(2);
    // Evicted: 0 and 10. A reader of [25, 100) with an old cursor at 5 lost nothing: unfixed, refused.
    const rows = await store.samples.readSamples({ tag: "a", from: T0 + 25, to: T0 + 100, after: T0 + 5 });
    expect(rows.map((sample) => sample.timestamp - T0)).toEqual([30, 40]);
    // Sibling: the range still to be read holds the evicted 10: refused, naming the resume point.
    const error = await store.samples
      .readSamples({ tag: "a", from: T0, to: T0 + 100, after: T0 + 5 })
      .catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_HISTORY_EVICTED")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ evictedThrough: T0 + 10 });
  });

  test("a cursor at or after the tag's evicted samples pages on; another tag's evictions do not refuse it", async () => {
    const store = await openStore({ maxSamples: 4 });
    await store.samples.writeBatch([at(0, 0, "b"), at(5, 5, "b"), at(10, 10, "b"), at(20, 20), at(30, 30)]);
    await store.samples.writeBatch([at(40, 40)]);
    expect(store.evicted.samples).toBeGreaterThan(0);
    const rows = await store.samples.readSamples({ tag: "a", from: T0, to: T0 + 100, after: T0 + 20 });
    expect(rows.map((sample) => sample.timestamp - T0)).toEqual([30, 40]);
  });

  test("a bad value in force: a look-back to the evicted good sample is never answered as good, and says so", async () => {
    const store = await openStore({ maxSamples: 4 });
    // a: good 5 at 0, then bad from 10 on; b is chatty and moves the horizon past 10.
    await store.samples.writeBatch([at(0, 5), at(10, null, "a", BAD), at(1, 1, "b"), at(2, 2, "b")]);
    await store.samples.writeBatch([at(20, 20, "b"), at(30, 30, "b"), at(40, 40, "b")]);
    expect(store.retainedFrom).toBeGreaterThanOrEqual(T0 + 10);
    const [value] = await store.history.valueAt(["a"], T0 + 25);
    expect(value!.quality.severity).not.toBe("good");
    expect(value!.quality.reason).toContain("evicted by retention");
    const [interval] = await store.history.aggregate(["a"], {
      start: T0 + 20,
      end: T0 + 40,
      intervalMs: 20,
      aggregates: ["TimeAverage", "Interpolative", "PercentGood"],
    });
    for (const result of Object.values(interval!.values)) {
      expect(result!.quality.severity).not.toBe("good");
      expect(result!.quality.reason).toContain("evicted by retention");
    }
    // Once a good sample is kept again, values from it on are complete and unmarked.
    await store.samples.writeBatch([at(50, 7), at(70, 8), at(60, 60, "b")]);
    const [after] = await store.history.valueAt(["a"], T0 + 55);
    expect(after).toMatchObject({ value: 7, quality: { severity: "good" } });
  });

  test("valuesAt and interpolated before the horizon are marked; retainedFrom is on the samples port", async () => {
    const store = await openStore({ maxSamples: 3 });
    expect(store.samples.retainedFrom?.()).toBeUndefined();
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    expect(store.samples.retainedFrom?.()).toBe(T0 + 20);
    const values = await store.history.valuesAt(["a"], [T0 + 15, T0 + 25]);
    expect(values.map((value) => value.quality.severity)).toEqual(["bad", "good"]);
    expect(values[0]!.quality.reason).toContain("evicted by retention");
    const interpolated = await store.history.interpolated(["a"], { start: T0 + 10, end: T0 + 30, intervalMs: 10 });
    expect(interpolated.map((value) => value.quality.reason ?? "")).toEqual([
      expect.stringContaining("evicted by retention"),
      "",
    ]);
  });

  test("a forward step of the wall clock does not age maxAgeMs out at once; the age runs on from the monotonic clock", async () => {
    const clock = new SimulatedClock({ start: T0 });
    const store = new MemoryStore({ clock, retention: { maxAgeMs: 100 } });
    await store.open([]);
    await store.samples.writeBatch([at(0, 0), at(50, 50)]);
    clock.stepWall(3_600_000);
    await store.samples.writeBatch([at(3_600_000, 1)]);
    // Unfixed: a at 0 and 50 are out of force for an hour of wall time, evicted at once.
    expect(store.evicted.samples).toBe(0);
    await clock.advance(150);
    await store.samples.writeBatch([at(3_600_150, 2)]);
    // 150 ms of real time later, a at 0 and a at 50 (stamped 50 ms ahead, superseded by the sample
    // received at the step) are out of force for 100 ms by the monotonic reckoning: evicted. The
    // step itself counts for nothing (fix16d: before, the age clock lagged the wall by the step).
    expect(store.evicted.samples).toBe(2);
    expect(store.sampleCount).toBe(2);
  });

  test("a backward step of the wall clock keeps more, never evicts early", async () => {
    const clock = new SimulatedClock({ start: T0 + 1_000 });
    const store = new MemoryStore({ clock, retention: { maxAgeMs: 100 } });
    await store.open([]);
    await store.samples.writeBatch([at(800, 0), at(950, 1)]);
    expect(store.evicted.samples).toBe(0);
    clock.stepWall(-500);
    await clock.advance(100);
    await store.samples.writeBatch([at(960, 2)]);
    // A step within the tolerance (1 s) is followed like drift: the age clock goes back to T0 + 600,
    // so nothing is out of force for 100 ms before it (larger steps: memory-store-retention-clock-steps).
    expect(store.evicted.samples).toBe(0);
  });
});
