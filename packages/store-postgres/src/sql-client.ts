/** The rows and row count of one statement. */
export interface SqlResult<TRow> {
  /** The rows the statement returned (empty for most writes). */
  readonly rows: TRow[];
  /** Rows inserted, updated, deleted or copied, where the statement reports a count; otherwise 0. */
  readonly rowCount: number;
}

/** Anything that runs one parameterised SQL statement. */
export interface SqlQueryable {
  /**
   * Runs one statement with `$1`-style parameters. Parameters are strings, numbers, booleans or
   * `null`; the store serialises everything else (arrays, JSON) to text itself and casts in SQL.
   *
   * Result columns the store reads are always of type `boolean`, `int2`, `int4`, `float4`,
   * `float8` or `text` (the store casts everything else in SQL): an implementation returns
   * booleans and numbers for the first five and strings for `text`.
   */
  query<TRow = Record<string, unknown>>(text: string, parameters?: readonly unknown[]): Promise<SqlResult<TRow>>;
}

/**
 * The small structural client `PostgresStore` depends on, instead of a vendor class. Kiln ships
 * two implementations, {@link PgPoolSqlClient} (a `pg.Pool`) and {@link PgliteSqlClient}
 * (a PGlite instance); any other PostgreSQL client can be adapted in a few lines.
 *
 * @example
 * const client: SqlClient = new PgPoolSqlClient(pool);
 * const store = new PostgresStore({ client });
 */
export interface SqlClient extends SqlQueryable {
  /**
   * Runs `work` in one transaction: `BEGIN`, then `COMMIT` when `work` resolves, `ROLLBACK`
   * (and the same rejection) when it rejects. Statements inside must go through `transaction`.
   */
  transaction<TResult>(work: (transaction: SqlQueryable) => Promise<TResult>): Promise<TResult>;
  /**
   * Optional fast path: loads `data`, a complete PostgreSQL binary COPY stream (header, tuples,
   * trailer), into `columns` of `table` (both already quoted) as one atomic statement, and
   * resolves with the number of rows copied. Without it the store inserts with `unnest`.
   */
  copyBinary?(table: string, columns: readonly string[], data: Uint8Array): Promise<number>;
}
