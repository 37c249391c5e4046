import { describe, expect, test } from "vitest";
import { GOOD } from "../domain/quality";
import { SAMPLE_TIME_MAX, SAMPLE_TIME_MIN, type Sample } from "../domain/sample";
import { MemoryStore } from "../memory/memory-store";
import type { AggregateQuery, AggregateValue } from "../ports/sample-history";
import type { SampleConflict, SampleWriteResult } from "../ports/sample-sink";
import {
  edgeValueConformance,
  sampleConflictConformance,
  storeConformance,
  storeRetentionConformance,
} from "./store-conformance";
import { storeHistoryConformance } from "./store-history-conformance";

storeConformance({
  test,
  expect,
  describe,
  factory: async () => new MemoryStore(),
  capabilities: new MemoryStore().capabilities,
});

// The retention group against a store that evicts: MemoryStore keeping 3 samples.
describe("MemoryStore with a tiny retention", () => {
  storeRetentionConformance({
    test,
    expect,
    describe,
    factory: async () => new MemoryStore({ retention: { maxSamples: 3 } }),
    aggregates: true,
  });
});

// A store that evicts but answers as if it kept everything (the unfixed MemoryStore): the retention
// group must fail each rule.
describe("the retention group fails a store that hides its evictions", () => {
  const hiding = async (): Promise<MemoryStore> => {
    const store = new MemoryStore({ retention: { maxSamples: 3 } });
    const readSamples = store.samples.readSamples.bind(store.samples);
    const readBuckets = store.samples.readBuckets.bind(store.samples);
    const aggregate = store.history.aggregate.bind(store.history);
    const good = Object.freeze({ severity: "good", code: 0 }) as AggregateValue["quality"];
    Object.assign(store.samples, {
      readSamples: async (query: Parameters<typeof readSamples>[0]) => {
        try {
          return await readSamples(query);
        } catch {
          return readSamples({ ...query, after: store.retainedFrom });
        }
      },
      readBuckets: async (query: Parameters<typeof readBuckets>[0]) =>
        (await readBuckets(query))
          .filter((bucket) => bucket.count > 0)
          .map(({ quality: _quality, ...bucket }) => bucket),
    });
    Object.assign(store.history, {
      aggregate: async (...args: Parameters<typeof aggregate>) =>
        (await aggregate(...args)).map((interval) => ({
          ...interval,
          values: Object.fromEntries(
            Object.entries(interval.values).map(([name, value]) => [
              name,
              value!.value === null ? value : { value: value!.value, quality: good },
            ]),
          ),
        })),
    });
    return store;
  };
  const names = [
    "a page, first or continued with after, returns every sample of its range, or rejects KILN_HISTORY_EVICTED naming the gap: never skips silently",
    "every bucket with written samples is there: without quality it holds them all; one that lost samples is marked, never good",
    "a good aggregate or value at a time equals the written data's; what rests on evicted history is not good",
  ];
  for (const name of names) {
    test(`fails "${name}"`, async () => {
      const bodies = new Map<string, () => Promise<void>>();
      storeRetentionConformance({
        test: (testName, body) => bodies.set(testName, body),
        expect,
        factory: hiding,
        aggregates: true,
      });
      await expect(bodies.get(`retention: ${name}`)!()).rejects.toThrow();
    });
  }
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

// Stores whose valuesAt breaks its contract: answering in ascending time order (the order a single
// sorted scan gives) instead of the caller's, or calling every good value raw (an OPC UA client
// would take a held or interpolated value for a stored sample). The history group must fail each.
function brokenValuesAt(rule: "sorted" | "all-raw"): MemoryStore {
  const store = new MemoryStore();
  const history = store.history;
  Object.assign(store, {
    history: {
      ...history,
      valuesAt: async (tags: readonly string[], times: readonly number[]) => {
        if (rule === "sorted")
          return history.valuesAt(
            tags,
            [...times].sort((a, b) => a - b),
          );
        return (await history.valuesAt(tags, times)).map((value) => ({
          ...value,
          raw: value.quality.severity === "good",
        }));
      },
    },
  });
  return store;
}

for (const rule of ["sorted", "all-raw"] as const) {
  test(`the history group fails a store whose valuesAt is ${rule}`, async () => {
    const bodies = new Map<string, () => Promise<void>>();
    storeHistoryConformance({
      test: (testName, body) => bodies.set(testName, body),
      expect,
      factory: async () => brokenValuesAt(rule),
    });
    const names = [...bodies.keys()].filter((name) => name.includes("valuesAt gives valueAt at each time"));
    expect(names.length).toBe(1);
    await expect(bodies.get(names[0]!)!()).rejects.toThrow();
  });
}

// A store breaking one lifecycle or alarm-history rule at a time: the suite must fail it, by name.
type BrokenPortRule = "writes-after-close" | "version-after-close" | "alarm-dedup";

function brokenPorts(rule: BrokenPortRule): MemoryStore {
  const store = new MemoryStore();
  let closed = false;
  const close = store.close.bind(store);
  const open = store.open.bind(store);
  Object.assign(store, {
    open: async (...args: Parameters<MemoryStore["open"]>) => {
      closed = false;
      await open(...args);
    },
    close: async () => {
      closed = true;
      await close();
    },
  });
  const seen = new Set<string>();
  const patch = <TPort extends object>(
    port: TPort,
    method: keyof TPort & string,
    after: (...args: never[]) => unknown,
  ) => {
    const original = (port[method] as (...args: unknown[]) => Promise<unknown>).bind(port);
    Object.assign(port, {
      [method]: (...args: unknown[]) =>
        closed && rule !== "alarm-dedup" ? Promise.resolve(after(...(args as never[]))) : original(...args),
    });
  };
  if (rule === "writes-after-close") {
    // Audit, alarm, process and recipe writes after close resolve as if stored.
    patch(store.audit, "record", () => undefined);
    patch(store.alarms, "record", () => undefined);
    patch(store.processes, "save", () => 1);
    patch(store.recipes, "save", () => undefined);
  }
  if (rule === "version-after-close") patch(store.events, "version", () => 0);
  if (rule === "alarm-dedup") {
    const record = store.alarms.record.bind(store.alarms);
    Object.assign(store.alarms, {
      record: async (entry: Parameters<MemoryStore["alarms"]["record"]>[0]) => {
        const key = JSON.stringify(entry);
        if (seen.has(key)) return;
        seen.add(key);
        await record(entry);
      },
    });
  }
  return store;
}

describe("the store suite fails a store that breaks a port rule", () => {
  const cases: [BrokenPortRule, string][] = [
    [
      "writes-after-close",
      "store lifecycle: every port, reads and writes, rejects with KILN_LIFECYCLE before open and after close",
    ],
    [
      "version-after-close",
      "store lifecycle: every port, reads and writes, rejects with KILN_LIFECYCLE before open and after close",
    ],
    [
      "alarm-dedup",
      "alarm history entries: two identical transitions recorded are both kept (alarm history has no key; nothing is merged)",
    ],
  ];
  for (const [rule, name] of cases) {
    test(`${rule} fails "${name}", leaving no rejection unhandled`, async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
      process.on("unhandledRejection", onUnhandled);
      try {
        const bodies = new Map<string, () => Promise<void>>();
        storeConformance({
          test: (testName, body) => bodies.set(testName, body),
          expect,
          factory: async () => brokenPorts(rule),
          capabilities: new MemoryStore().capabilities,
        });
        expect([...bodies.keys()]).toContain(name);
        await expect(bodies.get(name)!()).rejects.toThrow();
        await new Promise((resolve) => setTimeout(resolve, 0));
        expect(unhandled).toEqual([]);
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    });
  }
});

// A sink breaking one conflict rule at a time: the conflict group must fail it, test by test.
type BrokenConflictRule = "silent-merge" | "strict-equality" | "reports-repeats";

function brokenConflicts(rule: BrokenConflictRule): MemoryStore {
  const store = new MemoryStore();
  const writeBatch = store.samples.writeBatch.bind(store.samples);
  Object.assign(store.samples, {
    writeBatch: async (samples: readonly Sample[]): Promise<SampleWriteResult | void> => {
      // "silent-merge": what ON CONFLICT DO NOTHING alone does: skip, say nothing.
      if (rule === "silent-merge") {
        await writeBatch(samples);
        return;
      }
      const before = new Map<string, Sample>();
      for (const sample of samples) {
        const [stored] = await store.samples.readSamples({
          tag: sample.tag,
          from: sample.timestamp,
          to: sample.timestamp + 1e-3,
        });
        if (stored) before.set(`${sample.tag}@${sample.timestamp}`, stored);
      }
      await writeBatch(samples);
      const conflicts: SampleConflict[] = [];
      for (const sample of samples) {
        const stored = before.get(`${sample.tag}@${sample.timestamp}`);
        if (!stored) continue;
        // "strict-equality": 0 equals -0, NaN differs from NaN. "reports-repeats": identical ones too.
        const same =
          rule === "strict-equality"
            ? stored.value === sample.value && stored.quality.code === sample.quality.code
            : false;
        if (!same) conflicts.push({ sample, existing: "stored" });
      }
      return { conflicts };
    },
  });
  return store;
}

describe("the conflict group fails a sink that breaks its rules", () => {
  const cases: [BrokenConflictRule, string[]][] = [
    [
      "silent-merge",
      [
        "a different sample at a stored (tag, timestamp) is reported as a conflict, in batch order, and not stored",
        "in one batch the first sample of a (tag, timestamp) wins: a different later one is a batch conflict, an identical one is not",
        "a repeat in a batch is compared with the stored sample when there is one",
      ],
    ],
    [
      "strict-equality",
      [
        "payloads compare exactly: 0 and -0, a number and a bigint, text one NUL apart, another code or reason conflict; NaN and NaN do not",
      ],
    ],
    [
      "reports-repeats",
      ["writing identical samples again (a retry, a replay, a repeat in the batch) reports no conflict"],
    ],
  ];
  for (const [rule, names] of cases) {
    test(`${rule} fails ${names.length} conflict test(s)`, async () => {
      const bodies = new Map<string, () => Promise<void>>();
      sampleConflictConformance({
        test: (testName, body) => bodies.set(testName, body),
        expect,
        factory: async () => brokenConflicts(rule),
      });
      for (const name of names) {
        const body = bodies.get(`sample conflicts: ${name}`);
        expect(body, name).toBeDefined();
        await expect(body!(), name).rejects.toThrow();
      }
    });
  }
});

describe("the suite tests what the store declares", () => {
  test("a store declaring aggregates gets the history group; one registered as declaring less fails the lifecycle group", async () => {
    const declared = new MemoryStore().capabilities;
    expect(declared.aggregates).toBe(true);
    const registered = (capabilities: typeof declared): Map<string, () => Promise<void>> => {
      const bodies = new Map<string, () => Promise<void>>();
      storeConformance({
        test: (testName, body) => bodies.set(testName, body),
        expect,
        factory: async () => new MemoryStore(),
        capabilities,
      });
      return bodies;
    };
    const names = (bodies: Map<string, unknown>): string[] => [...bodies.keys()];
    expect(names(registered(declared)).some((name) => name.startsWith("history: "))).toBe(true);
    const understated = registered({ ...declared, aggregates: false });
    expect(names(understated).some((name) => name.startsWith("history: "))).toBe(false);
    const lifecycle = names(understated).find((name) => name.includes("declares contract version 1"))!;
    await expect(understated.get(lifecycle)!()).rejects.toThrow();
  });
});
