import { describe, expect, test } from "vitest";
import { GOOD } from "../domain/quality";
import { SAMPLE_TIME_MAX, SAMPLE_TIME_MIN, type Sample } from "../domain/sample";
import { MemoryStore } from "../memory/memory-store";
import type { AggregateQuery, AggregateValue } from "../ports/sample-history";
import { edgeValueConformance, storeConformance } from "./store-conformance";
import { storeHistoryConformance } from "./store-history-conformance";

storeConformance({
  test,
  expect,
  describe,
  factory: async () => new MemoryStore(),
  capabilities: new MemoryStore().capabilities,
});

// A store breaking one edge-value rule at a time: the edge-value group must fail it, by name.
type BrokenRule = "lossy-text" | "int64-only" | "no-time-limits";

function brokenStore(rule: BrokenRule): MemoryStore {
  const store = new MemoryStore();
  const writeBatch = store.samples.writeBatch.bind(store.samples);
  const damage = (sample: Sample): Sample => {
    const { value } = sample;
    // "lossy-text": what a UTF-8 driver does to text PostgreSQL cannot hold.
    if (rule === "lossy-text" && typeof value === "string") {
      return { ...sample, value: value.replace(/\0/g, "").replace(/[\uD800-\uDFFF]/g, "\uFFFD") };
    }
    // "int64-only": a uint64 above 2^63-1 wraps around as a signed 64-bit integer would.
    if (rule === "int64-only" && typeof value === "bigint") return { ...sample, value: BigInt.asIntN(64, value) };
    // "no-time-limits": out-of-range timestamps are clamped instead of refused.
    if (rule === "no-time-limits") {
      return { ...sample, timestamp: Math.min(Math.max(sample.timestamp, SAMPLE_TIME_MIN), SAMPLE_TIME_MAX) };
    }
    return sample;
  };
  Object.assign(store.samples, {
    writeBatch: (samples: readonly Sample[]) => writeBatch(samples.map(damage)),
  });
  return store;
}

describe("the edge-value group fails a store that breaks its rules", () => {
  const cases: [BrokenRule, string][] = [
    ["lossy-text", "text with NUL, U+FFFF and lone surrogates reads back exactly, beside other tags in the same batch"],
    ["int64-only", "uint64 0, 2^63 and 2^64-1 and int64 -2^63 and 2^63-1 read back as the same bigint"],
    [
      "no-time-limits",
      "a timestamp or an integer beyond the limits is KILN_VALIDATION and nothing of the batch is stored",
    ],
  ];
  for (const [rule, name] of cases) {
    test(`${rule} fails "${name}"`, async () => {
      const bodies = new Map<string, () => Promise<void>>();
      edgeValueConformance({
        test: (testName, body) => bodies.set(testName, body),
        expect,
        factory: async () => brokenStore(rule),
      });
      const body = bodies.get(`edge values: ${name}`);
      expect(body).toBeDefined();
      await expect(body!()).rejects.toThrow();
      // The intact store passes the same test.
      const intact = new Map<string, () => Promise<void>>();
      edgeValueConformance({
        test: (testName, fn) => intact.set(testName, fn),
        expect,
        factory: async () => new MemoryStore(),
      });
      await intact.get(`edge values: ${name}`)!();
    });
  }
});

// A store whose history works in float64 throughout (the bug of issue 18): 64-bit values come
// back rounded to numbers and marked good. The history group must fail it.
function float64History(): MemoryStore {
  const store = new MemoryStore();
  const history = store.history;
  const rounded = (value: AggregateValue): AggregateValue => ({
    value: typeof value.value === "bigint" ? Number(value.value) : value.value,
    quality: value.quality.reason?.startsWith("precision lost") ? GOOD : value.quality,
  });
  Object.assign(store, {
    history: {
      ...history,
      aggregate: async (tags: readonly string[], query: AggregateQuery) =>
        (await history.aggregate(tags, query)).map((interval) => ({
          ...interval,
          values: Object.fromEntries(Object.entries(interval.values).map(([name, value]) => [name, rounded(value)])),
        })),
    },
  });
  return store;
}

test("the history group fails a store that rounds 64-bit integers to float64 and calls them good", async () => {
  const bodies = new Map<string, () => Promise<void>>();
  storeHistoryConformance({
    test: (testName, body) => bodies.set(testName, body),
    expect,
    factory: async () => float64History(),
  });
  const names = [...bodies.keys()].filter((name) => name.includes("64-bit integers"));
  expect(names.length).toBe(2);
  for (const name of names) await expect(bodies.get(name)!()).rejects.toThrow();
});
