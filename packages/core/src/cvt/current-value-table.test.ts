import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import { checkSample, type Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import { SimulatedClock } from "../memory/simulated-clock";
import { CurrentValueTable, NO_COMMUNICATION, type CvtChange } from "./current-value-table";
import { RESTAMPED_REASON } from "./receipt-stamp";

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

  test("keeps a sample its producer froze as it is; copies and freezes any other (issue 16: no copy per sample)", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const frozen = Object.freeze(sample("a", 1, 10));
    const mutable = sample("a", 2, 20);
    const unfrozenQuality = Object.freeze({ ...sample("a", 3, 30), quality: { ...GOOD } });
    cvt.update([frozen], 10);
    expect(cvt.get("a")).toBe(frozen);
    cvt.update([mutable], 20);
    expect(cvt.get("a")).not.toBe(mutable);
    expect(Object.isFrozen(cvt.get("a"))).toBe(true);
    (mutable as { value: Sample["value"] }).value = 99;
    expect(cvt.value("a")).toBe(2);
    cvt.update([unfrozenQuality], 30);
    expect(cvt.get("a")).not.toBe(unfrozenQuality);
    expect(Object.isFrozen(cvt.get("a")!.quality)).toBe(true);
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

  test("ignores tags it does not know; never rolls a tag's timestamp back", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const seen: number[] = [];
    cvt.observeAll(({ sample: s }) => seen.push(s.timestamp));
    cvt.update([sample("a", 1, 10), sample("a", 0, 5), sample("zzz", 1, 11)], 11);
    expect(cvt.value("a")).toBe(0);
    expect(seen).toEqual([10, 11]);
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

  test("a sweep of a tag list sees tags that got their first value since, and a list changed in place (issue 16: entries kept per list)", async () => {
    const clock = new SimulatedClock({ start: 1_000 });
    const cvt = new CurrentValueTable({ tags: tags.list(), clock });
    cvt.setStaleAfter("a", 300);
    cvt.setStaleAfter("b", 300);
    const list = ["a", "b"];
    cvt.update([sample("a", 7, 1_000)]);
    expect(cvt.sweepStale(undefined, list)).toEqual([]);
    // b's first value comes after the list was swept once without it.
    await clock.advance(100);
    cvt.update([sample("b", true, 1_100)]);
    await clock.advance(200);
    expect(cvt.sweepStale(undefined, list)).toEqual(["a"]);
    await clock.advance(100);
    expect(cvt.sweepStale(undefined, list)).toEqual(["b"]);
    // The same array, changed in place: the sweep follows the names, not the positions it saw.
    cvt.update([sample("a", 8, 1_500), sample("b", false, 1_500)]);
    list[0] = "b";
    list[1] = "a";
    list.length = 1;
    await clock.advance(300);
    expect(cvt.sweepStale(undefined, list)).toEqual(["b"]);
    expect(cvt.get("a")?.quality.severity).toBe("good");
    expect(cvt.sweepStale(undefined, ["a"])).toEqual(["a"]);
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
    // Once good again, a changed value with the old source timestamp is a new value: restamped.
    cvt.update([sample("a", 4, 1_000)], 7_100);
    expect(cvt.get("a")).toMatchObject({ value: 4, timestamp: 7_100, quality: { reason: RESTAMPED_REASON } });
  });
});

describe("CurrentValueTable: source timestamps that do not advance", () => {
  const make = () => {
    const clock = new SimulatedClock({ start: 10_000 });
    const cvt = new CurrentValueTable({ tags: tags.list(), clock });
    const seen: CvtChange[] = [];
    cvt.observeAll((change) => void seen.push(change));
    return { clock, cvt, seen };
  };

  test("a changed value with a source timestamp going backwards is kept, stamped with receive time and flagged", async () => {
    const { clock, cvt } = make();
    cvt.update([sample("a", 1, 10_000)]);
    await clock.advance(50);
    cvt.update([sample("a", 2, 9_000)]); // the PLC's clock stepped back
    expect(cvt.get("a")).toMatchObject({
      value: 2,
      timestamp: 10_050,
      quality: { severity: "good", code: 0, reason: RESTAMPED_REASON },
    });
    await clock.advance(50);
    cvt.update([sample("a", 3, 9_050)]); // and runs on from there: advancing again, taken as is
    expect(cvt.get("a")).toMatchObject({ value: 3, timestamp: 10_100 });
  });

  test("a value changing under a fixed source timestamp: every change kept, in order, never ahead of real time", async () => {
    const { clock, cvt, seen } = make();
    for (let value = 0; value < 2_000; value++) {
      cvt.update([sample("a", value, 9_000)]); // 2,000 changes within one millisecond
      if (value % 1_000 === 999) await clock.advance(1);
    }
    const stamps = seen.map((change) => change.sample.timestamp);
    expect(seen.map((change) => change.sample.value)).toEqual(Array.from({ length: 2_000 }, (_, index) => index));
    expect(stamps.every((stamp, index) => index === 0 || stamp > stamps[index - 1]!)).toBe(true);
    expect(Math.max(...stamps)).toBeLessThanOrEqual(clock.now() + 1);
  });

  test("a value changing under a fixed source timestamp in the future (the PLC's clock an hour ahead): no two samples share a timestamp", async () => {
    const { clock, cvt, seen } = make();
    const future = clock.now() + 3_600_000;
    for (let value = 0; value < 50; value++) {
      cvt.update([sample("a", value, future)]);
      await clock.advance(10);
    }
    const stamps = seen.map((change) => change.sample.timestamp);
    expect(seen.map((change) => change.sample.value)).toEqual(Array.from({ length: 50 }, (_, index) => index));
    // The first keeps the device's time; every later change is stamped on receipt, never on it again.
    expect(stamps.filter((stamp) => stamp === future)).toHaveLength(1);
    expect(new Set(stamps).size).toBe(50);
    expect(seen.slice(1).every((change) => change.sample.quality.reason === RESTAMPED_REASON)).toBe(true);
  });

  test("a quality change under a fixed source timestamp is restamped too, keeping its own reason", () => {
    const { cvt } = make();
    cvt.update([sample("a", 1, 9_000)]);
    cvt.update([sample("a", 1, 9_000, quality("uncertain", "sensor drift"))]);
    expect(cvt.get("a")?.quality).toMatchObject({ severity: "uncertain", reason: `sensor drift; ${RESTAMPED_REASON}` });
    expect(cvt.get("a")?.timestamp).toBe(10_000);
  });

  test("an unchanged repeat keeps the current sample and refreshes staleness", async () => {
    const { clock, cvt, seen } = make();
    cvt.setStaleAfter("a", 300);
    cvt.update([sample("a", 1, 9_000)]);
    for (let index = 0; index < 5; index++) {
      await clock.advance(200);
      cvt.update([sample("a", 1, 8_000)]);
      expect(cvt.sweepStale()).toEqual([]);
    }
    expect(cvt.get("a")).toBe(seen[0]!.sample);
    expect(seen.slice(1).every((change) => change.sample === seen[0]!.sample && !change.valueChanged)).toBe(true);
  });

  test("-0 after 0 is a change (Object.is), restamped when the timestamp does not advance", () => {
    const { cvt } = make();
    cvt.update([sample("a", 0, 9_000)]);
    cvt.update([sample("a", -0, 9_000)]);
    expect(Object.is(cvt.get("a")?.value, -0)).toBe(true);
  });
});

// Adversarial review 20u, finding 2: a producer's sample with severity "good" and a bad status code
// passed into the table, was served Good live (OPC UA server) and then refused by the store, so
// history had a gap. The table is the one gate: what it keeps is a quality every store takes, never
// better than either half of what the producer said.
describe("CurrentValueTable: a producer's inconsistent quality", () => {
  const shown = (given: unknown) => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const changes: CvtChange[] = [];
    cvt.observeAll((change) => void changes.push(change));
    cvt.update([{ tag: "a", value: 1, timestamp: 10, quality: given as Sample["quality"] }], 10);
    const kept = cvt.get("a")!;
    // What observers (logging, servers) get is what the table holds, and every store takes it.
    expect(changes.map((change) => change.sample)).toEqual([kept]);
    expect(checkSample(kept)).toEqual([]);
    return kept.quality;
  };

  test("severity good with BadDeviceFailure is bad, the device's code kept, the reason naming both", () => {
    expect(shown({ severity: "good", code: 0x808b0000 })).toEqual({
      severity: "bad",
      code: 0x808b0000,
      reason: "inconsistent quality: the source gave severity good with status code 0x808b0000 (bad)",
    });
    expect(shown({ severity: "good", code: 0x40000000, reason: "probe" })).toMatchObject({
      severity: "uncertain",
      code: 0x40000000,
      reason: expect.stringMatching(/^probe; inconsistent quality/),
    });
  });

  test("sibling: the stated severity is worse than the code's: the stated one wins with its generic code", () => {
    expect(shown({ severity: "bad", code: 0 })).toMatchObject({ severity: "bad", code: 0x80000000 });
    expect(shown({ severity: "uncertain", code: 0 })).toMatchObject({ severity: "uncertain", code: 0x40000000 });
  });

  test("sibling: an unknown severity, a code that is no status code, a reason that is no string, no quality at all: never good", () => {
    expect(shown({ severity: "weird", code: 0 })).toMatchObject({ severity: "bad", code: 0x80000000 });
    expect(shown({ severity: "good", code: 1.5 })).toMatchObject({ severity: "bad", code: 0x80000000 });
    expect(shown({ severity: "good", code: -1 })).toMatchObject({ severity: "bad" });
    expect(shown({ severity: "good", code: 0, reason: 42 })).toMatchObject({
      severity: "good",
      reason: "inconsistent quality: the source gave a reason of type number",
    });
    expect(shown(undefined)).toMatchObject({
      severity: "bad",
      reason: "inconsistent quality: the source gave no quality",
    });
  });

  test("a consistent quality is kept as the producer's own object (no copy per sample)", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const given = Object.freeze(quality("bad", "probe broken", 0x808b0000));
    cvt.update([Object.freeze({ tag: "a", value: 1, timestamp: 10, quality: given })], 10);
    expect(cvt.get("a")!.quality).toBe(given);
  });
});

// Adversarial review 15x, M5: the table read a producer's quality more than once, so getters
// answering bad at the check and good later were shown good, and inherited fields were kept as a
// quality with no severity. What is checked is what is kept.
describe("CurrentValueTable: a quality is read once", () => {
  test("getters that answer bad first and good later: shown bad, and it stays bad", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    let reads = 0;
    const flipping = Object.freeze({
      get severity() {
        return reads++ === 0 ? "bad" : "good";
      },
      get code() {
        return reads > 1 ? 0 : 0x80000000;
      },
    });
    cvt.update([{ tag: "a", value: 66, timestamp: 10, quality: flipping as unknown as Sample["quality"] }], 10);
    const kept = cvt.get("a")!.quality;
    expect(kept).toEqual({ severity: "bad", code: 0x80000000 });
    expect(kept).not.toBe(flipping);
    expect(cvt.get("a")!.quality.severity).toBe("bad");
    expect(checkSample(cvt.get("a"))).toEqual([]);
  });

  test("sibling: severity and code inherited from a prototype are read once and kept as own data", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const inherited = Object.freeze(Object.create({ severity: "bad", code: 0x808b0000 }) as object);
    cvt.update([{ tag: "a", value: 1, timestamp: 10, quality: inherited as Sample["quality"] }], 10);
    expect(cvt.get("a")!.quality).toEqual({ severity: "bad", code: 0x808b0000 });
    expect(Object.getPrototypeOf(cvt.get("a")!.quality)).toBe(Object.prototype);
  });
});

// Review 15e: a device clock stepped back made a steady value a repeat of the sample stamped
// before the step; the change now says what the producer delivered, so a source-age judge sees
// the device alive.
describe("CurrentValueTable: the change carries the delivered source timestamp (review 15e)", () => {
  test("a repeat and a restamp keep the current or Kiln's timestamp on the sample, and carry the device's on the change", () => {
    const cvt = new CurrentValueTable({ tags: tags.list() });
    const seen: CvtChange[] = [];
    cvt.observeAll((change) => void seen.push(change));
    cvt.update([sample("a", 1, 5_000)], 5_000);
    cvt.update([sample("a", 1, 2_000)], 5_100); // clock stepped back, value steady: a repeat
    cvt.update([sample("a", 2, 2_100)], 5_200); // clock stepped back, value changed: restamped
    expect(seen.map((change) => [change.sample.timestamp, change.sourceTimestamp])).toEqual([
      [5_000, 5_000],
      [5_000, 2_000],
      [5_200, 2_100],
    ]);
  });
});
