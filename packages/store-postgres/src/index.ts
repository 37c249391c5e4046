export { PostgresStore, type PostgresStoreOptions } from "./postgres-store";
export type { MigrationReport } from "./migrator";
export { MIGRATIONS, type Migration } from "./migrations/index";
export type { SqlClient, SqlQueryable, SqlResult } from "./sql-client";
export {
  PgPoolSqlClient,
  type PgPoolClientLike,
  type PgPoolLike,
  type PgQueryConfigLike,
  type PgQueryResultLike,
  type PgTypesLike,
} from "./pg-pool-sql-client";
export {
  PgliteSqlClient,
  type PgliteLike,
  type PgliteQueryOptionsLike,
  type PgliteResultLike,
  type PgliteTransactionLike,
} from "./pglite-sql-client";
export { isRetryablePostgresError } from "./postgres-error";
