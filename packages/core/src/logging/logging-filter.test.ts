import { describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
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

function run(filter: LoggingFilter, samples: Sample[]): Sample["value"][] {
  return samples.filter((sample) => filter.accept(sample)).map((sample) => sample.value);
}

describe("LoggingFilter", () => {
  test("absolute deadband compares with the last logged value, so drift is still logged", () => {
    const filter = new LoggingFilter(tags.list());
    const values = [10, 10.3, 10.5, 10.6, 10.9, 11.2, 9];
    expect(
      run(
        filter,
        values.map((value, index) => at("absolute", value, index)),
      ),
    ).toEqual([10, 10.6, 11.2, 9]);
  });

  test("percent deadband is a share of the range span (1 % of 200 = 2)", () => {
    const filter = new LoggingFilter(tags.list());
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
      const byDay = new LoggingFilter(tags.list());
      const day = run(
        byDay,
        [20, 20.1, NaN, NaN, NaN, 20.2, 20.3].map((value, index) => at(tag, value, index)),
      );
      expect(day, tag).toEqual(tag === "exact" ? [20, 20.1, NaN, 20.2, 20.3] : [20, NaN, 20.2]);
      const byNight = new LoggingFilter(tags.list());
      const night = run(
        byNight,
        [NaN, NaN, 20, 20, 40, NaN].map((value, index) => at(tag, value, index)),
      );
      expect(night, tag).toEqual([NaN, 20, 40, NaN]);
    }
  });

  test("infinities are changes against finite values and each other, repeats are not", () => {
    const filter = new LoggingFilter(tags.list());
    const values = [1, Infinity, Infinity, -Infinity, -Infinity, 1];
    expect(
      run(
        filter,
        values.map((value, index) => at("absolute", value, index)),
      ),
    ).toEqual([1, Infinity, -Infinity, 1]);
  });

  test("without a deadband every change is logged, repeats are not", () => {
    const filter = new LoggingFilter(tags.list());
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

  test("a quality change is always logged, even inside the deadband", () => {
    const filter = new LoggingFilter(tags.list());
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
    const filter = new LoggingFilter(tags.list());
    const samples = [0, 400, 999, 1_000, 1_500, 2_100].map((timestamp) => at("periodic", timestamp, timestamp));
    expect(run(filter, samples)).toEqual([0, 1_000, 2_100]);
  });

  test("none never logs; unknown tags are not logged", () => {
    const filter = new LoggingFilter(tags.list());
    expect(run(filter, [at("silent", 1, 0), at("silent", 2, 1, quality("bad")), at("nope", 1, 0)])).toEqual([]);
  });
});
