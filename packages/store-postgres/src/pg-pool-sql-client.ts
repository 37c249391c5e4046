import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pgCopyStreams from "pg-copy-streams";
import type { SqlClient, SqlQueryable, SqlResult } from "./sql-client";

/** Parses one text-format column value. */
type PgTypeParser = (value: string) => unknown;

/** The `types` option of a pg query: picks a parser per type oid. */
export interface PgTypesLike {
  /** The parser of a result column of type `oid`. */
  getTypeParser(oid: number, format?: string): (value: string) => unknown;
}

/** A pg query configuration: statement, parameters and per-query type parsers. */
export interface PgQueryConfigLike {
  /** The statement. */
  readonly text: string;
  /** `$1`-style parameter values. */
  readonly values?: unknown[];
  /** Per-query type parsers. */
  readonly types?: PgTypesLike;
}

/** What a pg query resolves with (the subset the store reads). */
export interface PgQueryResultLike {
  /** Result rows. */
  readonly rows: unknown[];
  /** Rows affected, where the command reports it. */
  readonly rowCount: number | null;
}

/** A client checked out of a pg pool (the subset the store uses). `pg.PoolClient` fits. */
export interface PgPoolClientLike {
  /** Runs one statement (a COPY stream is submitted through the same method at run time). */
  query(config: PgQueryConfigLike): Promise<PgQueryResultLike>;
  /** Returns the client to the pool, or destroys it when `destroy` is truthy. */
  release(destroy?: boolean | Error): void;
  /** Listens for connection errors raised while no call is pending. */
  on(event: "error", listener: (error: Error) => void): unknown;
  /** Stops listening. */
  removeListener(event: "error", listener: (error: Error) => void): unknown;
}

/** A pg connection pool (the subset the store uses). A host's `pg.Pool` fits. */
export interface PgPoolLike {
  /** Checks a client out (for transactions and COPY). */
  connect(): Promise<PgPoolClientLike>;
  /** Runs one statement on any pooled connection. */
  query(config: PgQueryConfigLike): Promise<PgQueryResultLike>;
  /**
   * Listens for each new connection (`pg.Pool` emits `connect`). Optional: when present, the
   * store gives every new connection an error listener at once (see {@link PgPoolSqlClient}).
   */
  on?(event: "connect", listener: (client: PgPoolClientLike) => void): unknown;
}

const PARSERS: Readonly<Record<number, PgTypeParser>> = {
  16: (value) => value === "t",
  21: Number,
  23: Number,
  700: Number,
  701: Number,
};

const identity: PgTypeParser = (value) => value;

/**
 * Type parsers given to every query, so results do not depend on parsers a host may have set
 * globally with `pg.types.setTypeParser`: booleans and 2/4-byte integers and floats become JS
 * values, everything else stays text.
 */
const TYPES: PgTypesLike = { getTypeParser: (oid) => PARSERS[oid] ?? identity };

const ignoreError = (): void => undefined;

/** Pools already given the connect listener: several stores (or reopenings) on one pool add it once. */
const guardedPools = new WeakSet<object>();

/**
 * A {@link SqlClient} over a `pg` connection pool, with the binary COPY fast path
 * (`pg-copy-streams`). It never ends the pool: whoever created the pool ends it.
 *
 * @example
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * const store = new PostgresStore({ pool }); // wraps it in a PgPoolSqlClient
 */
export class PgPoolSqlClient implements SqlClient {
  readonly #pool: PgPoolLike;

  constructor(pool: PgPoolLike) {
    this.#pool = pool;
    // pg-pool removes its idle error listener when it hands out a new connection, and the server
    // can send an error (57P01 after pg_terminate_backend) in the same network read as the
    // connection's ReadyForQuery, before any caller could listen: without a listener of its own
    // that error would be an uncaught exception in the host. The call that uses the connection
    // next fails on it and discards it.
    if (!guardedPools.has(pool)) {
      guardedPools.add(pool);
      pool.on?.("connect", (client) => client.on("error", ignoreError));
    }
  }

  /** Runs one statement on any pooled connection. */
  async query<TRow = Record<string, unknown>>(
    text: string,
    parameters: readonly unknown[] = [],
  ): Promise<SqlResult<TRow>> {
    const result = await this.#pool.query({ text, values: [...parameters], types: TYPES });
    return { rows: result.rows as TRow[], rowCount: result.rowCount ?? 0 };
  }

  /** Runs `work` in a transaction on one checked-out connection. */
  async transaction<TResult>(work: (transaction: SqlQueryable) => Promise<TResult>): Promise<TResult> {
    return this.#withClient(async (client) => {
      await client.query({ text: "BEGIN" });
      let result: TResult;
      try {
        result = await work({
          query: async <TRow>(text: string, parameters: readonly unknown[] = []) => {
            const rows = await client.query({ text, values: [...parameters], types: TYPES });
            return { rows: rows.rows as TRow[], rowCount: rows.rowCount ?? 0 };
          },
        });
      } catch (error) {
        // A failed ROLLBACK means the connection is gone; #withClient then destroys the client.
        await client.query({ text: "ROLLBACK" }).catch(() => {
          throw error;
        });
        throw new HandledError(error);
      }
      await client.query({ text: "COMMIT" });
      return result;
    });
  }

  /** Streams a binary COPY through `pg-copy-streams` on one checked-out connection. */
  async copyBinary(table: string, columns: readonly string[], data: Uint8Array): Promise<number> {
    return this.#withClient(async (client) => {
      const stream = pgCopyStreams.from(`COPY ${table} (${columns.join(", ")}) FROM STDIN WITH (FORMAT binary)`);
      // pg-copy-streams is submitted like a query; the structural client type only declares configs.
      (client.query as unknown as (submittable: typeof stream) => unknown)(stream);
      await pipeline(Readable.from([data], { objectMode: false }), stream);
      return stream.rowCount;
    });
  }

  /**
   * Checks a client out for `work` and releases it. A client whose connection may be broken is
   * destroyed rather than returned to the pool; errors a connection emits while checked out are
   * ignored here because the pending call already rejects with them.
   */
  async #withClient<TResult>(work: (client: PgPoolClientLike) => Promise<TResult>): Promise<TResult> {
    const client = await this.#pool.connect();
    client.on("error", ignoreError);
    let healthy = true;
    try {
      return await work(client);
    } catch (error) {
      if (error instanceof HandledError) throw error.original;
      healthy = false;
      throw error;
    } finally {
      // A broken client is destroyed: it keeps the listener, because the server's FATAL message
      // (57P01 after pg_terminate_backend) can arrive while it closes, with no query to take it.
      if (healthy) client.removeListener("error", ignoreError);
      client.release(!healthy);
    }
  }
}

/** Wraps an error after which the connection is known to be usable (the ROLLBACK succeeded). */
class HandledError {
  constructor(readonly original: unknown) {}
}
