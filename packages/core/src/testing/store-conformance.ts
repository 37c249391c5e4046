import { KilnError } from "../domain/errors";
import { GOOD, QualityCodes, quality } from "../domain/quality";
import { SAMPLE_TIME_MAX, SAMPLE_TIME_MIN } from "../domain/sample";
import { defineTags } from "../domain/tags";
import { expectKilnError, group, type ConformanceRunner } from "./conformance-runner";
import { storeHistoryConformance } from "./store-history-conformance";
import type { Quality, Sample, Store, TagValue } from "@kiln/core";
import type {
  AlarmHistoryEntry,
  AuditEntry,
  NewDomainEvent,
  ProcessRecord,
  SampleConflict,
  SampleWriteResult,
  StoreCapabilities,
  StoredRecipe,
  TimeRange,
} from "@kiln/core/driver-kit";

/**
 * Returns a fresh, isolated, empty store each call (a new `MemoryStore`, a new database schema...).
 * The suite opens it with its own tags and closes it at the end of each test.
 */
export type StoreFactory = () => Promise<Store>;

/** Options of one group of the store conformance suite. */
export interface StoreGroupConformanceOptions extends ConformanceRunner {
  /** Makes the store under test. */
  readonly factory: StoreFactory;
}

/** The groups of {@link storeConformance}, one per port plus the store's lifecycle. */
export type StoreConformanceGroup =
  | "lifecycle"
  | "samples"
  | "conflicts"
  | "edge-values"
  | "arrays"
  | "history"
  | "retention"
  | "events"
  | "processes"
  | "recipes"
  | "alarms"
  | "audit";

/** Options of {@link storeConformance}. */
export interface StoreConformanceOptions extends StoreGroupConformanceOptions {
  /** Set a group to `false` to leave it out. @default every group on */
  readonly groups?: Partial<Record<StoreConformanceGroup, boolean>>;
  /**
   * The capabilities the store declares (`store.capabilities`, e.g. `new MyStore().capabilities`).
   * Required: tests are registered before any store exists, so the suite takes the declaration
   * here, and the lifecycle group fails unless every store the factory makes declares exactly
   * these. So a store declaring `aggregates` always runs the `history` group: leaving it out here
   * fails the lifecycle group instead of skipping the history tests.
   */
  readonly capabilities: StoreCapabilities;
}

/**
 * The conformance suite every {@link Store} implementation runs: one group per port, each
 * test named for the contract it checks. Pass your runner's `test` and `expect` (and
 * `describe` to group the tests); the suite imports no test framework.
 *
 * @example
 * import { expect, test, describe } from "vitest";
 * import { storeConformance } from "@kiln/core/testing";
 * storeConformance({
 *   test, expect, describe,
 *   factory: async () => new PostgresStore({ pool: await freshSchema() }),
 *   capabilities: new PostgresStore().capabilities,
 * });
 */
export function storeConformance(options: StoreConformanceOptions): void {
  const groups = options.groups ?? {};
  if (groups.lifecycle !== false) storeLifecycleConformance(options);
  if (groups.samples !== false) sampleSinkConformance(options);
  if (groups.conflicts !== false) sampleConflictConformance(options);
  if (groups["edge-values"] !== false) edgeValueConformance(options);
  if (groups.arrays !== false) arrayValueConformance(options);
  if (groups.history !== false && options.capabilities.aggregates) storeHistoryConformance(options);
  if (groups.retention !== false)
    storeRetentionConformance({ ...options, aggregates: options.capabilities.aggregates });
  if (groups.events !== false) eventStoreConformance(options);
  if (groups.processes !== false) processRepositoryConformance(options);
  if (groups.recipes !== false) recipeRepositoryConformance(options);
  if (groups.alarms !== false) alarmHistoryConformance(options);
  if (groups.audit !== false) auditLogConformance(options);
}

const T0 = Date.UTC(2026, 0, 1);
const TAGS = defineTags({
  "conformance.temperature": { dataType: "float64", unit: "degC" },
  "conformance.pressure": { dataType: "float64", unit: "mbar" },
  "conformance.running": { dataType: "bool" },
  "conformance.label": { dataType: "string" },
  "conformance.count": { dataType: "uint64" },
});
const TEMPERATURE = "conformance.temperature";
const PRESSURE = "conformance.pressure";
const RUNNING = "conformance.running";
const LABEL = "conformance.label";
const COUNT = "conformance.count";

type StoreTest = (store: Store) => Promise<void>;

/** Wraps a test body: a fresh store, opened with the suite's tags, closed afterwards. */
function withStore(factory: StoreFactory, body: StoreTest): () => Promise<void> {
  return async () => {
    const store = await factory();
    await store.open(TAGS.list());
    try {
      await body(store);
    } finally {
      await store.close();
    }
  };
}

function sampleAt(tag: string, offsetMs: number, value: TagValue | null, sampleQuality: Quality = GOOD): Sample {
  return { tag, value, timestamp: T0 + offsetMs, quality: sampleQuality };
}

/**
 * The completeness rule every store's history obeys (ADR 0045, fix16b): a store may keep a bounded
 * history (`samples.retainedFrom()` then says from when it is complete), but it never answers a
 * wrong value as good and never skips samples silently. Each test writes 40 samples of one tag in
 * four batches and checks every answer against the written data: a page, first or continued with
 * `after`, returns every sample of its range or rejects `KILN_HISTORY_EVICTED` naming the gap; a good aggregate,
 * value at a time or unmarked bucket equals what the written data gives. A store that keeps
 * everything passes with `retainedFrom` absent or undefined; core runs the group against a
 * MemoryStore with a tiny retention too, so the evicting branch is exercised.
 */
export function storeRetentionConformance(
  options: StoreGroupConformanceOptions & { readonly aggregates?: boolean },
): void {
  const { expect, factory } = options;
  const written = Array.from({ length: 40 }, (_, index) => sampleAt(TEMPERATURE, index * 10, index));
  group(options, "retention", (test) => {
    test(
      "a page, first or continued with after, returns every sample of its range, or rejects KILN_HISTORY_EVICTED naming the gap: never skips silently",
      withStore(factory, async (store) => {
        const returned: number[] = [];
        const gaps: [number, number][] = [];
        // A first page (no after) is held to the same rule (fix16m): its kept samples are not
        // answered as if they were all.
        let after: number | undefined;
        const page = async (): Promise<Sample[]> => {
          for (;;) {
            try {
              return await store.samples.readSamples({
                tag: TEMPERATURE,
                from: T0,
                to: T0 + 1_000,
                limit: 3,
                ...(after === undefined ? {} : { after }),
              });
            } catch (error) {
              if (!KilnError.is(error, "KILN_HISTORY_EVICTED")) throw error;
              const through = error.details?.evictedThrough as number;
              expect(typeof through === "number" && through > (after ?? -Infinity)).toBe(true);
              expect(store.samples.retainedFrom?.() !== undefined).toBe(true);
              gaps.push([after ?? -Infinity, through]);
              after = through;
            }
          }
        };
        for (let batch = 0; batch < 4; batch++) {
          await store.samples.writeBatch(written.slice(batch * 10, batch * 10 + 10));
          const rows = await page();
          for (const row of rows) returned.push(row.timestamp);
          if (rows.length > 0) after = rows.at(-1)!.timestamp;
        }
        for (let rows = await page(); rows.length > 0; rows = await page()) {
          for (const row of rows) returned.push(row.timestamp);
          after = rows.at(-1)!.timestamp;
        }
        const missing = written
          .map((sample) => sample.timestamp)
          .filter((time) => !returned.includes(time))
          .filter((time) => !gaps.some(([from, through]) => time > from && time <= through));
        expect(missing).toEqual([]);
        if (store.samples.retainedFrom?.() === undefined) expect(gaps).toEqual([]);
      }),
    );

    test(
      "every bucket with written samples is there: without quality it holds them all; one that lost samples is marked, never good",
      withStore(factory, async (store) => {
        for (let batch = 0; batch < 4; batch++)
          await store.samples.writeBatch(written.slice(batch * 10, batch * 10 + 10));
        const buckets = await store.samples.readBuckets({ tag: TEMPERATURE, from: T0 - 5, to: T0 + 400, bucketMs: 50 });
        for (const bucket of buckets) {
          const expected = written.filter(
            (sample) => sample.timestamp >= bucket.start && sample.timestamp < bucket.start + 50,
          ).length;
          if (bucket.quality === undefined || bucket.quality.severity === "good")
            expect([bucket.start, bucket.count]).toEqual([bucket.start, expected]);
        }
        // A bucket whose samples were all evicted is there too, marked (count 0): never silently missing.
        for (let start = T0 - 5; start < T0 + 400; start += 50) {
          const wroteIn = written.some((sample) => sample.timestamp >= start && sample.timestamp < start + 50);
          if (wroteIn) expect([start, buckets.some((bucket) => bucket.start === start)]).toEqual([start, true]);
        }
        for (const bucket of buckets) {
          if (bucket.count === 0) expect([bucket.start, bucket.quality?.severity]).toEqual([bucket.start, "bad"]);
        }
        if (store.samples.retainedFrom?.() === undefined)
          expect(buckets.every((bucket) => bucket.quality === undefined)).toBe(true);
      }),
    );

    if (options.aggregates) {
      test(
        "a good aggregate or value at a time equals the written data's; what rests on evicted history is not good",
        withStore(factory, async (store) => {
          for (let batch = 0; batch < 4; batch++)
            await store.samples.writeBatch(written.slice(batch * 10, batch * 10 + 10));
          const history = store.history!;
          const intervals = await history.aggregate([TEMPERATURE], {
            start: T0 - 5,
            end: T0 + 395,
            intervalMs: 50,
            aggregates: ["Count", "Minimum"],
          });
          for (const interval of intervals) {
            const inside = written.filter(
              (sample) => sample.timestamp >= interval.start && sample.timestamp < interval.end,
            );
            const count = interval.values.Count!;
            if (count.quality.severity === "good")
              expect([interval.start, count.value]).toEqual([interval.start, inside.length]);
            const minimum = interval.values.Minimum!;
            if (minimum.quality.severity === "good")
              expect([interval.start, minimum.value]).toEqual([interval.start, inside[0]?.value]);
          }
          const times = written.map((sample) => sample.timestamp);
          const values = await history.valuesAt([TEMPERATURE], times);
          for (const [index, value] of values.entries()) {
            if (value.quality.severity === "good")
              expect([value.timestamp, value.value]).toEqual([times[index], index]);
            else if (store.samples.retainedFrom?.() === undefined) expect(value.quality.severity).toBe("good");
          }
        }),
      );
    }
  });
}

const ARRAY_TAGS = defineTags({
  "conformance.zones": { dataType: "float64", arrayLength: 8 },
  "conformance.steps": { dataType: "int32", arrayLength: 4 },
  "conformance.flags": { dataType: "bool", arrayLength: 4 },
  "conformance.names": { dataType: "string", arrayLength: 4 },
  "conformance.totals": { dataType: "uint64", arrayLength: 4 },
  "conformance.offsets": { dataType: "int64", arrayLength: 4 },
  "conformance.scalar": { dataType: "float64" },
});

/**
 * Array tags (docs/adr/0038-array-tags.md): one sample per array, kept exactly (every element
 * type, NaN, ±Infinity, -0, 64-bit integers beyond 2^53, any string), compared element-wise for
 * conflicts, returned by raw history and value-at-time; aggregates and downsampling over an array
 * tag are refused with `KILN_NOT_SUPPORTED`.
 */
export function arrayValueConformance(
  options: StoreGroupConformanceOptions & { readonly capabilities?: StoreCapabilities },
): void {
  const { expect, factory } = options;
  const withArrays =
    (body: StoreTest): (() => Promise<void>) =>
    async () => {
      const store = await factory();
      await store.open(ARRAY_TAGS.list());
      try {
        await body(store);
      } finally {
        await store.close();
      }
    };
  const read = (store: Store, tag: string): Promise<Sample[]> =>
    store.samples.readSamples({ tag, from: T0 - 1_000, to: T0 + 1_000_000 });
  const values: [string, TagValue][] = [
    ["conformance.zones", [1.5, -0, 0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5e-324, 1e308]],
    ["conformance.steps", [-2147483648, 0, 2147483647]],
    ["conformance.flags", [true, false, true]],
    ["conformance.names", ["", "NaN", "LOT-42\0", "\uD800 \u0010 \uFFFF"]],
    ["conformance.totals", [2n ** 64n - 1n, 2n ** 53n + 1n, 7, 0n]],
    ["conformance.offsets", [-(2n ** 63n), 2n ** 63n - 1n, -5]],
    ["conformance.scalar", 2.5],
  ];
  group(options, "array values", (test) => {
    test(
      "an array sample reads back exactly, element by element (NaN, ±Infinity, -0, 64-bit beyond 2^53, NUL and lone surrogates), an empty array too",
      withArrays(async (store) => {
        await store.samples.writeBatch([
          ...values.map(([tag, value]) => sampleAt(tag, 0, value)),
          sampleAt("conformance.zones", 1, []),
          sampleAt("conformance.zones", 2, null, quality("bad", "no reply", QualityCodes.BadCommunicationError)),
        ]);
        for (const [tag, value] of values) {
          const [sample, ...rest] = await read(store, tag);
          expect(rest.length >= 0 && sample?.value).toEqual(value);
          if (Array.isArray(value)) {
            const got = sample!.value as readonly unknown[];
            expect(got.map((element, index) => Object.is(element, value[index]))).toEqual(value.map(() => true));
          }
        }
        const zones = await read(store, "conformance.zones");
        expect(zones.map((sample) => sample.value)).toEqual([values[0]![1], [], null]);
      }),
    );

    test(
      "writing an identical array again is no conflict; one element different (0 and -0 too) is a stored conflict",
      withArrays(async (store) => {
        await store.samples.writeBatch([sampleAt("conformance.zones", 0, [1, 0, Number.NaN])]);
        expect(
          conflictsOf(await store.samples.writeBatch([sampleAt("conformance.zones", 0, [1, 0, Number.NaN])])),
        ).toEqual([]);
        const result = await store.samples.writeBatch([
          sampleAt("conformance.zones", 0, [1, -0, Number.NaN]),
          sampleAt("conformance.totals", 0, [1n]),
          sampleAt("conformance.totals", 0, [1]),
        ]);
        expect(conflictsOf(result).map(([tag, offset, existing]) => [tag, offset, existing])).toEqual([
          ["conformance.zones", 0, "stored"],
          ["conformance.totals", 0, "batch"],
        ]);
        expect((await read(store, "conformance.zones")).map((sample) => sample.value)).toEqual([[1, 0, Number.NaN]]);
      }),
    );

    if (options.capabilities?.aggregates) {
      test(
        "value-at-time returns the array (stepped); aggregates and downsampling over an array tag are KILN_NOT_SUPPORTED",
        withArrays(async (store) => {
          await store.samples.writeBatch([
            sampleAt("conformance.steps", 0, [1, 2]),
            sampleAt("conformance.steps", 100, [3, 4, 5]),
            sampleAt("conformance.scalar", 0, 1),
          ]);
          const history = store.history!;
          const at = await history.valueAt(["conformance.steps", "conformance.scalar"], T0 + 50);
          expect(at.map((sample) => sample.value)).toEqual([[1, 2], 1]);
          const later = await history.valueAt(["conformance.steps"], T0 + 150);
          expect(later[0]?.value).toEqual([3, 4, 5]);
          const aggregate = await expectKilnError(
            expect,
            history.aggregate(["conformance.scalar", "conformance.steps"], {
              start: T0,
              end: T0 + 200,
              intervalMs: 100,
              aggregates: ["Average"],
            }),
            "KILN_NOT_SUPPORTED",
          );
          expect((aggregate as KilnError).details).toEqual({ tags: ["conformance.steps"] });
          await expectKilnError(
            expect,
            history.downsample("conformance.steps", { start: T0, end: T0 + 200, points: 10 }),
            "KILN_NOT_SUPPORTED",
          );
        }),
      );
    }
  });
}

/** Lifecycle: `open`/`close` are idempotent; a closed store refuses work; contract versions. */
export function storeLifecycleConformance(
  options: StoreGroupConformanceOptions & { readonly capabilities?: StoreCapabilities },
): void {
  const { expect, factory } = options;
  group(options, "store lifecycle", (test) => {
    test("declares contract version 1 for the store, its sample sink and its event store", async () => {
      const store = await factory();
      expect([store.storeApiVersion, store.samples.sinkApiVersion, store.events.eventStoreApiVersion]).toEqual([
        "1",
        "1",
        "1",
      ]);
      expect(typeof store.capabilities.transactions).toBe("boolean");
      expect(typeof store.capabilities.aggregates).toBe("boolean");
      expect(store.history !== undefined).toBe(store.capabilities.aggregates);
      // What the suite registered its groups by is what the store declares.
      if (options.capabilities) expect(store.capabilities).toEqual(options.capabilities);
      await store.close();
    });

    test("open and close are idempotent, and opening again after close finds the data", async () => {
      const store = await factory();
      await store.open(TAGS.list());
      await store.open(TAGS.list());
      await store.samples.writeBatch([sampleAt(TEMPERATURE, 0, 1)]);
      expect(await store.samples.readSamples({ tag: TEMPERATURE, from: T0, to: T0 + 1 })).toEqual([
        sampleAt(TEMPERATURE, 0, 1),
      ]);
      await store.close();
      await store.close();
      await store.open(TAGS.list());
      expect(await store.samples.readSamples({ tag: TEMPERATURE, from: T0, to: T0 + 1 })).toEqual([
        sampleAt(TEMPERATURE, 0, 1),
      ]);
      await store.close();
    });

    test("every port, reads and writes, rejects with KILN_LIFECYCLE before open and after close", async () => {
      const store = await factory();
      await expectKilnError(expect, store.samples.writeBatch([sampleAt(TEMPERATURE, 0, 1)]), "KILN_LIFECYCLE");
      await expectKilnError(expect, store.events.version("machine-1"), "KILN_LIFECYCLE");
      await store.open(TAGS.list());
      await store.close();
      const range = { from: T0, to: T0 + 1 };
      const calls: Record<string, () => Promise<unknown>> = {
        "samples.writeBatch": () => store.samples.writeBatch([sampleAt(TEMPERATURE, 0, 1)]),
        "samples.readSamples": () => store.samples.readSamples({ tag: TEMPERATURE, ...range }),
        "samples.readBuckets": () => store.samples.readBuckets({ tag: TEMPERATURE, ...range, bucketMs: 1 }),
        "events.append": () => store.events.append("machine-1", 0, [started(T0)]),
        "events.read": () => store.events.read("machine-1"),
        "events.version": () => store.events.version("machine-1"),
        "processes.save": () => store.processes.save(processRecord(), [started(T0)], 0),
        "processes.get": () => store.processes.get("process-1"),
        "processes.list": () => store.processes.list(),
        "recipes.save": () => store.recipes.save(recipe("ald", 1)),
        "recipes.get": () => store.recipes.get("ald"),
        "recipes.list": () => store.recipes.list(),
        "alarms.record": () => store.alarms.record(alarmEntry(T0)),
        "alarms.query": () => store.alarms.query(range),
        "audit.record": () => store.audit.record(auditEntry(T0)),
        "audit.query": () => store.audit.query(range),
      };
      // Every call is settled before anything is asserted, so a failing store leaves no rejection unhandled.
      const outcomes: Record<string, string> = {};
      for (const [name, call] of Object.entries(calls)) {
        outcomes[name] = await Promise.resolve()
          .then(call)
          .then(
            () => "resolved",
            (error: unknown) => (KilnError.is(error) ? error.code : `not a KilnError: ${String(error)}`),
          );
      }
      expect(outcomes).toEqual(Object.fromEntries(Object.keys(calls).map((name) => [name, "KILN_LIFECYCLE"])));
    });
  });
}

/** `SampleSink` and `SampleHistory`: idempotent batches, ordered reads, paging, buckets. */
export function sampleSinkConformance(options: StoreGroupConformanceOptions): void {
  const { expect, factory } = options;
  const readAll = (store: Store, tag: string): Promise<Sample[]> =>
    store.samples.readSamples({ tag, from: T0 - 1_000_000, to: T0 + 1_000_000 });

  group(options, "samples", (test) => {
    test(
      "readSamples returns written samples in time order, whatever the write order",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 30, 3), sampleAt(TEMPERATURE, 10, 1)]);
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 40, 4), sampleAt(TEMPERATURE, 20, 2)]);
        expect(await readAll(store, TEMPERATURE)).toEqual([
          sampleAt(TEMPERATURE, 10, 1),
          sampleAt(TEMPERATURE, 20, 2),
          sampleAt(TEMPERATURE, 30, 3),
          sampleAt(TEMPERATURE, 40, 4),
        ]);
      }),
    );

    test(
      "writeBatch is idempotent on (tag, timestamp): a replayed batch stores each sample once",
      withStore(factory, async (store) => {
        const batch = [sampleAt(TEMPERATURE, 0, 20.5), sampleAt(PRESSURE, 0, 1.25), sampleAt(TEMPERATURE, 10, 20.75)];
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 10, 20.75), sampleAt(TEMPERATURE, 20, 21)]);
        expect(await readAll(store, TEMPERATURE)).toEqual([
          sampleAt(TEMPERATURE, 0, 20.5),
          sampleAt(TEMPERATURE, 10, 20.75),
          sampleAt(TEMPERATURE, 20, 21),
        ]);
        expect(await readAll(store, PRESSURE)).toEqual([sampleAt(PRESSURE, 0, 1.25)]);
      }),
    );

    test(
      "duplicates inside one batch are stored once",
      withStore(factory, async (store) => {
        const duplicate = sampleAt(TEMPERATURE, 5, 7.5);
        await store.samples.writeBatch([duplicate, duplicate, sampleAt(TEMPERATURE, 6, 8), duplicate]);
        expect(await readAll(store, TEMPERATURE)).toEqual([duplicate, sampleAt(TEMPERATURE, 6, 8)]);
      }),
    );

    test(
      "a different value at an existing (tag, timestamp) keeps the first stored sample",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 10, 1.5)]);
        await store.samples.writeBatch([
          sampleAt(TEMPERATURE, 10, 9.5, quality("bad", "late duplicate")),
          sampleAt(TEMPERATURE, 20, 2),
          sampleAt(TEMPERATURE, 30, 3),
          sampleAt(TEMPERATURE, 30, 33),
        ]);
        expect(await readAll(store, TEMPERATURE)).toEqual([
          sampleAt(TEMPERATURE, 10, 1.5),
          sampleAt(TEMPERATURE, 20, 2),
          sampleAt(TEMPERATURE, 30, 3),
        ]);
      }),
    );

    test(
      "float, bool, string and null values round-trip with their quality (severity, code, reason)",
      withStore(factory, async (store) => {
        const uncertain = quality(
          "uncertain",
          "no communication, last usable value",
          QualityCodes.UncertainNoCommunicationLastUsableValue,
        );
        const bad = quality("bad", "modbus connection lost", QualityCodes.BadCommunicationError);
        const written = [
          sampleAt(TEMPERATURE, 0, 21.537),
          sampleAt(TEMPERATURE, 1, -0.125, uncertain),
          sampleAt(TEMPERATURE, 2, 4294967295),
          sampleAt(RUNNING, 0, true),
          sampleAt(RUNNING, 1, false, quality("good", undefined, 0x00a80000)),
          sampleAt(LABEL, 0, "phase 2: purge ✓"),
          sampleAt(LABEL, 1, ""),
          sampleAt(PRESSURE, 0, null, bad),
        ];
        await store.samples.writeBatch(written);
        expect(await readAll(store, TEMPERATURE)).toEqual(written.slice(0, 3));
        expect(await readAll(store, RUNNING)).toEqual(written.slice(3, 5));
        expect(await readAll(store, LABEL)).toEqual(written.slice(5, 7));
        expect(await readAll(store, PRESSURE)).toEqual(written.slice(7));
      }),
    );

    test(
      "an empty batch resolves and stores nothing",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([]);
        expect(await readAll(store, TEMPERATURE)).toEqual([]);
      }),
    );

    test(
      "a rejected batch writes none of its samples (invalid timestamp: KILN_VALIDATION)",
      withStore(factory, async (store) => {
        const invalid = { ...sampleAt(TEMPERATURE, 0, 2), timestamp: Number.NaN };
        await expectKilnError(
          expect,
          store.samples.writeBatch([sampleAt(TEMPERATURE, 0, 1), sampleAt(PRESSURE, 0, 1), invalid]),
          "KILN_VALIDATION",
        );
        expect(await readAll(store, TEMPERATURE)).toEqual([]);
        expect(await readAll(store, PRESSURE)).toEqual([]);
      }),
    );

    test(
      "a rejected batch names every bad sample field by index (KILN_VALIDATION) and writes nothing",
      withStore(factory, async (store) => {
        const invalid = [
          sampleAt(TEMPERATURE, 0, 1),
          { ...sampleAt(TEMPERATURE, 1, 2), timestamp: Number.NaN },
          { ...sampleAt(TEMPERATURE, 5, 0), value: {} } as unknown as Sample,
          sampleAt(TEMPERATURE, 6, 3, { severity: "good", code: -1 }),
        ];
        const error = (await expectKilnError(
          expect,
          store.samples.writeBatch(invalid),
          "KILN_VALIDATION",
        )) as KilnError;
        expect((error.details?.issues as { path: string }[]).map((issue) => issue.path)).toEqual([
          "[1].timestamp",
          "[2].value",
          "[3].quality.code",
        ]);
        expect(await readAll(store, TEMPERATURE)).toEqual([]);
      }),
    );

    test(
      "a retry that overlaps stored samples keeps them, adds the rest, and later batches still land",
      withStore(factory, async (store) => {
        const series = (count: number, fromIndex: number, valueOffset: number): Sample[] =>
          Array.from({ length: count }, (_, index) =>
            sampleAt(TEMPERATURE, (fromIndex + index) * 1000, fromIndex + index + valueOffset),
          );
        await store.samples.writeBatch(series(10, 0, 0));
        // Samples 5..9 exist; the retry carries other values for them and five new samples.
        await store.samples.writeBatch(series(10, 5, 100));
        await store.samples.writeBatch(series(5, 15, 0));
        await store.samples.writeBatch(series(5, 20, 0));
        expect((await readAll(store, TEMPERATURE)).map((sample) => sample.value)).toEqual([
          0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 110, 111, 112, 113, 114, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        ]);
      }),
    );

    test(
      "concurrent overlapping batches store each sample once",
      withStore(factory, async (store) => {
        const batches = [0, 50, 100, 25, 75].map((start) =>
          Array.from({ length: 100 }, (_, index) => sampleAt(TEMPERATURE, (start + index) * 1000, start + index)),
        );
        await Promise.all(batches.map((batch) => store.samples.writeBatch(batch)));
        const stored = await readAll(store, TEMPERATURE);
        expect(stored).toEqual(Array.from({ length: 200 }, (_, index) => sampleAt(TEMPERATURE, index * 1000, index)));
      }),
    );

    test(
      "samples of tags outside the opened catalog are stored and read back",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([sampleAt("conformance.adhoc", 0, 7), sampleAt(TEMPERATURE, 0, 1)]);
        expect(await readAll(store, "conformance.adhoc")).toEqual([sampleAt("conformance.adhoc", 0, 7)]);
        expect(await readAll(store, TEMPERATURE)).toEqual([sampleAt(TEMPERATURE, 0, 1)]);
      }),
    );

    test(
      "sub-millisecond timestamps keep at least microseconds and stay idempotent across retries",
      withStore(factory, async (store) => {
        const batch = [0.001, 0.25, 0.5002, 1.999, 2.5].map((fraction, index) =>
          sampleAt(TEMPERATURE, fraction, index),
        );
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch([...batch, sampleAt(TEMPERATURE, 3, 9)]);
        const stored = await readAll(store, TEMPERATURE);
        expect(stored.map((sample) => sample.value)).toEqual([0, 1, 2, 3, 4, 9]);
        const microseconds = (time: number | undefined): number => Math.round(((time ?? 0) - T0) * 1000);
        expect([stored[0]?.timestamp, stored[2]?.timestamp].map(microseconds)).toEqual([1, 500]);
      }),
    );

    test(
      "readSamples covers the half-open range [from, to) of one tag",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([99, 100, 150, 199, 200].map((offset) => sampleAt(TEMPERATURE, offset, offset)));
        await store.samples.writeBatch([sampleAt(PRESSURE, 150, 1)]);
        const read = await store.samples.readSamples({ tag: TEMPERATURE, from: T0 + 100, to: T0 + 200 });
        expect(read).toEqual([100, 150, 199].map((offset) => sampleAt(TEMPERATURE, offset, offset)));
      }),
    );

    test(
      "readSamples pages with limit and after (the last timestamp of the previous page)",
      withStore(factory, async (store) => {
        const written = Array.from({ length: 25 }, (_, index) => sampleAt(TEMPERATURE, index * 10, index));
        await store.samples.writeBatch(written);
        const query = { tag: TEMPERATURE, from: T0, to: T0 + 1000, limit: 10 };
        const first = await store.samples.readSamples(query);
        const second = await store.samples.readSamples({ ...query, after: first.at(-1)?.timestamp });
        const third = await store.samples.readSamples({ ...query, after: second.at(-1)?.timestamp });
        const fourth = await store.samples.readSamples({ ...query, after: third.at(-1)?.timestamp });
        expect([first, second, third, fourth]).toEqual([
          written.slice(0, 10),
          written.slice(10, 20),
          written.slice(20),
          [],
        ]);
        const early = await store.samples.readSamples({ ...query, from: T0 + 100, after: T0 - 5, limit: 2 });
        expect(early).toEqual(written.slice(10, 12));
      }),
    );

    test(
      "readSamples and readBuckets return [] for an empty range, a reversed range or a tag without samples",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 100, 1)]);
        const ranges = [
          { tag: TEMPERATURE, from: T0 + 100, to: T0 + 100 },
          { tag: TEMPERATURE, from: T0 + 200, to: T0 },
          { tag: TEMPERATURE, from: T0 + 101, to: T0 + 500 },
          { tag: PRESSURE, from: T0, to: T0 + 500 },
        ];
        for (const range of ranges) {
          expect(await store.samples.readSamples(range)).toEqual([]);
          expect(await store.samples.readBuckets({ ...range, bucketMs: 10 })).toEqual([]);
        }
      }),
    );

    test(
      "readBuckets aggregates min/max/avg/first/last/count per bucket aligned to from, omitting empty buckets",
      withStore(factory, async (store) => {
        // Written out of order: first/last follow time, not write order.
        await store.samples.writeBatch([
          sampleAt(TEMPERATURE, 3000, 2.5),
          sampleAt(TEMPERATURE, 1499, 7),
          sampleAt(TEMPERATURE, 499, 100),
          sampleAt(TEMPERATURE, 500, 4),
          sampleAt(TEMPERATURE, 2000, null, quality("bad", "no value", QualityCodes.BadNoCommunication)),
          sampleAt(TEMPERATURE, 900, 1),
          sampleAt(TEMPERATURE, 3499, 5.5),
          sampleAt(TEMPERATURE, 2500, -2),
          sampleAt(TEMPERATURE, 3500, 1000),
        ]);
        const range = { tag: TEMPERATURE, from: T0 + 500, to: T0 + 3500 };
        expect(await store.samples.readBuckets({ ...range, bucketMs: 1000 })).toEqual([
          { start: T0 + 500, min: 1, max: 7, avg: 4, first: 4, last: 7, count: 3 },
          { start: T0 + 2500, min: -2, max: 5.5, avg: 2, first: -2, last: 5.5, count: 3 },
        ]);
        expect(await store.samples.readBuckets({ ...range, bucketMs: 60_000 })).toEqual([
          { start: T0 + 500, min: -2, max: 7, avg: 3, first: 4, last: 5.5, count: 6 },
        ]);
      }),
    );

    test(
      "readBuckets leaves out NaN, infinities and null, counts 64-bit integers, and has no buckets for booleans or text",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([
          sampleAt(TEMPERATURE, 0, 5),
          sampleAt(TEMPERATURE, 1, Number.NaN),
          sampleAt(TEMPERATURE, 2, Number.POSITIVE_INFINITY),
          sampleAt(TEMPERATURE, 3, Number.NEGATIVE_INFINITY),
          sampleAt(TEMPERATURE, 4, null, quality("bad")),
          sampleAt(TEMPERATURE, 5, -2),
          sampleAt(COUNT, 0, 10n),
          sampleAt(COUNT, 1, 30n),
          sampleAt(RUNNING, 0, true),
          sampleAt(LABEL, 0, "purge"),
        ]);
        const bucket = { from: T0, to: T0 + 10, bucketMs: 10 };
        expect(await store.samples.readBuckets({ tag: TEMPERATURE, ...bucket })).toEqual([
          { start: T0, min: -2, max: 5, avg: 1.5, first: 5, last: -2, count: 2 },
        ]);
        expect(await store.samples.readBuckets({ tag: COUNT, ...bucket })).toEqual([
          { start: T0, min: 10, max: 30, avg: 20, first: 10, last: 30, count: 2 },
        ]);
        expect(await store.samples.readBuckets({ tag: RUNNING, ...bucket })).toEqual([]);
        expect(await store.samples.readBuckets({ tag: LABEL, ...bucket })).toEqual([]);
      }),
    );

    test(
      "a non-positive limit or bucket width, a non-finite bound or an empty tag rejects with KILN_VALIDATION",
      withStore(factory, async (store) => {
        const range = { tag: TEMPERATURE, from: T0, to: T0 + 1000 };
        await expectKilnError(expect, store.samples.readSamples({ ...range, from: Number.NaN }), "KILN_VALIDATION");
        await expectKilnError(expect, store.samples.readSamples({ ...range, tag: "" }), "KILN_VALIDATION");
        await expectKilnError(expect, store.samples.readSamples({ ...range, limit: 0 }), "KILN_VALIDATION");
        await expectKilnError(expect, store.samples.readBuckets({ ...range, bucketMs: 0 }), "KILN_VALIDATION");
        await expectKilnError(expect, store.samples.readBuckets({ ...range, bucketMs: -60 }), "KILN_VALIDATION");
      }),
    );
  });
}

function started(at: number, payload: Record<string, unknown> = {}): NewDomainEvent {
  return { type: "process-start", payload, at };
}

/**
 * Text every store must hold exactly: NUL (which PostgreSQL text and jsonb refuse), U+FFFF, lone
 * surrogates of both halves (not valid UTF-8), a valid pair, and text that looks like an escape.
 */
const HOSTILE_TEXTS = [
  "LOT-42\0\0\0\0\0\0",
  "\0",
  "\uFFFF",
  "\uD800",
  "a\uDC00b",
  "\uDBFF\uDFFF",
  "\uDFFF\uD800",
  "\u0010",
  "\u00100000",
  "\\u0000",
  "",
];
const EDGE_TAGS = defineTags({
  "conformance.text": { dataType: "string" },
  "conformance.counter": { dataType: "uint64" },
  "conformance.offset": { dataType: "int64" },
  "conformance.reading": { dataType: "float64" },
});

/** A conflict as `[tag, offset from T0 in ms, existing]`, with the refused value, for comparison. */
function describeConflict({ sample, existing }: SampleConflict): [string, number, SampleConflict["existing"], unknown] {
  return [sample.tag, sample.timestamp - T0, existing, sample.value];
}

function conflictsOf(result: SampleWriteResult | void): ReturnType<typeof describeConflict>[] {
  return (result?.conflicts ?? []).map(describeConflict);
}

/**
 * Conflicts: a sample whose (tag, timestamp) already holds a different sample (another value or
 * quality, compared as `sameSamplePayload` does) is not stored and is reported in
 * `SampleWriteResult.conflicts`, in batch order; an identical one (a retry, a replay, a repeat
 * in the batch) is stored once and not reported.
 */
export function sampleConflictConformance(options: StoreGroupConformanceOptions): void {
  const { expect, factory } = options;
  const readAll = (store: Store, tag: string): Promise<Sample[]> =>
    store.samples.readSamples({ tag, from: T0 - 1_000_000, to: T0 + 1_000_000 });
  const uncertain = quality("uncertain", "sensor drift", QualityCodes.Uncertain);
  // One sample of each kind of payload, each at its own key.
  const stored = (): Sample[] => [
    sampleAt(TEMPERATURE, 0, 0),
    sampleAt(TEMPERATURE, 1, -0),
    sampleAt(TEMPERATURE, 2, Number.NaN),
    sampleAt(TEMPERATURE, 3, 1.5, uncertain),
    sampleAt(TEMPERATURE, 4, 2.5, quality("bad", "", QualityCodes.Bad)),
    sampleAt(LABEL, 0, "LOT-42\0\0"),
    sampleAt(LABEL, 1, "\uD800"),
    sampleAt(COUNT, 0, 2n ** 64n - 1n),
    sampleAt(COUNT, 1, 5n),
    sampleAt(RUNNING, 0, true),
    sampleAt(PRESSURE, 0, null, quality("bad", "no reply", QualityCodes.BadCommunicationError)),
  ];

  group(options, "sample conflicts", (test) => {
    test(
      "writing identical samples again (a retry, a replay, a repeat in the batch) reports no conflict",
      withStore(factory, async (store) => {
        expect(conflictsOf(await store.samples.writeBatch(stored()))).toEqual([]);
        // Fresh objects with the same payloads, each twice in the batch.
        const again = stored().flatMap((sample) => [{ ...sample, quality: { ...sample.quality } }, { ...sample }]);
        expect(conflictsOf(await store.samples.writeBatch(again))).toEqual([]);
        expect(await readAll(store, TEMPERATURE)).toEqual(stored().filter((sample) => sample.tag === TEMPERATURE));
      }),
    );

    test(
      "a different sample at a stored (tag, timestamp) is reported as a conflict, in batch order, and not stored",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 10, 1.5), sampleAt(PRESSURE, 10, 7)]);
        const result = await store.samples.writeBatch([
          sampleAt(TEMPERATURE, 20, 2),
          sampleAt(TEMPERATURE, 10, 9.5),
          sampleAt(PRESSURE, 10, 7),
          sampleAt(PRESSURE, 5, 6),
          sampleAt(PRESSURE, 10, 7, quality("bad", "late duplicate", QualityCodes.Bad)),
        ]);
        expect(conflictsOf(result)).toEqual([
          [TEMPERATURE, 10, "stored", 9.5],
          [PRESSURE, 10, "stored", 7],
        ]);
        expect(result?.conflicts[1]?.sample.quality.reason).toBe("late duplicate");
        expect(await readAll(store, TEMPERATURE)).toEqual([
          sampleAt(TEMPERATURE, 10, 1.5),
          sampleAt(TEMPERATURE, 20, 2),
        ]);
        expect(await readAll(store, PRESSURE)).toEqual([sampleAt(PRESSURE, 5, 6), sampleAt(PRESSURE, 10, 7)]);
      }),
    );

    test(
      "payloads compare exactly: 0 and -0, a number and a bigint, text one NUL apart, another code or reason conflict; NaN and NaN do not",
      withStore(factory, async (store) => {
        await store.samples.writeBatch(stored());
        const changed: Sample[] = [
          sampleAt(TEMPERATURE, 0, -0),
          sampleAt(TEMPERATURE, 1, 0),
          sampleAt(TEMPERATURE, 2, Number.NaN),
          sampleAt(TEMPERATURE, 3, 1.5, quality("uncertain", "sensor drift!", QualityCodes.Uncertain)),
          sampleAt(TEMPERATURE, 4, 2.5, quality("bad", undefined, QualityCodes.Bad)),
          sampleAt(LABEL, 0, "LOT-42\0"),
          sampleAt(LABEL, 1, "\uFFFD"),
          sampleAt(COUNT, 0, 2n ** 64n - 2n),
          sampleAt(COUNT, 1, 5),
          sampleAt(RUNNING, 0, true, quality("uncertain", undefined, QualityCodes.Uncertain)),
          sampleAt(PRESSURE, 0, null, quality("bad", "no reply", QualityCodes.BadTimeout)),
        ];
        const result = await store.samples.writeBatch(changed);
        expect(conflictsOf(result).map(([tag, offset, existing]) => [tag, offset, existing])).toEqual(
          changed.filter((_, index) => index !== 2).map((sample) => [sample.tag, sample.timestamp - T0, "stored"]),
        );
        const temperatures = await readAll(store, TEMPERATURE);
        expect(temperatures.map((sample) => Object.is(sample.value, 0))).toEqual([true, false, false, false, false]);
        expect(temperatures.map((sample) => Object.is(sample.value, -0))).toEqual([false, true, false, false, false]);
        expect(await readAll(store, LABEL)).toEqual(stored().filter((sample) => sample.tag === LABEL));
        expect(await readAll(store, COUNT)).toEqual(stored().filter((sample) => sample.tag === COUNT));
        expect(await readAll(store, PRESSURE)).toEqual(stored().filter((sample) => sample.tag === PRESSURE));
      }),
    );

    test(
      "in one batch the first sample of a (tag, timestamp) wins: a different later one is a batch conflict, an identical one is not",
      withStore(factory, async (store) => {
        const first = await store.samples.writeBatch([
          sampleAt(TEMPERATURE, 0, 1),
          sampleAt(TEMPERATURE, 0, 1),
          sampleAt(TEMPERATURE, 0, 2),
          sampleAt(PRESSURE, 0, 3),
          sampleAt(TEMPERATURE, 0, 1, uncertain),
        ]);
        expect(conflictsOf(first)).toEqual([
          [TEMPERATURE, 0, "batch", 2],
          [TEMPERATURE, 0, "batch", 1],
        ]);
        // Again after a stored conflict (a SQL store may write this batch another way).
        const second = await store.samples.writeBatch([
          sampleAt(PRESSURE, 0, 4),
          sampleAt(TEMPERATURE, 1, "one"),
          sampleAt(TEMPERATURE, 1, "one"),
          sampleAt(TEMPERATURE, 1, "One"),
        ]);
        expect(conflictsOf(second)).toEqual([
          [PRESSURE, 0, "stored", 4],
          [TEMPERATURE, 1, "batch", "One"],
        ]);
        expect(await readAll(store, TEMPERATURE)).toEqual([
          sampleAt(TEMPERATURE, 0, 1),
          sampleAt(TEMPERATURE, 1, "one"),
        ]);
      }),
    );

    test(
      "a repeat in a batch is compared with the stored sample when there is one",
      withStore(factory, async (store) => {
        await store.samples.writeBatch([sampleAt(TEMPERATURE, 0, 1), sampleAt(TEMPERATURE, 1, 1)]);
        const result = await store.samples.writeBatch([
          sampleAt(TEMPERATURE, 0, 2),
          sampleAt(TEMPERATURE, 0, 1),
          sampleAt(TEMPERATURE, 0, 2),
          sampleAt(TEMPERATURE, 1, 1),
          sampleAt(TEMPERATURE, 1, 3),
        ]);
        expect(conflictsOf(result)).toEqual([
          [TEMPERATURE, 0, "stored", 2],
          [TEMPERATURE, 0, "stored", 2],
          [TEMPERATURE, 1, "stored", 3],
        ]);
        expect(await readAll(store, TEMPERATURE)).toEqual([sampleAt(TEMPERATURE, 0, 1), sampleAt(TEMPERATURE, 1, 1)]);
      }),
    );
  });
}

/**
 * Edge values: every value the core accepts (`checkSample`) is stored and reads back equal, and
 * the limits are typed errors (`KILN_VALIDATION`, nothing of the batch stored), never a silent
 * wrap-around or a whole batch lost for one value.
 */
export function edgeValueConformance(options: StoreGroupConformanceOptions): void {
  const { expect, factory } = options;
  const open = (body: StoreTest) =>
    withStore(factory, async (store) => {
      await store.open([...TAGS.list(), ...EDGE_TAGS.list()]);
      await body(store);
    });
  const roundTrip = async (store: Store, tag: string, values: readonly (TagValue | null)[]): Promise<Sample[]> => {
    const written = values.map((value, index) => sampleAt(tag, index, value));
    await store.samples.writeBatch(written);
    const read = await store.samples.readSamples({ tag, from: T0, to: T0 + values.length });
    expect(read).toEqual(written);
    return read;
  };

  group(options, "edge values", (test) => {
    test(
      "text with NUL, U+FFFF and lone surrogates reads back exactly, beside other tags in the same batch",
      open(async (store) => {
        const texts = HOSTILE_TEXTS.map((text, index) => sampleAt("conformance.text", index, text));
        const numbers = HOSTILE_TEXTS.map((_, index) => sampleAt("conformance.reading", index, index + 0.5));
        await store.samples.writeBatch([...texts, ...numbers]);
        const read = await store.samples.readSamples({ tag: "conformance.text", from: T0, to: T0 + 100 });
        // Compared code unit by code unit: a replacement character must not pass for a lone surrogate.
        expect(read.map((sample) => [...String(sample.value)].map((unit) => unit.charCodeAt(0)))).toEqual(
          HOSTILE_TEXTS.map((text) => [...text].map((unit) => unit.charCodeAt(0))),
        );
        expect(read).toEqual(texts);
        expect(await store.samples.readSamples({ tag: "conformance.reading", from: T0, to: T0 + 100 })).toEqual(
          numbers,
        );
      }),
    );

    test(
      "tags whose unit and description hold NUL, U+0010 and lone surrogates open, and their samples are stored",
      withStore(factory, async (store) => {
        const hostile = defineTags({
          "conformance.hostile": {
            dataType: "float64",
            unit: "m\0bar\uD800",
            description: HOSTILE_TEXTS.join("|"),
          },
        });
        await store.open([...TAGS.list(), ...hostile.list()]);
        const written = [sampleAt("conformance.hostile", 0, 1.5)];
        await store.samples.writeBatch(written);
        expect(await store.samples.readSamples({ tag: "conformance.hostile", from: T0, to: T0 + 1 })).toEqual(written);
        // Opening again registers the same catalog again (an update of the same text).
        await store.close();
        await store.open([...TAGS.list(), ...hostile.list()]);
      }),
    );

    test(
      "a quality reason with NUL and lone surrogates reads back exactly",
      open(async (store) => {
        const reasons = HOSTILE_TEXTS.filter((text) => text !== "");
        const written = reasons.map((reason, index) => sampleAt(TEMPERATURE, index, index, quality("bad", reason)));
        await store.samples.writeBatch(written);
        expect(await store.samples.readSamples({ tag: TEMPERATURE, from: T0, to: T0 + 100 })).toEqual(written);
      }),
    );

    test(
      "uint64 0, 2^63 and 2^64-1 and int64 -2^63 and 2^63-1 read back as the same bigint",
      open(async (store) => {
        await roundTrip(store, "conformance.counter", [0n, 2n ** 63n, 9223372036854775813n, 2n ** 64n - 1n]);
        await roundTrip(store, "conformance.offset", [-(2n ** 63n), -1n, 2n ** 63n - 1n]);
      }),
    );

    test(
      "NaN, Infinity, -Infinity and -0 read back as themselves",
      open(async (store) => {
        const values = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0, Number.MIN_VALUE];
        const read = await roundTrip(store, "conformance.reading", values);
        expect(read.map((sample, index) => Object.is(sample.value, values[index]))).toEqual(values.map(() => true));
      }),
    );

    test(
      "the earliest and latest allowed timestamps (SAMPLE_TIME_MIN, SAMPLE_TIME_MAX) are stored exactly",
      open(async (store) => {
        const written = [
          { ...sampleAt(TEMPERATURE, 0, 1), timestamp: SAMPLE_TIME_MIN },
          { ...sampleAt(TEMPERATURE, 0, 2), timestamp: SAMPLE_TIME_MIN + 0.001 },
          { ...sampleAt(TEMPERATURE, 0, 3), timestamp: SAMPLE_TIME_MAX - 0.5 },
          { ...sampleAt(TEMPERATURE, 0, 4), timestamp: SAMPLE_TIME_MAX },
        ];
        await store.samples.writeBatch(written);
        expect(
          await store.samples.readSamples({ tag: TEMPERATURE, from: SAMPLE_TIME_MIN, to: SAMPLE_TIME_MAX + 1 }),
        ).toEqual(written);
      }),
    );

    test(
      "a timestamp or an integer beyond the limits is KILN_VALIDATION and nothing of the batch is stored",
      open(async (store) => {
        const good = sampleAt(TEMPERATURE, 0, 1);
        for (const bad of [
          { ...sampleAt(TEMPERATURE, 1, 1), timestamp: SAMPLE_TIME_MIN - 1 },
          { ...sampleAt(TEMPERATURE, 1, 1), timestamp: SAMPLE_TIME_MAX + 1 },
          sampleAt("conformance.counter", 1, 2n ** 64n),
          sampleAt("conformance.offset", 1, -(2n ** 63n) - 1n),
        ]) {
          await expectKilnError(expect, store.samples.writeBatch([good, bad]), "KILN_VALIDATION");
        }
        expect(
          await store.samples.readSamples({ tag: TEMPERATURE, from: SAMPLE_TIME_MIN, to: SAMPLE_TIME_MAX }),
        ).toEqual([]);
      }),
    );

    test(
      "text with NUL and lone surrogates in event payloads, audit entries and alarm history reads back exactly",
      open(async (store) => {
        const odd = "op\0\uD800-7\u0010";
        const payload = { [odd]: odd, list: HOSTILE_TEXTS, nested: { note: "\0\uDC00" } };
        await store.events.append("machine-1", 0, [started(T0, payload)]);
        expect(await store.events.read("machine-1")).toEqual([
          { ...started(T0, payload), aggregateId: "machine-1", version: 1 },
        ]);
        const entry: AuditEntry = {
          id: `conformance-odd-${odd}`,
          principal: odd,
          roles: [odd, "operator"],
          action: "tag.write",
          target: `conformance.label${odd}`,
          oldValue: odd,
          newValue: { [odd]: [odd] },
          outcome: "denied",
          reason: odd,
          at: T0,
        };
        await store.audit.record(entry);
        expect(await store.audit.query({ from: T0, to: T0 + 1 })).toEqual([entry]);
        const transition: AlarmHistoryEntry = {
          alarmId: `conformance.pressure:HI${odd}`,
          tag: PRESSURE,
          kind: "HI",
          priority: 2,
          from: "unacknowledged",
          to: "acknowledged",
          cause: "acknowledge",
          principal: odd,
          at: T0,
        };
        await store.alarms.record(transition);
        expect(await store.alarms.query({ from: T0, to: T0 + 1 })).toEqual([transition]);
      }),
    );
  });
}

/** `EventStore`: versioned streams with optimistic concurrency. */
export function eventStoreConformance(options: StoreGroupConformanceOptions): void {
  const { expect, factory } = options;
  const first = started(T0, { recipe: { name: "ald", version: 2 }, steps: [1, 2, 3], note: null, ok: true });
  const second: NewDomainEvent = { type: "process-end", payload: { reason: "completed" }, at: T0 + 1000 };
  const third: NewDomainEvent = {
    type: "machine-state-change",
    payload: { from: "Processing", to: "Idle" },
    at: T0 + 2000,
  };

  group(options, "events", (test) => {
    test(
      "append to a new stream at expected version 0 numbers the events from 1",
      withStore(factory, async (store) => {
        expect(await store.events.append("machine-1", 0, [first, second])).toBe(2);
        expect(await store.events.read("machine-1")).toEqual([
          { ...first, aggregateId: "machine-1", version: 1 },
          { ...second, aggregateId: "machine-1", version: 2 },
        ]);
        expect(await store.events.version("machine-1")).toBe(2);
      }),
    );

    test(
      "append at the current version continues the stream; read starts at fromVersion",
      withStore(factory, async (store) => {
        await store.events.append("machine-1", 0, [first, second]);
        expect(await store.events.append("machine-1", 2, [third])).toBe(3);
        expect(await store.events.read("machine-1", 2)).toEqual([
          { ...second, aggregateId: "machine-1", version: 2 },
          { ...third, aggregateId: "machine-1", version: 3 },
        ]);
        expect(await store.events.read("machine-1", 4)).toEqual([]);
      }),
    );

    test(
      "append with a stale expected version fails with KILN_CONCURRENCY_CONFLICT and writes nothing",
      withStore(factory, async (store) => {
        await store.events.append("machine-1", 0, [first, second]);
        await expectKilnError(expect, store.events.append("machine-1", 1, [third]), "KILN_CONCURRENCY_CONFLICT");
        await expectKilnError(expect, store.events.append("machine-1", 0, [third]), "KILN_CONCURRENCY_CONFLICT");
        expect(await store.events.version("machine-1")).toBe(2);
        expect((await store.events.read("machine-1")).map((event) => event.type)).toEqual([first.type, second.type]);
      }),
    );

    test(
      "append with an expected version ahead of the stream fails with KILN_CONCURRENCY_CONFLICT and writes nothing",
      withStore(factory, async (store) => {
        await expectKilnError(expect, store.events.append("machine-2", 1, [first]), "KILN_CONCURRENCY_CONFLICT");
        await store.events.append("machine-1", 0, [first]);
        await expectKilnError(expect, store.events.append("machine-1", 3, [second]), "KILN_CONCURRENCY_CONFLICT");
        expect(await store.events.version("machine-2")).toBe(0);
        expect(await store.events.version("machine-1")).toBe(1);
      }),
    );

    test(
      "concurrent appends at the same expected version: exactly one succeeds, the other conflicts",
      withStore(factory, async (store) => {
        const results = await Promise.allSettled([
          store.events.append("machine-1", 0, [first]),
          store.events.append("machine-1", 0, [third]),
        ]);
        expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
        const rejected = results.find((result) => result.status === "rejected");
        expect(KilnError.is(rejected?.reason, "KILN_CONCURRENCY_CONFLICT")).toBe(true);
        const winner = results[0]?.status === "fulfilled" ? first : third;
        expect(await store.events.read("machine-1")).toEqual([{ ...winner, aggregateId: "machine-1", version: 1 }]);
      }),
    );

    test(
      "an empty append at the current version returns it; at any other version it conflicts",
      withStore(factory, async (store) => {
        await store.events.append("machine-1", 0, [first, second]);
        expect(await store.events.append("machine-1", 2, [])).toBe(2);
        await expectKilnError(expect, store.events.append("machine-1", 1, []), "KILN_CONCURRENCY_CONFLICT");
        expect(await store.events.version("machine-1")).toBe(2);
      }),
    );

    test(
      "bad arguments: TypeError for an empty aggregate id, KILN_VALIDATION naming each bad version or event field",
      withStore(factory, async (store) => {
        const emptyId = await store.events.append("", 0, []).then(
          () => "resolved",
          (error: unknown) => (error instanceof TypeError ? "TypeError" : String(error)),
        );
        expect(emptyId).toBe("TypeError");
        await expectKilnError(expect, store.events.append("machine-1", -1, []), "KILN_VALIDATION");
        await expectKilnError(expect, store.events.append("machine-1", 0.5, []), "KILN_VALIDATION");
        const error = (await expectKilnError(
          expect,
          store.events.append("machine-1", 0, [
            { type: "", payload: {}, at: T0 },
            { type: "x", payload: [] as never, at: Number.NaN },
          ]),
          "KILN_VALIDATION",
        )) as KilnError;
        expect((error.details?.issues as { path: string }[]).map((issue) => issue.path)).toEqual([
          "events[0].type",
          "events[1].payload",
          "events[1].at",
        ]);
        expect(await store.events.version("machine-1")).toBe(0);
      }),
    );

    test(
      "streams are independent, and a stream without events is at version 0",
      withStore(factory, async (store) => {
        await store.events.append("machine-1", 0, [first, second]);
        expect(await store.events.append("machine-2", 0, [third])).toBe(1);
        expect(await store.events.read("machine-2")).toEqual([{ ...third, aggregateId: "machine-2", version: 1 }]);
        expect(await store.events.version("machine-3")).toBe(0);
        expect(await store.events.read("machine-3")).toEqual([]);
      }),
    );
  });
}

function processRecord(overrides: Partial<ProcessRecord> = {}): ProcessRecord {
  return {
    id: "process-1",
    machineId: "machine-1",
    recipe: { name: "ald", version: 2 },
    parameters: { cycles: 20, gas: "TMA", purge: { durationMs: 500 } },
    status: "created",
    createdAt: T0,
    version: 1,
    ...overrides,
  };
}

/** `ProcessRepository`: records saved atomically with their events, under optimistic concurrency. */
export function processRepositoryConformance(options: StoreGroupConformanceOptions): void {
  const { expect, factory } = options;
  const created: NewDomainEvent = { type: "process-create", payload: { recipe: "ald" }, at: T0 };
  const start: NewDomainEvent = { type: "process-start", payload: {}, at: T0 + 100 };
  const end: NewDomainEvent = { type: "process-end", payload: { reason: "operator abort" }, at: T0 + 900 };

  group(options, "processes", (test) => {
    test(
      "save stores the record and appends its events to the process's event stream",
      withStore(factory, async (store) => {
        const record = processRecord();
        expect(await store.processes.save(record, [created], 0)).toBe(1);
        expect(await store.processes.get(record.id)).toEqual(record);
        expect(await store.events.read(record.id)).toEqual([{ ...created, aggregateId: record.id, version: 1 }]);
      }),
    );

    test(
      "save sets the record's version to the stream version it produced",
      withStore(factory, async (store) => {
        expect(await store.processes.save(processRecord({ version: 0 }), [created, start], 0)).toBe(2);
        expect((await store.processes.get("process-1"))?.version).toBe(2);
      }),
    );

    test(
      "save at the current version updates the record and continues the stream",
      withStore(factory, async (store) => {
        await store.processes.save(processRecord(), [created], 0);
        const running = processRecord({
          status: "running",
          startedAt: T0 + 100,
          lastCompletedStep: "steps[0]",
          version: 2,
        });
        expect(await store.processes.save(running, [start], 1)).toBe(2);
        const aborted = {
          ...running,
          status: "aborted" as const,
          endedAt: T0 + 900,
          reason: "operator abort",
          version: 3,
        };
        expect(await store.processes.save(aborted, [end], 2)).toBe(3);
        expect(await store.processes.get("process-1")).toEqual(aborted);
        expect((await store.events.read("process-1")).map((event) => event.type)).toEqual([
          created.type,
          start.type,
          end.type,
        ]);
      }),
    );

    test(
      "a save with a stale expected version fails with KILN_CONCURRENCY_CONFLICT and writes neither record nor events",
      withStore(factory, async (store) => {
        const record = processRecord();
        await store.processes.save(record, [created], 0);
        const running = processRecord({ status: "running", startedAt: T0 + 100, version: 2 });
        await expectKilnError(expect, store.processes.save(running, [start], 0), "KILN_CONCURRENCY_CONFLICT");
        expect(await store.processes.get(record.id)).toEqual(record);
        expect(await store.events.version(record.id)).toBe(1);

        await expectKilnError(
          expect,
          store.processes.save(processRecord({ id: "process-2" }), [created], 1),
          "KILN_CONCURRENCY_CONFLICT",
        );
        expect(await store.processes.get("process-2")).toBe(undefined);
        expect(await store.events.read("process-2")).toEqual([]);
      }),
    );

    test(
      "save checks the version of the same stream that events.append writes",
      withStore(factory, async (store) => {
        await store.processes.save(processRecord(), [created], 0);
        await store.events.append("process-1", 1, [start]);
        await expectKilnError(
          expect,
          store.processes.save(processRecord({ status: "running", version: 2 }), [start], 1),
          "KILN_CONCURRENCY_CONFLICT",
        );
        expect((await store.processes.get("process-1"))?.status).toBe("created");
        expect(await store.events.version("process-1")).toBe(2);
      }),
    );

    test(
      "concurrent saves at the same expected version: exactly one succeeds, with its record and events",
      withStore(factory, async (store) => {
        await store.processes.save(processRecord(), [created], 0);
        const running = processRecord({ status: "running", version: 2 });
        const aborted = processRecord({ status: "aborted", reason: "operator abort", version: 2 });
        const results = await Promise.allSettled([
          store.processes.save(running, [start], 1),
          store.processes.save(aborted, [end], 1),
        ]);
        expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
        const rejected = results.find((result) => result.status === "rejected");
        expect(KilnError.is(rejected?.reason, "KILN_CONCURRENCY_CONFLICT")).toBe(true);
        const runningWon = results[0]?.status === "fulfilled";
        expect(await store.processes.get("process-1")).toEqual(runningWon ? running : aborted);
        expect((await store.events.read("process-1")).map((event) => event.type)).toEqual([
          created.type,
          (runningWon ? start : end).type,
        ]);
      }),
    );

    test(
      "get returns undefined for an unknown process",
      withStore(factory, async (store) => {
        expect(await store.processes.get("process-unknown")).toBe(undefined);
      }),
    );

    test(
      "list returns processes oldest first, filtered by machine and status",
      withStore(factory, async (store) => {
        const records = [
          processRecord({ id: "process-b", machineId: "machine-1", status: "created", createdAt: T0 + 20 }),
          processRecord({ id: "process-a", machineId: "machine-1", status: "running", createdAt: T0 + 10 }),
          processRecord({ id: "process-d", machineId: "machine-1", status: "completed", createdAt: T0 + 40 }),
          processRecord({ id: "process-c", machineId: "machine-2", status: "completed", createdAt: T0 + 30 }),
        ];
        for (const record of records) await store.processes.save(record, [created], 0);
        const ids = async (filter?: Parameters<Store["processes"]["list"]>[0]): Promise<string[]> =>
          (await store.processes.list(filter)).map((record) => record.id);
        expect(await ids()).toEqual(["process-a", "process-b", "process-c", "process-d"]);
        expect(await ids({ machineId: "machine-1" })).toEqual(["process-a", "process-b", "process-d"]);
        expect(await ids({ status: ["completed", "aborted"] })).toEqual(["process-c", "process-d"]);
        expect(await ids({ machineId: "machine-1", status: ["completed"] })).toEqual(["process-d"]);
        expect(await ids({ machineId: "machine-3" })).toEqual([]);
        expect((await store.processes.list())[0]).toEqual(records[1]);
      }),
    );
  });
}

const DEFINITION = {
  parameters: { cycles: { type: "integer", default: 20 } },
  steps: [{ pulse: { tag: "valve.ald1", durationMs: 20 } }, { wait: { durationMs: 500 } }],
};

function recipe(name: string, version: number, definition: Record<string, unknown> = DEFINITION): StoredRecipe {
  return { name, version, definition, savedAt: T0 + version };
}

/** `RecipeRepository`: immutable versions, latest lookup, ordered listing. */
export function recipeRepositoryConformance(options: StoreGroupConformanceOptions): void {
  const { expect, factory } = options;
  group(options, "recipes", (test) => {
    test(
      "get returns a saved version, or the latest version when none is given",
      withStore(factory, async (store) => {
        const changed = { ...DEFINITION, parameters: { cycles: { type: "integer", default: 40 } } };
        await store.recipes.save(recipe("ald", 1));
        await store.recipes.save(recipe("ald", 3, changed));
        await store.recipes.save(recipe("ald", 2));
        expect(await store.recipes.get("ald", 1)).toEqual(recipe("ald", 1));
        expect(await store.recipes.get("ald")).toEqual(recipe("ald", 3, changed));
      }),
    );

    test(
      "saving the identical definition again is a no-op, whatever its key order",
      withStore(factory, async (store) => {
        await store.recipes.save(recipe("ald", 1));
        const reordered = { steps: DEFINITION.steps, parameters: DEFINITION.parameters };
        await store.recipes.save({ ...recipe("ald", 1, reordered), savedAt: T0 + 5000 });
        expect(await store.recipes.list()).toEqual([recipe("ald", 1)]);
      }),
    );

    test(
      "saving a different definition under an existing version fails with KILN_ALREADY_EXISTS and keeps the original",
      withStore(factory, async (store) => {
        await store.recipes.save(recipe("ald", 1));
        const changed = { ...DEFINITION, steps: [{ wait: { durationMs: 1 } }] };
        await expectKilnError(expect, store.recipes.save(recipe("ald", 1, changed)), "KILN_ALREADY_EXISTS");
        expect(await store.recipes.get("ald", 1)).toEqual(recipe("ald", 1));
      }),
    );

    test(
      "a version below 1 rejects with KILN_VALIDATION and stores nothing",
      withStore(factory, async (store) => {
        await expectKilnError(expect, store.recipes.save(recipe("ald", 0)), "KILN_VALIDATION");
        expect(await store.recipes.list()).toEqual([]);
      }),
    );

    test(
      "get returns undefined for an unknown name or version",
      withStore(factory, async (store) => {
        await store.recipes.save(recipe("ald", 1));
        expect(await store.recipes.get("ald", 2)).toBe(undefined);
        expect(await store.recipes.get("etch")).toBe(undefined);
        expect(await store.recipes.get("etch", 1)).toBe(undefined);
      }),
    );

    test(
      "list returns every version ordered by name, then version",
      withStore(factory, async (store) => {
        for (const [name, version] of [
          ["mask", 2],
          ["ald", 2],
          ["mask", 1],
          ["ald", 10],
          ["ald", 1],
        ] as const) {
          await store.recipes.save(recipe(name, version));
        }
        const listed = (await store.recipes.list()).map((saved) => `${saved.name}@${saved.version}`);
        expect(listed).toEqual(["ald@1", "ald@2", "ald@10", "mask@1", "mask@2"]);
      }),
    );
  });
}

interface TimedLog<TEntry> {
  record(entry: TEntry): Promise<void>;
  query(range: TimeRange): Promise<TEntry[]>;
}

/** The shared contract of the alarm history and the audit log: half-open ranges, time order. */
function timedLogTests<TEntry extends { readonly at: number }>(
  options: StoreGroupConformanceOptions,
  name: string,
  select: (store: Store) => TimedLog<TEntry>,
  entries: readonly ((at: number) => TEntry)[],
): void {
  const { expect, factory } = options;
  const make = (index: number, at: number): TEntry => entries[index % entries.length]!(at);
  group(options, name, (test) => {
    test(
      "query returns the entries in [from, to), oldest first, whatever the recording order",
      withStore(factory, async (store) => {
        const log = select(store);
        for (const [index, offset] of [300, 100, 400, 200, 99].entries()) await log.record(make(index, T0 + offset));
        expect(await log.query({ from: T0 + 100, to: T0 + 400 })).toEqual([
          make(1, T0 + 100),
          make(3, T0 + 200),
          make(0, T0 + 300),
        ]);
      }),
    );

    test(
      "entries at the same time come back in recording order",
      withStore(factory, async (store) => {
        const log = select(store);
        await log.record(make(1, T0 + 90));
        for (let index = 0; index < entries.length; index++) await log.record(make(index, T0 + 50));
        await log.record(make(0, T0 + 10));
        expect(await log.query({ from: T0, to: T0 + 100 })).toEqual([
          make(0, T0 + 10),
          ...entries.map((_, index) => make(index, T0 + 50)),
          make(1, T0 + 90),
        ]);
      }),
    );

    test(
      "a non-finite time in a record or a query rejects with KILN_VALIDATION and records nothing",
      withStore(factory, async (store) => {
        const log = select(store);
        await expectKilnError(expect, log.record(make(0, Number.NaN)), "KILN_VALIDATION");
        await expectKilnError(expect, log.query({ from: Number.NaN, to: T0 }), "KILN_VALIDATION");
        expect(await log.query({ from: 0, to: Number.MAX_SAFE_INTEGER })).toEqual([]);
      }),
    );

    test(
      "query over an empty or reversed range returns []",
      withStore(factory, async (store) => {
        const log = select(store);
        await log.record(make(0, T0 + 100));
        expect(await log.query({ from: T0 + 100, to: T0 + 100 })).toEqual([]);
        expect(await log.query({ from: T0 + 200, to: T0 })).toEqual([]);
        expect(await log.query({ from: T0 + 101, to: T0 + 1000 })).toEqual([]);
      }),
    );
  });
}

/** `AlarmHistory`: transitions round-trip and come back by half-open range in time order. */
export function alarmHistoryConformance(options: StoreGroupConformanceOptions): void {
  const base = ALARM_BASE;
  timedLogTests<AlarmHistoryEntry>(options, "alarms", (store) => store.alarms, [
    alarmEntry,
    (at) => ({ ...base, from: "unacknowledged", to: "acknowledged", cause: "acknowledge", principal: "op-7", at }),
    (at) => ({
      ...base,
      alarmId: "conformance.running:BOOL",
      tag: RUNNING,
      kind: "BOOL",
      priority: 1,
      from: "normal",
      to: "unacknowledged",
      cause: "process-value",
      value: true,
      at,
    }),
    (at) => ({ ...base, from: "acknowledged", to: "shelved", cause: "shelve", principal: "op-7", at }),
  ]);
  const { expect, factory } = options;
  group(options, "alarm history entries", (test) => {
    test(
      "two identical transitions recorded are both kept (alarm history has no key; nothing is merged)",
      withStore(factory, async (store) => {
        await store.alarms.record(alarmEntry(T0 + 10));
        await store.alarms.record(alarmEntry(T0 + 10));
        expect(await store.alarms.query({ from: T0, to: T0 + 100 })).toEqual([
          alarmEntry(T0 + 10),
          alarmEntry(T0 + 10),
        ]);
      }),
    );
  });
}

const ALARM_BASE = { alarmId: "conformance.pressure:HI", tag: PRESSURE, kind: "HI", priority: 2 } as const;

function alarmEntry(at: number): AlarmHistoryEntry {
  return { ...ALARM_BASE, from: "normal", to: "unacknowledged", cause: "process-value", value: 12.5, at };
}

function auditEntry(at: number): AuditEntry {
  return {
    id: `conformance-a-${at}`,
    machineId: "ald-1",
    principal: "op-7",
    roles: ["operator"],
    source: "hmi-2/session-81f",
    category: "tag",
    action: "tag.write",
    target: "valve.ald1",
    oldValue: false,
    newValue: true,
    outcome: "allowed",
    at,
  };
}

/**
 * `AuditLog`: entries round-trip with every CR 2.8 field (and `refersTo`), come back by
 * half-open range in time order, and are recorded once per id.
 */
export function auditLogConformance(options: StoreGroupConformanceOptions): void {
  timedLogTests<AuditEntry>(options, "audit", (store) => store.audit, [
    auditEntry,
    (at) => ({
      id: `conformance-b-${at}`,
      principal: "guest",
      roles: [],
      action: "recipe.start",
      target: "ald@2",
      newValue: { cycles: 20, gas: "TMA" },
      outcome: "denied",
      reason: "role operator required",
      at,
    }),
    (at) => ({
      id: `conformance-c-${at}`,
      machineId: "ald-1",
      principal: "eng-1",
      roles: ["engineer", "operator"],
      category: "alarm",
      action: "alarm.acknowledge",
      target: "conformance.pressure:HI",
      outcome: "failed",
      reason: "alarm not active",
      at,
    }),
  ]);
  const { expect, factory } = options;
  group(options, "audit ids", (test) => {
    test(
      "twelve entries in the same millisecond come back in the order recorded (not sorted by id or row text)",
      withStore(factory, async (store) => {
        const recorded: AuditEntry[] = [];
        for (let index = 0; index < 12; index++) {
          // Ids sort against the recording order; a store must order by its commit sequence.
          const entry: AuditEntry = { ...auditEntry(T0 + 5), id: `z-${String(99 - index)}-${index}` };
          recorded.push(entry);
          await store.audit.record(entry);
        }
        expect((await store.audit.query({ from: T0, to: T0 + 10 })).map((entry) => entry.id)).toEqual(
          recorded.map((entry) => entry.id),
        );
      }),
    );

    test(
      "record is idempotent on the entry id: recording an id again changes nothing",
      withStore(factory, async (store) => {
        const entry: AuditEntry = {
          id: "conformance-once",
          principal: "op-7",
          roles: ["operator"],
          action: "tag.write",
          target: "valve.ald1",
          outcome: "allowed",
          at: T0 + 10,
        };
        await store.audit.record(entry);
        await store.audit.record(entry);
        await store.audit.record({ ...entry, outcome: "failed", reason: "a different second attempt" });
        expect(await store.audit.query({ from: T0, to: T0 + 100 })).toEqual([entry]);
      }),
    );

    test(
      "a refusal recorded after its intent keeps both entries, each under its own id, with refersTo naming the intent (append-only)",
      withStore(factory, async (store) => {
        const intent: AuditEntry = { ...auditEntry(T0 + 20), id: "conformance-intent" };
        const refusal: AuditEntry = {
          ...intent,
          id: "conformance-intent:refusal",
          outcome: "denied",
          reason: "KILN_AUDIT_UNAVAILABLE: not executed",
          refersTo: intent.id,
        };
        // The refusal may reach the store first: the intent's insert can commit late.
        await store.audit.record(refusal);
        await store.audit.record(intent);
        await store.audit.record(refusal);
        expect(await store.audit.query({ from: T0, to: T0 + 100 })).toEqual([refusal, intent]);
      }),
    );

    test(
      "an entry with an unknown outcome rejects with KILN_VALIDATION and is not recorded",
      withStore(factory, async (store) => {
        const entry = {
          id: "conformance-bad-outcome",
          principal: "op-7",
          roles: ["operator"],
          action: "tag.write",
          target: "valve.ald1",
          outcome: "maybe",
          at: T0,
        } as unknown as AuditEntry;
        await expectKilnError(expect, store.audit.record(entry), "KILN_VALIDATION");
        expect(await store.audit.query({ from: 0, to: T0 + 100 })).toEqual([]);
      }),
    );
  });
}
