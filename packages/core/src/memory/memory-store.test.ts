import { describe, expect, test } from "vitest";
import { KilnError, KilnValidationError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { MemoryStore } from "./memory-store";
import { SimulatedClock } from "./simulated-clock";

const T0 = Date.UTC(2026, 0, 1);
const sample = (offset: number, value: number, tag = "oven.temperature"): Sample => ({
  tag,
  value,
  timestamp: T0 + offset,
  quality: GOOD,
});
const readAll = (store: MemoryStore, tag = "oven.temperature"): Promise<Sample[]> =>
  store.samples.readSamples({ tag, from: T0, to: T0 + 1_000_000 });

async function openStore(clock = new SimulatedClock({ start: T0 })): Promise<MemoryStore> {
  const store = new MemoryStore({ clock });
  await store.open([]);
  return store;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => "resolved",
    (error: unknown) => error,
  );
}

describe("MemoryStore fault injection", () => {
  test("failWrites(n) makes the next n writeBatch calls reject with a retryable KILN_STORE_ERROR, writing nothing", async () => {
    const store = await openStore();
    store.faults.failWrites(2);
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await rejection(store.samples.writeBatch([sample(0, 1)]));
      expect(KilnError.is(error, "KILN_STORE_ERROR") && error.retryable).toBe(true);
    }
    expect(store.sampleCount).toBe(0);
    await store.samples.writeBatch([sample(0, 1)]);
    expect(await readAll(store)).toEqual([sample(0, 1)]);
    expect(store.writeBatchCalls).toBe(3);
  });

  test("failWritesUntilCleared fails every call until clear()", async () => {
    const store = await openStore();
    store.faults.failWritesUntilCleared();
    for (let attempt = 0; attempt < 5; attempt++) {
      expect(KilnError.is(await rejection(store.samples.writeBatch([sample(attempt, 1)])), "KILN_STORE_ERROR")).toBe(
        true,
      );
    }
    store.faults.clear();
    await store.samples.writeBatch([sample(9, 1)]);
    expect(await readAll(store)).toEqual([sample(9, 1)]);
    expect(store.writeBatchCalls).toBe(6);
  });

  test("failAfterWrites stores the batch and then rejects, so a retry is a harmless replay", async () => {
    const store = await openStore();
    store.faults.failAfterWrites();
    const batch = [sample(0, 1), sample(10, 2)];
    const error = await rejection(store.samples.writeBatch(batch));
    expect(KilnError.is(error, "KILN_STORE_ERROR") && error.retryable).toBe(true);
    expect(store.sampleCount).toBe(2);
    await store.samples.writeBatch(batch);
    expect(store.sampleCount).toBe(2);
    expect(await readAll(store)).toEqual(batch);
  });

  test("a failing write takes precedence over an unknown-outcome one, each claimed by call order", async () => {
    const store = await openStore();
    store.faults.failAfterWrites(1);
    store.faults.failWrites(1);
    expect(KilnError.is(await rejection(store.samples.writeBatch([sample(0, 1)])), "KILN_STORE_ERROR")).toBe(true);
    expect(store.sampleCount).toBe(0);
    expect(KilnError.is(await rejection(store.samples.writeBatch([sample(0, 1)])), "KILN_STORE_ERROR")).toBe(true);
    expect(store.sampleCount).toBe(1);
    await store.samples.writeBatch([sample(10, 2)]);
    expect(store.sampleCount).toBe(2);
  });

  test("delayWrites holds each write on the store's clock", async () => {
    const clock = new SimulatedClock({ start: T0 });
    const store = await openStore(clock);
    store.faults.delayWrites(1000);
    let settled = false;
    const write = store.samples.writeBatch([sample(0, 1)]).then(() => (settled = true));
    await clock.advance(999);
    expect([settled, store.sampleCount]).toEqual([false, 0]);
    await clock.advance(1);
    await write;
    expect([settled, store.sampleCount]).toEqual([true, 1]);
    store.faults.delayWrites(0);
    await store.samples.writeBatch([sample(10, 2)]);
    expect(store.sampleCount).toBe(2);
  });

  test("a delayed write that lands after close rejects with KILN_LIFECYCLE and writes nothing", async () => {
    const clock = new SimulatedClock({ start: T0 });
    const store = await openStore(clock);
    store.faults.delayWrites(50);
    const write = rejection(store.samples.writeBatch([sample(0, 1)]));
    await store.close();
    await clock.advance(50);
    expect(KilnError.is(await write, "KILN_LIFECYCLE")).toBe(true);
    expect(store.sampleCount).toBe(0);
  });

  test("fault counts must be positive integers and delays non-negative", () => {
    const store = new MemoryStore();
    expect(() => store.faults.failWrites(0)).toThrow(RangeError);
    expect(() => store.faults.failAfterWrites(1.5)).toThrow(RangeError);
    expect(() => store.faults.delayWrites(-1)).toThrow(RangeError);
  });
});

describe("MemoryStore", () => {
  test("keeps samples sorted however late they arrive, storing each (tag, timestamp) once", async () => {
    const store = await openStore();
    let state = 7;
    const offsets = Array.from({ length: 2000 }, () => {
      state = (state * 48271) % 0x7fffffff;
      return state % 1500;
    });
    for (let start = 0; start < offsets.length; start += 100) {
      await store.samples.writeBatch(offsets.slice(start, start + 100).map((offset) => sample(offset, offset)));
    }
    const distinct = [...new Set(offsets)].sort((a, b) => a - b);
    expect(store.sampleCount).toBe(distinct.length);
    expect(await readAll(store)).toEqual(distinct.map((offset) => sample(offset, offset)));
  });

  test("rejects operations with KILN_LIFECYCLE before open and after close; reopening keeps the data", async () => {
    const store = new MemoryStore();
    expect(KilnError.is(await rejection(store.samples.writeBatch([sample(0, 1)])), "KILN_LIFECYCLE")).toBe(true);
    expect(KilnError.is(await rejection(store.recipes.list()), "KILN_LIFECYCLE")).toBe(true);
    await store.open([]);
    await store.samples.writeBatch([sample(0, 1)]);
    await store.close();
    expect(KilnError.is(await rejection(store.alarms.query({ from: 0, to: 1 })), "KILN_LIFECYCLE")).toBe(true);
    await store.open([]);
    expect(await readAll(store)).toEqual([sample(0, 1)]);
  });

  test("names every bad field of a batch and writes none of it", async () => {
    const store = await openStore();
    const bad = [
      sample(0, 1),
      { tag: "", value: 1, timestamp: T0, quality: GOOD },
      { tag: "oven.temperature", value: {}, timestamp: T0, quality: { severity: "fine", code: 0 } },
      { tag: "oven.temperature", value: 1, timestamp: T0, quality: { severity: "bad", code: -1 } },
    ] as unknown as Sample[];
    const error = await rejection(store.samples.writeBatch(bad));
    expect(error).toBeInstanceOf(KilnValidationError);
    expect((error as KilnValidationError).issues.map((issue) => issue.path)).toEqual([
      "[1].tag",
      "[2].value",
      "[2].quality.severity",
      "[3].quality.code",
    ]);
    expect(store.sampleCount).toBe(0);
  });

  test("stores copies: changing a written object afterwards changes nothing stored", async () => {
    const store = await openStore();
    const written = { tag: "oven.temperature", value: 1, timestamp: T0, quality: { severity: "good", code: 0 } };
    await store.samples.writeBatch([written as Sample]);
    written.value = 2;
    written.quality.code = 5;
    const payload = { cycles: 3 };
    await store.events.append("machine-1", 0, [{ type: "process-start", payload, at: T0 }]);
    payload.cycles = 4;
    expect((await readAll(store))[0]).toEqual(sample(0, 1));
    expect((await store.events.read("machine-1"))[0]?.payload).toEqual({ cycles: 3 });
  });

  test("rejects a non-integer expected version and a non-positive recipe version with KILN_VALIDATION", async () => {
    const store = await openStore();
    const append = store.events.append("machine-1", -1, []);
    expect(KilnError.is(await rejection(append), "KILN_VALIDATION")).toBe(true);
    const save = store.recipes.save({ name: "ald", version: 0, definition: {}, savedAt: T0 });
    expect(KilnError.is(await rejection(save), "KILN_VALIDATION")).toBe(true);
    expect(await store.recipes.list()).toEqual([]);
  });
});
