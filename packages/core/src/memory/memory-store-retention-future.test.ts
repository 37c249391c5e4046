import { describe, expect, test } from "vitest";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { MemoryStore, type MemoryStoreOptions } from "./memory-store";
import { SimulatedClock } from "./simulated-clock";

// Issue 16, fix16m: samples stamped ahead of the store's clock (a device clock ahead) are retained
// by when they were received, not by their stamp (ADR 0045).
const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

async function openStore(retention: MemoryStoreOptions["retention"]) {
  const clock = new SimulatedClock({ start: T0 });
  const store = new MemoryStore({ clock, retention });
  await store.open([
    { name: "ahead", dataType: "float64", interpolation: "stepped" } as never,
    { name: "on-time", dataType: "float64", interpolation: "stepped" } as never,
  ]);
  return { clock, store };
}

const sample = (tag: string, timestamp: number, value: number): Sample => ({ tag, value, timestamp, quality: GOOD });

describe("MemoryStore retention of future-stamped samples", () => {
  test("maxAgeMs evicts a future-stamped sample once it has been out of force that long since it was received", async () => {
    const { clock, store } = await openStore({ maxAgeMs: 60_000 });
    // A device an hour ahead writes a sample a second for 10 minutes.
    for (let second = 0; second < 600; second++) {
      await store.samples.writeBatch([sample("ahead", clock.now() + HOUR, second)]);
      await clock.advance(1_000);
    }
    // Before: none evicted (out of force "since" an hour from now), 600 kept and growing. Now a
    // stamp counts as at most MEMORY_STORE_FUTURE_TOLERANCE_MS (60 s) ahead of receipt: 60 s +
    // 60 s of samples are kept.
    expect(store.sampleCount).toBeLessThanOrEqual(122);
    expect(store.evicted.samples).toBeGreaterThanOrEqual(478);
    expect(store.newestSampleTime).toBe(T0 + HOUR + 599_000);
  });

  test("under maxSamples a future-stamped tag goes in the order it was received: it no longer squeezes the others to one sample", async () => {
    const { clock, store } = await openStore({ maxSamples: 100 });
    for (let second = 0; second < 300; second++) {
      await store.samples.writeBatch([
        sample("ahead", clock.now() + HOUR, second),
        sample("on-time", clock.now(), second),
      ]);
      await clock.advance(1_000);
    }
    expect(store.sampleCount).toBe(100);
    // Before: "on-time" was evicted first every time (its samples went out of force an hour
    // "earlier"), down to its one sample in force; the future tag kept 99.
    const onTime = await store.samples.readSamples({ tag: "on-time", from: T0, to: T0 + HOUR, acceptEvicted: true });
    // The future tag counts as 60 s ahead (the tolerance): of 100, on-time keeps about 20.
    expect(onTime.length).toBeGreaterThanOrEqual(15);
    expect(onTime.at(-1)!.value).toBe(299);
    // Every eviction is counted.
    expect(store.evicted.samples).toBe(600 - 100);
  });

  test("a future-stamped tag never moves retainedFrom ahead of the clock; an on-time tag is still whole from it, the future tag's gap is still refused (adv16n L1)", async () => {
    const { clock, store } = await openStore({ maxSamples: 100 });
    for (let second = 0; second < 300; second++) {
      await store.samples.writeBatch([
        sample("ahead", clock.now() + HOUR, second),
        sample("on-time", clock.now(), second),
      ]);
      // Before: an hour ahead of the clock (the successor's stamp of an evicted "ahead" sample).
      expect(store.retainedFrom ?? -Infinity).toBeLessThanOrEqual(clock.now());
      expect(store.samples.retainedFrom!() ?? -Infinity).toBeLessThanOrEqual(clock.now());
      await clock.advance(1_000);
    }
    const from = store.retainedFrom!;
    expect(from).toBeGreaterThan(T0);
    // The on-time tag: from the horizon on, a first raw read is whole (no rejection) and ends with its newest value.
    const onTime = await store.samples.readSamples({ tag: "on-time", from, to: clock.now() + 1 });
    expect(onTime.at(-1)!.value).toBe(299);
    // The future tag lost samples stamped after the horizon: a raw read of them is refused, never silently short.
    await expect(store.samples.readSamples({ tag: "ahead", from, to: clock.now() + 2 * HOUR })).rejects.toMatchObject({
      code: "KILN_HISTORY_EVICTED",
    });
  });

  test("(sibling) under maxAgeMs alone, a tag an hour ahead keeps retainedFrom at or before the clock after every write", async () => {
    const { clock, store } = await openStore({ maxAgeMs: 60_000 });
    for (let second = 0; second < 300; second++) {
      await store.samples.writeBatch([sample("ahead", clock.now() + HOUR, second)]);
      expect(store.retainedFrom ?? -Infinity).toBeLessThanOrEqual(clock.now());
      await clock.advance(1_000);
    }
    expect(store.evicted.samples).toBeGreaterThan(0);
    expect(store.retainedFrom).toBeDefined();
  });

  test("(sibling) a host clock an hour fast, then stepped back: retainedFrom stays at or before the latest clock reading seen, and what the fast clock stamped is whole from it (adv16p LOW-1, as documented)", async () => {
    const { clock, store } = await openStore({ maxSamples: 100 });
    for (let second = 0; second < 60; second++) {
      await store.samples.writeBatch([sample("on-time", clock.now(), second), sample("ahead", clock.now(), second)]);
      await clock.advance(1_000);
    }
    const latestReading = clock.now();
    clock.stepWall(-HOUR);
    for (let second = 0; second < 30; second++) {
      await store.samples.writeBatch([
        sample("on-time", clock.now(), 1_000 + second),
        sample("ahead", clock.now(), 1_000 + second),
      ]);
      await clock.advance(1_000);
      expect(store.retainedFrom ?? -Infinity).toBeLessThanOrEqual(latestReading);
    }
    const from = store.retainedFrom!;
    // Ahead of now (up to the step), and honest: the fast clock's samples from it on are all kept.
    expect(from).toBeGreaterThan(clock.now());
    const kept = await store.samples.readSamples({ tag: "on-time", from, to: latestReading + 1 });
    expect(kept.at(-1)!.value).toBe(59);
    expect(kept.length).toBe(59 - Math.ceil((from - T0) / 1_000) + 1);
  });
});
