import type { SqlClient, SqlQueryable, SqlResult } from "./sql-client";

/** Options of a PGlite query (the subset the store uses). */
export interface PgliteQueryOptionsLike {
  /** Data read by `COPY ... FROM '/dev/blob'`. */
  readonly blob?: Blob;
}

/** What a PGlite query resolves with (the subset the store reads). */
export interface PgliteResultLike<TRow> {
  /** Result rows. */
  readonly rows: TRow[];
  /** Rows affected, where the command reports it. */
  readonly affectedRows?: number;
}

/** A PGlite transaction (the subset the store uses). */
export interface PgliteTransactionLike {
  /** Runs one statement. */
  query<TRow>(query: string, params?: unknown[], options?: PgliteQueryOptionsLike): Promise<PgliteResultLike<TRow>>;
}

/** A PGlite instance (the subset the store uses). `new PGlite()` fits. */
export interface PgliteLike extends PgliteTransactionLike {
  /** Runs `callback` in a transaction, rolled back when it rejects. */
  transaction<TResult>(callback: (transaction: PgliteTransactionLike) => Promise<TResult>): Promise<TResult>;
}

/**
 * A {@link SqlClient} over an embedded PGlite database. Binary COPY goes through PGlite's
 * `/dev/blob` device. It never closes the instance: whoever created it closes it.
 *
 * @example
 * const pglite = await PGlite.create("./data/kiln");
 * const store = new PostgresStore({ pglite }); // wraps it in a PgliteSqlClient
 */
export class PgliteSqlClient implements SqlClient {
  readonly #pglite: PgliteLike;

  constructor(pglite: PgliteLike) {
    this.#pglite = pglite;
  }

  /** Runs one statement. */
  query<TRow = Record<string, unknown>>(text: string, parameters: readonly unknown[] = []): Promise<SqlResult<TRow>> {
    return run<TRow>(this.#pglite, text, parameters);
  }

  /** Runs `work` in a PGlite transaction (exclusive: PGlite runs one statement at a time). */
  transaction<TResult>(work: (transaction: SqlQueryable) => Promise<TResult>): Promise<TResult> {
    return this.#pglite.transaction((transaction) =>
      work({
        query: <TRow>(text: string, parameters: readonly unknown[] = []) => run<TRow>(transaction, text, parameters),
      }),
    );
  }

  /** Loads a binary COPY stream through PGlite's `/dev/blob` device. */
  async copyBinary(table: string, columns: readonly string[], data: Uint8Array): Promise<number> {
    const result = await this.#pglite.query(
      `COPY ${table} (${columns.join(", ")}) FROM '/dev/blob' WITH (FORMAT binary)`,
      [],
      { blob: new Blob([data]) },
    );
    return result.affectedRows ?? 0;
  }
}

async function run<TRow>(
  target: PgliteTransactionLike,
  text: string,
  parameters: readonly unknown[],
): Promise<SqlResult<TRow>> {
  const result = await target.query<TRow>(text, [...parameters]);
  return { rows: result.rows, rowCount: result.affectedRows ?? 0 };
}
