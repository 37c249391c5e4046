import type { Migration } from "./migration";

/**
 * A column for uint64 values above the int64 range (2^63 .. 2^64-1), which `bigint` cannot hold.
 * Every other integer stays in `value_int`, so ingest and queries of ordinary integers are
 * unchanged; a row sets at most one of the value columns. Adding a nullable column without a
 * default does not rewrite the table. See docs/adr/0012-storable-values.md.
 */
export const unsigned64BitValues: Migration = {
  version: 2,
  name: "uint64 values above int64",
  statements: (schema) => [
    `ALTER TABLE ${schema}.samples ADD COLUMN value_uint numeric(20, 0)
       CHECK (value_uint BETWEEN 9223372036854775808 AND 18446744073709551615)`,
  ],
};
