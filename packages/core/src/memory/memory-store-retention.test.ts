import { describe, expect, test } from "vitest";
import { KilnError, KilnValidationError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import { AGGREGATES, type SampleQuery } from "../ports/sample-history";
import type { Sample } from "../domain/sample";
import { MemoryStore, type MemoryStoreEviction, type MemoryStoreOptions } from "./memory-store";
import { SimulatedClock } from "./simulated-clock";

const T0 = Date.UTC(2026, 0, 1);
const sample = (offset: number, tag = "a"): Sample => ({ tag, value: offset, timestamp: T0 + offset, quality: GOOD });
/** The kept samples of a range, as a reader that accepts the evicted gap reads them (fix16m). */
const readKept = (store: MemoryStore, query: SampleQuery): Promise<Sample[]> =>
  store.samples.readSamples({ ...query, acceptEvicted: true });
const timestampsOf = async (store: MemoryStore, tag: string): Promise<number[]> =>
  (await readKept(store, { tag, from: T0 - 1e9, to: T0 + 1e12, limit: 1e9 })).map((stored) => stored.timestamp - T0);

/** A store clock after every stamp these tests write: a stamp ahead of the clock moves the horizon no further (fix16o). */
const afterEveryStamp = (): SimulatedClock => new SimulatedClock({ start: T0 + 86_400_000 });

async function openStore(options: MemoryStoreOptions = {}, clock = new SimulatedClock({ start: T0 })) {
  const evictions: MemoryStoreEviction[] = [];
  const store = new MemoryStore({ clock, ...options });
  store.observeEvictions((eviction) => evictions.push(eviction));
  await store.open([]);
  return { store, evictions, clock };
}

describe("MemoryStore retention", () => {
  test("maxSamples keeps the newest samples over every tag, evicting the oldest by timestamp first", async () => {
    const { store, evictions } = await openStore({ retention: { maxSamples: 4 } });
    await store.samples.writeBatch([sample(10, "a"), sample(1, "b"), sample(20, "a"), sample(2, "b")]);
    expect(store.evicted.samples).toBe(0);
    await store.samples.writeBatch([sample(30, "a"), sample(3, "b")]);
    expect(await timestampsOf(store, "a")).toEqual([10, 20, 30]);
    expect(await timestampsOf(store, "b")).toEqual([3]);
    expect(store.sampleCount).toBe(4);
    expect(store.evicted).toEqual({ samples: 2, alarms: 0, audit: 0 });
    expect(evictions).toEqual([{ port: "samples", count: 2 }]);
  });

  test("a late sample before the horizon is evicted at once unless it is its tag's value in force", async () => {
    const { store } = await openStore({ retention: { maxSamples: 3 } }, afterEveryStamp());
    await store.samples.writeBatch([sample(10), sample(20), sample(30)]);
    // b's only sample is its value in force: kept, however old; a goes down to the cap.
    await store.samples.writeBatch([sample(5, "b"), sample(40)]);
    expect(await timestampsOf(store, "b")).toEqual([5]);
    expect(await timestampsOf(store, "a")).toEqual([30, 40]);
    expect(store.retainedFrom).toBe(T0 + 30);
    // b at 25 supersedes b at 5 before the horizon: b at 5 is out of force from 30 on, evicted.
    await store.samples.writeBatch([sample(25, "b"), sample(50)]);
    expect(await timestampsOf(store, "b")).toEqual([25]);
    expect(await timestampsOf(store, "a")).toEqual([40, 50]);
    // A late a at 35, before the horizon (40) and superseded there by a at 40: evicted at once.
    await store.samples.writeBatch([sample(35)]);
    expect(await timestampsOf(store, "a")).toEqual([40, 50]);
    await store.samples.writeBatch([sample(45, "b")]);
    expect(await timestampsOf(store, "b")).toEqual([45]);
    expect(await timestampsOf(store, "a")).toEqual([40, 50]);
    expect(store.retainedFrom).toBe(T0 + 45);
    expect(store.evicted.samples).toBe(6);
  });

  test("an evicted (tag, timestamp) written again is stored again, and counted as kept", async () => {
    const { store } = await openStore({ retention: { maxSamples: 2 } });
    await store.samples.writeBatch([sample(1), sample(2), sample(3)]);
    await store.samples.writeBatch([sample(1)]);
    expect(await timestampsOf(store, "a")).toEqual([2, 3]);
    expect(store.sampleCount).toBe(2);
    expect(store.evicted.samples).toBe(2);
  });

  test("maxAgeMs evicts samples out of force for longer than the age at each write; a tag's newest is kept", async () => {
    const { store, clock, evictions } = await openStore({ retention: { maxAgeMs: 100 } });
    await store.samples.writeBatch([sample(0), sample(50), sample(0, "b"), sample(99, "b")]);
    expect(store.sampleCount).toBe(4);
    await clock.advance(150);
    await store.samples.writeBatch([sample(150)]);
    // a at 0 is out of force since 50 (= now - 100): evicted; b at 0 only since 99: kept.
    expect(await timestampsOf(store, "a")).toEqual([50, 150]);
    expect(await timestampsOf(store, "b")).toEqual([0, 99]);
    expect(evictions).toEqual([{ port: "samples", count: 1 }]);
    expect(store.retainedFrom).toBe(T0 + 50);
    // A late sample already out of force before the horizon is evicted by the write that brought it.
    await store.samples.writeBatch([sample(20)]);
    expect(await timestampsOf(store, "a")).toEqual([50, 150]);
    // A quiet tag's newest sample stays, however old.
    await clock.advance(10_000);
    await store.samples.writeBatch([sample(10_150)]);
    // a at 150 is out of force only since now: kept until it has been for 100 ms.
    expect(await timestampsOf(store, "a")).toEqual([150, 10_150]);
    expect(await timestampsOf(store, "b")).toEqual([99]);
    expect(store.evicted.samples).toBe(4);
    expect(store.retainedFrom).toBe(T0 + 150);
  });

  test("memory stays bounded over a long run: 1,000,000 samples through a cap of 5,000", async () => {
    const { store } = await openStore({ retention: { maxSamples: 5_000 } });
    const tags = Array.from({ length: 100 }, (_, index) => `tag.${index}`);
    let maxKept = 0;
    for (let scan = 0; scan < 10_000; scan++) {
      await store.samples.writeBatch(tags.map((tag) => sample(scan * 1000, tag)));
      maxKept = Math.max(maxKept, store.sampleCount);
    }
    expect(maxKept).toBe(5_000);
    expect(store.evicted.samples).toBe(1_000_000 - 5_000);
    // The newest 50 scans of every tag, nothing else.
    expect(await timestampsOf(store, "tag.0")).toEqual(
      Array.from({ length: 50 }, (_, index) => (9_950 + index) * 1000),
    );
  });

  test("a long history of one tag is evicted without moving the whole array each time", async () => {
    // 200,000 single-sample writes through a 100,000 cap: cutting the array's head per eviction
    // would move ~10^10 elements (minutes); the amortized cut takes well under a second.
    const { store } = await openStore({ retention: { maxSamples: 100_000 } });
    for (let index = 0; index < 200_000; index++) await store.samples.writeBatch([sample(index)]);
    expect(store.sampleCount).toBe(100_000);
    const kept = await timestampsOf(store, "a");
    expect(kept.length).toBe(100_000);
    expect(kept[0]).toBe(100_000);
    expect(kept.at(-1)).toBe(199_999);
  });

  test("reading a range after every eviction does not cut the series each time", async () => {
    // A host reading the newest samples after each write: cutting the evicted head on each read
    // would move the whole 100,000-sample series per read; a read costs its range. Compared with
    // the same writes and reads on a series that evicts nothing, in the same run (a fixed bound
    // fails under load).
    const writeAndRead = async (store: MemoryStore, first: number): Promise<number> => {
      const started = performance.now();
      for (let index = first; index < first + 40_000; index++) {
        await store.samples.writeBatch([sample(index)]);
        const newest = await store.samples.readSamples({ tag: "a", from: T0 + index - 2, to: T0 + index + 1 });
        expect(newest.length).toBe(3);
      }
      return performance.now() - started;
    };
    const { store: keeping } = await openStore({ retention: { maxSamples: 1_000_000 } });
    const { store: evicting } = await openStore({ retention: { maxSamples: 100_000 } });
    for (let index = 0; index < 100_000; index++) {
      await keeping.samples.writeBatch([sample(index)]);
      await evicting.samples.writeBatch([sample(index)]);
    }
    const keepingMs = await writeAndRead(keeping, 100_000);
    const evictingMs = await writeAndRead(evicting, 100_000);
    expect(evicting.evicted.samples).toBe(40_000);
    expect(evictingMs).toBeLessThan(3 * keepingMs + 100);
    expect(await timestampsOf(evicting, "a")).toHaveLength(100_000);
  });

  test("history queries see only the kept samples", async () => {
    const store = new MemoryStore({ clock: new SimulatedClock({ start: T0 }), retention: { maxSamples: 2 } });
    await store.open([{ name: "a", type: "float" } as never]);
    await store.samples.writeBatch([sample(0), sample(10), sample(20)]);
    const [point] = await store.history.valueAt(["a"], T0 + 5);
    expect(point?.quality.severity).not.toBe("good");
  });

  test("alarm and audit entries are bounded, oldest first, counted and reported", async () => {
    const { store, evictions } = await openStore({ retention: { maxAlarmEntries: 2, maxAuditEntries: 2 } });
    for (let index = 0; index < 3; index++) {
      await store.alarms.record({ at: T0 + index, alarm: `alarm-${index}` } as never);
      await store.audit.record({
        id: `entry-${index}`,
        at: T0 + index,
        principal: "operator",
        action: "tag.write",
        target: "a",
        outcome: "allowed",
      } as never);
    }
    const range = { from: T0 - 1, to: T0 + 10 };
    expect((await store.alarms.query(range)).map((entry) => entry.at - T0)).toEqual([1, 2]);
    expect((await store.audit.query(range)).map((entry) => entry.id)).toEqual(["entry-1", "entry-2"]);
    expect(store.evicted).toEqual({ samples: 0, alarms: 1, audit: 1 });
    expect(evictions).toEqual([
      { port: "alarms", count: 1 },
      { port: "audit", count: 1 },
    ]);
  });

  test("alarm entries past the cap cost what entries below it cost (no array shift per eviction), late ones in order", async () => {
    const record = async (store: MemoryStore, from: number, count: number): Promise<number> => {
      const started = performance.now();
      for (let index = from; index < from + count; index++) {
        await store.alarms.record({ at: T0 + index, alarm: `alarm-${index}` } as never);
      }
      return performance.now() - started;
    };
    const { store: below } = await openStore({ retention: { maxAlarmEntries: 1_000_000 } });
    const { store: atCap } = await openStore({ retention: { maxAlarmEntries: 100_000 } });
    await record(below, 0, 100_000);
    await record(atCap, 0, 100_000);
    const belowMs = await record(below, 100_000, 60_000);
    const atCapMs = await record(atCap, 100_000, 60_000);
    expect(atCap.evicted.alarms).toBe(60_000);
    expect(atCapMs).toBeLessThan(3 * belowMs + 100);
    // A late entry goes in order among the kept ones; one older than all kept is the oldest, evicted.
    await atCap.alarms.record({ at: T0 + 150_000.5, alarm: "late" } as never);
    await atCap.alarms.record({ at: T0 + 1, alarm: "too late" } as never);
    const kept = await atCap.alarms.query({ from: T0 - 1, to: T0 + 1e9 });
    expect(kept).toHaveLength(100_000);
    expect(kept[0]!.at).toBe(T0 + 60_001);
    expect(kept.find((entry) => entry.at === T0 + 150_000.5)).toBeDefined();
    expect(kept.every((entry, index) => index === 0 || kept[index - 1]!.at <= entry.at)).toBe(true);
    expect(kept.some((entry) => (entry as { alarm?: string }).alarm === "too late")).toBe(false);
  });

  test("the defaults keep 1,000,000 samples", async () => {
    const store = new MemoryStore({ clock: new SimulatedClock({ start: T0 }) });
    await store.open([]);
    const batch = Array.from({ length: 100_000 }, (_, index) => index);
    for (let round = 0; round < 11; round++) {
      await store.samples.writeBatch(batch.map((index) => sample(round * 100_000 + index)));
    }
    expect(store.sampleCount).toBe(1_000_000);
    expect(store.evicted.samples).toBe(100_000);
  });

  test("a chatty tag does not erase a quiet tag's value: each tag keeps the sample in force at the horizon", async () => {
    // A valve logged once (change logging: it never changed again) beside a tag logged every
    // 10 ms. Under one window over every tag the chatty tag pushes the window past the valve's
    // only sample; the valve's value in force is still known and kept.
    const { store } = await openStore({ retention: { maxSamples: 1_000 } }, afterEveryStamp());
    await store.samples.writeBatch([sample(0, "valve"), sample(5, "valve.quiet")]);
    for (let scan = 1; scan <= 50; scan++) {
      await store.samples.writeBatch(
        Array.from({ length: 100 }, (_, index) => sample(scan * 1_000 + index * 10, "chatty")),
      );
    }
    expect(await timestampsOf(store, "valve")).toEqual([0]);
    expect(await timestampsOf(store, "valve.quiet")).toEqual([5]);
    expect(store.sampleCount).toBe(1_000);
    expect((await timestampsOf(store, "chatty")).length).toBe(998);
    expect(store.retainedFrom).toBe(T0 + 41_020);
  });

  test("history from retainedFrom on is exactly an unbounded store's, whatever the write order", async () => {
    // A deterministic pseudo-random mix of tags, rates and late samples, through a small cap and
    // an age limit; every valueAt and readSamples at or after retainedFrom matches a store that
    // keeps everything.
    let seed = 7;
    const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const clock = new SimulatedClock({ start: T0 });
    const tagNames = ["a", "b", "c", "d"];
    const catalog = tagNames.map(
      (name, rank) => ({ name, dataType: "float64", interpolation: rank % 2 ? "sloped" : "stepped" }) as never,
    );
    const bounded = new MemoryStore({ clock, retention: { maxSamples: 60, maxAgeMs: 5_000 } });
    const unbounded = new MemoryStore({ clock });
    await bounded.open(catalog);
    await unbounded.open(catalog);
    let compared = 0;
    for (let round = 0; round < 300; round++) {
      await clock.advance(50);
      const batch: Sample[] = [];
      for (const [rank, tag] of tagNames.entries()) {
        if (random() < 1 / (rank + 1) ** 2) batch.push(sample(clock.now() - T0 - Math.floor(random() * 3_000), tag));
      }
      await bounded.samples.writeBatch(batch);
      await unbounded.samples.writeBatch(batch);
      const from = bounded.retainedFrom;
      if (from === undefined) continue;
      compared++;
      expect(bounded.sampleCount).toBeLessThanOrEqual(60);
      const times = [from, from + 1, from + 777, clock.now()];
      const kept = await bounded.history.valueAt(tagNames, from);
      const all = await unbounded.history.valueAt(tagNames, from);
      expect(kept).toEqual(all);
      for (const at of times) {
        expect(await bounded.history.valueAt(tagNames, at)).toEqual(await unbounded.history.valueAt(tagNames, at));
      }
      for (const tag of tagNames) {
        const query = { tag, from, to: clock.now() + 1, limit: 1e9 };
        expect(await bounded.samples.readSamples(query)).toEqual(await unbounded.samples.readSamples(query));
        const buckets = { tag, from, to: clock.now() + 1, bucketMs: 700 };
        expect(await bounded.samples.readBuckets(buckets)).toEqual(await unbounded.samples.readBuckets(buckets));
        if (round % 10 === 0) {
          const intervals = { start: from, end: clock.now() + 1, intervalMs: 500, aggregates: AGGREGATES };
          expect(await bounded.history.aggregate([tag], intervals)).toEqual(
            await unbounded.history.aggregate([tag], intervals),
          );
        }
        // From before the horizon: only kept samples, none of the evicted placeholders.
        const early = await readKept(bounded, { ...query, from: T0 - 1e6 });
        expect(early.every((stored) => stored.tag === tag)).toBe(true);
      }
    }
    expect(bounded.evicted.samples).toBeGreaterThan(100);
    expect(compared).toBeGreaterThan(250);
  });

  test("rejects an onObserverError that is not a function", () => {
    expect(() => new MemoryStore({ onObserverError: 3 as never })).toThrow(KilnValidationError);
  });

  test.each([
    [{ maxSamples: 0 }, "retention.maxSamples"],
    [{ maxSamples: 1.5 }, "retention.maxSamples"],
    [{ maxAgeMs: -1 }, "retention.maxAgeMs"],
    [{ maxAgeMs: Infinity }, "retention.maxAgeMs"],
    [{ maxAlarmEntries: "10" }, "retention.maxAlarmEntries"],
    [{ maxAuditEntries: 0 }, "retention.maxAuditEntries"],
    [{ maxSample: 10 }, "retention"],
  ])("rejects retention %j with KILN_VALIDATION naming %s", (retention, path) => {
    const attempt = (): MemoryStore => new MemoryStore({ retention: retention as never });
    expect(attempt).toThrow(KilnValidationError);
    try {
      attempt();
    } catch (error) {
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as KilnValidationError).issues.map((issue) => issue.path)).toEqual([path]);
    }
  });

  test("an eviction observer that throws affects neither the write nor the other observers", async () => {
    const errors: unknown[] = [];
    const { store, evictions } = await openStore({
      retention: { maxSamples: 1 },
      onObserverError: (error) => errors.push(error),
    });
    const bug = new Error("observer bug");
    store.observeEvictions(() => {
      throw bug;
    });
    const seen: number[] = [];
    const dispose = store.observeEvictions((eviction) => seen.push(eviction.count));
    await store.samples.writeBatch([sample(1), sample(2)]);
    dispose();
    await store.samples.writeBatch([sample(3)]);
    expect(seen).toEqual([1]);
    expect(errors).toEqual([bug, bug]);
    expect(store.sampleCount).toBe(1);
    expect(evictions).toEqual([
      { port: "samples", count: 1 },
      { port: "samples", count: 1 },
    ]);
  });
});
