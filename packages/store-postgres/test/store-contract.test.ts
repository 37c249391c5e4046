import { defineTags, GOOD, KilnError, type ProcessRecord, quality, QualityCodes, type Sample } from "@kiln/core";
import { type NewDomainEvent } from "@kiln/core/driver-kit";
import { describe, expect, test } from "vitest";
import type { SqlClient } from "../src/index";
import { TARGETS, expectKilnError, useTarget } from "./support/database";

const T0 = Date.UTC(2026, 0, 1);

const catalog = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 }, description: "chamber" },
  "valve.ald1": { dataType: "bool", access: "readwrite" },
  "recipe.step": { dataType: "string" },
  "counter.total": { dataType: "uint32" },
});

function sample(tag: string, value: Sample["value"], timestamp: number, sampleQuality = GOOD): Sample {
  return { tag, value, timestamp, quality: sampleQuality };
}

function series(tag: string, count: number, start = T0, stepMs = 1000, offset = 0): Sample[] {
  return Array.from({ length: count }, (_unused, index) => sample(tag, index + offset, start + index * stepMs));
}

function event(type: string, at: number, payload: Record<string, unknown> = {}): NewDomainEvent {
  return { type, payload, at };
}

function processRecord(overrides: Partial<ProcessRecord> = {}): ProcessRecord {
  return {
    id: "process-1",
    machineId: "reactor-1",
    recipe: { name: "ald-oxide", version: 3 },
    parameters: { cycles: 200, gas: "TMA" },
    status: "created",
    createdAt: T0,
    version: 0,
    ...overrides,
  };
}

const levelTags = defineTags({ level: { dataType: "float64" } });

function levelBatch(start: number, count: number): Sample[] {
  return Array.from({ length: count }, (_unused, index) => sample("level", start + index, T0 + (start + index) * 1000));
}

/** Wraps a client and records which ingest path each statement took. */
function recording(client: SqlClient): { client: SqlClient; paths: string[] } {
  const paths: string[] = [];
  return {
    paths,
    client: {
      query: (text, parameters) => {
        if (/INSERT INTO "[a-z0-9_]+"\.samples/.test(text)) paths.push("insert");
        return client.query(text, parameters);
      },
      transaction: (work) => client.transaction(work),
      copyBinary: async (table, columns, data) => {
        try {
          const copied = await client.copyBinary!(table, columns, data);
          paths.push(`copy:${copied}`);
          return copied;
        } catch (error) {
          paths.push("copy:conflict");
          throw error;
        }
      },
    },
  };
}

for (const target of TARGETS) {
  describe.skipIf(target.skip)(`PostgresStore contract ${target.title}`, () => {
    const database = useTarget(target.kind);

    describe("Store lifecycle", () => {
      test("every port rejects with KILN_LIFECYCLE before open and after close", async () => {
        const store = database.create();
        await expectKilnError(store.samples.writeBatch([sample("a", 1, T0)]), "KILN_LIFECYCLE");
        await expectKilnError(store.events.version("x"), "KILN_LIFECYCLE");
        await store.open(catalog.list());
        await store.samples.writeBatch([sample("a", 1, T0)]);
        await store.close();
        await store.close();
        await expectKilnError(store.samples.readSamples({ tag: "a", from: 0, to: T0 + 1 }), "KILN_LIFECYCLE");
        await expectKilnError(store.recipes.list(), "KILN_LIFECYCLE");
        await expectKilnError(store.alarms.query({ from: 0, to: 1 }), "KILN_LIFECYCLE");
        await expectKilnError(store.audit.query({ from: 0, to: 1 }), "KILN_LIFECYCLE");
        await expectKilnError(store.processes.list(), "KILN_LIFECYCLE");
      });

      test("open is idempotent, and opening again after close finds the data", async () => {
        const store = await database.store(catalog.list());
        expect(store.storeApiVersion).toBe("1");
        expect(store.capabilities.transactions).toBe(true);
        await store.open(catalog.list());
        await store.samples.writeBatch([sample("chamber.pressure", 2.5, T0)]);
        await store.close();
        await store.open(catalog.list());
        const samples = await store.samples.readSamples({ tag: "chamber.pressure", from: T0, to: T0 + 1 });
        expect(samples.map((stored) => stored.value)).toEqual([2.5]);
      });

      test("open registers the tag catalog and updates changed definitions", async () => {
        const store = await database.store(catalog.list());
        const tagsTable = `"${store.schema}".tags`;
        const rows = await database.sql<{ name: string; data_type: string; unit: string | null }>(
          `SELECT name, data_type, unit, range_min, range_max, description FROM ${tagsTable} ORDER BY name`,
        );
        expect(rows).toEqual([
          {
            name: "chamber.pressure",
            data_type: "float64",
            unit: "mbar",
            range_min: 0,
            range_max: 10,
            description: "chamber",
          },
          {
            name: "counter.total",
            data_type: "uint32",
            unit: null,
            range_min: null,
            range_max: null,
            description: null,
          },
          { name: "recipe.step", data_type: "string", unit: null, range_min: null, range_max: null, description: null },
          { name: "valve.ald1", data_type: "bool", unit: null, range_min: null, range_max: null, description: null },
        ]);
        const changed = defineTags({ "chamber.pressure": { dataType: "float32", unit: "bar" } });
        await store.open(changed.list());
        const updated = await database.sql(`SELECT data_type, unit, range_min FROM ${tagsTable} WHERE name = $1`, [
          "chamber.pressure",
        ]);
        expect(updated).toEqual([{ data_type: "float32", unit: "bar", range_min: null }]);
      });
    });

    describe("SampleSink", () => {
      test("writeBatch stores every value type with its quality and reads it back in time order", async () => {
        const store = await database.store(catalog.list());
        const written: Sample[] = [
          sample("chamber.pressure", 2.5, T0 + 2000),
          sample("chamber.pressure", -0.125, T0),
          sample(
            "chamber.pressure",
            null,
            T0 + 1000,
            quality("bad", "sensor open circuit", QualityCodes.BadDeviceFailure),
          ),
          sample(
            "chamber.pressure",
            1e-300,
            T0 + 3000,
            quality("uncertain", "last usable", QualityCodes.UncertainLastUsableValue),
          ),
          sample("valve.ald1", true, T0),
          sample("valve.ald1", false, T0 + 1),
          sample("recipe.step", 'purge "N2", {1}\\ ünïcödé', T0),
          sample("counter.total", 9_007_199_254_740_993n, T0),
          sample("counter.total", 42, T0 + 1),
        ];
        await store.samples.writeBatch(written);
        const read = async (tag: string) => store.samples.readSamples({ tag, from: T0, to: T0 + 10_000 });
        expect(await read("chamber.pressure")).toEqual([written[1], written[2], written[0], written[3]]);
        expect(await read("valve.ald1")).toEqual([written[4], written[5]]);
        expect(await read("recipe.step")).toEqual([written[6]]);
        const counter = await read("counter.total");
        expect(counter).toEqual([written[7], written[8]]);
        expect(typeof counter[0]!.value).toBe("bigint");
        expect(counter[0]!.quality).toEqual(GOOD);
      });

      test("writing the same batch again stores each sample once (retry after an unknown outcome)", async () => {
        const store = await database.store(catalog.list());
        const batch = series("chamber.pressure", 50);
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch(batch);
        const stored = await store.samples.readSamples({ tag: "chamber.pressure", from: T0, to: T0 + 100_000 });
        expect(stored).toEqual(batch);
      });

      test("a retry that overlaps stored rows keeps them, adds the rest, and later batches still land", async () => {
        const store = await database.store(catalog.list());
        const tag = "chamber.pressure";
        await store.samples.writeBatch(series(tag, 10, T0, 1000, 0));
        // Rows 5..9 exist with values 5..9; the retry carries other values for them and five new rows.
        await store.samples.writeBatch(series(tag, 10, T0 + 5000, 1000, 100));
        await store.samples.writeBatch(series(tag, 5, T0 + 15_000, 1000, 15));
        await store.samples.writeBatch(series(tag, 5, T0 + 20_000, 1000, 20));
        const values = (await store.samples.readSamples({ tag, from: T0, to: T0 + 60_000 })).map(
          (stored) => stored.value,
        );
        expect(values).toEqual([
          0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 105, 106, 107, 108, 109, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        ]);
      });

      test("duplicates inside one batch are stored once, the first occurrence winning", async () => {
        const store = await database.store(catalog.list());
        await store.samples.writeBatch([
          sample("chamber.pressure", 1, T0),
          sample("valve.ald1", true, T0),
          sample("chamber.pressure", 2, T0),
          sample("chamber.pressure", 3, T0 + 1),
          sample("valve.ald1", false, T0),
          sample("chamber.pressure", 4, T0 + 1),
        ]);
        const pressure = await store.samples.readSamples({ tag: "chamber.pressure", from: T0, to: T0 + 10 });
        const valve = await store.samples.readSamples({ tag: "valve.ald1", from: T0, to: T0 + 10 });
        expect(pressure.map((stored) => stored.value)).toEqual([1, 3]);
        expect(valve.map((stored) => stored.value)).toEqual([true]);
      });

      test("concurrent overlapping batches store each sample once", async () => {
        const store = await database.store(catalog.list());
        const tag = "chamber.pressure";
        const batches = [0, 50, 100, 25, 75].map((offset) => series(tag, 100, T0 + offset * 1000, 1000, offset));
        await Promise.all(batches.map((batch) => store.samples.writeBatch(batch)));
        const stored = await store.samples.readSamples({ tag, from: T0, to: T0 + 1_000_000 });
        expect(stored.map((row) => row.timestamp)).toEqual(
          Array.from({ length: 200 }, (_unused, index) => T0 + index * 1000),
        );
        expect(stored.every((row) => row.value === (row.timestamp - T0) / 1000)).toBe(true);
      });

      test("a batch with an invalid sample rejects with KILN_VALIDATION naming the field and writes nothing", async () => {
        const store = await database.store(catalog.list());
        const invalid = [
          sample("chamber.pressure", 1, T0),
          sample("chamber.pressure", 2, Number.NaN),
          { tag: "chamber.pressure", value: {}, timestamp: T0 + 5, quality: GOOD } as unknown as Sample,
          sample("chamber.pressure", 3, T0 + 6, { severity: "good", code: -1 }),
        ];
        const error = await expectKilnError(store.samples.writeBatch(invalid), "KILN_VALIDATION");
        expect((error.details.issues as { path: string }[]).map((issue) => issue.path)).toEqual([
          "[1].timestamp",
          "[2].value",
          "[3].quality.code",
        ]);
        expect(await store.samples.readSamples({ tag: "chamber.pressure", from: 0, to: T0 + 100 })).toEqual([]);
      });

      test("samples of tags outside the catalog are stored, their names registered", async () => {
        const store = await database.store(catalog.list());
        await store.samples.writeBatch([sample("adhoc.tag", 7, T0), sample("chamber.pressure", 1, T0)]);
        expect(await store.samples.readSamples({ tag: "adhoc.tag", from: T0, to: T0 + 1 })).toEqual([
          sample("adhoc.tag", 7, T0),
        ]);
        const rows = await database.sql(`SELECT data_type FROM "${store.schema}".tags WHERE name = 'adhoc.tag'`);
        expect(rows).toEqual([{ data_type: null }]);
      });

      test("sub-millisecond timestamps keep microseconds and stay idempotent across retries", async () => {
        const store = await database.store(catalog.list());
        const batch = [0.001, 0.25, 0.5002, 1.999, 2.5].map((fraction, index) =>
          sample("chamber.pressure", index, T0 + fraction),
        );
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch(batch);
        await store.samples.writeBatch([...batch, sample("chamber.pressure", 9, T0 + 3)]);
        const stored = await store.samples.readSamples({ tag: "chamber.pressure", from: T0, to: T0 + 10 });
        expect(stored.map((row) => row.value)).toEqual([0, 1, 2, 3, 4, 9]);
        expect(stored[0]!.timestamp).toBeCloseTo(T0 + 0.001, 6);
        expect(stored[2]!.timestamp).toBeCloseTo(T0 + 0.5, 6);
      });

      test("a database failure rejects with a KILN_STORE_ERROR that is not retryable", async () => {
        const store = await database.store(catalog.list());
        await database.sql(`DROP TABLE "${store.schema}".samples`);
        const error = await expectKilnError(
          store.samples.writeBatch(series("chamber.pressure", 3)),
          "KILN_STORE_ERROR",
        );
        expect(error.retryable).toBe(false);
        expect(error.details.sqlState).toBe("42P01");
      });
    });

    describe("SampleSink ingest paths", () => {
      test("COPY first; a conflicting retry falls back to INSERT ON CONFLICT, and a clean insert returns to COPY", async () => {
        const { client, paths } = recording(database.client());
        const store = database.create({ client });
        await store.open(levelTags.list());
        await store.samples.writeBatch(levelBatch(0, 100));
        await store.samples.writeBatch(levelBatch(50, 100));
        await store.samples.writeBatch(levelBatch(150, 10));
        await store.samples.writeBatch(levelBatch(160, 10));
        expect(paths).toEqual(["copy:100", "copy:conflict", "insert", "insert", "copy:10"]);
        const stored = await store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1e9 });
        expect(stored.map((sample) => sample.value)).toEqual(Array.from({ length: 170 }, (_unused, index) => index));
      });

      test("a client without copyBinary ingests through INSERT ON CONFLICT with the same guarantees", async () => {
        const base = database.client();
        const client: SqlClient = {
          query: (text, parameters) => base.query(text, parameters),
          transaction: (work) => base.transaction(work),
        };
        const store = database.create({ client });
        await store.open(levelTags.list());
        await store.samples.writeBatch(levelBatch(0, 20));
        await store.samples.writeBatch([...levelBatch(10, 20), ...levelBatch(10, 20)]);
        const stored = await store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1e9 });
        expect(stored.map((sample) => sample.value)).toEqual(Array.from({ length: 30 }, (_unused, index) => index));
      });
    });

    describe("SampleHistory", () => {
      test("readSamples returns [from, to) in time order and pages with limit and after", async () => {
        const store = await database.store(catalog.list());
        const written = series("chamber.pressure", 95);
        await store.samples.writeBatch([...written].reverse());
        const window = await store.samples.readSamples({ tag: "chamber.pressure", from: T0 + 10_000, to: T0 + 20_000 });
        expect(window).toEqual(written.slice(10, 20));
        const pages: Sample[][] = [];
        let after: number | undefined;
        for (;;) {
          const page = await store.samples.readSamples({
            tag: "chamber.pressure",
            from: T0,
            to: T0 + 1e6,
            limit: 20,
            after,
          });
          if (page.length === 0) break;
          pages.push(page);
          after = page.at(-1)!.timestamp;
        }
        expect(pages.map((page) => page.length)).toEqual([20, 20, 20, 20, 15]);
        expect(pages.flat()).toEqual(written);
        const defaultLimit = await store.samples.readSamples({ tag: "chamber.pressure", from: T0, to: T0 + 1e6 });
        expect(defaultLimit).toHaveLength(95);
      });

      test("readSamples of an unknown tag or an empty range is empty", async () => {
        const store = await database.store(catalog.list());
        await store.samples.writeBatch(series("chamber.pressure", 5));
        expect(await store.samples.readSamples({ tag: "nope", from: T0, to: T0 + 1e6 })).toEqual([]);
        expect(await store.samples.readSamples({ tag: "chamber.pressure", from: T0 + 5, to: T0 + 5 })).toEqual([]);
        expect(await store.samples.readBuckets({ tag: "chamber.pressure", from: T0 + 9, to: T0, bucketMs: 1 })).toEqual(
          [],
        );
      });

      test("readBuckets aggregates numeric samples per bucket aligned to from, omitting empty buckets", async () => {
        const store = await database.store(catalog.list());
        const values = [5, -2, 7.5, 3, 11, 4, 0.5, 9, 8, 1];
        const written = values.map((value, index) => sample("chamber.pressure", value, T0 + index * 700));
        const noise = [
          sample("chamber.pressure", Number.NaN, T0 + 350),
          sample("chamber.pressure", Number.POSITIVE_INFINITY, T0 + 360),
          sample("chamber.pressure", null, T0 + 370, quality("bad")),
          sample("chamber.pressure", 100, T0 + 20_000),
        ];
        await store.samples.writeBatch([...written, ...noise]);
        const from = T0 - 500;
        const bucketMs = 2000;
        const buckets = await store.samples.readBuckets({ tag: "chamber.pressure", from, to: T0 + 6500, bucketMs });
        const expected = new Map<number, number[]>();
        for (const row of written) {
          const start = from + Math.floor((row.timestamp - from) / bucketMs) * bucketMs;
          expected.set(start, [...(expected.get(start) ?? []), row.value as number]);
        }
        expect(buckets.map((bucket) => bucket.start)).toEqual([...expected.keys()]);
        for (const bucket of buckets) {
          const inBucket = expected.get(bucket.start)!;
          expect(bucket.count).toBe(inBucket.length);
          expect(bucket.min).toBe(Math.min(...inBucket));
          expect(bucket.max).toBe(Math.max(...inBucket));
          expect(bucket.first).toBe(inBucket[0]);
          expect(bucket.last).toBe(inBucket.at(-1));
          expect(bucket.avg).toBeCloseTo(inBucket.reduce((sum, value) => sum + value, 0) / inBucket.length, 10);
        }
        const sparse = await store.samples.readBuckets({
          tag: "chamber.pressure",
          from: T0,
          to: T0 + 30_000,
          bucketMs: 5000,
        });
        expect(sparse.map((bucket) => [bucket.start, bucket.count])).toEqual([
          [T0, 8],
          [T0 + 5000, 2],
          [T0 + 20_000, 1],
        ]);
      });

      test("readBuckets counts 64-bit integer samples and skips booleans and text", async () => {
        const store = await database.store(catalog.list());
        await store.samples.writeBatch([
          sample("counter.total", 10n, T0),
          sample("counter.total", 30, T0 + 1),
          sample("valve.ald1", true, T0),
          sample("recipe.step", "purge", T0),
        ]);
        expect(await store.samples.readBuckets({ tag: "counter.total", from: T0, to: T0 + 10, bucketMs: 10 })).toEqual([
          { start: T0, min: 10, max: 30, avg: 20, first: 10, last: 30, count: 2 },
        ]);
        expect(await store.samples.readBuckets({ tag: "valve.ald1", from: T0, to: T0 + 10, bucketMs: 10 })).toEqual([]);
      });

      test("history queries validate their arguments with KILN_VALIDATION", async () => {
        const store = await database.store(catalog.list());
        const query = { tag: "chamber.pressure", from: T0, to: T0 + 10 };
        await expectKilnError(store.samples.readSamples({ ...query, limit: 0 }), "KILN_VALIDATION");
        await expectKilnError(store.samples.readSamples({ ...query, from: Number.NaN }), "KILN_VALIDATION");
        await expectKilnError(store.samples.readSamples({ ...query, tag: "" }), "KILN_VALIDATION");
        await expectKilnError(store.samples.readBuckets({ ...query, bucketMs: 0 }), "KILN_VALIDATION");
      });
    });

    describe("EventStore", () => {
      test("append starts a stream at version 0 and read returns it in version order", async () => {
        const store = await database.store();
        expect(store.events.eventStoreApiVersion).toBe("1");
        expect(await store.events.version("machine-1")).toBe(0);
        expect(
          await store.events.append("machine-1", 0, [
            event("a", T0, { n: 1 }),
            event("b", T0 + 1, { nested: { x: [1, "2"] } }),
          ]),
        ).toBe(2);
        expect(await store.events.append("machine-1", 2, [event("c", T0 + 2)])).toBe(3);
        expect(await store.events.append("machine-2", 0, [event("z", T0)])).toBe(1);
        const stream = await store.events.read("machine-1");
        expect(stream).toEqual([
          { aggregateId: "machine-1", version: 1, type: "a", payload: { n: 1 }, at: T0 },
          { aggregateId: "machine-1", version: 2, type: "b", payload: { nested: { x: [1, "2"] } }, at: T0 + 1 },
          { aggregateId: "machine-1", version: 3, type: "c", payload: {}, at: T0 + 2 },
        ]);
        expect((await store.events.read("machine-1", 2)).map((stored) => stored.version)).toEqual([2, 3]);
        expect(await store.events.version("machine-1")).toBe(3);
        expect(await store.events.read("unknown")).toEqual([]);
      });

      test("append with a stale expected version rejects with KILN_CONCURRENCY_CONFLICT and writes nothing", async () => {
        const store = await database.store();
        await store.events.append("p", 0, [event("a", T0), event("b", T0)]);
        await expectKilnError(
          store.events.append("p", 1, [event("x", T0), event("y", T0)]),
          "KILN_CONCURRENCY_CONFLICT",
        );
        await expectKilnError(store.events.append("p", 3, [event("x", T0)]), "KILN_CONCURRENCY_CONFLICT");
        await expectKilnError(store.events.append("p", 1, []), "KILN_CONCURRENCY_CONFLICT");
        expect(await store.events.version("p")).toBe(2);
        expect((await store.events.read("p")).map((stored) => stored.type)).toEqual(["a", "b"]);
        expect(await store.events.append("p", 2, [])).toBe(2);
      });

      test("concurrent appends at the same version: exactly one wins, the other writes nothing", async () => {
        const store = await database.store();
        await store.events.append("race", 0, [event("first", T0)]);
        const outcomes = await Promise.allSettled(
          ["left", "right", "middle"].map((name) =>
            store.events.append("race", 1, [event(name, T0), event(`${name}-2`, T0)]),
          ),
        );
        const won = outcomes.filter((outcome) => outcome.status === "fulfilled");
        const lost = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason as unknown] : []));
        expect(won).toHaveLength(1);
        expect(lost.map((reason) => (KilnError.is(reason) ? reason.code : reason))).toEqual([
          "KILN_CONCURRENCY_CONFLICT",
          "KILN_CONCURRENCY_CONFLICT",
        ]);
        const types = (await store.events.read("race")).map((stored) => stored.type);
        expect(types).toHaveLength(3);
        expect(types[2]).toBe(`${types[1]}-2`);
      });

      test("bad arguments: TypeError for the aggregate id, KILN_VALIDATION for versions and events", async () => {
        const store = await database.store();
        await expect(store.events.append("", 0, [])).rejects.toBeInstanceOf(TypeError);
        await expectKilnError(store.events.append("a", -1, []), "KILN_VALIDATION");
        await expectKilnError(store.events.append("a", 0.5, []), "KILN_VALIDATION");
        const error = await expectKilnError(
          store.events.append("a", 0, [
            { type: "", payload: {}, at: T0 },
            { type: "x", payload: [] as never, at: Number.NaN },
          ]),
          "KILN_VALIDATION",
        );
        expect((error.details.issues as { path: string }[]).map((issue) => issue.path)).toEqual([
          "events[0].type",
          "events[1].payload",
          "events[1].at",
        ]);
        expect(await store.events.version("a")).toBe(0);
      });
    });

    describe("ProcessRepository", () => {
      test("save writes the record and appends its events; get returns the record at the new version", async () => {
        const store = await database.store();
        const created = processRecord();
        expect(await store.processes.save(created, [event("process-create", T0)], 0)).toBe(1);
        const running = processRecord({
          status: "running",
          startedAt: T0 + 10,
          lastCompletedStep: "steps[0]",
          version: 1,
        });
        expect(
          await store.processes.save(running, [event("process-start", T0 + 10), event("step-end", T0 + 11)], 1),
        ).toBe(3);
        expect(await store.processes.get("process-1")).toEqual({ ...running, version: 3 });
        expect((await store.events.read("process-1")).map((stored) => stored.type)).toEqual([
          "process-create",
          "process-start",
          "step-end",
        ]);
        expect(await store.processes.get("other")).toBeUndefined();
      });

      test("save with a stale expected version rejects with KILN_CONCURRENCY_CONFLICT and changes nothing", async () => {
        const store = await database.store();
        await store.processes.save(processRecord(), [event("process-create", T0)], 0);
        const stale = processRecord({ status: "aborted", endedAt: T0 + 5, reason: "operator" });
        await expectKilnError(
          store.processes.save(stale, [event("process-end", T0 + 5)], 0),
          "KILN_CONCURRENCY_CONFLICT",
        );
        expect(await store.processes.get("process-1")).toEqual(processRecord({ version: 1 }));
        expect(await store.events.version("process-1")).toBe(1);
      });

      test("save is one transaction: when the record is refused, its events are not kept", async () => {
        const store = await database.store();
        // Finite, so it passes validation, but beyond timestamptz: the database refuses the row.
        const refused = processRecord({ createdAt: 1e20 });
        const error = await expectKilnError(
          store.processes.save(refused, [event("process-create", T0)], 0),
          "KILN_STORE_ERROR",
        );
        expect(error.retryable).toBe(false);
        expect(await store.events.version("process-1")).toBe(0);
        expect(await store.processes.get("process-1")).toBeUndefined();
      });

      test("list filters by machine and status, oldest first", async () => {
        const store = await database.store();
        const records = [
          processRecord({ id: "b", machineId: "m1", status: "completed", createdAt: T0 + 2 }),
          processRecord({ id: "a", machineId: "m1", status: "running", createdAt: T0 + 1 }),
          processRecord({ id: "c", machineId: "m2", status: "running", createdAt: T0 + 1 }),
          processRecord({ id: "d", machineId: "m1", status: "failed", createdAt: T0 + 3, reason: "gas low" }),
        ];
        for (const record of records) await store.processes.save(record, [], 0);
        const ids = (list: ProcessRecord[]) => list.map((record) => record.id);
        expect(ids(await store.processes.list())).toEqual(["a", "c", "b", "d"]);
        expect(ids(await store.processes.list({ machineId: "m1" }))).toEqual(["a", "b", "d"]);
        expect(ids(await store.processes.list({ status: ["running", "failed"] }))).toEqual(["a", "c", "d"]);
        expect(ids(await store.processes.list({ machineId: "m1", status: ["running"] }))).toEqual(["a"]);
        expect(ids(await store.processes.list({ status: [] }))).toEqual([]);
        expect((await store.processes.list({ machineId: "m1", status: ["failed"] }))[0]).toEqual(records[3]);
      });
    });

    describe("RecipeRepository", () => {
      test("save and get versions, the latest by default, and list by name then version", async () => {
        const store = await database.store();
        const recipe = (name: string, version: number) => ({
          name,
          version,
          definition: { name, steps: [{ wait: version }] },
          savedAt: T0 + version,
        });
        for (const saved of [recipe("b", 1), recipe("a", 2), recipe("a", 10), recipe("a", 1)])
          await store.recipes.save(saved);
        expect(await store.recipes.get("a")).toEqual(recipe("a", 10));
        expect(await store.recipes.get("a", 2)).toEqual(recipe("a", 2));
        expect(await store.recipes.get("a", 3)).toBeUndefined();
        expect(await store.recipes.get("c")).toBeUndefined();
        expect((await store.recipes.list()).map((saved) => `${saved.name}@${saved.version}`)).toEqual([
          "a@1",
          "a@2",
          "a@10",
          "b@1",
        ]);
      });

      test("saving the identical definition again is a no-op", async () => {
        const store = await database.store();
        await store.recipes.save({ name: "r", version: 1, definition: { a: 1, b: { c: [1, 2] } }, savedAt: T0 });
        await store.recipes.save({ name: "r", version: 1, definition: { b: { c: [1, 2] }, a: 1 }, savedAt: T0 + 99 });
        expect(await store.recipes.list()).toEqual([
          { name: "r", version: 1, definition: { a: 1, b: { c: [1, 2] } }, savedAt: T0 },
        ]);
      });

      test("a different definition under an existing (name, version) rejects with KILN_ALREADY_EXISTS", async () => {
        const store = await database.store();
        await store.recipes.save({ name: "r", version: 1, definition: { a: 1 }, savedAt: T0 });
        await expectKilnError(
          store.recipes.save({ name: "r", version: 1, definition: { a: 2 }, savedAt: T0 }),
          "KILN_ALREADY_EXISTS",
        );
        await expectKilnError(
          store.recipes.save({ name: "r", version: 0, definition: {}, savedAt: T0 }),
          "KILN_VALIDATION",
        );
        expect(await store.recipes.get("r", 1)).toEqual({ name: "r", version: 1, definition: { a: 1 }, savedAt: T0 });
      });
    });

    describe("AlarmHistory and AuditLog", () => {
      test("alarm transitions come back by [from, to), oldest first, optional fields as recorded", async () => {
        const store = await database.store();
        const base = { alarmId: "chamber.pressure:HI", tag: "chamber.pressure", kind: "HI", priority: 1 };
        const entries = [
          { ...base, from: "normal", to: "unacknowledged", cause: "process-value", value: 9.5, at: T0 + 10 },
          { ...base, from: "unacknowledged", to: "acknowledged", cause: "acknowledge", principal: "ana", at: T0 + 20 },
          { ...base, from: "acknowledged", to: "normal", cause: "process-value", value: null, at: T0 + 20 },
          { ...base, kind: "BOOL", from: "normal", to: "unacknowledged", cause: "process-value", value: true, at: T0 },
        ];
        for (const entry of entries) await store.alarms.record(entry);
        expect(await store.alarms.query({ from: T0, to: T0 + 100 })).toEqual([
          entries[3],
          entries[0],
          entries[1],
          entries[2],
        ]);
        expect(await store.alarms.query({ from: T0 + 10, to: T0 + 20 })).toEqual([entries[0]]);
        const [withNull] = await store.alarms.query({ from: T0 + 20, to: T0 + 21 }).then((list) => list.slice(1));
        expect(withNull).toHaveProperty("value", null);
        await expectKilnError(store.alarms.record({ ...entries[0]!, at: Number.NaN }), "KILN_VALIDATION");
        await expectKilnError(store.alarms.query({ from: Number.NaN, to: 1 }), "KILN_VALIDATION");
      });

      test("audit entries come back by [from, to), oldest first, with roles and values as recorded", async () => {
        const store = await database.store();
        const entries = [
          {
            id: "audit-1",
            principal: "ana",
            roles: ["operator", 'quo"te', "back\\slash", "NULL"],
            action: "tag.write",
            target: "valve.ald1",
            oldValue: false,
            newValue: true,
            outcome: "allowed" as const,
            at: T0 + 1,
          },
          {
            id: "audit-2",
            principal: "bob",
            roles: [],
            action: "recipe.start",
            target: "reactor-1",
            newValue: { recipe: "ald", version: 3 },
            outcome: "denied" as const,
            reason: "role",
            at: T0,
          },
          {
            id: "audit-3",
            principal: "ana",
            roles: ["operator"],
            action: "tag.write",
            target: "x",
            oldValue: null,
            newValue: 5n,
            outcome: "failed" as const,
            at: T0 + 2,
          },
        ];
        for (const entry of entries) await store.audit.record(entry);
        expect(await store.audit.query({ from: T0, to: T0 + 2 })).toEqual([entries[1], entries[0]]);
        const [last] = await store.audit.query({ from: T0 + 2, to: T0 + 3 });
        expect(last).toEqual({ ...entries[2], newValue: "5" });
        await expectKilnError(store.audit.record({ ...entries[0]!, outcome: "maybe" as never }), "KILN_VALIDATION");
      });
    });
  });
}
