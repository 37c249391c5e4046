import { KilnError } from "@kiln/core";
import { isConnectionLost, toStoreError } from "./postgres-error";
import type { SqlClient, SqlQueryable, SqlResult } from "./sql-client";
import { escapeText, unescapeText } from "./text-escape";

/**
 * Where history reads run. `sessionSettings`: the client's connections already carry
 * `statement_timeout` (the store's `historyTimeoutMs`) and `jit = off` from their start (the
 * store's own history pool), so a history query needs no transaction for them.
 */
export interface HistoryClient {
  /** The client history reads use (escaping, see {@link escapingClient}). */
  readonly client: SqlClient;
  /** True when every connection of `client` carries the history settings from its start. */
  readonly sessionSettings: boolean;
}

/** What the repositories of one PostgresStore share: the schema and the open client. */
export class StoreContext {
  /** The schema, double-quoted for SQL text. */
  readonly schema: string;
  readonly #client: () => SqlClient;
  readonly #history: () => HistoryClient;
  /** History reads run at most `historyPoolSize` at once (see {@link StoreContext.runHistory}). */
  readonly #historySlots: Slots;
  /** History reads in flight, cut short by `close` (see {@link PendingReads}). */
  readonly reads = new PendingReads();

  /** How long one history query may run on the server, in ms (`historyTimeoutMs` of the store). */
  readonly historyTimeoutMs: number;

  /**
   * @param schema a validated, unquoted schema name.
   * @param client returns the open client, or throws `KILN_LIFECYCLE` when the store is not open.
   * @param history returns the client history reads use, or throws like `client`.
   * @param historyTimeoutMs a validated `historyTimeoutMs` (1 to 2^31 - 1).
   * @param historyPoolSize a validated `historyPoolSize` (at least 1).
   */
  constructor(
    schema: string,
    client: () => SqlClient,
    history: () => HistoryClient,
    historyTimeoutMs: number,
    historyPoolSize: number,
  ) {
    this.schema = `"${schema}"`;
    this.#client = client;
    this.#history = history;
    this.historyTimeoutMs = historyTimeoutMs;
    this.#historySlots = new Slots(historyPoolSize);
  }

  /** A table of the schema, qualified and quoted for SQL text. */
  table(name: string): string {
    return `${this.schema}.${name}`;
  }

  /** The open client. @throws KilnError `KILN_LIFECYCLE` when the store is not open. */
  client(): SqlClient {
    return this.#client();
  }

  /**
   * Runs `work` with the open client and turns any failure that is not already a `KilnError`
   * into a classified `KILN_STORE_ERROR` naming `operation`.
   *
   * The client `work` gets is the store's escaping client ({@link escapingClient}).
   */
  async run<TResult>(operation: string, work: (client: SqlClient) => Promise<TResult>): Promise<TResult> {
    const client = this.#client();
    try {
      return await work(client);
    } catch (error) {
      throw toStoreError(error, operation);
    }
  }

  /**
   * Runs one history read `work` on the history client, cut short by `close` ({@link PendingReads}),
   * within one time budget of `historyTimeoutMs` that counts from this call: waiting here for a
   * slot, waiting for a pooled connection and the query itself all spend it. At most
   * `historyPoolSize` reads run at once and the rest wait here, in order: on a shared client (a
   * host's pool, a custom client, PGlite) history reads never hold more than that many of the
   * connections writers need; on the store's own history pool (of that size) no read waits in
   * pg's queue.
   *
   * This is the one place a history read's failure is classified ({@link historyError}): once the
   * budget is spent the read rejects with `KILN_TIMEOUT`, wherever the time went (a queued read
   * leaves without running; a query already sent keeps its slot until the server's
   * `statement_timeout` ends it, so no more than `historyPoolSize` ever run); a failure within
   * the budget is a `KILN_STORE_ERROR`, except the server's own statement timeout, which is
   * `KILN_TIMEOUT` too. `work` gets the budget left, in whole ms (at least 1), for the server's
   * `statement_timeout`.
   */
  async runHistory<TResult>(
    operation: string,
    work: (client: SqlClient, sessionSettings: boolean, remainingMs: () => number) => Promise<TResult>,
  ): Promise<TResult> {
    const { client, sessionSettings } = this.#history();
    const budgetMs = this.historyTimeoutMs;
    const started = performance.now();
    const elapsed = (): number => performance.now() - started;
    const remainingMs = (): number => Math.max(1, Math.ceil(budgetMs - elapsed()));
    let timer: NodeJS.Timeout | undefined;
    let expired = false;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        expired = true;
        reject(historyTimeout(operation, budgetMs, undefined));
      }, budgetMs);
    });
    const running = this.#historySlots.run(async () => {
      // The budget was spent waiting for the slot: the caller already has its KILN_TIMEOUT.
      if (expired) return undefined as TResult;
      try {
        return await work(client, sessionSettings, remainingMs);
      } catch (error) {
        throw historyError(error, operation, budgetMs, elapsed());
      }
    });
    // Settled after the deadline (the caller has its answer): nothing is left unhandled.
    running.catch(() => undefined);
    try {
      return await this.reads.track(Promise.race([running, timedOut]));
    } finally {
      clearTimeout(timer);
    }
  }
}

/** SQLSTATE 57014 query_canceled. */
const QUERY_CANCELED = "57014";

/**
 * The one classification of a failed history read of `operation` after `elapsedMs` of its
 * `budgetMs` (`historyTimeoutMs`): a `KilnError` passes through; a connection lost under the read
 * (killed by `pg_terminate_backend`, a server shutdown, a reset socket: `isConnectionLost`) is
 * the retryable `KILN_STORE_ERROR` it is, whenever it arrives, so a caller retries on a new
 * connection rather than reading it as a slow query; the server's statement timeout
 * (57014 with PostgreSQL's "statement timeout" message: an administrator's cancel is also 57014,
 * and is not ours) and any failure that arrives once the budget is spent (a pool's "timeout
 * exceeded when trying to connect", a cancel racing the deadline) are `KILN_TIMEOUT`; anything
 * else is the classified `KILN_STORE_ERROR` of {@link toStoreError}.
 */
export function historyError(error: unknown, operation: string, budgetMs: number, elapsedMs: number): KilnError {
  if (KilnError.is(error)) return error;
  if (isConnectionLost(error)) return toStoreError(error, operation);
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const statementTimeout =
    code === QUERY_CANCELED && typeof message === "string" && message.includes("statement timeout");
  if (statementTimeout || elapsedMs >= budgetMs) return historyTimeout(operation, budgetMs, error);
  return toStoreError(error, operation);
}

/** The retryable `KILN_TIMEOUT` of a history read of `operation` that spent its `budgetMs`. */
function historyTimeout(operation: string, budgetMs: number, cause: unknown): KilnError {
  const sqlState = (cause as { code?: unknown } | undefined)?.code;
  return new KilnError(
    "KILN_TIMEOUT",
    `PostgreSQL ${operation} ran longer than historyTimeoutMs (${budgetMs} ms), waiting for a connection or running: query fewer tags, intervals or a shorter range, or raise the store's historyTimeoutMs.`,
    {
      ...(cause === undefined ? {} : { cause }),
      retryable: true,
      details: typeof sqlState === "string" ? { operation, sqlState } : { operation },
    },
  );
}

/** At most `size` tasks at once; the others wait in arrival order. */
class Slots {
  readonly #size: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(size: number) {
    this.#size = size;
  }

  async run<TResult>(task: () => Promise<TResult>): Promise<TResult> {
    if (this.#running >= this.#size) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter (the count stays), else it is freed.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}

/**
 * Read-only queries (history) of one store: each in-flight read rejects with `KILN_LIFECYCLE`
 * when the store closes, instead of waiting on a client the close is tearing down. Writes are not
 * cut short this way: whether they committed must stay knowable.
 */
export class PendingReads {
  readonly #rejecters = new Set<(error: KilnError) => void>();

  /** `running`, or a `KILN_LIFECYCLE` rejection when {@link PendingReads.closeAll} runs first. */
  async track<TResult>(running: Promise<TResult>): Promise<TResult> {
    let reject!: (error: KilnError) => void;
    const closed = new Promise<never>((_, rejectClosed) => (reject = rejectClosed));
    this.#rejecters.add(reject);
    try {
      return await Promise.race([running, closed]);
    } finally {
      this.#rejecters.delete(reject);
    }
  }

  /** Rejects every read in flight: the store is closing. */
  closeAll(): void {
    const error = new KilnError("KILN_LIFECYCLE", "The PostgreSQL store was closed while this query ran.");
    for (const reject of this.#rejecters) reject(error);
    this.#rejecters.clear();
  }
}

const escapingClients = new WeakMap<SqlClient, SqlClient>();

/**
 * `client` with text escaped on the way in and unescaped on the way out (one wrapper per client):
 * every string parameter, hand-built array literals (`arrayLiteral`) and JSON text included, goes
 * through `escapeText`, and every string column of every row through `unescapeText`, so each text
 * column holds any JavaScript string exactly. A COPY stream is passed through as it is: its
 * encoder escapes its own text. The store hands out no other client: `open` (migrations, tag
 * registration) uses this one too.
 */
export function escapingClient(client: SqlClient): SqlClient {
  let wrapped = escapingClients.get(client);
  if (!wrapped) {
    const copyBinary = client.copyBinary?.bind(client);
    wrapped = {
      query: (text, parameters) => escapedQuery(client, text, parameters),
      transaction: (work) =>
        client.transaction((transaction) =>
          work({ query: (text, parameters) => escapedQuery(transaction, text, parameters) }),
        ),
      ...(copyBinary ? { copyBinary } : {}),
    };
    escapingClients.set(client, wrapped);
  }
  return wrapped;
}

async function escapedQuery<TRow>(
  client: SqlQueryable,
  text: string,
  parameters?: readonly unknown[],
): Promise<SqlResult<TRow>> {
  const result = await client.query<TRow>(
    text,
    parameters?.map((parameter) => (typeof parameter === "string" ? escapeText(parameter) : parameter)),
  );
  for (const row of result.rows as Record<string, unknown>[]) {
    for (const key in row) {
      const value = row[key];
      if (typeof value === "string") row[key] = unescapeText(value);
    }
  }
  return result;
}
