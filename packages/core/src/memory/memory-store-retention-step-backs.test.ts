import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { MemoryStore } from "./memory-store";
import { SimulatedClock } from "./simulated-clock";

// Issue 16, fix16m: several wall-clock steps back (each longer than the window), late samples
// among them: every answer a bounded store gives unmarked is the unbounded store's (ADR 0045).
const T0 = Date.UTC(2026, 0, 1);

describe("MemoryStore retention across several step backs, against a store that keeps everything", () => {
  test.each([5, 17, 29, 31])(
    "seed %i: raw reads are whole or refused; unmarked buckets, trend columns and values are exact",
    async (start) => {
      let seed = start;
      const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
      const clock = new SimulatedClock({ start: T0 });
      const tagNames = ["a", "b"];
      const catalog = tagNames.map((name) => ({ name, dataType: "float64", interpolation: "stepped" }) as never);
      const bounded = new MemoryStore({ clock, retention: { maxSamples: 40, maxAgeMs: 3_000 } });
      const unbounded = new MemoryStore({ clock });
      await bounded.open(catalog);
      await unbounded.open(catalog);
      let steps = 0;
      let refused = 0;
      for (let round = 0; round < 500; round++) {
        await clock.advance(100);
        if (random() < 0.02) {
          clock.stepWall(-Math.round(2_000 + random() * 8_000));
          steps++;
        }
        const batch: Sample[] = [];
        for (const tag of tagNames) {
          if (random() < 0.7)
            batch.push({ tag, value: round, timestamp: clock.now() - Math.floor(random() * 1_500), quality: GOOD });
        }
        await bounded.samples.writeBatch(batch);
        await unbounded.samples.writeBatch(batch);
        expect(bounded.sampleCount).toBeLessThanOrEqual(40);
        const to = Math.max(clock.now(), bounded.newestSampleTime ?? clock.now()) + 1;
        for (const tag of tagNames) {
          for (const from of [T0 - 20_000, clock.now() - 5_000, clock.now() - 1_000, bounded.retainedFrom ?? T0]) {
            const query = { tag, from, to, limit: 1e9 };
            let kept: Sample[] | undefined;
            try {
              kept = await bounded.samples.readSamples(query);
            } catch (error) {
              if (!KilnError.is(error, "KILN_HISTORY_EVICTED")) throw error;
              refused++;
            }
            if (kept)
              expect([round, tag, from, kept]).toEqual([round, tag, from, await unbounded.samples.readSamples(query)]);
          }
          const grid = { tag, from: clock.now() - 6_000, to, bucketMs: 700 };
          const buckets = await bounded.samples.readBuckets(grid);
          const all = await unbounded.samples.readBuckets(grid);
          for (const bucket of all) {
            const mine = buckets.find((candidate) => candidate.start === bucket.start);
            expect([round, tag, bucket.start, mine !== undefined]).toEqual([round, tag, bucket.start, true]);
            if (mine!.quality === undefined) expect([round, tag, mine]).toEqual([round, tag, bucket]);
          }
        }
        for (const tag of tagNames) {
          // A downsample: a column whose picks are all unmarked is the unbounded store's column.
          const query = { start: clock.now() - 6_000, end: to, points: 40 };
          const columnOf = (sample: Sample): number =>
            Math.floor(((sample.timestamp - query.start) * 8) / (query.end - query.start));
          const trend = await bounded.history.downsample(tag, query);
          const all = await unbounded.history.downsample(tag, query);
          for (let column = 0; column < 8; column++) {
            const mine = trend.filter((sample) => columnOf(sample) === column);
            if (mine.some((sample) => sample.quality.reason?.includes("evicted"))) continue;
            expect([round, tag, column, mine]).toEqual([
              round,
              tag,
              column,
              all.filter((sample) => columnOf(sample) === column),
            ]);
          }
        }
        for (const time of [clock.now() - 4_000, clock.now() - 1_000, clock.now()]) {
          const kept = await bounded.history.valueAt(tagNames, time);
          const all = await unbounded.history.valueAt(tagNames, time);
          for (const [index, value] of kept.entries()) {
            if (value.quality.severity === "good") expect([round, time, value]).toEqual([round, time, all[index]]);
          }
        }
      }
      expect(steps).toBeGreaterThanOrEqual(3);
      expect(refused).toBeGreaterThan(0);
      expect(bounded.evicted.samples).toBeGreaterThan(300);
    },
  );
});
