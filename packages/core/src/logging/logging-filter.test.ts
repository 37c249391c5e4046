import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import { RESTAMPED_REASON } from "../cvt/receipt-stamp";
import { LoggingFilter } from "./logging-filter";

const tags = defineTags({
  absolute: { dataType: "float64", logging: { mode: "change", deadband: { kind: "absolute", value: 0.5 } } },
  percent: {
    dataType: "float64",
    range: { min: 0, max: 200 },
    logging: { mode: "change", deadband: { kind: "percent", value: 1 } },
  },
  exact: { dataType: "float64" },
  flag: { dataType: "bool" },
  periodic: { dataType: "float64", logging: { mode: "periodic", periodMs: 1_000 } },
  silent: { dataType: "float64", logging: { mode: "none" } },
});

const at = (tag: string, value: Sample["value"], timestamp: number, q = GOOD): Sample => ({
  tag,
  value,
  timestamp,
  quality: q,
});

/** A system clock the test sets: by default it reads each sample's own timestamp as receive time. */
const clock = { time: 0, now: () => clock.time };
const newFilter = () => new LoggingFilter(tags.list(), clock);

/** The samples the filter logs, the clock at each sample's source timestamp. */
function logged(filter: LoggingFilter, samples: Sample[], receivedAt = (sample: Sample) => sample.timestamp): Sample[] {
  return samples.flatMap((sample) => {
    clock.time = receivedAt(sample);
    return filter.select(sample) ?? [];
  });
}

function run(filter: LoggingFilter, samples: Sample[]): Sample["value"][] {
  return logged(filter, samples).map((sample) => sample.value);
}

describe("LoggingFilter", () => {
  test("absolute deadband compares with the last logged value, so drift is still logged", () => {
    const filter = newFilter();
    const values = [10, 10.3, 10.5, 10.6, 10.9, 11.2, 9];
    expect(
      run(
        filter,
        values.map((value, index) => at("absolute", value, index)),
      ),
    ).toEqual([10, 10.6, 11.2, 9]);
  });

  test("percent deadband is a share of the range span (1 % of 200 = 2)", () => {
    const filter = newFilter();
    expect(
      run(
        filter,
        [100, 101.9, 102.1, 100.5].map((value, index) => at("percent", value, index)),
      ),
    ).toEqual([100, 102.1]);
  });

  test("NaN is a value of its own: logged when it starts and when it ends, under any deadband", () => {
    // A float32 register that reads NaN at night (an inverter asleep), with absolute and percent deadbands.
    for (const tag of ["absolute", "percent", "exact"]) {
      const byDay = newFilter();
      const day = run(
        byDay,
        [20, 20.1, NaN, NaN, NaN, 20.2, 20.3].map((value, index) => at(tag, value, index)),
      );
      expect(day, tag).toEqual(tag === "exact" ? [20, 20.1, NaN, 20.2, 20.3] : [20, NaN, 20.2]);
      const byNight = newFilter();
      const night = run(
        byNight,
        [NaN, NaN, 20, 20, 40, NaN].map((value, index) => at(tag, value, index)),
      );
      expect(night, tag).toEqual([NaN, 20, 40, NaN]);
    }
  });

  test("infinities are changes against finite values and each other, repeats are not", () => {
    const filter = newFilter();
    const values = [1, Infinity, Infinity, -Infinity, -Infinity, 1];
    expect(
      run(
        filter,
        values.map((value, index) => at("absolute", value, index)),
      ),
    ).toEqual([1, Infinity, -Infinity, 1]);
  });

  test("without a deadband every change is logged, repeats are not", () => {
    const filter = newFilter();
    expect(
      run(
        filter,
        [1, 1, 2, 2, 1].map((value, index) => at("exact", value, index)),
      ),
    ).toEqual([1, 2, 1]);
    expect(
      run(
        filter,
        [true, true, false].map((value, index) => at("flag", value, index)),
      ),
    ).toEqual([true, false]);
  });

  test("without a deadband -0 after 0 is a change (Object.is); inside a deadband it is not", () => {
    const exact = run(newFilter(), [at("exact", 0, 0), at("exact", -0, 1), at("exact", -0, 2), at("exact", 0, 3)]);
    expect(exact.map((value) => Object.is(value, -0))).toEqual([false, true, false]);
    expect(run(newFilter(), [at("absolute", 0, 0), at("absolute", -0, 1)])).toEqual([0]);
  });

  test("a change of the quality reason alone is not logged", () => {
    const stale = (reason: string) => quality("uncertain", reason, 0x40900000);
    expect(
      run(newFilter(), [
        at("exact", 1, 0, stale("stale: a")),
        at("exact", 1, 1, stale("stale: b")),
        at("exact", 1, 2, GOOD),
      ]),
    ).toEqual([1, 1]);
  });

  test("a quality change is always logged, even inside the deadband", () => {
    const filter = newFilter();
    const bad = quality("uncertain", "stale");
    expect(
      run(filter, [
        at("absolute", 10, 0),
        at("absolute", 10, 1, bad),
        at("absolute", 10.1, 2, bad),
        at("absolute", 10.1, 3),
      ]),
    ).toEqual([10, 10, 10.1]);
  });

  test("periodic logs once per period whatever the value does", () => {
    const filter = newFilter();
    const samples = [0, 400, 999, 1_000, 1_500, 2_100].map((timestamp) => at("periodic", timestamp, timestamp));
    expect(run(filter, samples)).toEqual([0, 1_000, 2_100]);
  });

  test("periodic is measured on the system clock: an unchanged value whose source timestamp never advances is logged once per period", () => {
    // An OPC UA variable left alone: every read returns the same value and SourceTimestamp.
    const reads = Array.from({ length: 11 }, (_, index) => index * 250);
    const samples = reads.map(() => at("periodic", 7, 5));
    const rows = logged(newFilter(), samples, () => reads.shift()!);
    expect(rows.map((row) => row.timestamp)).toEqual([5, 1_000, 2_000]);
    expect(rows.map((row) => row.quality.reason)).toEqual([undefined, RESTAMPED_REASON, RESTAMPED_REASON]);
  });

  test("periodic ignores source time: timestamps that jump ahead do not log faster than the period", () => {
    const samples = [0, 10_000, 20_000, 30_000].map((timestamp) => at("periodic", 1, timestamp));
    expect(logged(newFilter(), samples, () => 100).map((row) => row.timestamp)).toEqual([0]);
  });

  test("periodic repeats logged many times within one millisecond stay distinct and never run ahead of the clock", () => {
    const samples = Array.from({ length: 5 }, () => at("periodic", 7, 5));
    let tick = 0;
    const filter = new LoggingFilter(tags.list(), { now: () => 1_000, monotonicNow: () => (tick += 1_000) });
    const rows = samples.map((sample) => filter.select(sample)).filter((row) => row !== undefined);
    expect(rows.map((row) => row.timestamp)).toEqual([5, 1_000, 1_000.001, 1_000.002, 1_000.003]);
  });

  test("none never logs; unknown tags are not logged", () => {
    const filter = newFilter();
    expect(run(filter, [at("silent", 1, 0), at("silent", 2, 1, quality("bad")), at("nope", 1, 0)])).toEqual([]);
  });
});
