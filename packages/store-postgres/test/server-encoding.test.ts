import { randomBytes } from "node:crypto";
import { defineTags } from "@kiln/core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { PostgresStore, type SqlClient, type SqlQueryable } from "../src/index";
import { NEEDS_SERVER, databaseUrl, expectKilnError, uniqueSchema } from "./support/database";

// Adversarial review 15w, A: in a LATIN1 database a caller's `€` (a string sample, a comment, a
// principal id) made an audit entry unstorable (SQLSTATE 22P05), skipped for good. Kiln now
// refuses, at open and at migrate, every database whose server encoding is not UTF8.

const tags = defineTags({ "heater.mode": { dataType: "string", access: "readwrite" } });

/** A client of a database of `encoding`: answers the encoding query, records every other statement. */
function clientOf(encoding: string): { client: SqlClient; statements: string[] } {
  const statements: string[] = [];
  const queryable: SqlQueryable = {
    query: async <TRow>(text: string) => {
      if (text.includes("server_encoding")) {
        return { rows: [{ encoding, database: "plant" }] as TRow[], rowCount: 1 };
      }
      statements.push(text);
      return { rows: [] as TRow[], rowCount: 0 };
    },
  };
  const client: SqlClient = { ...queryable, transaction: (work) => work(queryable) };
  return { client, statements };
}

describe("a database whose server encoding is not UTF8 is refused before anything is created in it", () => {
  test.each(["LATIN1", "WIN1252", "SQL_ASCII", "EUC_JP"])(
    "%s: open and migrate refuse it, naming the encoding and the fix",
    async (encoding) => {
      const { client, statements } = clientOf(encoding);
      const store = new PostgresStore({ client, schema: "plant" });
      const opened = await expectKilnError(store.open(tags.list()), "KILN_STORE_ERROR");
      expect(opened.retryable).toBe(false);
      expect(opened.details).toEqual({ rule: "encoding", serverEncoding: encoding, database: "plant" });
      expect(opened.message).toContain(`server encoding ${encoding}; Kiln needs UTF8`);
      expect(opened.message).toContain("ENCODING 'UTF8' TEMPLATE template0");
      await expectKilnError(store.migrate(), "KILN_STORE_ERROR");
      // Checked first: no lock taken, no schema, table or tag made.
      expect(statements).toEqual([]);
      // And the store is not open.
      await expectKilnError(store.audit.query({ from: 0, to: 1 }), "KILN_LIFECYCLE");
    },
  );

  test("UTF8 (whatever the case) is taken", async () => {
    const { client, statements } = clientOf("utf8");
    await new PostgresStore({ client, schema: "plant" }).migrate();
    expect(statements.some((text) => text.startsWith("CREATE SCHEMA"))).toBe(true);
  });
});

describe.skipIf(databaseUrl === undefined)(`on the PostgreSQL server ${NEEDS_SERVER}`, () => {
  const suffix = `${process.pid}_${randomBytes(3).toString("hex")}`;
  const databases = { LATIN1: `kiln_latin1_${suffix}`, SQL_ASCII: `kiln_sqlascii_${suffix}` };
  let admin: pg.Pool;
  const urlOf = (database: string): string => {
    const url = new URL(databaseUrl!);
    url.pathname = `/${database}`;
    return url.toString();
  };

  beforeAll(async () => {
    admin = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    for (const [encoding, database] of Object.entries(databases)) {
      await admin.query(
        `CREATE DATABASE ${database} ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
      );
    }
  });

  afterAll(async () => {
    for (const database of Object.values(databases))
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  });

  test(`a LATIN1 database (where € is untranslatable, 22P05) is refused at open; no schema is created ${NEEDS_SERVER}`, async () => {
    const schema = uniqueSchema();
    const store = new PostgresStore({ connectionString: urlOf(databases.LATIN1), schema });
    try {
      const error = await expectKilnError(store.open(tags.list()), "KILN_STORE_ERROR");
      expect(error.details).toEqual({ rule: "encoding", serverEncoding: "LATIN1", database: databases.LATIN1 });
    } finally {
      await store.close();
    }
    const check = new pg.Pool({ connectionString: urlOf(databases.LATIN1), max: 1 });
    try {
      const { rows } = await check.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
      expect(rows).toEqual([]);
    } finally {
      await check.end();
    }
  });

  test(`a SQL_ASCII database behind a host's pool is refused by migrate() too ${NEEDS_SERVER}`, async () => {
    const pool = new pg.Pool({ connectionString: urlOf(databases.SQL_ASCII), max: 1 });
    try {
      const store = new PostgresStore({ pool, schema: uniqueSchema() });
      const error = await expectKilnError(store.migrate(), "KILN_STORE_ERROR");
      expect(error.details).toMatchObject({ rule: "encoding", serverEncoding: "SQL_ASCII" });
      await store.close();
    } finally {
      await pool.end();
    }
  });
});
