import { toStoreError } from "./postgres-error";
import type { SqlClient } from "./sql-client";

/** What the repositories of one PostgresStore share: the schema and the open client. */
export class StoreContext {
  /** The schema, double-quoted for SQL text. */
  readonly schema: string;
  readonly #client: () => SqlClient;

  /**
   * @param schema a validated, unquoted schema name.
   * @param client returns the open client, or throws `KILN_LIFECYCLE` when the store is not open.
   */
  constructor(schema: string, client: () => SqlClient) {
    this.schema = `"${schema}"`;
    this.#client = client;
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
   */
  async run<TResult>(operation: string, work: (client: SqlClient) => Promise<TResult>): Promise<TResult> {
    const client = this.#client();
    try {
      return await work(client);
    } catch (error) {
      throw toStoreError(error, operation);
    }
  }
}
