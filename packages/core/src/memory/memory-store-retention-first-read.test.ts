import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { MemoryStore, type MemoryStoreOptions } from "./memory-store";
import { SimulatedClock } from "./simulated-clock";

// Issue 16, fix16m: a first raw read or a downsample whose range reaches into evicted history
// never looks complete (ADR 0045).
const T0 = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
const at = (offset: number, value: number | null, tag = "a"): Sample => ({
  tag,
  value,
  timestamp: T0 + offset,
  quality: GOOD,
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

async function rejection(promise: Promise<unknown>): Promise<KilnError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(KilnError.is(error, "KILN_HISTORY_EVICTED")).toBe(true);
  return error as KilnError;
}

describe("MemoryStore first reads over evicted history", () => {
  test("a first raw read (no after) whose range holds evicted samples rejects KILN_HISTORY_EVICTED; after = evictedThrough reads on", async () => {
    const store = await openStore({ maxSamples: 3 });
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    // 0 and 10 evicted: before, [20, 30, 40] came back as if it were the whole of [0, 50).
    const error = await rejection(store.samples.readSamples({ tag: "a", from: T0, to: T0 + 50 }));
    expect(error.details).toMatchObject({ tag: "a", evictedThrough: T0 + 10, retainedFrom: T0 + 20 });
    const rest = await store.samples.readSamples({ tag: "a", from: T0, to: T0 + 50, after: T0 + 10 });
    expect(rest.map((sample) => sample.timestamp - T0)).toEqual([20, 30, 40]);
    const kept = await store.samples.readSamples({ tag: "a", from: T0, to: T0 + 50, acceptEvicted: true });
    expect(kept.map((sample) => sample.timestamp - T0)).toEqual([20, 30, 40]);
    // A range that lost nothing reads as before, first page included.
    expect(await store.samples.readSamples({ tag: "a", from: T0 + 20, to: T0 + 50 })).toHaveLength(3);
    expect(await store.samples.readSamples({ tag: "a", from: T0 + 11, to: T0 + 50 })).toHaveLength(3);
  });

  test("a range wholly evicted rejects too, rather than answer an empty (complete-looking) page", async () => {
    const store = await openStore({ maxSamples: 3 });
    await store.samples.writeBatch([0, 10, 20, 30, 40].map((offset) => at(offset, offset)));
    await rejection(store.samples.readSamples({ tag: "a", from: T0, to: T0 + 15 }));
    // Another tag that lost nothing is exact: no rejection for it.
    await store.samples.writeBatch([at(0, 1, "b")]);
    expect(await store.samples.readSamples({ tag: "b", from: T0, to: T0 + 50 })).toHaveLength(1);
  });

  test("a downsample over evicted time marks what rests on it and shows the evicted columns as bad gaps", async () => {
    const store = await openStore({ maxSamples: 6 });
    await store.samples.writeBatch(Array.from({ length: 10 }, (_, index) => at(index * 10, index)));
    // 0..30 evicted, 40..90 kept.
    const trend = await store.history.downsample("a", { start: T0, end: T0 + 100, points: 50 });
    const early = trend.filter((sample) => sample.timestamp < T0 + 40);
    expect(early.length).toBeGreaterThan(0);
    for (const sample of early) {
      expect(sample.value).toBeNull();
      expect(sample.quality.severity).toBe("bad");
      expect(sample.quality.reason).toContain("evicted by retention");
    }
    // Kept samples from the tag's complete-from time on are unmarked.
    expect(trend.filter((sample) => sample.timestamp >= T0 + 40).map((sample) => sample.value)).toEqual([
      4, 5, 6, 7, 8, 9,
    ]);
    expect(trend.filter((sample) => sample.timestamp >= T0 + 40).every((s) => s.quality.severity === "good")).toBe(
      true,
    );
    // A downsample of time that lost nothing is unchanged.
    const late = await store.history.downsample("a", { start: T0 + 40, end: T0 + 100, points: 50 });
    expect(late.every((sample) => sample.quality.severity === "good")).toBe(true);
  });

  test("a downsample column that lost some of its samples marks the picks it kept: an evicted one may have been its pick", async () => {
    const store = await openStore({ maxSamples: 7 });
    await store.samples.writeBatch([0, 10, 20, 30, 40, 50, 60, 70, 80, 90].map((offset) => at(offset, 100 - offset)));
    // 0..20 evicted; the column [20, 40) kept 30 only, though 20 (its largest) was written.
    const trend = await store.history.downsample("a", { start: T0, end: T0 + 100, points: 25 });
    const column = trend.filter((sample) => sample.timestamp >= T0 + 20 && sample.timestamp < T0 + 40);
    expect(column.map((sample) => sample.value)).toEqual([70]);
    expect(column[0]!.quality.severity).toBe("uncertain");
    expect(column[0]!.quality.reason).toContain("evicted by retention");
    expect(trend.filter((sample) => sample.timestamp >= T0 + 40).every((s) => s.quality.severity === "good")).toBe(
      true,
    );
  });
});
