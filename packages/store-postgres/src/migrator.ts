import { KilnError } from "@kiln/core";
import { MIGRATIONS, type Migration } from "./migrations/index";
import { checkServerEncoding } from "./server-encoding";
import type { SqlClient, SqlQueryable } from "./sql-client";

/** What `migrate()` did: the migrations applied by this call and the schema version. */
export interface MigrationReport {
  /** Versions applied by this call, in order; empty when the schema was already up to date. */
  readonly applied: readonly number[];
  /** The schema version after the call. */
  readonly version: number;
  /** Whether `samples` is a TimescaleDB hypertable (only where the extension is installed). */
  readonly timescale: boolean;
}

/**
 * Brings `schema` up to the latest version: creates the schema and the `kiln_migrations` table
 * when missing, applies every migration not recorded there, in order, and records it. Everything
 * runs in one transaction holding a transaction-level advisory lock keyed by the schema name, so
 * concurrent calls from several processes serialise: the first applies, the others wait and
 * then find nothing to do. Where TimescaleDB is installed, `samples` becomes a compressed
 * hypertable; where it is not, nothing else changes.
 *
 * @param schema a validated, unquoted schema name.
 * @throws KilnError `KILN_STORE_ERROR` (not retryable) when the database has a newer schema version
 * than these migrations know, or when its server encoding is not UTF8 (`details.rule: "encoding"`,
 * see {@link checkServerEncoding}; nothing is created then).
 */
export async function applyMigrations(
  client: SqlClient,
  schema: string,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<MigrationReport> {
  const quoted = `"${schema}"`;
  return client.transaction(async (transaction) => {
    // Before anything is created: a database that cannot hold every character is refused (review 15w).
    await checkServerEncoding(transaction);
    await transaction.query("SELECT pg_advisory_xact_lock(hashtext('kiln.migrate'), hashtext($1))", [schema]);
    const existing = await transaction.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
    if (existing.rows.length === 0) await transaction.query(`CREATE SCHEMA ${quoted}`);
    await transaction.query(
      `CREATE TABLE IF NOT EXISTS ${quoted}.kiln_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`,
    );
    const recorded = await transaction.query<{ version: number }>(
      `SELECT version FROM ${quoted}.kiln_migrations ORDER BY version`,
    );
    const done = new Set(recorded.rows.map((row) => row.version));
    const known = migrations.reduce((latest, migration) => Math.max(latest, migration.version), 0);
    const newest = Math.max(0, ...done);
    if (newest > known) {
      throw new KilnError(
        "KILN_STORE_ERROR",
        `The schema "${schema}" is at version ${newest}, newer than the ${known} this @kiln/store-postgres knows: upgrade the package.`,
        { details: { operation: "migrate", schema, version: newest, known } },
      );
    }
    const applied: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      for (const statement of migration.statements(quoted)) await transaction.query(statement);
      await transaction.query(`INSERT INTO ${quoted}.kiln_migrations (version, name) VALUES ($1, $2)`, [
        migration.version,
        migration.name,
      ]);
      applied.push(migration.version);
    }
    const timescale = await enableTimescale(transaction, quoted, schema);
    return { applied, version: Math.max(newest, ...applied), timescale };
  });
}

/**
 * Turns `samples` into a hypertable with compression (segmented by tag, ordered by time, chunks
 * older than seven days compressed) when the TimescaleDB extension is installed in the database.
 */
async function enableTimescale(transaction: SqlQueryable, quoted: string, schema: string): Promise<boolean> {
  const extension = await transaction.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'");
  if (extension.rows.length === 0) return false;
  const hypertable = await transaction.query(
    "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = 'samples'",
    [schema],
  );
  if (hypertable.rows.length > 0) return true;
  const samples = `${quoted}.samples`;
  await transaction.query(
    "SELECT create_hypertable($1::regclass, 'time', chunk_time_interval => INTERVAL '1 day', migrate_data => true)",
    [samples],
  );
  await transaction.query(
    `ALTER TABLE ${samples} SET (timescaledb.compress, timescaledb.compress_segmentby = 'tag_id', timescaledb.compress_orderby = 'time')`,
  );
  await transaction.query("SELECT add_compression_policy($1::regclass, INTERVAL '7 days', if_not_exists => true)", [
    samples,
  ]);
  return true;
}
