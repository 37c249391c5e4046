import pg from "pg";
import { describe, expect, test } from "vitest";
import { MIGRATIONS, PostgresStore } from "../src/index";
import { NEEDS_SERVER, TARGETS, databaseUrl, expectKilnError, uniqueSchema, useTarget } from "./support/database";

for (const target of TARGETS) {
  describe.skipIf(target.skip)(`migrations ${target.title}`, () => {
    const database = useTarget(target.kind);

    test("migrate() applies every migration once and records it; running it again applies nothing", async () => {
      const store = database.create();
      const first = await store.migrate();
      const installed = await database.sql("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'");
      expect(first).toEqual({
        applied: MIGRATIONS.map((migration) => migration.version),
        version: MIGRATIONS.at(-1)!.version,
        timescale: installed.length > 0,
      });
      expect(await store.migrate()).toEqual({ ...first, applied: [] });
      const recorded = await database.sql<{ version: number; name: string }>(
        `SELECT version, name FROM "${store.schema}".kiln_migrations ORDER BY version`,
      );
      expect(recorded).toEqual(MIGRATIONS.map(({ version, name }) => ({ version, name })));
      const tables = await database.sql<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
        [store.schema],
      );
      expect(tables.map((row) => row.table_name)).toEqual([
        "alarm_history",
        "audit_log",
        "events",
        "kiln_migrations",
        "processes",
        "recipes",
        "samples",
        "tags",
      ]);
      const indexes = await database.sql<{ indexdef: string }>(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'samples' ORDER BY indexname",
        [store.schema],
      );
      expect(indexes.map((row) => row.indexdef.replace(/".*?"\.|\w+\./g, ""))).toEqual([
        'CREATE UNIQUE INDEX samples_pkey ON samples USING btree (tag_id, "time")',
        'CREATE INDEX samples_time_brin ON samples USING brin ("time")',
      ]);
    });

    test("open() migrates a new schema, and stores on two schemas of one database stay apart", async () => {
      const left = await database.store();
      const right = await database.store();
      await left.recipes.save({ name: "r", version: 1, definition: { side: "left" }, savedAt: 0 });
      expect(await right.recipes.list()).toEqual([]);
      expect(await left.recipes.list()).toHaveLength(1);
    });

    test("a schema newer than this package is refused with a KILN_STORE_ERROR that is not retryable", async () => {
      const store = database.create();
      await store.migrate();
      await database.sql(
        `INSERT INTO "${store.schema}".kiln_migrations (version, name) VALUES (9999, 'from the future')`,
      );
      const error = await expectKilnError(store.migrate(), "KILN_STORE_ERROR");
      expect(error.retryable).toBe(false);
      expect(error.details).toMatchObject({ version: 9999, known: MIGRATIONS.at(-1)!.version });
      await expectKilnError(store.open([]), "KILN_STORE_ERROR");
    });
  });
}

describe.skipIf(databaseUrl === undefined)(`migrations on the PostgreSQL server, concurrently ${NEEDS_SERVER}`, () => {
  test(`migrate() from three pools at once applies each migration exactly once ${NEEDS_SERVER}`, async () => {
    const schema = uniqueSchema("kiln_migrate");
    const stores = [1, 2, 3].map(() => new PostgresStore({ connectionString: databaseUrl, schema, maxConnections: 1 }));
    try {
      const reports = await Promise.all(stores.map((store) => store.migrate()));
      const applied = reports.map((report) => report.applied).sort((a, b) => b.length - a.length);
      expect(applied).toEqual([MIGRATIONS.map((migration) => migration.version), [], []]);
      expect(new Set(reports.map((report) => report.version)).size).toBe(1);
      await Promise.all(stores.map((store) => store.open([])));
      await stores[0]!.events.append("shared", 0, [{ type: "a", payload: {}, at: 0 }]);
      expect(await stores[2]!.events.version("shared")).toBe(1);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
      const admin = new pg.Pool({ connectionString: databaseUrl, max: 1 });
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});
