import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import { SimulatedClock } from "../memory/simulated-clock";
import { CurrentValueTable, NO_COMMUNICATION, type CvtChange } from "./current-value-table";

const tags = defineTags({ a: { dataType: "float64" }, b: { dataType: "bool" } });
const sample = (tag: string, value: Sample["value"], timestamp: number, q = GOOD): Sample => ({
  tag,
  value,
  timestamp,
  quality: q,
});

describe("CurrentValueTable", () => {
  test("keeps the last value per tag and reads synchronously", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    expect(cvt.get("a")).toBeUndefined();
    cvt.update([sample("a", 1, 10), sample("b", true, 10), sample("a", 2, 20)], 20);
    expect(cvt.value("a")).toBe(2);
    expect(cvt.get("b")?.value).toBe(true);
    expect(cvt.size).toBe(2);
  });

  test("detects value and quality changes for observers", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const changes: Pick<CvtChange, "valueChanged" | "qualityChanged">[] = [];
    cvt.observe("a", ({ valueChanged, qualityChanged }) => changes.push({ valueChanged, qualityChanged }));
    cvt.update([sample("a", 1, 1), sample("a", 1, 2), sample("a", 2, 3), sample("a", 2, 4, quality("bad"))], 4);
    expect(changes).toEqual([
      { valueChanged: true, qualityChanged: true },
      { valueChanged: false, qualityChanged: false },
      { valueChanged: true, qualityChanged: false },
      { valueChanged: false, qualityChanged: true },
    ]);
  });

  test("ignores samples older than the current one and tags it does not know", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const seen: number[] = [];
    cvt.observeAll(({ sample: s }) => seen.push(s.timestamp));
    cvt.update([sample("a", 1, 10), sample("a", 0, 5), sample("zzz", 1, 11)], 11);
    expect(cvt.value("a")).toBe(1);
    expect(seen).toEqual([10]);
  });

  test("an observer that throws is reported and does not stop the others", () => {
    const errors: unknown[] = [];
    const cvt = new CurrentValueTable({ tags: tags.list(), onObserverError: (error) => errors.push(error) });
    let later = 0;
    cvt.observeAll(() => {
      throw new Error("observer broke");
    });
    cvt.observeAll(() => void later++);
    cvt.update([sample("a", 1, 1)], 1);
    expect(later).toBe(1);
    expect(errors).toHaveLength(1);
  });

  test("observing an unknown tag fails with KILN_TAG_UNKNOWN; disposers stop delivery", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    expect(() => cvt.observe("nope", () => undefined)).toThrow(expect.objectContaining({ code: "KILN_TAG_UNKNOWN" }));
    let count = 0;
    const dispose = cvt.observe("a", () => void count++);
    cvt.update([sample("a", 1, 1)], 1);
    dispose();
    cvt.update([sample("a", 2, 2)], 2);
    expect(count).toBe(1);
  });

  test("stale tags turn uncertain once, keeping their value, and recover on the next update", async () => {
    const clock = new SimulatedClock({ start: 1_000 });
    const cvt = new CurrentValueTable({ tags: tags.list(), clock });
    cvt.setStaleAfter("a", 300);
    cvt.update([sample("a", 7, 1_000), sample("b", true, 1_000)]);
    await clock.advance(299);
    expect(cvt.sweepStale()).toEqual([]);
    await clock.advance(1);
    expect(cvt.sweepStale()).toEqual(["a"]);
    await clock.advance(100);
    expect(cvt.sweepStale()).toEqual([]);
    expect(cvt.get("a")).toMatchObject({ value: 7, quality: { severity: "uncertain" } });
    expect(cvt.get("b")?.quality.severity).toBe("good");
    cvt.update([sample("a", 8, 1_500)]);
    expect(cvt.get("a")?.quality.severity).toBe("good");
  });

  for (const stepMs of [-60_000, 3_600_000]) {
    test(`staleness is measured on monotonic time: a wall-clock step of ${stepMs} ms neither ages nor freezes a value`, async () => {
      const clock = new SimulatedClock({ start: 1_000 });
      const cvt = new CurrentValueTable({ tags: tags.list(), clock });
      cvt.setStaleAfter("a", 300);
      cvt.update([sample("a", 7, 1_000)]);
      clock.stepWall(stepMs);
      expect(cvt.sweepStale()).toEqual([]);
      await clock.advance(300);
      expect(cvt.sweepStale()).toEqual(["a"]);
    });
  }

  test("degrade marks tags as no communication, last usable value, once", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const changes: CvtChange[] = [];
    cvt.observeAll((change) => changes.push(change));
    cvt.update([sample("a", 3, 100)], 100);
    cvt.degrade(["a", "b"], NO_COMMUNICATION, 200);
    cvt.degrade(["a"], NO_COMMUNICATION, 250);
    expect(changes).toHaveLength(2);
    expect(changes[1]?.sample).toEqual({ tag: "a", value: 3, timestamp: 200, quality: NO_COMMUNICATION });
    expect(changes[1]?.qualityChanged).toBe(true);
  });
});

describe("CurrentValueTable after a communication loss", () => {
  test("an unchanged device value with its old source timestamp restores good quality, stamped after the marker", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const logged: Sample[] = [];
    cvt.observeAll((change) => logged.push(change.sample));
    cvt.update([sample("a", 5, 1_000)], 1_000);
    cvt.degrade(["a"], NO_COMMUNICATION, 5_000);
    // The device is back; the value never changed, so its source timestamp is still 1000.
    cvt.update([sample("a", 5, 1_000)], 7_000);
    expect(cvt.get("a")).toEqual({ tag: "a", value: 5, timestamp: 7_000, quality: GOOD });
    expect(logged.map((entry) => [entry.timestamp, entry.quality.severity])).toEqual([
      [1_000, "good"],
      [5_000, "uncertain"],
      [7_000, "good"],
    ]);
    // Once good again, a late delivery of the old sample is ignored as before.
    cvt.update([sample("a", 4, 1_000)], 7_100);
    expect(cvt.value("a")).toBe(5);
  });
});
