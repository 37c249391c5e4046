import { KilnError, type Logger, silentLogger, type Store, type Tag, type TagDataType } from "@kiln/core";
import {
  type AlarmHistory,
  type AuditLog,
  type EventStore,
  type HistoryQueries,
  type ProcessRepository,
  type RecipeRepository,
  type SampleHistory,
  type SampleSink,
} from "@kiln/core/driver-kit";
import { type StoreCapabilities } from "@kiln/core/driver-kit";
import pg from "pg";
import { IssueCollector } from "./input-checks";
import { applyMigrations, type MigrationReport } from "./migrator";
import { PgPoolSqlClient, type PgPoolLike } from "./pg-pool-sql-client";
import { PgliteSqlClient, type PgliteLike } from "./pglite-sql-client";
import type * as PgliteModule from "@electric-sql/pglite";
import { PostgresAlarmHistory } from "./postgres-alarm-history";
import { PostgresAuditLog } from "./postgres-audit-log";
import { toStoreError } from "./postgres-error";
import { PostgresEventStore } from "./postgres-event-store";
import { PostgresHistory } from "./postgres-history";
import { PostgresProcessRepository } from "./postgres-process-repository";
import { PostgresRecipeRepository } from "./postgres-recipe-repository";
import { PostgresSampleSink } from "./postgres-sample-sink";
import type { SqlClient } from "./sql-client";
import { escapingClient, type HistoryClient, StoreContext } from "./store-context";
import { TagRegistry } from "./tag-registry";

/**
 * Options of {@link PostgresStore}. Give at most one of `connectionString`, `pool`, `pglite` and
 * `client`; with none, the store runs on a fresh in-memory PGlite database.
 */
export interface PostgresStoreOptions {
  /** A PostgreSQL URL; the store creates (and on `close`, ends) its own `pg.Pool`. */
  readonly connectionString?: string;
  /** A pool the host already has (`pg.Pool` fits). The store never ends it. */
  readonly pool?: PgPoolLike;
  /** A PGlite instance the host created (in memory or on disk). The store never closes it. */
  readonly pglite?: PgliteLike;
  /** Any other client, adapted to the structural {@link SqlClient}. The store never closes it. */
  readonly client?: SqlClient;
  /**
   * The schema holding Kiln's tables: lower-case letters, digits and `_`, starting with a letter
   * or `_`, at most 63 characters, not starting with `pg_`. Created by `migrate()` when missing.
   * @default "kiln"
   */
  readonly schema?: string;
  /** Pool size when the store creates the pool from `connectionString`. @default 4 */
  readonly maxConnections?: number;
  /**
   * When the store owns its pool: how long opening a connection may take before it fails
   * (retryably, as a connection failure), in ms — `pg`'s `connectionTimeoutMillis`. A blackholed
   * or frozen server then fails fast instead of holding `open()` and every call until the
   * caller's own timeout. A pool the host passes keeps its own setting.
   * @default 10000
   */
  readonly connectTimeoutMs?: number;
  /** Where the store reports connection errors of idle pooled connections. @default silentLogger */
  readonly logger?: Logger;
  /**
   * When the store owns its pool: how long `close()` waits for queries still running (a frozen
   * or unreachable server never answers them) before it destroys their connections, in ms.
   * @default 5000
   */
  readonly closeTimeoutMs?: number;
  /**
   * The time budget of one history call (`history.aggregate`, `valueAt`, `interpolated`,
   * `downsample`, and the raw reads `samples.readSamples` and `readBuckets`), in ms, 1 to 2147483647, counted from the call: waiting in the store for one of
   * the `historyPoolSize` slots, waiting for a pooled connection and the query all spend it. Once
   * it is spent the call rejects with `KILN_TIMEOUT` (retryable: a smaller query, or the same one
   * on a less loaded server, may pass), wherever the time went; a failure within it is
   * `KILN_STORE_ERROR`. On the server it is also PostgreSQL's `statement_timeout`, so a large
   * allowed query cannot hold a connection for minutes: on the store's own history pool
   * (`connectionString`) every history connection carries it from its start; on a pool or client
   * the host passes, each history query's transaction gets what is left of the budget
   * (`SET LOCAL`). Embedded PGlite never cancels a statement: the call still rejects at the
   * budget, and the statement runs to its end.
   * @default 30000
   */
  readonly historyTimeoutMs?: number;
  /**
   * How many history queries (raw reads included) run at once, at least 1; more wait in the store, so slow history
   * reads never take the connections writers need (ADR 0040). With `connectionString` the store
   * opens a second pool of this many connections for history only (`application_name`
   * `kiln-history`), whose connections start with `statement_timeout = historyTimeoutMs` and JIT
   * off: a history query is then one round trip. With a `pool` or `client` the host passes,
   * history queries share it, at most this many at once: give that pool more connections than
   * this, or writers can still wait behind history reads.
   * @default 2
   */
  readonly historyPoolSize?: number;
  /**
   * How many ids of tag names outside the catalog given to `open` the store keeps in memory, at
   * least 2 (names met only in samples, such as a Sparkplug host's metrics). Beyond it the least
   * recently used are dropped (two generations of half each); a dropped name costs one lookup in
   * the `tags` table when it comes again. The catalog's ids are always kept.
   * @default 100000
   */
  readonly maxCachedTagNames?: number;
}

/** A lower-case identifier that needs no quoting rules beyond double quotes; `pg_` is reserved. */
const SCHEMA_NAME = /^(?!pg_)[a-z_][a-z0-9_]{0,62}$/;

interface Connection {
  readonly client: SqlClient;
  /** The client of history reads: `client` itself unless the store owns a history pool. */
  readonly history: HistoryClient;
  release(): Promise<void>;
}

/**
 * The durable {@link Store}: every Kiln port on PostgreSQL, or on embedded PGlite when no
 * server is given, so a newcomer needs no database to start.
 *
 * - `open(tags)` connects, applies migrations (see {@link PostgresStore.migrate}) and registers
 *   the tag catalog. Every other call rejects with `KILN_LIFECYCLE` until then, and after `close`.
 * - Sample ingest is a binary COPY, idempotent on (tag, timestamp) and safe to retry
 *   (see docs/stores/postgres.md); process saves and their events share one transaction.
 * - Database failures reject with `KILN_STORE_ERROR` whose `retryable` tells a retry policy or
 *   breaker whether to try again (connection lost, admin shutdown, serialization failure,
 *   deadlock, too many connections are retryable; constraint or syntax errors are not).
 * - All SQL is parameterised; the schema name is validated and quoted.
 *
 * @example
 * const store = new PostgresStore(); // in-memory PGlite
 * // or: new PostgresStore({ connectionString: process.env.DATABASE_URL, schema: "plant1" })
 * await store.open(tags.list());
 * await store.samples.writeBatch([{ tag: "chamber.pressure", value: 2.5, timestamp: Date.now(), quality: GOOD }]);
 * await store.close();
 * @throws KilnValidationError (`KILN_VALIDATION`) from the constructor for bad options (`schema`,
 * `maxConnections`, `closeTimeoutMs`, `connectTimeoutMs`, `historyTimeoutMs`, `historyPoolSize`, more than
 * one connection source).
 */
export class PostgresStore implements Store {
  /** The store contract version. */
  readonly storeApiVersion = "1";
  /** Process saves and their events commit in one transaction. */
  readonly capabilities: StoreCapabilities = Object.freeze({ transactions: true, aggregates: true });
  /** History queries computed in SQL (OPC UA Part 13 aggregates, values at times, trends). */
  readonly history: HistoryQueries;
  /** Sample ingest and history. */
  readonly samples: SampleSink & SampleHistory;
  /** Domain event streams. */
  readonly events: EventStore;
  /** Processes, saved with their events. */
  readonly processes: ProcessRepository;
  /** Immutable recipe versions. */
  readonly recipes: RecipeRepository;
  /** Alarm transitions. */
  readonly alarms: AlarmHistory;
  /** The audit trail. */
  readonly audit: AuditLog;
  /** The schema holding the tables. */
  readonly schema: string;

  readonly #options: PostgresStoreOptions;
  readonly #logger: Logger;
  readonly #tags: TagRegistry;
  /** Each catalog tag's current data type, for history (`Delta` is computed in it). */
  readonly #dataTypes = new Map<string, TagDataType>();
  #state: "created" | "open" | "closed" = "created";
  #connection: Promise<Connection> | undefined;
  #client: SqlClient | undefined;
  #history: HistoryClient | undefined;
  readonly #context: StoreContext;

  constructor(options: PostgresStoreOptions = {}) {
    checkOptions(options);
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.schema = options.schema ?? "kiln";
    const context = new StoreContext(
      this.schema,
      () => this.#openClient(),
      () => {
        this.#openClient();
        return this.#history!;
      },
      options.historyTimeoutMs ?? 30_000,
      options.historyPoolSize ?? 2,
    );
    this.#context = context;
    this.#tags = new TagRegistry(context, options.maxCachedTagNames);
    this.samples = new PostgresSampleSink(context, this.#tags);
    this.history = new PostgresHistory(context, this.#tags, this.#dataTypes);
    this.events = new PostgresEventStore(context);
    this.processes = new PostgresProcessRepository(context);
    this.recipes = new PostgresRecipeRepository(context);
    this.alarms = new PostgresAlarmHistory(context);
    this.audit = new PostgresAuditLog(context);
  }

  /**
   * Connects (creating the pool or PGlite database when the store owns it), applies pending
   * migrations and registers `tags` in the `tags` table. Idempotent; opening again after
   * `close` reconnects (an owned in-memory PGlite database then starts empty).
   * @throws KilnError `KILN_STORE_ERROR` (retryable when the database was unreachable);
   *   `KILN_NOT_SUPPORTED` (with `details.install`) when no server is given and PGlite, an optional
   *   peer dependency, is not installed.
   */
  async open(tags: readonly Tag[]): Promise<void> {
    if (!Array.isArray(tags)) throw new TypeError("open expects an array of tags");
    try {
      const client = await this.#connect();
      await applyMigrations(client, this.schema);
      await this.#tags.register(client, tags);
      for (const tag of tags) this.#dataTypes.set(tag.name, tag.dataType);
      const { history } = await this.#connection!;
      this.#history = { client: escapingClient(history.client), sessionSettings: history.sessionSettings };
      this.#client = client;
    } catch (error) {
      throw toStoreError(error, "open");
    }
    this.#state = "open";
  }

  /**
   * Applies pending migrations (connecting first when needed) and reports what it did. `open`
   * calls it; call it alone from a deployment step. Safe to run concurrently from several
   * processes: an advisory lock serialises them, and a second run applies nothing.
   * @throws KilnError `KILN_STORE_ERROR`
   */
  async migrate(): Promise<MigrationReport> {
    try {
      return await applyMigrations(await this.#connect(), this.schema);
    } catch (error) {
      throw toStoreError(error, "migrate");
    }
  }

  /**
   * Releases what the store owns (its pool or PGlite database). Idempotent. History queries still
   * running reject with `KILN_LIFECYCLE`.
   */
  async close(): Promise<void> {
    this.#context.reads.closeAll();
    const connection = this.#connection;
    this.#connection = undefined;
    this.#client = undefined;
    this.#history = undefined;
    if (this.#state === "open") this.#state = "closed";
    this.#tags.clear();
    this.#dataTypes.clear();
    if (connection === undefined) return;
    const resolved = await connection.catch(() => undefined);
    await resolved?.release();
  }

  #openClient(): SqlClient {
    if (this.#state === "open" && this.#client !== undefined) return this.#client;
    throw new KilnError(
      "KILN_LIFECYCLE",
      this.#state === "closed"
        ? "The PostgreSQL store is closed: open it again before using it."
        : "The PostgreSQL store is not open: call store.open(tags) first.",
      { details: { state: this.#state } },
    );
  }

  async #connect(): Promise<SqlClient> {
    this.#connection ??= this.#createConnection().catch((error: unknown) => {
      this.#connection = undefined;
      throw error;
    });
    // Every query the store makes, migrations and tag registration included, escapes its text.
    return escapingClient((await this.#connection).client);
  }

  async #createConnection(): Promise<Connection> {
    const { client, pool, pglite, connectionString } = this.#options;
    const keep = async (): Promise<void> => undefined;
    const shared = (sql: SqlClient): Connection => ({
      client: sql,
      history: { client: sql, sessionSettings: false },
      release: keep,
    });
    if (client) return shared(client);
    if (pool) return shared(new PgPoolSqlClient(pool));
    if (pglite) return shared(new PgliteSqlClient(pglite));
    if (connectionString !== undefined) {
      const main = this.#ownedPool(connectionString, this.#options.maxConnections ?? 4, "kiln");
      // History reads get connections of their own, so they never take the writers' (ADR 0040);
      // each starts with the history settings, so a history query is one statement.
      const history = this.#ownedPool(
        connectionString,
        this.#options.historyPoolSize ?? 2,
        "kiln-history",
        `-c statement_timeout=${this.#options.historyTimeoutMs ?? 30_000} -c jit=off`,
      );
      return {
        client: main.client,
        history: { client: history.client, sessionSettings: true },
        release: async () => {
          await Promise.all([main.release(), history.release()]);
        },
      };
    }
    const { PGlite } = await importPglite();
    const embedded = await PGlite.create();
    return { ...shared(new PgliteSqlClient(embedded)), release: () => embedded.close() };
  }

  /** A pool the store owns, with `max` connections and session `options` (pg's `-c name=value`). */
  #ownedPool(
    connectionString: string,
    max: number,
    applicationName: string,
    options?: string,
  ): { readonly client: SqlClient; release(): Promise<void> } {
    const owned = new pg.Pool({
      connectionString,
      max,
      connectionTimeoutMillis: this.#options.connectTimeoutMs ?? 10_000,
      application_name: applicationName,
      ...(options === undefined ? {} : { options }),
    });
    // An idle pooled connection that drops (server restart, pg_terminate_backend) emits here;
    // the pool discards it and the next call opens a new one.
    owned.on("error", (error) =>
      this.#logger.warn({ err: error, schema: this.schema }, "idle PostgreSQL connection lost"),
    );
    // Clients checked out now; close() destroys the ones an abandoned query still holds.
    const active = new Set<pg.PoolClient>();
    owned.on("acquire", (pooled) => active.add(pooled));
    owned.on("release", (_error, pooled) => active.delete(pooled));
    owned.on("remove", (pooled) => active.delete(pooled));
    const closeTimeoutMs = this.#options.closeTimeoutMs ?? 5_000;
    return {
      client: new PgPoolSqlClient(owned),
      release: async () => {
        const ended = owned.end();
        if (await settlesWithin(ended, closeTimeoutMs)) return;
        this.#logger.warn({ schema: this.schema, queries: active.size }, "closing with queries still running");
        for (const pooled of active) destroyConnection(pooled);
        await settlesWithin(ended, closeTimeoutMs);
      },
    };
  }
}

/** The PGlite version this package is tested with; PGlite is an optional peer dependency. */
const PGLITE_PEER = "@electric-sql/pglite@^0.3.8";

/**
 * Loads PGlite for the embedded default. It is an optional peer dependency (a service with a
 * PostgreSQL server does not install its 20+ MB), so a missing one is a clear error, not a crash.
 */
async function importPglite(): Promise<typeof PgliteModule> {
  try {
    return await import("@electric-sql/pglite");
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") throw error;
    throw new KilnError(
      "KILN_NOT_SUPPORTED",
      `PostgresStore without a server runs on embedded PGlite, an optional peer dependency: npm install ${PGLITE_PEER}, or give connectionString, pool or client`,
      { cause: error, details: { install: PGLITE_PEER } },
    );
  }
}

function checkOptions(options: PostgresStoreOptions): void {
  if (typeof options !== "object" || options === null) throw new TypeError("PostgresStore expects an options object");
  const issues = new IssueCollector();
  const sources = (["connectionString", "pool", "pglite", "client"] as const).filter(
    (key) => options[key] !== undefined,
  );
  if (sources.length > 1) {
    issues.add(sources[1]!, `give only one of connectionString, pool, pglite and client (got ${sources.join(", ")})`);
  }
  if (options.connectionString !== undefined) issues.string("connectionString", options.connectionString);
  if (options.schema !== undefined && (typeof options.schema !== "string" || !SCHEMA_NAME.test(options.schema))) {
    issues.add(
      "schema",
      "must be a SQL identifier: lower-case letters, digits and _, starting with a letter or _, at most 63 characters, not starting with pg_",
    );
  }
  if (options.maxConnections !== undefined) issues.integer("maxConnections", options.maxConnections, 1);
  if (options.closeTimeoutMs !== undefined) issues.integer("closeTimeoutMs", options.closeTimeoutMs, 1);
  if (options.connectTimeoutMs !== undefined) issues.integer("connectTimeoutMs", options.connectTimeoutMs, 1);
  if (options.historyPoolSize !== undefined) issues.integer("historyPoolSize", options.historyPoolSize, 1);
  if (options.maxCachedTagNames !== undefined) issues.integer("maxCachedTagNames", options.maxCachedTagNames, 2);
  if (options.historyTimeoutMs !== undefined) {
    issues.integer("historyTimeoutMs", options.historyTimeoutMs, 1);
    // PostgreSQL's statement_timeout is an int4 of ms.
    if (typeof options.historyTimeoutMs === "number" && options.historyTimeoutMs > 2_147_483_647) {
      issues.add("historyTimeoutMs", "must be at most 2147483647 ms (PostgreSQL's statement_timeout limit)");
    }
  }
  issues.throwIfAny("PostgreSQL store options");
}

/** True when `work` settles within `ms`; never rejects. */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = work.then(
    () => true as const,
    () => true as const,
  );
  try {
    return await Promise.race([settled, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Closes a pooled client's socket at once: its pending query fails and the pool drops it. */
function destroyConnection(pooled: pg.PoolClient): void {
  (pooled as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
