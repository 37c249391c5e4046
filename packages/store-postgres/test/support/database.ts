import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import { KilnError, type KilnErrorCode, type Tag } from "@kiln/core";
import pg from "pg";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import {
  PgPoolSqlClient,
  PgliteSqlClient,
  PostgresStore,
  type PostgresStoreOptions,
  type SqlClient,
} from "../../src/index";

/** The server URL, when the run has one (CI sets it to the local server). */
export const databaseUrl: string | undefined = process.env.DATABASE_URL || undefined;

/** Suffix for test names of server-only tests, so a skipped test says why. */
export const NEEDS_SERVER = "(needs the PostgreSQL server: set DATABASE_URL)";

/** A schema name unique to this process and call, so parallel runs never share tables. */
export function uniqueSchema(prefix = "kiln_test"): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString("hex")}`;
}

/** Where a test suite runs: embedded PGlite, or the server at DATABASE_URL. */
export type TargetKind = "pglite" | "server";

/** A fresh-store factory over one shared database connection of a test file. */
export interface TestTarget {
  readonly kind: TargetKind;
  /** A new, unopened store on a schema of its own; closed after the test, its schema dropped after the file. */
  create(options?: Omit<PostgresStoreOptions, "pool" | "pglite">): PostgresStore;
  /** {@link create}, then `open(tags)`. */
  store(tags?: readonly Tag[], options?: Omit<PostgresStoreOptions, "pool" | "pglite">): Promise<PostgresStore>;
  /** A fresh structural client over the target's shared database (for wrapping in tests). */
  client(): SqlClient;
  /** Runs SQL outside any store (inspection, sabotage). */
  sql<TRow = Record<string, unknown>>(text: string, parameters?: unknown[]): Promise<TRow[]>;
}

/**
 * Registers the hooks of a target in the current `describe` and returns it. PGlite: one
 * in-memory database per describe, a schema per store. Server: one pool per describe, a schema
 * per store, every schema dropped afterwards.
 */
export function useTarget(kind: TargetKind): TestTarget {
  let pglite: PGlite | undefined;
  let pool: pg.Pool | undefined;
  const schemas: string[] = [];
  const stores: PostgresStore[] = [];

  beforeAll(async () => {
    if (kind === "pglite") pglite = await PGlite.create();
    else pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
  });

  afterAll(async () => {
    if (pool) {
      for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    }
    await pglite?.close();
  });

  const sql = async <TRow>(text: string, parameters: unknown[] = []): Promise<TRow[]> => {
    if (pglite) return (await pglite.query<TRow>(text, parameters)).rows;
    if (pool) return (await pool.query(text, parameters)).rows as TRow[];
    throw new Error("the target is not set up yet");
  };

  const create = (options: Omit<PostgresStoreOptions, "pool" | "pglite"> = {}): PostgresStore => {
    const schema = options.schema ?? uniqueSchema();
    if (!schemas.includes(schema)) schemas.push(schema);
    const source = options.client ? {} : pglite ? { pglite } : { pool: pool! };
    const store = new PostgresStore({ ...options, ...source, schema });
    stores.push(store);
    return store;
  };

  return {
    kind,
    sql,
    create,
    client: () => (pglite ? new PgliteSqlClient(pglite) : new PgPoolSqlClient(pool!)),
    async store(tags = [], options = {}) {
      const store = create(options);
      await store.open(tags);
      return store;
    },
  };
}

/** Targets of the contract tests: PGlite always, the server when DATABASE_URL is set. */
export const TARGETS: readonly { readonly kind: TargetKind; readonly title: string; readonly skip: boolean }[] = [
  { kind: "pglite", title: "on embedded PGlite", skip: false },
  { kind: "server", title: `on the PostgreSQL server ${NEEDS_SERVER}`, skip: databaseUrl === undefined },
];

/** Awaits `operation` and asserts it rejected with a `KilnError` of `code`; returns the error. */
export async function expectKilnError(operation: Promise<unknown>, code: KilnErrorCode): Promise<KilnError> {
  const error = await operation.then(
    () => "resolved",
    (reason: unknown) => reason,
  );
  expect(KilnError.is(error) ? error.code : error).toBe(code);
  return error as KilnError;
}
