import { createControlSystem, defineTags, GOOD, SimulatedPlc, type KilnEvents, type Sample } from "@kiln/core";
import { type ProcessRecord } from "@kiln/core/driver-kit";
import { SimulatedClock } from "@kiln/core/testing";
import { type NewDomainEvent } from "@kiln/core/driver-kit";
import { describe, expect, test } from "vitest";
import type { SqlClient } from "../src/index";
import { TARGETS, expectKilnError, uniqueSchema, useTarget } from "./support/database";

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
  // The store contract every Store passes (MemoryStore included) is storeConformance, run in
  // store-conformance.test.ts. Only what is particular to PostgreSQL stays here: the tags table,
  // SQL errors, the COPY / INSERT ingest paths, transactions, and how values are encoded.
  describe.skipIf(target.skip)(`PostgresStore specifics ${target.title}`, () => {
    const database = useTarget(target.kind);

    describe("Tag registry", () => {
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

      test("samples of tags outside the catalog register their names, with no data type", async () => {
        const store = await database.store(catalog.list());
        await store.samples.writeBatch([sample("adhoc.tag", 7, T0), sample("chamber.pressure", 1, T0)]);
        const rows = await database.sql(`SELECT data_type FROM "${store.schema}".tags WHERE name = 'adhoc.tag'`);
        expect(rows).toEqual([{ data_type: null }]);
      });
    });

    describe("SampleSink", () => {
      test("a dropped table rejects with a retryable KILN_STORE_ERROR (an administrator can restore it; the samples wait)", async () => {
        const store = await database.store(catalog.list());
        await database.sql(`DROP TABLE "${store.schema}".samples`);
        const error = await expectKilnError(
          store.samples.writeBatch(series("chamber.pressure", 3)),
          "KILN_STORE_ERROR",
        );
        expect(error.retryable).toBe(true);
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
        const retry = await store.samples.writeBatch([...levelBatch(10, 20), ...levelBatch(10, 20)]);
        expect(retry?.conflicts).toEqual([]);
        const changed = levelBatch(25, 10).map((entry) => ({ ...entry, value: -1 }));
        const result = await store.samples.writeBatch(changed);
        expect(result?.conflicts.map((conflict) => [conflict.sample.timestamp, conflict.existing])).toEqual(
          changed.slice(0, 5).map((entry) => [entry.timestamp, "stored"]),
        );
        const stored = await store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1e9 });
        expect(stored.map((sample) => sample.value)).toEqual([
          ...Array.from({ length: 30 }, (_unused, index) => index),
          ...Array.from({ length: 5 }, () => -1),
        ]);
      });

      test("two writers racing on the same keys with different values: each key stored once, every other sample reported by its writer", async () => {
        const schema = uniqueSchema();
        const writers = [database.create({ schema }), database.create({ schema })];
        for (const writer of writers) await writer.open(levelTags.list());
        const rounds = 8;
        const perRound = 300;
        const batchOf = (writer: number, round: number): Sample[] =>
          Array.from({ length: perRound }, (_unused, index) =>
            sample("level", writer * 1_000_000 + round, T0 + (round * perRound + index) * 1000),
          );
        const reported = [0, 0];
        for (let round = 0; round < rounds; round++) {
          const results = await Promise.all(
            writers.map((writer, index) => writer.samples.writeBatch(batchOf(index, round))),
          );
          results.forEach((result, index) => {
            reported[index]! += result?.conflicts.length ?? 0;
            for (const conflict of result?.conflicts ?? []) expect(conflict.existing).toBe("stored");
          });
        }
        const stored = await writers[0]!.samples.readSamples({ tag: "level", from: T0, to: T0 + 1e9, limit: 100_000 });
        expect(stored).toHaveLength(rounds * perRound);
        const storedBy = [0, 1].map(
          (writer) =>
            stored.filter(
              (entry) =>
                (entry.value as number) >= writer * 1_000_000 && (entry.value as number) < (writer + 1) * 1_000_000,
            ).length,
        );
        // What one writer stored, the other was refused and told so; nothing merged silently.
        expect(reported).toEqual([storedBy[1], storedBy[0]]);
      });
    });

    describe("Conflicts through the pipeline", () => {
      test("samples another writer already stored differently are dropped with their tag and reason; samplesOut counts exactly the rows stored", async () => {
        const start = Date.UTC(2026, 10, 30);
        const clock = new SimulatedClock({ start });
        const counterTags = defineTags({ "seq.counter": { dataType: "float64" } });
        const schema = uniqueSchema();
        // Another writer holds every millisecond of the first second with another value.
        const other = database.create({ schema });
        await other.open(counterTags.list());
        const taken = Array.from({ length: 1001 }, (_unused, index) => sample("seq.counter", -1, start + index));
        expect((await other.samples.writeBatch(taken))?.conflicts).toEqual([]);
        const system = createControlSystem({
          machineId: "conflict-test",
          tags: counterTags,
          driver: new SimulatedPlc({ tags: counterTags, clock, sources: { "seq.counter": { kind: "counter" } } }),
          store: database.create({ schema }),
          clock,
          scanGroups: { default: { periodMs: 100, staleAfterPeriods: 0 } },
          logging: { maxBatchSize: 5, maxLatencyMs: 50 },
        });
        const drops: KilnEvents["samples-drop"][] = [];
        system.bus.on("samples-drop", (event) => void drops.push(event));
        await system.start();
        for (let step = 0; step < 30; step++) {
          await clock.advance(100);
          // Real I/O (PGlite or the server) runs between simulated steps.
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await system.stop();
        const stored = await other.samples.readSamples({
          tag: "seq.counter",
          from: start,
          to: start + 1e6,
          limit: 10_000,
        });
        const logged = stored.filter((entry) => entry.value !== -1);
        const inFirstSecond = logged.filter((entry) => entry.timestamp <= start + 1000);
        const health = system.health().logging;
        expect(inFirstSecond).toEqual([]);
        expect(stored.filter((entry) => entry.value === -1)).toHaveLength(1001);
        expect(health.samplesDropped).toBeGreaterThanOrEqual(10);
        expect(logged.length).toBeGreaterThanOrEqual(15);
        expect(health.samplesOut).toBe(logged.length);
        expect(health.samplesIn).toBe(health.samplesOut + health.samplesDropped);
        expect(drops.reduce((sum, drop) => sum + drop.count, 0)).toBe(health.samplesDropped);
        expect(new Set(drops.map((drop) => `${drop.tag} ${drop.reason}`))).toEqual(
          new Set(["seq.counter conflict: a different sample is stored at this timestamp"]),
        );
      });
    });

    describe("ProcessRepository", () => {
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
    });

    describe("AuditLog", () => {
      test("audit roles survive SQL array quoting, and a bigint value is stored as its decimal text", async () => {
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
      });
    });
  });
}
