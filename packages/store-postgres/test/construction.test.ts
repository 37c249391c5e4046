import { PGlite } from "@electric-sql/pglite";
import { GOOD, KilnError, defineTags, type KilnValidationError } from "@kiln/core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { PostgresStore, type PgPoolLike, type PgliteLike } from "../src/index";
import { NEEDS_SERVER, databaseUrl, expectKilnError, uniqueSchema } from "./support/database";

const T0 = Date.UTC(2026, 0, 1);
const tags = defineTags({ level: { dataType: "float64", unit: "m" } });
const point = { tag: "level", value: 1.25, timestamp: T0, quality: GOOD };

describe("PostgresStore construction", () => {
  test("with no options it runs on an in-memory PGlite database of its own, released by close()", async () => {
    const store = new PostgresStore();
    expect(store.schema).toBe("kiln");
    await store.open(tags.list());
    await store.samples.writeBatch([point]);
    expect(await store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1 })).toEqual([point]);
    await store.close();
    // Opening again starts a new in-memory database: the old one was released.
    await store.open(tags.list());
    expect(await store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1 })).toEqual([]);
    await store.close();
  });

  describe("with a host's PGlite instance", () => {
    let pglite: PGlite;
    beforeAll(async () => {
      pglite = await PGlite.create();
    });
    afterAll(async () => {
      await pglite.close();
    });

    test("uses it, in the configured schema, and never closes it", async () => {
      const host: PgliteLike = pglite;
      const store = new PostgresStore({ pglite: host, schema: "plant_a" });
      await store.open(tags.list());
      await store.samples.writeBatch([point]);
      await store.close();
      const rows = await pglite.query<{ count: number }>("SELECT count(*)::int4 AS count FROM plant_a.samples");
      expect(rows.rows).toEqual([{ count: 1 }]);
    });
  });

  test("the constructor does no I/O: an unreachable server fails at open() with a retryable KILN_STORE_ERROR", async () => {
    const store = new PostgresStore({ connectionString: "postgres://kiln@127.0.0.1:1/none" });
    const error = await expectKilnError(store.open(tags.list()), "KILN_STORE_ERROR");
    expect(error.retryable).toBe(true);
    await store.close();
  });

  test("options are validated: schema identifier, one connection source, pool size", () => {
    /** The issue paths of the KILN_VALIDATION error `build` throws; [] when it does not throw. */
    const issuePaths = (build: () => unknown): string[] => {
      try {
        build();
      } catch (error) {
        expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
        return ((error as KilnValidationError).issues ?? []).map((issue) => issue.path);
      }
      return [];
    };
    for (const schema of ["Kiln", "plant-1", "1plant", 'x"; DROP TABLE y; --', "pg_kiln", "", "a".repeat(64)]) {
      expect(issuePaths(() => new PostgresStore({ schema }))).toEqual(["schema"]);
    }
    expect(issuePaths(() => new PostgresStore({ schema: "_plant_1", maxConnections: 0 }))).toEqual(["maxConnections"]);
    expect(issuePaths(() => new PostgresStore({ connectionString: "" }))).toEqual(["connectionString"]);
    const pglite = {} as unknown as PgliteLike;
    expect(issuePaths(() => new PostgresStore({ connectionString: "postgres://x", pglite }))).toEqual(["pglite"]);
    expect(issuePaths(() => new PostgresStore({ schema: "a".repeat(63) }))).toEqual([]);
  });
});

describe.skipIf(databaseUrl === undefined)(`PostgresStore construction on the server ${NEEDS_SERVER}`, () => {
  test(`with a host's pg.Pool it never ends the pool ${NEEDS_SERVER}`, async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    const schema = uniqueSchema("kiln_construct");
    try {
      const host: PgPoolLike = pool;
      const store = new PostgresStore({ pool: host, schema });
      await store.open(tags.list());
      await store.samples.writeBatch([point]);
      await store.close();
      const rows = await pool.query(`SELECT count(*)::int4 AS count FROM "${schema}".samples`);
      expect(rows.rows).toEqual([{ count: 1 }]);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    }
  });

  test(`with a connection string it owns its pool: close() ends it and open() makes a new one ${NEEDS_SERVER}`, async () => {
    const schema = uniqueSchema("kiln_construct");
    const store = new PostgresStore({ connectionString: databaseUrl, schema, maxConnections: 2 });
    try {
      await store.open(tags.list());
      await store.samples.writeBatch([point]);
      await store.close();
      await expectKilnError(store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1 }), "KILN_LIFECYCLE");
      await store.open(tags.list());
      expect(await store.samples.readSamples({ tag: "level", from: T0, to: T0 + 1 })).toEqual([point]);
    } finally {
      await store.close();
      const admin = new pg.Pool({ connectionString: databaseUrl, max: 1 });
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});
