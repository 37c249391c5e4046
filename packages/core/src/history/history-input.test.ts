import { describe, expect, test } from "vitest";
import { KilnValidationError } from "../domain/errors";
import type { AggregateName, AggregateQuery } from "../ports/sample-history";
import {
  checkAggregateQuery,
  checkDownsampleQuery,
  checkIntervalQuery,
  checkValueAtQuery,
  checkValuesAtQuery,
} from "./history-input";

const known = (tag: string): boolean => tag === "a" || tag === "b";

function paths(check: () => unknown): string[] {
  try {
    check();
    return [];
  } catch (error) {
    return error instanceof KilnValidationError ? error.issues.map((issue) => issue.path) : ["not a validation error"];
  }
}

const query: AggregateQuery = { start: 0, end: 60_000, intervalMs: 1_000, aggregates: ["Count"] };

describe("history input checks", () => {
  test("a good query gives its intervals: ceil((end - start) / intervalMs), the last one clipped at end", () => {
    expect(checkAggregateQuery(["a"], query, known)).toEqual({
      tags: ["a"],
      intervals: { start: 0, intervalMs: 1_000, count: 60, end: query.end },
      aggregates: ["Count"],
    });
    expect(checkIntervalQuery(["a", "b"], { start: 5, end: 2_006, intervalMs: 1_000 }, known).intervals).toEqual({
      start: 5,
      intervalMs: 1_000,
      count: 3,
      end: 2_006,
    });
    expect(checkDownsampleQuery("a", { start: 0, end: 1, points: 1_004 }, known).columns).toBe(200);
  });

  test("every problem is reported at once, each naming its field", () => {
    expect(
      paths(() =>
        checkAggregateQuery(
          ["a", "zzz", 3 as unknown as string],
          { start: 0.5, end: 10, intervalMs: 1.5, aggregates: ["Count", "Count", "Mode" as AggregateName] },
          known,
        ),
      ),
    ).toEqual(["tags[1]", "tags[2]", "start", "intervalMs", "aggregates[1]", "aggregates[2]"]);
    expect(paths(() => checkAggregateQuery([], { ...query, aggregates: [] }, known))).toEqual(["tags", "aggregates"]);
  });

  test("the checked query is a frozen copy, read once: later changes to the caller's arrays change nothing", () => {
    const tags = ["a"];
    const aggregates: AggregateName[] = ["Count"];
    const checked = checkAggregateQuery(tags, { ...query, aggregates }, known);
    tags[0] = "zzz";
    aggregates.push("Count");
    expect([checked.tags, checked.aggregates]).toEqual([["a"], ["Count"]]);
    expect(Object.isFrozen(checked.tags) && Object.isFrozen(checked.aggregates)).toBe(true);
    // An array answering each read differently is read once: its first answer is checked and kept.
    let reads = 0;
    const shifty = new Proxy(["a"], {
      get: (target, key) => (key === "0" && reads++ > 0 ? "zzz" : Reflect.get(target, key)),
    });
    expect(checkValueAtQuery(shifty, 0, known).tags).toEqual(["a"]);
  });

  test("tags: each once, at most MAX_HISTORY_TAGS; results at most MAX_HISTORY_CELLS", () => {
    expect(paths(() => checkAggregateQuery(["a", "b", "a"], query, known))).toEqual(["tags[2]"]);
    const many = Array.from({ length: 1_001 }, () => "a");
    expect(paths(() => checkValueAtQuery(many, 0, known))).toEqual(["tags"]);
    // 100 tags x 10,000 intervals x 2 aggregates = 2,000,000 cells > 1,000,000.
    const hundred = Array.from({ length: 100 }, (_, index) => `t${index}`);
    const any = (): boolean => true;
    const wide = { start: 0, end: 10_000, intervalMs: 1 };
    expect(paths(() => checkAggregateQuery(hundred, { ...wide, aggregates: ["Count", "Average"] }, any))).toEqual([
      "intervalMs",
    ]);
    expect(checkAggregateQuery(hundred, { ...wide, aggregates: ["Count"] }, any).intervals.count).toBe(10_000);
  });

  test("end must be after start; an empty range is refused", () => {
    expect(paths(() => checkAggregateQuery(["a"], { ...query, end: 0 }, known))).toEqual(["end"]);
    expect(paths(() => checkIntervalQuery(["a"], { start: 10, end: 5, intervalMs: 1 }, known))).toEqual(["end"]);
    expect(paths(() => checkDownsampleQuery("a", { start: 10, end: 10, points: 5 }, known))).toEqual(["end"]);
  });

  test("at most 10,000 intervals: exactly 10,000 passes, 10,001 is refused on intervalMs", () => {
    expect(checkIntervalQuery(["a"], { start: 0, end: 10_000, intervalMs: 1 }, known).intervals.count).toBe(10_000);
    expect(paths(() => checkIntervalQuery(["a"], { start: 0, end: 10_001, intervalMs: 1 }, known))).toEqual([
      "intervalMs",
    ]);
  });

  test("valueAt needs known tags and a whole-ms time; downsample needs 5 to 50,000 points", () => {
    expect(paths(() => checkValueAtQuery(["b", "c"], Number.POSITIVE_INFINITY, known))).toEqual(["tags[1]", "time"]);
    expect(paths(() => checkDownsampleQuery("c", { start: 0, end: 10, points: 50_001 }, known))).toEqual([
      "tag",
      "points",
    ]);
    expect(paths(() => checkDownsampleQuery("a", null as unknown as { start: 0; end: 1; points: 5 }, known))).toEqual([
      "",
    ]);
  });
});

describe("arrays with holes (adversarial review 18s)", () => {
  const T0 = Date.UTC(2026, 0, 1);
  test("a hole in times, tags or aggregates is refused naming its index, before any store is asked", () => {
    // eslint-disable-next-line no-sparse-arrays
    expect(paths(() => checkValuesAtQuery(["a"], [T0, , T0 + 1] as number[], known))).toEqual(["times[1]"]);
    // eslint-disable-next-line no-sparse-arrays
    expect(paths(() => checkValueAtQuery(["a", , "b"] as string[], T0, known))).toEqual(["tags[1]"]);
    expect(
      // eslint-disable-next-line no-sparse-arrays
      paths(() => checkAggregateQuery(["a"], { ...query, aggregates: [, "Count"] as AggregateName[] }, known)),
    ).toEqual(["aggregates[0]"]);
  });

  test("sibling: an array made with new Array(n) (all holes) is refused at every index; a dense one passes", () => {
    expect(paths(() => checkValuesAtQuery(["a"], new Array<number>(3), known))).toEqual([
      "times[0]",
      "times[1]",
      "times[2]",
    ]);
    expect(checkValuesAtQuery(["a"], [T0 + 1, T0], known).times).toEqual([T0, T0 + 1]);
  });
});
